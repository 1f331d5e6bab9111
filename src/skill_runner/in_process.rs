//! In-process runners: a closure answering at once ([`FnRunner`]), and a channel handing
//! invocations to a test or an embedding program ([`ChannelRunner`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Handoff, Invocation, Outcome, Reply, SkillRunner};
use crate::domain::Command;

type Skill = dyn Fn(&Invocation) -> (Outcome, Vec<Command>) + Send + Sync;

/// Answers every invocation at once with what the closure returns.
pub struct FnRunner(Arc<Skill>);

impl FnRunner {
    pub fn new(f: impl Fn(&Invocation) -> (Outcome, Vec<Command>) + Send + Sync + 'static) -> Self {
        FnRunner(Arc::new(f))
    }

    /// Completes every invocation with no commands.
    pub fn completing() -> Self {
        FnRunner::new(|_| (Outcome::Completed, Vec::new()))
    }
}

impl SkillRunner for FnRunner {
    fn invoke(&self, invocation: Invocation, reply: Reply, _handoff: Handoff) {
        let (outcome, commands) = (self.0)(&invocation);
        reply.finish(outcome, commands);
    }
}

/// Hands each invocation, with its reply, to a bounded channel. When the channel is full the
/// invocation fails at once with the reason, so a stalled consumer cannot grow memory.
pub struct ChannelRunner {
    tx: mpsc::Sender<(Invocation, Reply)>,
    cancelled: mpsc::Sender<uuid::Uuid>,
}

/// The receiving side of a [`ChannelRunner`].
pub struct ChannelRunnerRx {
    pub invocations: mpsc::Receiver<(Invocation, Reply)>,
    /// Invocations the engine gave up on.
    pub cancelled: mpsc::Receiver<uuid::Uuid>,
}

impl ChannelRunner {
    pub fn new(capacity: usize) -> (Self, ChannelRunnerRx) {
        let (tx, rx) = mpsc::channel(capacity);
        let (ctx, crx) = mpsc::channel(capacity);
        (
            ChannelRunner { tx, cancelled: ctx },
            ChannelRunnerRx {
                invocations: rx,
                cancelled: crx,
            },
        )
    }
}

impl SkillRunner for ChannelRunner {
    fn invoke(&self, invocation: Invocation, reply: Reply, _handoff: Handoff) {
        if let Err(e) = self.tx.try_send((invocation, reply)) {
            let (reason, (_, reply)) = match e {
                mpsc::error::TrySendError::Full(v) => ("runner queue full", v),
                mpsc::error::TrySendError::Closed(v) => ("runner gone", v),
            };
            reply.finish(
                Outcome::Failed {
                    reason: reason.to_owned(),
                },
                Vec::new(),
            );
        }
    }

    fn cancel(&self, invocation_id: uuid::Uuid, _reason: &'static str) {
        // Best effort, as the trait says: a full notice queue loses the notice, not work.
        let _ = self.cancelled.try_send(invocation_id);
    }
}
