//! Wire and file shapes (serde): flow documents and the subscription export. Kept apart from
//! the domain types in [`crate::domain`]; each shape converts into them with field-named errors.

pub mod flow_doc;

pub use flow_doc::{FlowDoc, FlowDocError, SubscriptionDoc, SubscriptionExport};
