//! Where a flow instance sends the commands of its running invocation: the command stage
//! implements [`CommandPort`]; this stage owns it, so the flow instances never import commands.

use std::sync::Arc;

use uuid::Uuid;

use crate::admission::delivery::Delivery;
use crate::domain::{Command, PersonaId};
use crate::routing::index::FlowRoute;

/// Where a command comes from: the invocation, its flow and user persona.
#[derive(Clone)]
pub struct Origin {
    pub persona: PersonaId,
    pub flow: Arc<FlowRoute>,
    pub invocation_id: Uuid,
    /// The command's place among those the invocation sent (0 for its first): with the
    /// invocation's id (derived from its event and flow) it names the command's act the same
    /// way on every daemon and every redelivery, so a repeat is dropped downstream.
    pub seq: u32,
    /// The delivery of the invocation's event, held by whatever carries the command until
    /// it is durable (`None`: nothing to hold, a superseded invocation's recall).
    pub hold: Option<Delivery>,
}

impl Origin {
    /// The act id of the command this origin names: derived from the invocation's id and the
    /// command's place in it, so a redelivered event's invocation, on this daemon or another
    /// that took its partition, sends its commands under the same ids (the commands stream's
    /// `Nats-Msg-Id`) and the stream drops the repeats.
    pub fn act_id(&self) -> Uuid {
        crate::domain::derived_id::derive(
            b"act",
            &[self.invocation_id.as_bytes(), &self.seq.to_le_bytes()],
        )
    }
}

/// Takes the commands of invocations. Must not block.
pub trait CommandPort: Send + Sync + 'static {
    /// Sends `command` of the invocation `origin`; returns its act id.
    fn send(&self, origin: &Origin, command: Command) -> Uuid;

    /// The invocation `origin` was superseded (a newer event interrupted it): what it sent
    /// that adapters have not carried out yet is recalled. Nothing by default.
    fn supersede(&self, _origin: &Origin) {}
}
