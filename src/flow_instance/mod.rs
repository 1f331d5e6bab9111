//! Flow instances: one actor per `(flow, user persona)` queueing events by interrupt mode and
//! running one invocation at a time; the directory that starts and retires them; flow state.

pub mod actor;
pub mod directory;
pub mod messages;
pub mod state;

pub use directory::{FlowDeps, FlowInstanceKey, FlowInstances};
