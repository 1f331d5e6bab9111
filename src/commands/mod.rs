//! Commands from skills: routing them to their connector, refusing what cannot be sent, and
//! the `result_*` events that answer them.

pub mod refusal;
pub mod router;
pub mod validation;

pub use refusal::{CommandRefusal, Fault};
pub use router::{CommandRouter, Origin};
