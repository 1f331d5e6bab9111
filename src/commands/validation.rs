//! Checks a command against its integration in the catalog: accepted, required arguments set.

use super::refusal::CommandRefusal;
use crate::catalog::Integration;
use crate::domain::Command;

pub fn validate(integration: &Integration, command: &Command) -> Result<(), CommandRefusal> {
    if !integration.accepts(command.command.as_str()) {
        return Err(CommandRefusal::NotAccepted {
            integration: integration.idn.to_string(),
            command: command.command.to_string(),
        });
    }
    if let Some(decl) = integration.command(command.command.as_str()) {
        for required in &decl.required {
            if command.arguments.get(required).is_none_or(str::is_empty) {
                return Err(CommandRefusal::MissingArgument {
                    command: command.command.to_string(),
                    argument: required.clone(),
                });
            }
        }
    }
    Ok(())
}
