//! The command stage: every command, from a skill or from the HTTP data plane, is checked here
//! (its connector runs, its integration accepts it, its required arguments are set, its native
//! integration has a handler) and then carried out by its native integration or handed to
//! the relay to its adapters. What cannot be done is refused with `result_error` to the same
//! persona. Commands of
//! one invocation are handled in the order the skill sent them, on the caller's thread.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use tokio::time::Instant;
use uuid::Uuid;

use super::native::{Answered, Answers, ConnectorChange, NativeCommand, Natives};
use super::refusal::{answer_refused, CommandRefusal};
use super::relay::{AdapterCommand, CommandSink, NotDeliverable, Recall, RelayError};
use super::validation::validate;
use crate::admission::delivery::Delivery;
use crate::admission::Unreachable;
use crate::catalog::{Catalog, Integration, Runs};
use crate::connectors::acts::CommandActs;
use crate::connectors::Directory;
use crate::dead_letter::DeadLetterStore;
use crate::domain::{Command, ConnectorKey, Idn, PersonaId};
use crate::flow_instance::{CommandPort, Origin};
use crate::ingress::InternalEvents;
use crate::routing::index::FlowRoute;

pub struct CommandRouter {
    directory: Arc<Directory>,
    catalog: Arc<Catalog>,
    natives: Natives,
    relay: Arc<dyn CommandSink>,
    answers: Answers,
    acts: Arc<CommandActs>,
    handed: Mutex<Handed>,
}

/// Invocations kept with the commands they handed to the relay or a native answered later,
/// for a recall.
const HANDED_INVOCATIONS: usize = 4096;

/// The commands invocations handed on (to the relay, or to a native that answers later), by
/// invocation; the oldest forgotten first.
#[derive(Default)]
struct Handed {
    by_invocation: FxHashMap<Uuid, Vec<Recall>>,
    order: VecDeque<Uuid>,
}

impl Handed {
    fn record(&mut self, invocation: Uuid, recall: Recall) {
        if let Some(list) = self.by_invocation.get_mut(&invocation) {
            list.push(recall);
            return;
        }
        while self.order.len() >= HANDED_INVOCATIONS {
            if let Some(old) = self.order.pop_front() {
                self.by_invocation.remove(&old);
            }
        }
        self.order.push_back(invocation);
        self.by_invocation.insert(invocation, vec![recall]);
    }
}

impl CommandRouter {
    pub fn new(
        directory: Arc<Directory>,
        natives: Natives,
        relay: Arc<dyn CommandSink>,
        events: InternalEvents,
        dead_letters: Arc<dyn DeadLetterStore>,
        acts: Arc<CommandActs>,
    ) -> Self {
        let catalog = directory.catalog().clone();
        CommandRouter {
            answers: Answers {
                events,
                dead_letters,
                catalog: catalog.clone(),
            },
            catalog,
            directory,
            natives,
            relay,
            acts,
            handed: Mutex::default(),
        }
    }

    /// Whether `key`'s integration is carried out by an adapter (its commands go to the relay).
    fn external(&self, key: &ConnectorKey) -> bool {
        !self.natives.has(&key.integration)
            && self
                .catalog
                .get(key.integration.as_str())
                .is_some_and(|i| i.runs() == Runs::External)
    }

    /// Settings written for `key` as it is created: by its native integration, or by the
    /// relay for an adapter's connector.
    pub fn connector_created(&self, key: &ConnectorKey) -> Vec<(String, String)> {
        if let Some(native) = self.natives.get(&key.integration) {
            return native.connector_created(key);
        }
        if self.external(key) {
            return self.relay.connector_created(key);
        }
        Vec::new()
    }

    /// Whether connector `key` can run: an adapter's needs a way for its commands.
    pub fn check_run(&self, key: &ConnectorKey) -> Result<(), NotDeliverable> {
        if self.external(key) {
            return self.relay.check_run(key);
        }
        Ok(())
    }

    /// The secret setting of connector `key` a rotation replaces, if it has one.
    pub fn rotatable_secret(&self, key: &ConnectorKey) -> Option<&'static str> {
        if let Some(native) = self.natives.get(&key.integration) {
            return native.rotatable_secret();
        }
        self.external(key)
            .then(|| self.relay.rotatable_secret())
            .flatten()
    }

    /// A new value for connector `key`'s rotatable secret in its native's own form, if it has
    /// one.
    pub fn fresh_secret(&self, key: &ConnectorKey) -> Option<String> {
        self.natives
            .get(&key.integration)
            .and_then(|n| n.fresh_secret(key))
    }

    /// Connector `key` runs, stopped or was deleted: its native integration (if any), or the
    /// relay for an adapter's, hears it.
    pub fn connector_changed(&self, key: &ConnectorKey, change: ConnectorChange) {
        if let Some(native) = self.natives.get(&key.integration) {
            native.connector_changed(key, change);
        } else if self.external(key) {
            self.relay.connector_changed(key, change);
        }
    }

    /// Checks what can be checked of `command` before it is carried out: its connector runs,
    /// its integration accepts it with its required arguments, and a native integration has a
    /// handler here.
    pub fn check(&self, command: &Command) -> Result<Arc<Integration>, CommandRefusal> {
        let key = ConnectorKey::new(&command.account, &command.integration, &command.connector);
        self.directory
            .with_running(&key, (), |_, ()| ())
            .map_err(|((), reach)| CommandRefusal::from(reach))?;
        let integration = self
            .catalog
            .get(command.integration.as_str())
            .ok_or_else(|| Unreachable::UnknownIntegration(command.integration.to_string()))?;
        validate(integration, command)?;
        if integration.runs() == Runs::Native && !self.natives.has(&integration.idn) {
            return Err(CommandRefusal::NoNative(integration.idn.to_string()));
        }
        Ok(integration.clone())
    }

    /// Carries out a command on behalf of `persona` (outside an invocation when `flow` is
    /// `None`: the HTTP data plane), or refuses it with `result_error`.
    pub fn send_for(
        &self,
        command: Command,
        act: Uuid,
        persona: PersonaId,
        flow: Option<&FlowRoute>,
        hold: Option<Delivery>,
    ) {
        let result = self
            .check(&command)
            .and_then(|integration| self.execute(&integration, &command, act, persona, flow, hold));
        match result {
            Ok(Answered::Now(extra)) => self.answers.succeed(&command, act, persona, extra),
            // The native answers through the `Answer` it took.
            Ok(Answered::Later) => {}
            Err(refusal) => self.refuse(command, act, persona, refusal),
        }
    }

    fn execute(
        &self,
        integration: &Integration,
        command: &Command,
        act: Uuid,
        persona: PersonaId,
        flow: Option<&FlowRoute>,
        hold: Option<Delivery>,
    ) -> Result<Answered, CommandRefusal> {
        if let Some(native) = self.natives.get(&integration.idn) {
            // The daemon carries it out itself: it reports the success.
            let answered = native.execute(NativeCommand {
                command,
                act,
                persona,
                flow,
                answers: &self.answers,
            });
            // Still under way: a native that takes commands back hears of it if its invocation
            // is superseded.
            let kept = native.recalls().then_some(command.invocation_id).flatten();
            if let (Ok(Answered::Later), Some(invocation)) = (&answered, kept) {
                self.handed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(
                        invocation,
                        Recall {
                            command: command.clone(),
                            act,
                            persona,
                        },
                    );
            }
            return answered;
        }
        self.acts.remember(
            act,
            persona,
            ConnectorKey::new(&command.account, &command.integration, &command.connector),
            Instant::now(),
        );
        self.relay
            .deliver(AdapterCommand {
                command: command.clone(),
                act,
                persona,
                hold,
            })
            .map_err(|e| match e {
                RelayError::Full => CommandRefusal::EgressFull(integration.idn.to_string()),
                RelayError::NoTransport => CommandRefusal::NoTransport(integration.idn.to_string()),
                RelayError::Unavailable(reason) => CommandRefusal::Unavailable {
                    integration: integration.idn.to_string(),
                    reason,
                },
            })?;
        // Handed to the adapter: its results come back as its own events.
        super::refusal::count(command, "sent");
        if let Some(invocation) = command.invocation_id {
            self.handed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(
                    invocation,
                    Recall {
                        command: command.clone(),
                        act,
                        persona,
                    },
                );
        }
        Ok(Answered::Later)
    }

    fn refuse(&self, mut command: Command, act: Uuid, persona: PersonaId, refusal: CommandRefusal) {
        // Counted as it came, before an unknown integration's answer moves to `system`.
        super::refusal::count(&command, "refused");
        if self.catalog.get(command.integration.as_str()).is_none() {
            // An unknown integration is no scope to answer in: the answer comes on the
            // account's system connector.
            let system = Idn::known("system");
            command.integration = system.clone();
            command.connector = system;
        }
        answer_refused(
            &self.answers.events,
            &*self.answers.dead_letters,
            command,
            act,
            persona,
            refusal,
        );
    }
}

impl CommandPort for CommandRouter {
    fn send(&self, origin: &Origin, mut command: Command) -> Uuid {
        let act = origin.act_id();
        // Fenced: the event's partition is another daemon's now (or this one's lease lapsed
        // while the invocation ran: a stop, a cut from NATS). Nothing of it is carried out
        // here, no state written; the event is given up, so the new owner invokes it again.
        if let Some(hold) = origin.hold.as_ref().filter(|h| h.revoked()) {
            metrics::counter!(crate::telemetry::metrics::COMMANDS_FENCED_TOTAL).increment(1);
            hold.clone().give_up();
            return act;
        }
        command.invocation_id = Some(origin.invocation_id);
        if let Some(defect) = command.defect.take() {
            let refusal = CommandRefusal::Malformed {
                field: defect.field,
                reason: defect.reason,
            };
            // Answered within the invocation's own account, whatever it named.
            command.account = origin.flow.flow.account.clone();
            self.refuse(command, act, origin.persona, refusal);
            return act;
        }
        if command.account != origin.flow.flow.account {
            let refusal = CommandRefusal::WrongAccount(command.account.to_string());
            // Answer within the invocation's own account.
            command.account = origin.flow.flow.account.clone();
            self.refuse(command, act, origin.persona, refusal);
            return act;
        }
        self.send_for(
            command,
            act,
            origin.persona,
            Some(&origin.flow),
            origin.hold.clone(),
        );
        act
    }

    /// Recalls what the superseded invocation handed to adapters that has not been reported
    /// done (see `CommandSink::recall`).
    fn supersede(&self, origin: &Origin) {
        let handed = self
            .handed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_invocation
            .remove(&origin.invocation_id);
        let mut open: Vec<Recall> = Vec::new();
        let mut native: FxHashMap<Idn, Vec<Recall>> = FxHashMap::default();
        for r in handed.unwrap_or_default() {
            if self.natives.has(&r.command.integration) {
                native
                    .entry(r.command.integration.clone())
                    .or_default()
                    .push(r);
            } else if !self.acts.is_reported(&r.act) {
                open.push(r);
            }
        }
        if !open.is_empty() {
            self.relay.recall(open);
        }
        for (integration, commands) in native {
            if let Some(n) = self.natives.get(&integration) {
                n.recall(commands);
            }
        }
    }
}
