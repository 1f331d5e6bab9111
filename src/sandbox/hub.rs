//! The sandbox hub: which browser sockets belong to which persona on which sandbox connector,
//! the tickets that open them, and the native integration that pushes `send_message` to them.

use std::sync::Arc;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::commands::{Answered, CommandRefusal, NativeCommand, NativeIntegration};
use crate::domain::{Arguments, Idn, PersonaId};
use crate::sandbox::ticket::Tickets;

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

/// Messages buffered per socket; a tab that does not read is cut off rather than grow memory.
pub const SOCKET_BUFFER: usize = 256;

type Key = (Idn, Idn, PersonaId);

#[derive(Default)]
pub struct SandboxHub {
    sockets: DashMap<Key, Vec<(u64, mpsc::Sender<ToPage>)>, FxBuildHasher>,
    next: std::sync::atomic::AtomicU64,
    tickets: Tickets,
}

impl SandboxHub {
    pub fn new() -> Arc<Self> {
        Arc::new(SandboxHub::default())
    }

    /// Registers a socket of `persona` on `connector`; returns its id and receiver.
    pub fn join(
        &self,
        account: &Idn,
        connector: &Idn,
        persona: PersonaId,
    ) -> (u64, mpsc::Receiver<ToPage>) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SOCKET_BUFFER);
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

    /// The tickets that open sockets.
    pub fn tickets(&self) -> &Tickets {
        &self.tickets
    }

    /// Open sockets (for tests and operations).
    pub fn sockets(&self) -> usize {
        self.sockets.iter().map(|e| e.value().len()).sum()
    }
}

impl NativeIntegration for SandboxHub {
    fn execute(&self, c: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        let key = (
            c.command.account.clone(),
            c.command.connector.clone(),
            c.persona,
        );
        let text = c
            .command
            .arguments
            .get("text")
            .unwrap_or_default()
            .to_owned();
        if let Some(list) = self.sockets.get(&key) {
            for (_, tx) in list.iter() {
                // A tab that stopped reading loses this message; the others get it.
                let _ = tx.try_send(ToPage::Message {
                    text: text.clone(),
                    command_act_id: c.act.to_string(),
                });
            }
        }
        // No tab open: the conversation's message is not delivered, as with a closed chat
        // window; the command itself was carried out.
        Ok(Answered::Now(Arguments::default()))
    }
}
