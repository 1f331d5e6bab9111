//! The command stage: checking every command against the directory and the catalog, carrying
//! it out through its native integration or handing it to the relay (adapters), refusing what
//! cannot be done, and the `result_*` events that answer it.

pub mod native;
pub mod refusal;
pub mod relay;
pub mod router;
pub mod validation;

pub use crate::flow_instance::Origin;
pub use native::{
    Answer, Answered, ConnectorChange, Failure, NativeCommand, NativeIntegration, Natives,
};
pub use refusal::{CommandRefusal, Fault};
pub use router::CommandRouter;
