//! The command side of native integrations (the integrations the daemon carries out itself:
//! `system`, `sandbox`, `program_timer`, `http`, …): the command stage hands a native's
//! [`NativeIntegration`] the validated commands addressed to its connectors, and tells it of
//! its connectors' lives. Natives are components built elsewhere (`natives::component`); a
//! native integration that is not registered does not exist here: its commands are refused at
//! once, naming it.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::refusal::{refuse, result_event, CommandRefusal};
use crate::catalog::Catalog;
use crate::dead_letter::DeadLetterStore;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason};
use crate::domain::{Arguments, Command, ConnectorKey, Idn, PersonaId};
use crate::fault::Fault;
use crate::ingress::InternalEvents;
use crate::routing::index::FlowRoute;

/// A validated command for a native integration, with where it comes from.
pub struct NativeCommand<'a> {
    /// Names account, integration, connector, command and arguments; `invocation_id` when a
    /// skill sent it.
    pub command: &'a Command,
    /// The act id its result events carry (`command_act_id`).
    pub act: Uuid,
    /// The user persona the command acts for.
    pub persona: PersonaId,
    /// The invoking flow, when a skill sent it.
    pub flow: Option<&'a FlowRoute>,
    pub(super) answers: &'a Answers,
}

impl NativeCommand<'_> {
    /// A handle to answer this command later, from any thread (see [`Answered::Later`]).
    pub fn answer_later(&self) -> Answer {
        Answer {
            answers: self.answers.clone(),
            command: self.command.clone(),
            act: self.act,
            persona: self.persona,
        }
    }
}

/// How a native integration answered.
#[derive(Debug)]
pub enum Answered {
    /// Done: `result_success` (when the integration reports one) carries these arguments too.
    Now(Arguments),
    /// It will answer through the [`Answer`] it took ([`NativeCommand::answer_later`]).
    Later,
}

/// A native integration.
pub trait NativeIntegration: Send + Sync + 'static {
    /// Carries out `command`; must not block (hand slow work to a task and answer
    /// [`Answered::Later`]). An `Err` is answered with `result_error` naming the argument at
    /// fault.
    fn execute(&self, command: NativeCommand<'_>) -> Result<Answered, CommandRefusal>;

    /// Settings the daemon writes for a new connector of this integration (an
    /// `incoming_webhook_url`, a `CLIENT_SECRET`), applied over the caller's as the daemon
    /// (read-only settings included). Secret ones are shown once, in the creation answer.
    /// Must not block. None by default.
    fn connector_created(&self, _connector: &ConnectorKey) -> Vec<(String, String)> {
        Vec::new()
    }

    /// A connector of this integration changed: it runs, stopped, or was deleted (what the
    /// native holds for it then goes: timers, sockets, outboxes). Must not block. Nothing by
    /// default.
    fn connector_changed(&self, _connector: &ConnectorKey, _change: ConnectorChange) {}

    /// Whether it takes back what a superseded invocation asked of it ([`Self::recall`]): only
    /// then are its commands kept for one. No by default.
    fn recalls(&self) -> bool {
        false
    }

    /// The commands it answered `Later` for an invocation that was superseded since (a newer
    /// event interrupted it): what has not left yet may be withdrawn, unsent. Must not block.
    /// Nothing by default (what it carries out finishes).
    fn recall(&self, _commands: Vec<super::relay::Recall>) {}

    /// The secret setting of its connectors that can be rotated (a new one shown once, the
    /// old one still counting for an overlap: `<setting>_previous`, `<setting>_previous_until`
    /// must be declared beside it). None by default.
    fn rotatable_secret(&self) -> Option<&'static str> {
        None
    }

    /// A new value for connector `connector`'s rotatable secret, in this native's own form
    /// (and known to it from now on). `None`: the daemon's (a Standard Webhooks `whsec_` key).
    fn fresh_secret(&self, _connector: &ConnectorKey) -> Option<String> {
        None
    }
}

/// What happened to a connector, as its native integration hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorChange {
    Running,
    Stopped,
    Deleted,
}

/// What answering a command needs, shared by the command stage and late answers.
#[derive(Clone)]
pub struct Answers {
    pub(super) events: InternalEvents,
    pub(super) dead_letters: Arc<dyn DeadLetterStore>,
    pub(super) catalog: Arc<Catalog>,
}

impl Answers {
    /// Answers a command carried out: counted `sent`, and `result_success` with `extra` when its
    /// integration reports one.
    pub(super) fn succeed(
        &self,
        command: &Command,
        act: Uuid,
        persona: PersonaId,
        extra: Arguments,
    ) {
        super::refusal::count(command, "sent");
        let reports = self
            .catalog
            .get(command.integration.as_str())
            .and_then(|i| i.command(command.command.as_str()))
            .is_some_and(|d| d.reports("result_success"));
        if reports {
            let mut answer = result_event(command, "result_success", act, persona);
            for a in extra.iter() {
                answer.arguments.push(a.name.clone(), a.value.clone());
            }
            self.events.emit(answer);
        }
    }
}

/// Why a command a native carried out failed, as its `result_error` says.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What happened, without secrets or a peer's body.
    pub reason: String,
    /// Whose fault: the peer's (a remote 5xx, a refused connection) or the caller's (a bad
    /// argument the peer refused).
    pub fault: Fault,
    pub retryable: bool,
    /// More arguments of the `result_error` (`statusCode`, `targetAction`, …).
    pub arguments: Arguments,
    /// Nothing answered (a timeout, a refused connection): the command is dead-lettered too.
    pub unanswered: bool,
}

/// A late answer to one command; answering consumes it.
pub struct Answer {
    answers: Answers,
    command: Command,
    act: Uuid,
    persona: PersonaId,
}

impl Answer {
    /// The command was carried out.
    pub fn succeed(self, extra: Arguments) {
        self.answers
            .succeed(&self.command, self.act, self.persona, extra);
    }

    /// Emits `event`, one its integration declares (`magic_http_response`, a delivery report),
    /// answering the command for its persona with `arguments` (`command_act_id` and
    /// `command_idn` added). `false` (and nothing emitted) when the catalog does not declare
    /// it: a native's bug, logged.
    pub fn emit(&self, event: &str, arguments: Arguments) -> bool {
        let declared = self
            .answers
            .catalog
            .get(self.command.integration.as_str())
            .is_some_and(|i| i.spec.events.iter().any(|e| e.idn == event));
        if !declared {
            tracing::error!(integration = %self.command.integration, event, "a native answered with an event its catalog does not declare");
            return false;
        }
        let mut e = result_event(&self.command, event, self.act, self.persona);
        for a in arguments.iter() {
            e.arguments.push(a.name.clone(), a.value.clone());
        }
        self.answers.events.emit(e);
        true
    }

    /// The command was carried out and failed (see [`Failure`]): `result_error` with the
    /// reason, whose fault it was and whether trying again may succeed; counted `failed`, and a
    /// dead letter (`command_failed`) when nothing answered.
    pub fn fail(self, failure: Failure) {
        super::refusal::count(&self.command, "failed");
        let mut e = result_event(&self.command, "result_error", self.act, self.persona);
        e.arguments.push("error", failure.reason.as_str());
        e.arguments.push("fault", failure.fault.as_str());
        e.arguments.push(
            "retryable",
            if failure.retryable { "true" } else { "false" },
        );
        for a in failure.arguments.iter() {
            e.arguments.push(a.name.clone(), a.value.clone());
        }
        self.answers.events.emit(e);
        if failure.unanswered {
            dead_letter::record(
                &*self.answers.dead_letters,
                DeadLetter::command(
                    DeadLetterReason::CommandFailed,
                    failure.reason,
                    self.command,
                    Some(self.persona),
                ),
            );
        }
    }

    /// The command could not be carried out: `result_error` to the persona, a dead letter.
    pub fn refuse(self, refusal: CommandRefusal) {
        refuse(
            &self.answers.events,
            &*self.answers.dead_letters,
            self.command,
            self.act,
            self.persona,
            refusal,
        );
    }
}

/// The registered native integrations, by integration idn.
#[derive(Clone, Default)]
pub struct Natives(FxHashMap<Idn, Arc<dyn NativeIntegration>>);

impl Natives {
    /// Registers `native` for `integration`.
    pub fn with(mut self, integration: &str, native: Arc<dyn NativeIntegration>) -> Self {
        self.0.insert(Idn::known(integration), native);
        self
    }

    pub fn get(&self, integration: &Idn) -> Option<&Arc<dyn NativeIntegration>> {
        self.0.get(integration)
    }

    /// Whether `integration` has a handler here.
    pub fn has(&self, integration: &Idn) -> bool {
        self.0.contains_key(integration)
    }
}
