//! Commands for external integrations, published to
//! `<prefix>.commands.<account>.<integration>.<connector>` for their adapters, in order, with
//! the act id as `Nats-Msg-Id` and in the envelope (`command_act_id`, `persona_id`).

use std::sync::Arc;

use bytes::Bytes;

use super::headers;
use super::publisher::{Outgoing, Publisher};
use super::subjects::Subjects;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::{Command, Idn};
use crate::relay::{AdapterCommand, CommandSink, Recall, RelayError};
use crate::wire::envelope::{CommandEnvelope, Encoding};

pub struct NatsCommandSink {
    pub publisher: Publisher,
    pub subjects: Subjects,
    pub encoding: Encoding,
    pub dead_letters: Arc<dyn DeadLetterStore>,
}

impl CommandSink for NatsCommandSink {
    fn deliver(&self, out: AdapterCommand) -> Result<(), RelayError> {
        let c = &out.command;
        let mut env = CommandEnvelope::from_domain(c);
        env.command_act_id = Some(out.act);
        env.persona_id = Some(out.persona.0);
        let dead_letters = self.dead_letters.clone();
        let (command, persona) = (c.clone(), out.persona);
        // Let go once the stream stored the command (or it was dead-lettered).
        let hold = out.hold;
        let m = Outgoing {
            subject: self.subjects.commands(
                c.account.as_str(),
                c.integration.as_str(),
                c.connector.as_str(),
            ),
            headers: headers::outbound(self.encoding, &out.act.to_string()),
            payload: Bytes::from(self.encoding.encode(&env)),
            on_settled: Some(Box::new(move |r| {
                drop(hold);
                if let Err(reason) = r {
                    dead_letter::record(
                        &*dead_letters,
                        DeadLetter::command(
                            DeadLetterReason::CommandRefused,
                            format!("publishing to the commands stream failed: {reason}"),
                            command,
                            Some(persona),
                        ),
                    );
                }
            })),
            retry_payload: None,
            until_acknowledged: true,
        };
        self.publisher.try_publish(m).map_err(|_| RelayError::Full)
    }

    /// Publishes a recall notice for each command on its connector's command subject: a
    /// command envelope `recall` whose `command_act_id` is the recalled command's (the
    /// adapter answers `recalled` or `too_late` with it), its arguments `command_id` and
    /// `command_idn`; `Nats-Msg-Id` `recall:<act id>`. Published once, best effort.
    fn recall(&self, commands: Vec<Recall>) {
        for r in commands {
            let env = recall_envelope(&r);
            let c = &r.command;
            let m = Outgoing {
                subject: self.subjects.commands(
                    c.account.as_str(),
                    c.integration.as_str(),
                    c.connector.as_str(),
                ),
                headers: headers::outbound(self.encoding, &format!("recall:{}", r.act)),
                payload: Bytes::from(self.encoding.encode(&env)),
                on_settled: None,
                retry_payload: None,
                until_acknowledged: true,
            };
            if self.publisher.try_publish(m).is_err() {
                tracing::warn!(act = %r.act, "a recall notice was not published: the publisher is full");
            } else {
                crate::telemetry::handles::recall("notified");
            }
        }
    }
}

/// The envelope of the recall of `r.command`.
fn recall_envelope(r: &Recall) -> CommandEnvelope {
    let c = &r.command;
    let mut recall = Command::new(
        c.account.clone(),
        c.integration.clone(),
        c.connector.clone(),
        Idn::known("recall"),
    )
    .with_argument("command_id", c.id.to_string())
    .with_argument("command_idn", c.command.as_str());
    recall.invocation_id = c.invocation_id;
    let mut env = CommandEnvelope::from_domain(&recall);
    env.command_act_id = Some(r.act);
    env.persona_id = Some(r.persona.0);
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PersonaId;
    use uuid::Uuid;

    #[test]
    fn a_recall_names_the_command_by_its_act_id() {
        let command = Command::new(
            Idn::known("acme"),
            Idn::known("telegram"),
            Idn::known("bot"),
            Idn::known("send_message"),
        )
        .with_argument("text", "hi");
        let r = Recall {
            act: Uuid::now_v7(),
            persona: PersonaId(Uuid::now_v7()),
            command: command.clone(),
        };
        let env = recall_envelope(&r);
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["command_idn"], "recall");
        assert_eq!(json["command_act_id"], r.act.to_string());
        assert_eq!(json["connector_idn"], "bot");
        let args = json["arguments"].to_string();
        assert!(
            args.contains(&command.id.to_string()) && args.contains("send_message"),
            "{args}"
        );
        assert!(
            !args.contains("hi"),
            "the recall carries no arguments of the command"
        );
    }
}
