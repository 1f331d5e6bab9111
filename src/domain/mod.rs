//! Domain values shared by every stage: identifiers, events, commands, flows, personas.
//!
//! These types carry no serde derive for the wire: [`crate::wire`] owns the wire shapes and
//! converts them into these, so the envelope can change version without touching the engine.

pub mod command;
pub mod derived_id;
pub mod event;
pub mod flow;
pub mod idn;
pub mod persona;
pub mod scope;

pub use command::{Command, Defect};
pub use event::{
    ActorRef, Argument, Arguments, Event, Reservation, RoutedEvent, SharedEvent, Target,
};
pub use flow::{
    Flow, FlowId, InterruptMode, RunnerSpec, SkillSelector, StateField, StateScope, Subscription,
};
pub use idn::{Idn, IdnError, Name, DEFAULT_ACCOUNT};
pub use persona::{PersonaId, PersonaKey};
pub use scope::{ConnectorKey, ScopeKey};
