//! Routing: the subscription index, the flow table actor that rebuilds it, dispatch of admitted
//! events to the flow shards, the pump of the internal-events sink, and explain.

pub mod dispatch;
pub mod explain;
pub mod flow_table;
pub mod index;
pub mod internal;
pub mod room;

pub use dispatch::{Dispatcher, LiveIndex};
pub use index::{FlowId, FlowRoute, Match, Matches, ScopeKey, SubscriptionIndex};
