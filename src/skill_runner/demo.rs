//! The demo runner: a built-in stand-in for a real skill runner, so a fresh daemon shows a
//! working conversation in the sandbox with no other process. Off unless the config enables it
//! (`[sandbox] demo_runner = true`). It answers every event that carries a `text` argument on
//! a chat integration with `send_message` to the same connector, echoing the text.

use super::{Handoff, Invocation, Outcome, Reply, SkillRunner};
use crate::domain::{Command, Idn};

pub struct DemoRunner;

impl SkillRunner for DemoRunner {
    fn invoke(&self, inv: Invocation, reply: Reply, _handoff: Handoff) {
        let e = &inv.event.event;
        let mut commands = Vec::new();
        if let Some(text) = e.arguments.get("text") {
            commands.push(
                Command::new(
                    e.account.clone(),
                    e.integration.clone(),
                    e.connector.clone(),
                    Idn::known("send_message"),
                )
                .with_argument("text", format!("(demo) You said: {text}")),
            );
        } else if e.event.as_str() == "session_started" {
            if let (Some(i), Some(c)) = (
                e.arguments.get("integrationIdn"),
                e.arguments.get("connectorIdn"),
            ) {
                if let (Ok(i), Ok(c)) = (
                    Idn::parse("integration_idn", i),
                    Idn::parse("connector_idn", c),
                ) {
                    commands.push(
                        Command::new(e.account.clone(), i, c, Idn::known("send_message")).with_argument(
                            "text",
                            "Hello! This is Switchboard's demo runner. Write something and I will echo it.",
                        ),
                    );
                }
            }
        }
        reply.finish(Outcome::Completed, commands);
    }
}
