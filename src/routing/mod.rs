//! Routing: the subscription index, the flow table actor that rebuilds it, dispatch of admitted
//! events to the flow shards (and of the internal-events pump's batches), and explain.

pub mod dispatch;
pub mod explain;
pub mod flow_table;
pub mod index;
pub mod room;

pub use dispatch::{Dispatcher, LiveIndex};
pub use index::{FlowId, FlowRoute, Match, Matches, ScopeKey, SubscriptionIndex};
