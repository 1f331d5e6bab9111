//! The native `system` integration: `set_state` writes a flow state field, `send_system_event`
//! emits an event on `system/system` for the same user persona.

use std::sync::Arc;

use crate::commands::{Answered, CommandRefusal, NativeCommand, NativeIntegration};
use crate::domain::{Arguments, Event, Idn, StateScope};
use crate::flow_instance::state::StateStore;
use crate::ingress::InternalEvents;
use crate::natives::component::{Built, Component, NativeContext};
use crate::routing::LiveIndex;

/// The `system` component: nothing to configure, nothing stored of its own.
pub fn component() -> Box<dyn Component> {
    Box::new(SystemComponent)
}

/// The `system` component.
pub struct SystemComponent;

impl Component for SystemComponent {
    fn idn(&self) -> &'static str {
        "system"
    }

    fn build(self: Box<Self>, cx: &NativeContext) -> Built {
        Built::executor(Arc::new(System {
            index: cx.index.clone(),
            state: cx.state.clone(),
            events: cx.events.clone(),
        }))
    }
}

struct System {
    index: Arc<LiveIndex>,
    state: Arc<StateStore>,
    events: InternalEvents,
}

fn invalid(argument: &str, reason: String) -> CommandRefusal {
    CommandRefusal::InvalidArgument {
        argument: argument.to_owned(),
        reason,
    }
}

impl NativeIntegration for System {
    fn execute(&self, c: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        let command = c.command;
        let args = &command.arguments;
        match command.command.as_str() {
            "set_state" => {
                let field = args.get("idn").unwrap_or_default();
                let field =
                    Idn::parse("idn", field).map_err(|e| invalid("idn", e.reason.into()))?;
                let value = args.get("value").unwrap_or_default().to_owned();
                let index = self.index.load();
                let agent = args
                    .get("agentIdn")
                    .or_else(|| c.flow.map(|o| o.flow.agent.as_str()));
                let flow_name = args
                    .get("flowIdn")
                    .or_else(|| c.flow.map(|o| o.flow.flow.as_str()));
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
                let owner = StateStore::owner_for(&flow.flow, field.as_str(), scope, c.persona);
                self.state.set(&flow.flow, field, owner, value);
            }
            "send_system_event" => {
                let idn = args.get("eventIdn").unwrap_or_default();
                let idn = Idn::parse("eventIdn", idn)
                    .map_err(|e| invalid("eventIdn", e.reason.into()))?;
                let system = Idn::known("system");
                let mut e = Event::for_persona(
                    command.account.clone(),
                    system.clone(),
                    system,
                    idn,
                    c.persona,
                );
                for a in args.iter().filter(|a| a.name != "eventIdn") {
                    e.arguments.push(a.name.clone(), a.value.clone());
                }
                self.events.emit(e);
            }
            other => {
                return Err(CommandRefusal::NotAccepted {
                    integration: "system".into(),
                    command: other.to_owned(),
                })
            }
        }
        Ok(Answered::Now(Arguments::default()))
    }
}
