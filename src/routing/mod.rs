//! Routing: the subscription index, the router actor that rebuilds it, dispatch of admitted
//! events to flow instances, and explain.

pub mod dispatch;
pub mod explain;
pub mod index;
pub mod router;

pub use dispatch::Dispatcher;
pub use index::{FlowId, FlowRoute, Match, Matches, ScopeKey, SubscriptionIndex};
