//! Where a flow instance sends the commands of its running invocation: the command stage
//! implements [`CommandPort`]; this stage owns it, so the flow instances never import commands.

use std::sync::Arc;

use uuid::Uuid;

use crate::domain::{Command, PersonaId};
use crate::routing::index::FlowRoute;

/// Where a command comes from: the invocation, its flow and user persona.
#[derive(Clone)]
pub struct Origin {
    pub persona: PersonaId,
    pub flow: Arc<FlowRoute>,
    pub invocation_id: Uuid,
}

/// Takes the commands of invocations. Must not block.
pub trait CommandPort: Send + Sync + 'static {
    /// Sends `command` of the invocation `origin`; returns its act id.
    fn send(&self, origin: &Origin, command: Command) -> Uuid;

    /// The invocation `origin` was superseded (a newer event interrupted it): what it sent
    /// that adapters have not carried out yet is recalled. Nothing by default.
    fn supersede(&self, _origin: &Origin) {}
}
