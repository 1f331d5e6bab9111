//! Messages of the flow instances and the shard actor that hosts them.

use actix::Message;
use uuid::Uuid;

use super::FlowInstanceKey;
pub use crate::invocation::{InvocationReport, ReportKind};
pub use crate::routing::dispatch::Enqueue;

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
