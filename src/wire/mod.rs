//! Wire and file shapes (serde): event and command envelopes, flow documents and the
//! subscription export. Kept apart from
//! the domain types in [`crate::domain`]; each shape converts into them with field-named errors.

pub mod envelope;
pub mod flow_bounds;
pub mod flow_doc;
pub mod invocation;
pub mod untrusted;

pub use envelope::{CommandEnvelope, Encoding, EnvelopeError, EventEnvelope, Limits};
pub use flow_doc::{FlowDoc, FlowDocError, SubscriptionDoc, SubscriptionExport};
