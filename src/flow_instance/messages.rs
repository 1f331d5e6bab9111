//! Messages of the flow instance actor.

use actix::Message;
use tokio::time::Instant;
use uuid::Uuid;

use crate::admission::delivery::Delivery;
use crate::domain::{Command, SharedEvent};
use crate::routing::index::Match;
use crate::skill_runner::Outcome;

/// An event for this flow instance, with the subscription that matched it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue {
    pub event: SharedEvent,
    pub matched: Match,
    pub delivery: Delivery,
    /// When the event was admitted: dispatch latency is measured from here.
    pub admitted_at: Instant,
}

/// What a runner reports about one invocation.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InvocationReport {
    pub invocation_id: Uuid,
    pub kind: ReportKind,
}

pub enum ReportKind {
    /// Commands sent while the skill runs.
    Commands(Vec<Command>),
    /// The outcome, with the run's last commands.
    Finished {
        outcome: Outcome,
        commands: Vec<Command>,
    },
}

/// Asks for what the instance holds now (operations and tests).
#[derive(Message)]
#[rtype(result = "FlowInstanceSnapshot")]
pub struct Inspect;

/// What a flow instance holds at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowInstanceSnapshot {
    /// The running invocation and the id of its event.
    pub running: Option<(Uuid, Uuid)>,
    /// Ids of the pending events, in queue order.
    pub pending: Vec<Uuid>,
}
