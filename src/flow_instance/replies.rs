//! The reply queue of a flow shard: how runners' reports (commands, outcomes) reach it, from
//! any thread. A bounded queue observed under `shard_replies`, drained by the shard beside its
//! inbox. Decision: a reply is never lost and a runner never blocks: one that finds the queue
//! full (counted) waits in the shard's waiting line, which one task empties into the queue, in
//! order, as room frees; while anything waits, later replies join the line behind it, so one
//! invocation's reports keep the order they were sent in.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::invocation::{InvocationReport, ReportSink};
use crate::telemetry::queue;

/// Reports one shard's queue holds before replies wait in line.
pub const CAPACITY: usize = 4096;

/// The sending side of a shard's reply queue.
pub struct Replies(Arc<Shared>);

struct Shared {
    queue: mpsc::Sender<InvocationReport>,
    /// Whether replies wait in line (read without the lock on the common path).
    backlogged: AtomicBool,
    line: Mutex<Line>,
    /// Where the task emptying the line runs: the shard's own runtime.
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Line {
    waiting: VecDeque<InvocationReport>,
    /// A task is emptying the line.
    draining: bool,
}

impl Replies {
    /// A reply queue of `capacity` reports, its line emptied on `runtime`; the shard drains the
    /// receiver.
    pub fn new(
        capacity: usize,
        runtime: tokio::runtime::Handle,
    ) -> (Self, mpsc::Receiver<InvocationReport>) {
        let (queue, rx) = queue::bounded(queue::names::SHARD_REPLIES, capacity);
        let shared = Shared {
            queue,
            backlogged: AtomicBool::new(false),
            line: Mutex::default(),
            runtime,
        };
        (Replies(Arc::new(shared)), rx)
    }
}

impl ReportSink for Replies {
    fn report(&self, report: InvocationReport) {
        let shared = &self.0;
        let report = if shared.backlogged.load(Ordering::Acquire) {
            report
        } else {
            match shared.queue.try_send(report) {
                Ok(()) => return,
                Err(TrySendError::Full(report)) => report,
                // The shard is gone (the system stops): as a mailbox of a stopped actor.
                Err(TrySendError::Closed(report)) => {
                    return super::instance::drop_stale(report.kind);
                }
            }
        };
        queue::full(queue::names::SHARD_REPLIES);
        let mut line = shared.line.lock().unwrap_or_else(|p| p.into_inner());
        line.waiting.push_back(report);
        shared.backlogged.store(true, Ordering::Release);
        if !line.draining {
            line.draining = true;
            shared.runtime.spawn(drain(self.0.clone()));
        }
    }
}

/// Sends the waiting replies in order as room frees, until none is left.
async fn drain(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut line = shared.line.lock().unwrap_or_else(|p| p.into_inner());
            match line.waiting.pop_front() {
                Some(report) => report,
                None => {
                    line.draining = false;
                    shared.backlogged.store(false, Ordering::Release);
                    return;
                }
            }
        };
        if let Err(mpsc::error::SendError(report)) = shared.queue.send(next).await {
            let mut line = shared.line.lock().unwrap_or_else(|p| p.into_inner());
            let gone = std::iter::once(report).chain(line.waiting.drain(..));
            gone.for_each(|r| super::instance::drop_stale(r.kind));
            line.draining = false;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FlowId, PersonaId};
    use crate::invocation::{FlowInstanceKey, ReportKind};

    fn report(n: u128) -> InvocationReport {
        InvocationReport {
            key: FlowInstanceKey {
                flow: FlowId(1),
                persona: PersonaId(uuid::Uuid::nil()),
            },
            invocation_id: uuid::Uuid::from_u128(n),
            kind: ReportKind::Commands(Vec::new()),
        }
    }

    #[test]
    fn replies_beyond_capacity_wait_and_arrive_in_order() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (replies, mut rx) = Replies::new(2, runtime.handle().clone());
        // Sent from a thread of the runner's while the shard drains nothing: none blocks.
        std::thread::scope(|s| {
            s.spawn(|| (1..=10).for_each(|n| replies.report(report(n))));
        });
        assert_eq!(
            rx.len(),
            2,
            "the queue holds its capacity, the rest wait in line"
        );
        let received: Vec<u128> = runtime.block_on(async {
            let mut got = Vec::new();
            while got.len() < 10 {
                got.push(rx.recv().await.expect("open").invocation_id.as_u128());
            }
            got
        });
        assert_eq!(received, (1..=10).collect::<Vec<_>>());
        // The line is empty again: the next reply takes the queue directly.
        runtime.block_on(tokio::task::yield_now());
        assert!(!replies.0.backlogged.load(Ordering::Acquire));
        replies.report(report(11));
        assert_eq!(rx.try_recv().unwrap().invocation_id.as_u128(), 11);
    }
}
