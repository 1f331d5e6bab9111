//! Messages of the flow instances and the shard actor that hosts them.

use actix::Message;
use tokio::time::Instant;
use uuid::Uuid;

use super::FlowInstanceKey;
use crate::admission::delivery::Delivery;
use crate::domain::{Command, SharedEvent};
use crate::routing::index::Match;
use crate::skill_runner::Outcome;

/// An event for the flow instance `key`, with the subscription that matched it. Travels
/// through the shard's bounded inbox, not its actix mailbox.
pub struct Enqueue {
    pub key: FlowInstanceKey,
    pub event: SharedEvent,
    pub matched: Match,
    pub delivery: Delivery,
    /// When the event was admitted: dispatch latency is measured from here.
    pub admitted_at: Instant,
}

/// What a runner reports about one invocation of the flow instance `key`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InvocationReport {
    pub key: FlowInstanceKey,
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

/// Asks what the flow instance `key` holds now (operations and tests); `None` if it is not
/// live.
#[derive(Message)]
#[rtype(result = "Option<FlowInstanceSnapshot>")]
pub struct Inspect(pub FlowInstanceKey);

/// What a flow instance holds at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowInstanceSnapshot {
    /// The running invocation and the id of its event.
    pub running: Option<(Uuid, Uuid)>,
    /// Ids of the pending events, in queue order.
    pub pending: Vec<Uuid>,
}
