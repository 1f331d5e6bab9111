//! The native `system` integration: `set_state` writes a flow state field, `send_system_event`
//! emits an event on `system/system` for the same user persona.

use uuid::Uuid;

use super::actor::{answer_success, ConnectorDeps};
use crate::commands::refusal::CommandRefusal;
use crate::domain::{Command, Event, Idn, PersonaId, StateScope};
use crate::flow_instance::state::StateStore;
use crate::routing::index::FlowRoute;

/// Executes a validated `system` command.
pub fn execute(
    deps: &ConnectorDeps,
    command: &Command,
    act: Uuid,
    persona: PersonaId,
    origin: Option<&FlowRoute>,
) -> Result<(), CommandRefusal> {
    let invalid = |argument: &str, reason: String| CommandRefusal::InvalidArgument {
        argument: argument.to_owned(),
        reason,
    };
    let args = &command.arguments;
    match command.command.as_str() {
        "set_state" => {
            let field = args.get("idn").unwrap_or_default();
            let field = Idn::parse("idn", field).map_err(|e| invalid("idn", e.reason.into()))?;
            let value = args.get("value").unwrap_or_default().to_owned();
            let index = deps.dispatcher.index();
            let agent = args
                .get("agentIdn")
                .or_else(|| origin.map(|o| o.flow.agent.as_str()));
            let flow_name = args
                .get("flowIdn")
                .or_else(|| origin.map(|o| o.flow.flow.as_str()));
            let (Some(agent), Some(flow_name)) = (agent, flow_name) else {
                return Err(invalid(
                    "flowIdn",
                    "required outside an invocation (with agentIdn)".into(),
                ));
            };
            let flow = index
                .flow(command.account.as_str(), agent, flow_name)
                .ok_or_else(|| invalid("flowIdn", format!("no flow {agent}/{flow_name}")))?;
            let scope = match args.get("scope") {
                None | Some("") => None,
                Some("user") => Some(StateScope::User),
                Some("agent") => Some(StateScope::Agent),
                Some(other) => {
                    return Err(invalid(
                        "scope",
                        format!("must be user or agent (got {other:?})"),
                    ))
                }
            };
            let owner = StateStore::owner_for(&flow.flow, field.as_str(), scope, persona);
            deps.state.set(&flow.flow, field, owner, value);
        }
        "send_system_event" => {
            let idn = args.get("eventIdn").unwrap_or_default();
            let idn =
                Idn::parse("eventIdn", idn).map_err(|e| invalid("eventIdn", e.reason.into()))?;
            let system = Idn::known("system");
            let mut e = Event::for_persona(
                command.account.clone(),
                system.clone(),
                system,
                idn,
                persona,
            );
            for a in args.iter().filter(|a| a.name != "eventIdn") {
                e.arguments.push(a.name.clone(), a.value.clone());
            }
            deps.dispatcher.route_internal(e);
        }
        other => {
            return Err(CommandRefusal::NotAccepted {
                integration: "system".into(),
                command: other.to_owned(),
            })
        }
    }
    if let Some(system) = deps.dispatcher.catalog().get("system") {
        answer_success(&deps.dispatcher, system, command, act, persona);
    }
    Ok(())
}
