//! Routes a skill's commands to their target connector. The connector actor validates the
//! command against its integration; what cannot reach a connector (unknown, stopped) is
//! refused here. Commands of one flow instance go through one mailbox per target connector, so
//! commands to one conversation leave in the order the skill sent them.

use std::sync::{Arc, Weak};

use uuid::Uuid;

use super::refusal::{refuse, CommandRefusal};
use crate::connectors::actor::Outbound;
use crate::connectors::registry::{ConnectorKey, ConnectorRegistry, Reach};
use crate::dead_letter::DeadLetterStore;
use crate::domain::{Command, PersonaId};
use crate::routing::dispatch::Dispatcher;
use crate::routing::index::FlowRoute;

/// Where a command comes from: the invocation, its flow and user persona.
#[derive(Clone)]
pub struct Origin {
    pub persona: PersonaId,
    pub flow: Arc<FlowRoute>,
    pub invocation_id: Uuid,
}

pub struct CommandRouter {
    registry: Arc<ConnectorRegistry>,
    dispatcher: Weak<Dispatcher>,
    dead_letters: Arc<dyn DeadLetterStore>,
}

impl CommandRouter {
    pub fn new(
        registry: Arc<ConnectorRegistry>,
        dispatcher: Weak<Dispatcher>,
        dead_letters: Arc<dyn DeadLetterStore>,
    ) -> Self {
        CommandRouter {
            registry,
            dispatcher,
            dead_letters,
        }
    }

    /// Sends `command` of the invocation `origin` towards its connector, with a fresh act id.
    pub fn send(&self, origin: &Origin, mut command: Command) -> Uuid {
        let act = Uuid::now_v7();
        command.invocation_id = Some(origin.invocation_id);
        if command.account != origin.flow.flow.account {
            let refusal = CommandRefusal::WrongAccount(command.account.to_string());
            // Answer within the invocation's own account.
            command.account = origin.flow.flow.account.clone();
            self.refuse(command, act, origin.persona, refusal);
            return act;
        }
        self.send_for(command, act, origin.persona, Some(origin.flow.clone()));
        act
    }

    /// Sends a command on behalf of `persona` outside an invocation (the HTTP data plane).
    pub fn send_for(
        &self,
        command: Command,
        act: Uuid,
        persona: PersonaId,
        flow: Option<Arc<FlowRoute>>,
    ) {
        let key = ConnectorKey::new(&command.account, &command.integration, &command.connector);
        let outbound = Outbound {
            command,
            act,
            persona,
            flow,
        };
        if let Err((outbound, refusal)) = self
            .registry
            .with_running(&key, outbound, |actor, o| actor.addr.do_send(o))
        {
            self.refuse(
                outbound.command,
                outbound.act,
                outbound.persona,
                refusal.into(),
            );
        }
    }

    fn refuse(&self, command: Command, act: Uuid, persona: PersonaId, refusal: CommandRefusal) {
        if let Some(d) = self.dispatcher.upgrade() {
            refuse(&d, &*self.dead_letters, command, act, persona, refusal);
        }
    }
}

impl From<Reach> for CommandRefusal {
    fn from(r: Reach) -> Self {
        match r {
            Reach::UnknownIntegration(i) => CommandRefusal::UnknownIntegration(i),
            Reach::UnknownConnector {
                integration,
                connector,
            } => CommandRefusal::UnknownConnector {
                integration,
                connector,
            },
            Reach::Stopped {
                integration,
                connector,
            } => CommandRefusal::ConnectorStopped {
                integration,
                connector,
            },
        }
    }
}
