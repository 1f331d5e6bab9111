//! Switchboard: an event-routing daemon for conversational AI agents.
//!
//! The modules follow the path an event takes: [`ingress`] → [`admission`] → [`routing`] →
//! [`flow_instance`] → [`skill_runner`] → [`commands`] → [`connectors`] → [`egress`]. Around
//! them: the [`catalog`] of integrations, [`domain`] values, [`wire`] shapes, [`session`]s,
//! the [`dead_letter`] store, [`telemetry`], and the [`engine`] that wires it all.

pub mod admission;
pub mod auth;
pub mod boot;
pub mod catalog;
pub mod commands;
pub mod config;
pub mod connectors;
pub mod daemon;
pub mod dead_letter;
pub mod domain;
pub mod egress;
pub mod engine;
pub mod fault;
pub mod flow_instance;
pub mod http;
pub mod inbox;
pub mod ingress;
pub mod invocation;
pub mod natives;
pub mod outbound;
pub mod routing;
pub mod sandbox;
pub mod session;
pub mod skill_runner;
pub mod store;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod transport;
pub mod wire;

pub use engine::{Engine, EngineConfig, EngineParts};
