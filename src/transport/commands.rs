//! Commands for external integrations, published to
//! `<prefix>.commands.<account>.<integration>.<connector>` for their adapters, in order, with
//! the act id as `Nats-Msg-Id` and in the envelope (`command_act_id`, `persona_id`).

use std::sync::Arc;

use bytes::Bytes;

use super::headers;
use super::publisher::{Outgoing, Publisher};
use super::subjects::Subjects;
use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::relay::{AdapterCommand, CommandSink, RelayError};
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
        let m = Outgoing {
            subject: self.subjects.commands(
                c.account.as_str(),
                c.integration.as_str(),
                c.connector.as_str(),
            ),
            headers: headers::outbound(self.encoding, &out.act.to_string()),
            payload: Bytes::from(self.encoding.encode(&env)),
            on_settled: Some(Box::new(move |r| {
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
}
