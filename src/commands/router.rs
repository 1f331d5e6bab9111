//! The command stage: every command, from a skill or from the HTTP data plane, is checked here
//! (its connector runs, its integration accepts it, its required arguments are set, its native
//! integration has a handler) and then carried out by its native integration or handed to
//! egress. What cannot be done is refused with `result_error` to the same persona. Commands of
//! one invocation are handled in the order the skill sent them, on the caller's thread.

use std::sync::Arc;

use tokio::time::Instant;
use uuid::Uuid;

use super::egress::{CommandSink, EgressError, OutboundCommand};
use super::native::{NativeCommand, Natives};
use super::refusal::{refuse, result_event, CommandRefusal};
use super::validation::validate;
use crate::catalog::{Catalog, Integration, Runs};
use crate::connectors::acts::CommandActs;
use crate::connectors::Directory;
use crate::dead_letter::DeadLetterStore;
use crate::domain::{Command, ConnectorKey, Idn, PersonaId};
use crate::flow_instance::{CommandPort, Origin};
use crate::ingress::InternalEvents;
use crate::routing::index::FlowRoute;
use crate::telemetry::handles;

pub struct CommandRouter {
    directory: Arc<Directory>,
    catalog: Arc<Catalog>,
    natives: Natives,
    egress: Arc<dyn CommandSink>,
    events: InternalEvents,
    dead_letters: Arc<dyn DeadLetterStore>,
    acts: Arc<CommandActs>,
}

impl CommandRouter {
    pub fn new(
        directory: Arc<Directory>,
        natives: Natives,
        egress: Arc<dyn CommandSink>,
        events: InternalEvents,
        dead_letters: Arc<dyn DeadLetterStore>,
        acts: Arc<CommandActs>,
    ) -> Self {
        CommandRouter {
            catalog: directory.catalog().clone(),
            directory,
            natives,
            egress,
            events,
            dead_letters,
            acts,
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
            .ok_or_else(|| CommandRefusal::UnknownIntegration(command.integration.to_string()))?;
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
    ) {
        let command_idn = command.command.clone();
        let result = self
            .check(&command)
            .and_then(|integration| self.execute(&integration, &command, act, persona, flow));
        match result {
            Ok(()) => handles::command(command.integration.as_str(), command_idn.as_str(), "sent"),
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
    ) -> Result<(), CommandRefusal> {
        if let Some(native) = self.natives.get(&integration.idn) {
            let extra = native.execute(NativeCommand {
                command,
                act,
                persona,
                flow,
            })?;
            // The daemon carried it out itself: it reports the success.
            let reports = integration
                .command(command.command.as_str())
                .is_some_and(|d| d.reports("result_success"));
            if reports {
                let mut answer = result_event(command, "result_success", act, persona);
                for a in extra.iter() {
                    answer.arguments.push(a.name.clone(), a.value.clone());
                }
                self.events.emit(answer);
            }
            return Ok(());
        }
        self.acts.remember(
            act,
            persona,
            ConnectorKey::new(&command.account, &command.integration, &command.connector),
            Instant::now(),
        );
        self.egress
            .deliver(OutboundCommand {
                command: command.clone(),
                act,
                persona,
            })
            .map_err(|e| match e {
                EgressError::Full => CommandRefusal::EgressFull(integration.idn.to_string()),
                EgressError::NoTransport => {
                    CommandRefusal::NoTransport(integration.idn.to_string())
                }
            })
    }

    fn refuse(&self, mut command: Command, act: Uuid, persona: PersonaId, refusal: CommandRefusal) {
        if self.catalog.get(command.integration.as_str()).is_none() {
            // An unknown integration is no scope to answer in: the answer comes on the
            // account's system connector.
            let system = Idn::known("system");
            command.integration = system.clone();
            command.connector = system;
        }
        refuse(
            &self.events,
            &*self.dead_letters,
            command,
            act,
            persona,
            refusal,
        );
    }
}

impl CommandPort for CommandRouter {
    fn send(&self, origin: &Origin, mut command: Command) -> Uuid {
        let act = Uuid::now_v7();
        command.invocation_id = Some(origin.invocation_id);
        if command.account != origin.flow.flow.account {
            let refusal = CommandRefusal::WrongAccount(command.account.to_string());
            // Answer within the invocation's own account.
            command.account = origin.flow.flow.account.clone();
            self.refuse(command, act, origin.persona, refusal);
            return act;
        }
        self.send_for(command, act, origin.persona, Some(&origin.flow));
        act
    }
}
