//! Why a command was refused, and what a refusal does: a `result_error` event to the same user
//! persona, a dead-letter record, a counted metric. A refused command is never sent.

use uuid::Uuid;

use crate::admission::Unreachable;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::{Command, Event, Idn, PersonaId};
use crate::fault::Blame;
pub use crate::fault::Fault;
use crate::ingress::InternalEvents;
use crate::telemetry::handles;

/// The command boundary's refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefusal {
    /// Its integration or connector is unknown, or the connector is stopped.
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
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
            CommandRefusal::Unreachable(Unreachable::ConnectorStopped { .. })
                | CommandRefusal::EgressFull(_)
                | CommandRefusal::Unavailable { .. }
        )
    }
}

impl CommandRefusal {
    /// The argument or field at fault, if one.
    pub fn field(&self) -> Option<&str> {
        match self {
            CommandRefusal::Unreachable(u) => Some(u.field()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Refusal;

    /// An unreachable connector reads the same refusing an event or a command: the text, the
    /// field; only whether retrying can help differs (a command waits for its connector, an
    /// event to a stopped connector is dead-lettered, replayable).
    fn check(unreachable: Unreachable, text: &str, field: &str, code: &str, command_retries: bool) {
        let event = Refusal::from(unreachable.clone());
        let command = CommandRefusal::from(unreachable);
        assert_eq!(
            (event.to_string(), command.to_string()),
            (text.into(), text.into())
        );
        assert_eq!((event.field(), command.field()), (Some(field), Some(field)));
        assert_eq!(event.code(), code);
        assert_eq!(
            (event.fault(), command.fault()),
            (Fault::Caller, Fault::Caller)
        );
        assert!(!event.retryable());
        assert_eq!(command.retryable(), command_retries, "{text}");
    }

    #[test]
    fn events_and_commands_share_the_unreachable_connector_refusals() {
        let (i, c) = (|| "telegram".to_string(), || "bot".to_string());
        check(
            Unreachable::UnknownIntegration(i()),
            "unknown integration \"telegram\"",
            "integration_idn",
            "unknown_integration",
            false,
        );
        check(
            Unreachable::UnknownConnector {
                integration: i(),
                connector: c(),
            },
            "unknown connector telegram/bot",
            "connector_idn",
            "unknown_connector",
            false,
        );
        check(
            Unreachable::ConnectorStopped {
                integration: i(),
                connector: c(),
            },
            "connector telegram/bot is stopped",
            "connector_idn",
            "connector_stopped",
            true,
        );
    }
}
