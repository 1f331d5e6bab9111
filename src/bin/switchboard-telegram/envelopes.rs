//! The events the adapter sends, as wire envelopes: a Telegram text message becomes a
//! `user_message` (actor: the chat id; `external_event_id`: the update id, so a redelivered
//! update is a duplicate), a command's outcome a `result_success` / `result_error`, a recall's
//! `recalled` / `too_late` (the answers a recall asks for), each carrying the command's
//! `command_act_id` (no actor: the daemon routes it to the command's persona), with
//! `external_event_id` `result-<act>` or `recall-<act>` so a report sent twice counts once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use smol_str::SmolStr;
use switchboard::wire::envelope::{ActorWire, ArgumentsWire, MAX_ACTOR_NAME_BYTES, VERSION};
use switchboard::wire::EventEnvelope;
use uuid::Uuid;

use crate::bot_api::Update;

/// The integration every event names.
pub const INTEGRATION: &str = "telegram";

/// Where the events go: the account (the token's when `default`) and the connector.
#[derive(Debug, Clone)]
pub struct Target {
    pub account: String,
    pub connector: String,
}

/// What became of a command, as reported to the skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `send_message` sent: Telegram's message id.
    Sent { message_id: i64 },
    /// The command failed: why, and whose fault (`caller`, `peer`).
    Failed { error: String, fault: &'static str },
    /// A recall deleted the message (or nothing had been sent).
    Recalled,
    /// A recall came too late: the message stays.
    TooLate { error: String },
}

fn envelope(target: &Target, event: &str, arguments: BTreeMap<SmolStr, SmolStr>) -> EventEnvelope {
    EventEnvelope {
        v: VERSION,
        id: None,
        external_event_id: None,
        account: target.account.clone(),
        integration_idn: INTEGRATION.into(),
        connector_idn: target.connector.clone(),
        event_idn: event.into(),
        actor: None,
        arguments: ArgumentsWire::Map(arguments),
        uninterruptible: false,
        command_act_id: None,
        occurred_at: None,
        persona_id: None,
    }
}

/// The longest prefix of `s` within `max` bytes, cut at a character boundary.
fn clipped(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The `user_message` of a text message; `None` for any other update (a photo, a sticker, a
/// group chat when `groups` is false).
pub fn user_message(target: &Target, update: &Update, groups: bool) -> Option<EventEnvelope> {
    let message = update.message.as_ref()?;
    let text = message.text.as_ref()?;
    if !groups && message.chat.kind != "private" {
        return None;
    }
    let chat = message.chat.id.to_string();
    let mut arguments = BTreeMap::new();
    arguments.insert("text".into(), text.as_str().into());
    arguments.insert("chatId".into(), chat.as_str().into());
    let mut name = None;
    if let Some(from) = &message.from {
        if let Some(username) = &from.username {
            arguments.insert("username".into(), username.as_str().into());
        }
        let full = match &from.last_name {
            Some(last) => format!("{} {last}", from.first_name),
            None => from.first_name.clone(),
        };
        let full = clipped(full.trim(), MAX_ACTOR_NAME_BYTES);
        name = (!full.is_empty()).then(|| full.to_owned());
    }
    let mut e = envelope(target, "user_message", arguments);
    e.external_event_id = Some(update.update_id.to_string());
    e.actor = Some(ActorWire {
        external_id: chat.into(),
        name,
    });
    e.occurred_at = DateTime::<Utc>::from_timestamp(message.date, 0).filter(|_| message.date > 0);
    Some(e)
}

/// The result event reporting `outcome` of the command act `act`.
pub fn result(target: &Target, act: Uuid, outcome: &Outcome) -> EventEnvelope {
    let mut arguments = BTreeMap::new();
    let (event, id) = match outcome {
        Outcome::Sent { message_id } => {
            arguments.insert("result".into(), message_id.to_string().into());
            ("result_success", format!("result-{act}"))
        }
        Outcome::Failed { error, fault } => {
            arguments.insert("error".into(), error.as_str().into());
            arguments.insert("fault".into(), (*fault).into());
            ("result_error", format!("result-{act}"))
        }
        Outcome::Recalled => ("recalled", format!("recall-{act}")),
        Outcome::TooLate { error } => {
            arguments.insert("error".into(), error.as_str().into());
            ("too_late", format!("recall-{act}"))
        }
    };
    arguments.insert("command_act_id".into(), act.to_string().into());
    let mut e = envelope(target, event, arguments);
    e.external_event_id = Some(id);
    e.command_act_id = Some(act);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target {
        Target {
            account: "default".into(),
            connector: "support_bot".into(),
        }
    }

    fn update(message: serde_json::Value) -> Update {
        serde_json::from_value(json!({"update_id": 7731, "message": message})).unwrap()
    }

    #[test]
    fn a_text_message_is_a_user_message_of_its_chat() {
        let u = update(json!({"message_id": 5, "date": 1_764_000_000,
            "chat": {"id": 5551234, "type": "private"},
            "from": {"id": 5551234, "is_bot": false, "first_name": "Ada", "last_name": "L", "username": "ada"},
            "text": "Do you open on Sunday?"}));
        let e = user_message(&target(), &u, false).unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["external_event_id"], "7731");
        assert_eq!(v["event_idn"], "user_message");
        assert_eq!(
            v["actor"],
            json!({"external_id": "5551234", "name": "Ada L"})
        );
        assert_eq!(
            v["arguments"],
            json!({"text": "Do you open on Sunday?", "chatId": "5551234", "username": "ada"})
        );
        assert_eq!(v["occurred_at"], "2025-11-24T16:00:00Z");
    }

    #[test]
    fn only_text_in_private_chats_is_a_message_unless_groups_are_allowed() {
        let check = |message: serde_json::Value, groups: bool, is_event: bool| {
            let u = update(message.clone());
            assert_eq!(
                user_message(&target(), &u, groups).is_some(),
                is_event,
                "{message} groups={groups}"
            );
        };
        let private = json!({"id": 1, "type": "private"});
        let group = json!({"id": -100, "type": "group"});
        check(
            json!({"message_id": 1, "chat": private, "text": "hi"}),
            false,
            true,
        );
        check(
            json!({"message_id": 1, "chat": private, "sticker": {}}),
            false,
            false,
        );
        check(
            json!({"message_id": 1, "chat": group, "text": "hi"}),
            false,
            false,
        );
        check(
            json!({"message_id": 1, "chat": group, "text": "hi"}),
            true,
            true,
        );
        let no_message: Update = serde_json::from_value(json!({"update_id": 1})).unwrap();
        assert!(user_message(&target(), &no_message, true).is_none());
    }

    #[test]
    fn a_long_name_is_clipped_at_a_character() {
        let long = "é".repeat(200);
        let u = update(
            json!({"message_id": 1, "chat": {"id": 1, "type": "private"},
            "from": {"first_name": long}, "text": "hi"}),
        );
        let name = user_message(&target(), &u, false)
            .unwrap()
            .actor
            .unwrap()
            .name
            .unwrap();
        assert_eq!(name.len(), MAX_ACTOR_NAME_BYTES);
    }

    #[test]
    fn results_carry_the_act_and_an_id_that_dedupes_them() {
        let act = Uuid::now_v7();
        let check = |outcome: Outcome, event: &str, id: &str, argument: (&str, &str)| {
            let v = serde_json::to_value(result(&target(), act, &outcome)).unwrap();
            assert_eq!(v["event_idn"], event, "{outcome:?}");
            assert_eq!(v["external_event_id"], format!("{id}-{act}"), "{outcome:?}");
            assert_eq!(v["command_act_id"], act.to_string(), "{outcome:?}");
            assert_eq!(
                v["arguments"]["command_act_id"],
                act.to_string(),
                "{outcome:?}"
            );
            assert_eq!(v["arguments"][argument.0], argument.1, "{outcome:?}");
            assert!(v.get("actor").is_none());
        };
        check(
            Outcome::Sent { message_id: 9 },
            "result_success",
            "result",
            ("result", "9"),
        );
        let failed = Outcome::Failed {
            error: "chat not found".into(),
            fault: "caller",
        };
        check(
            failed,
            "result_error",
            "result",
            ("error", "chat not found"),
        );
        let recalled = act.to_string();
        check(
            Outcome::Recalled,
            "recalled",
            "recall",
            ("command_act_id", &recalled),
        );
        let late = Outcome::TooLate {
            error: "gone".into(),
        };
        check(late, "too_late", "recall", ("error", "gone"));
    }
}
