//! Why a command was refused, and what a refusal does: a `result_error` event to the same user
//! persona, a dead-letter record, a counted metric. A refused command is never sent.

use uuid::Uuid;

use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::{Command, Event, Idn, PersonaId};
use crate::fault::Blame;
pub use crate::fault::Fault;
use crate::ingress::{InternalEvents, Reach};
use crate::telemetry::handles;

/// The command boundary's refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefusal {
    #[error("unknown integration {0:?}")]
    UnknownIntegration(String),
    #[error("unknown connector {integration}/{connector}")]
    UnknownConnector {
        integration: String,
        connector: String,
    },
    #[error("connector {integration}/{connector} is stopped")]
    ConnectorStopped {
        integration: String,
        connector: String,
    },
    #[error("integration {integration} does not accept command {command:?}")]
    NotAccepted {
        integration: String,
        command: String,
    },
    #[error("command {command} needs argument {argument:?}")]
    MissingArgument { command: String, argument: String },
    #[error("invalid argument {argument:?}: {reason}")]
    InvalidArgument { argument: String, reason: String },
    #[error("command names account {0:?}, not the invocation's")]
    WrongAccount(String),
    #[error("egress for {0} is full")]
    EgressFull(String),
    /// A native integration could not carry it out now (its queue is full, its store failed).
    #[error("{integration}: {reason}")]
    Unavailable { integration: String, reason: String },
    #[error("no transport carries commands of the external integration {0}; configure the queue transport")]
    NoTransport(String),
    #[error("the native integration {0} has no handler in this daemon")]
    NoNative(String),
    /// A runner's command that could not be read as sent.
    #[error("malformed command: {field}: {reason}")]
    Malformed { field: String, reason: String },
}

impl Blame for CommandRefusal {
    fn fault(&self) -> Fault {
        match self {
            CommandRefusal::EgressFull(_) | CommandRefusal::Unavailable { .. } => Fault::Daemon,
            // This daemon carries no such commands (no transport, no native handler): the
            // caller asked for something this deployment does not offer; retrying cannot help.
            _ => Fault::Caller,
        }
    }

    /// Whether the same command may succeed later unchanged: once its connector runs again, or
    /// egress has room.
    fn retryable(&self) -> bool {
        matches!(
            self,
            CommandRefusal::ConnectorStopped { .. }
                | CommandRefusal::EgressFull(_)
                | CommandRefusal::Unavailable { .. }
        )
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

impl CommandRefusal {
    /// The argument or field at fault, if one.
    pub fn field(&self) -> Option<&str> {
        match self {
            CommandRefusal::UnknownIntegration(_) => Some("integration_idn"),
            CommandRefusal::UnknownConnector { .. } | CommandRefusal::ConnectorStopped { .. } => {
                Some("connector_idn")
            }
            CommandRefusal::NotAccepted { .. } => Some("command_idn"),
            CommandRefusal::MissingArgument { argument, .. }
            | CommandRefusal::InvalidArgument { argument, .. } => Some(argument),
            CommandRefusal::WrongAccount(_) => Some("account"),
            CommandRefusal::NoNative(_) => Some("integration_idn"),
            CommandRefusal::Malformed { field, .. } => Some(field),
            CommandRefusal::EgressFull(_)
            | CommandRefusal::NoTransport(_)
            | CommandRefusal::Unavailable { .. } => None,
        }
    }
}

/// The `result_error` (or `result_success`) event answering command act `act` for `persona`.
pub fn result_event(command: &Command, event: &str, act: Uuid, persona: PersonaId) -> Event {
    let mut e = Event::for_persona(
        command.account.clone(),
        command.integration.clone(),
        command.connector.clone(),
        Idn::known(event),
        persona,
    );
    e.command_act_id = Some(act);
    e.arguments.push("command_act_id", act.to_string());
    e.arguments.push("command_idn", command.command.as_str());
    e
}

/// Counts a command's outcome under bounded labels (see `Catalog::command_labels`).
pub fn count(command: &Command, outcome: &'static str) {
    let catalog = crate::catalog::Catalog::builtin();
    let (integration, command) =
        catalog.command_labels(command.integration.as_str(), command.command.as_str());
    handles::command(integration, command, outcome);
}

/// Refuses `command`: answers the persona with `result_error`, dead-letters it, counts it.
pub fn refuse(
    events: &InternalEvents,
    dead_letters: &dyn DeadLetterStore,
    command: Command,
    act: Uuid,
    persona: PersonaId,
    refusal: CommandRefusal,
) {
    count(&command, "refused");
    answer_refused(events, dead_letters, command, act, persona, refusal);
}

/// [`refuse`] without the count (the caller counted the command as it came).
pub fn answer_refused(
    events: &InternalEvents,
    dead_letters: &dyn DeadLetterStore,
    command: Command,
    act: Uuid,
    persona: PersonaId,
    refusal: CommandRefusal,
) {
    let mut answer = result_event(&command, "result_error", act, persona);
    answer.arguments.push("error", refusal.to_string());
    if let Some(f) = refusal.field() {
        answer.arguments.push("field", f);
    }
    events.emit(answer);
    dead_letter::record(
        dead_letters,
        DeadLetter::command(
            DeadLetterReason::CommandRefused,
            refusal.to_string(),
            command,
            Some(persona),
        ),
    );
}
