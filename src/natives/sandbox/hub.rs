//! The sandbox hub: which browser sockets belong to which persona on which sandbox connector,
//! and the native integration that pushes `send_message` to them. Each socket's queue is
//! bounded and observed (`sandbox_sockets`): a page that lets it fill loses its socket, and a
//! connector stopped or deleted closes its sockets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::commands::{
    Answered, CommandRefusal, ConnectorChange, NativeCommand, NativeIntegration,
};
use crate::domain::{Arguments, ConnectorKey, Idn, PersonaId};
use crate::telemetry::queue;

/// What the page receives.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToPage {
    /// The conversation the socket is attached to: commands sent to this persona on this
    /// connector (by a skill or `POST /v1/commands`) appear on the page.
    Attached {
        connector_idn: String,
        external_id: String,
        persona_id: String,
    },
    /// A message from the agent.
    Message {
        text: String,
        command_act_id: String,
    },
    /// The user's message was accepted (durable) or refused.
    Ack {
        id: String,
    },
    Error {
        message: String,
    },
}

/// Messages queued per socket; a tab that lets this many wait unread loses its socket (closed
/// after what it holds) rather than grow memory or miss messages silently.
pub const SOCKET_BUFFER: usize = 256;

/// A socket's connector and persona.
type Key = (Idn, Idn, PersonaId);

/// The open sockets, by connector and persona.
#[derive(Default)]
pub struct SandboxHub {
    sockets: DashMap<Key, Vec<(u64, mpsc::Sender<ToPage>)>, FxBuildHasher>,
    next: AtomicU64,
}

impl SandboxHub {
    pub fn new() -> Arc<Self> {
        Arc::new(SandboxHub::default())
    }

    /// Registers a socket of `persona` on `connector`; returns its id and receiver, which ends
    /// when the hub lets the socket go (its queue was full, its connector stopped).
    pub fn join(
        &self,
        account: &Idn,
        connector: &Idn,
        persona: PersonaId,
    ) -> (u64, mpsc::Receiver<ToPage>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = queue::bounded(queue::names::SANDBOX_SOCKETS, SOCKET_BUFFER);
        self.sockets
            .entry((account.clone(), connector.clone(), persona))
            .or_default()
            .push((id, tx));
        (id, rx)
    }

    pub fn leave(&self, account: &Idn, connector: &Idn, persona: PersonaId, id: u64) {
        let key = (account.clone(), connector.clone(), persona);
        if let Some(mut v) = self.sockets.get_mut(&key) {
            v.retain(|(i, _)| *i != id);
        }
        self.sockets.remove_if(&key, |_, v| v.is_empty());
    }

    /// Open sockets (for tests and operations).
    pub fn sockets(&self) -> usize {
        self.sockets.iter().map(|e| e.value().len()).sum()
    }
}

impl SandboxHub {
    /// Queues `message` on every socket of `persona` on `connector`. A tab that stopped reading
    /// (its queue full) loses its socket, closed once it sent what it holds; the others get it.
    pub fn send(&self, account: &Idn, connector: &Idn, persona: PersonaId, message: ToPage) {
        let key = (account.clone(), connector.clone(), persona);
        if let Some(mut list) = self.sockets.get_mut(&key) {
            list.retain(|(_, tx)| match tx.try_send(message.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    queue::full(queue::names::SANDBOX_SOCKETS);
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            });
        }
        self.sockets.remove_if(&key, |_, v| v.is_empty());
    }
}

impl NativeIntegration for SandboxHub {
    fn execute(&self, c: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        let text = c
            .command
            .arguments
            .get("text")
            .unwrap_or_default()
            .to_owned();
        let message = ToPage::Message {
            text,
            command_act_id: c.act.to_string(),
        };
        self.send(&c.command.account, &c.command.connector, c.persona, message);
        // No tab open: the conversation's message is not delivered, as with a closed chat
        // window; the command itself was carried out.
        Ok(Answered::Now(Arguments::default()))
    }

    /// A connector stopped or deleted closes its sockets (each after what it holds).
    fn connector_changed(&self, connector: &ConnectorKey, change: ConnectorChange) {
        if change == ConnectorChange::Running {
            return;
        }
        self.sockets.retain(|(account, idn, _), _| {
            !(*account == connector.account && *idn == connector.connector)
        });
    }
}

#[cfg(test)]
mod tests;
