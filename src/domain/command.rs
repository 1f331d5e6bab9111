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
        }
    }

    pub fn with_argument(mut self, name: &str, value: impl Into<smol_str::SmolStr>) -> Self {
        self.arguments.push(name, value);
        self
    }
}
