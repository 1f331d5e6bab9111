//! Flow instances: one per `(flow, user persona)`, queueing events by interrupt mode and
//! running one invocation at a time; the shards that host them, one actor per worker arbiter,
//! and their reply queues; the directory that finds an instance's shard; flow state.

pub mod commands;
pub mod directory;
pub(crate) mod instance;
pub mod messages;
pub mod replies;
pub mod shard;
pub mod state;

pub use commands::{CommandPort, Origin};
pub use directory::{FlowDeps, FlowInstanceKey, FlowInstances};
