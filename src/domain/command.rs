//! Commands a skill sends (`SendCommand`): a command idn addressed to one connector.

use uuid::Uuid;

use super::event::Arguments;
use super::idn::Idn;

/// A command as the engine sees it, after decoding.
#[derive(Debug, Clone)]
pub struct Command {
    pub id: Uuid,
    pub account: Idn,
    pub integration: Idn,
    pub connector: Idn,
    pub command: Idn,
    pub arguments: Arguments,
    /// The invocation that sent it, when it came from a skill.
    pub invocation_id: Option<Uuid>,
    /// Why a runner's command could not be decoded as sent (a required field missing, a
    /// malformed identifier): the command stage refuses it with `result_error`, and the other
    /// commands of the same answer still leave. The idns then say where to answer: as sent when
    /// they were usable, else the account's `system` connector.
    pub defect: Option<Box<Defect>>,
}

/// A field of a command that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    /// The field, as the wire names it (`connector_idn`).
    pub field: String,
    pub reason: String,
}

impl Command {
    pub fn new(account: Idn, integration: Idn, connector: Idn, command: Idn) -> Self {
        Command {
            id: Uuid::now_v7(),
            account,
            integration,
            connector,
            command,
            arguments: Arguments::default(),
            invocation_id: None,
            defect: None,
        }
    }

    pub fn with_argument(mut self, name: &str, value: impl Into<smol_str::SmolStr>) -> Self {
        self.arguments.push(name, value);
        self
    }
}
