//! Switchboard: an event-routing daemon for conversational AI agents.
//!
//! The modules follow the path an event takes, in this stage order (ARCHITECTURE.md's, checked
//! by `tests/stage_order.rs`): a module names only modules before it.
//!
//! ```text
//! ground: testing → domain → fault → telemetry → dead_letter → catalog → inbox → admission → invocation → wire → store → intake → auth → api → outbound
//! stages: ingress → session → connectors → routing → flow_instance → skill_runner → commands → relay → natives
//! outer:  engine → config → daemon → transport → boot → http
//! ```

pub mod admission;
pub mod api;
pub mod auth;
pub mod boot;
pub mod catalog;
pub mod commands;
pub mod config;
pub mod connectors;
pub mod daemon;
pub mod dead_letter;
pub mod domain;
pub mod engine;
pub mod fault;
pub mod flow_instance;
pub mod http;
pub mod inbox;
pub mod ingress;
pub mod intake;
pub mod invocation;
pub mod natives;
pub mod outbound;
pub mod relay;
pub mod routing;
pub mod session;
pub mod skill_runner;
pub mod store;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod transport;
pub mod wire;

pub use engine::{Engine, EngineConfig, EngineParts};
