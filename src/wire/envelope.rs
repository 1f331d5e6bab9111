//! The versioned envelopes of events and commands (the README's wire contract), in MessagePack
//! (rmp-serde, named fields) or JSON. Arguments are a list of `{name, value}` or a map. An
//! unknown version is refused, not guessed. An event addresses an actor (or answers a command
//! act); only the daemon may address a persona (`persona_id`: see [`Origin`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{ActorRef, Argument, Arguments, Command, Event, Idn, IdnError, Target};
use crate::fault::{Blame, Fault};

/// The envelope version this daemon speaks.
pub const VERSION: u32 = 1;

/// A refused envelope: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EnvelopeError {
    pub field: String,
    pub reason: String,
}

impl Blame for EnvelopeError {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

impl From<IdnError> for EnvelopeError {
    fn from(e: IdnError) -> Self {
        EnvelopeError {
            field: e.field,
            reason: format!("{} (got {:?})", e.reason, e.value),
        }
    }
}

fn err(field: &str, reason: impl Into<String>) -> EnvelopeError {
    EnvelopeError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Encodings on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MessagePack,
}

impl Encoding {
    /// From a `Content-Type`; `None` for anything else.
    pub fn from_content_type(ct: &str) -> Option<Encoding> {
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "application/json" | "text/json" => Some(Encoding::Json),
            "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
                Some(Encoding::MessagePack)
            }
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::MessagePack => "application/msgpack",
        }
    }

    pub fn decode<T: for<'de> Deserialize<'de>>(self, bytes: &[u8]) -> Result<T, EnvelopeError> {
        match self {
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| err("body", e.to_string())),
            Encoding::MessagePack => {
                rmp_serde::from_slice(bytes).map_err(|e| err("body", e.to_string()))
            }
        }
    }

    pub fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            Encoding::Json => serde_json::to_vec(value).expect("envelopes serialize"),
            Encoding::MessagePack => rmp_serde::to_vec_named(value).expect("envelopes serialize"),
        }
    }
}

/// Arguments as a list of `{name, value}` (canonical) or a `{name: value}` map.
///
/// Deserialized by hand ([`ArgumentsVisitor`]): the shape is told by the first token (a sequence
/// or a map), so nothing is buffered, where `#[serde(untagged)]` would copy the whole value into
/// serde's `Content` to try each variant in turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ArgumentsWire {
    List(Vec<ArgumentWire>),
    #[schema(value_type = BTreeMap<String, String>)]
    Map(BTreeMap<SmolStr, SmolStr>),
}

impl<'de> Deserialize<'de> for ArgumentsWire {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ArgumentsVisitor)
    }
}

/// Reads [`ArgumentsWire`] from a sequence (`List`) or a map (`Map`), as it comes.
struct ArgumentsVisitor;

impl<'de> serde::de::Visitor<'de> for ArgumentsVisitor {
    type Value = ArgumentsWire;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of {name, value} or a map of names to values")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(a) = seq.next_element::<ArgumentWire>()? {
            list.push(a);
        }
        Ok(ArgumentsWire::List(list))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut m = BTreeMap::new();
        while let Some((name, value)) = map.next_entry::<SmolStr, SmolStr>()? {
            m.insert(name, value);
        }
        Ok(ArgumentsWire::Map(m))
    }
}

impl Default for ArgumentsWire {
    fn default() -> Self {
        ArgumentsWire::List(Vec::new())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgumentWire {
    #[schema(value_type = String)]
    pub name: SmolStr,
    #[schema(value_type = String)]
    pub value: SmolStr,
}

impl ArgumentsWire {
    fn into_domain(self) -> Result<Arguments, EnvelopeError> {
        let list: Vec<Argument> = match self {
            ArgumentsWire::List(l) => l
                .into_iter()
                .map(|a| Argument {
                    name: a.name,
                    value: a.value,
                })
                .collect(),
            ArgumentsWire::Map(m) => m
                .into_iter()
                .map(|(name, value)| Argument { name, value })
                .collect(),
        };
        for (i, a) in list.iter().enumerate() {
            if a.name.is_empty() {
                return Err(err(&format!("arguments[{i}].name"), "must not be empty"));
            }
        }
        Ok(Arguments(list))
    }

    pub fn from_domain(a: &Arguments) -> Self {
        ArgumentsWire::List(
            a.iter()
                .map(|a| ArgumentWire {
                    name: a.name.clone(),
                    value: a.value.clone(),
                })
                .collect(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorWire {
    #[schema(value_type = String)]
    pub external_id: SmolStr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An inbound event on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    /// The envelope version: 1.
    #[schema(minimum = 1, maximum = 1)]
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_event_id: Option<String>,
    #[serde(default = "default_account")]
    pub account: String,
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub integration_idn: String,
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub connector_idn: String,
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub event_idn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<ActorWire>,
    #[serde(default)]
    pub arguments: ArgumentsWire,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uninterruptible: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_act_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// The user persona an event the daemon made itself addresses (a timer firing on the
    /// events stream). Refused from anyone else ([`Origin::Adapter`]): adapters publish on the
    /// same subjects, and a persona is the daemon's to derive. Not in the HTTP API's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub persona_id: Option<Uuid>,
}

/// Who an envelope comes from, as its receiver established: only the daemon's own (an events
/// stream message carrying a valid daemon MAC) may address a persona.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An adapter or API client (HTTP, the events stream unsigned): `persona_id` is refused.
    Adapter,
    /// A daemon sharing the stream, verified: `persona_id` names the target.
    Daemon,
}

fn default_account() -> String {
    crate::domain::DEFAULT_ACCOUNT.to_owned()
}

/// Longest `actor.external_id`, in bytes.
pub const MAX_EXTERNAL_ID_BYTES: usize = 256;
/// Longest `actor.name`, in bytes.
pub const MAX_ACTOR_NAME_BYTES: usize = 256;

/// Size limits of one envelope.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_arguments: usize,
    pub max_argument_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_arguments: 256,
            max_argument_bytes: 64 * 1024,
        }
    }
}

fn check_limits(args: &Arguments, limits: Limits) -> Result<(), EnvelopeError> {
    if args.len() > limits.max_arguments {
        return Err(err(
            "arguments",
            format!("at most {} arguments", limits.max_arguments),
        ));
    }
    for (i, a) in args.iter().enumerate() {
        if a.value.len() > limits.max_argument_bytes {
            return Err(err(
                &format!("arguments[{i}].value"),
                format!("at most {} bytes", limits.max_argument_bytes),
            ));
        }
    }
    Ok(())
}

/// Refuses any version but [`VERSION`].
pub fn check_version_pub(v: u32) -> Result<(), EnvelopeError> {
    check_version(v)
}

fn check_version(v: u32) -> Result<(), EnvelopeError> {
    if v != VERSION {
        return Err(err(
            "v",
            format!("unsupported envelope version {v}; this daemon speaks {VERSION}"),
        ));
    }
    Ok(())
}

impl EventEnvelope {
    /// Validates and converts into a domain event, from an adapter ([`Origin::Adapter`]).
    pub fn into_domain(self, limits: Limits) -> Result<Event, EnvelopeError> {
        self.into_domain_from(limits, Origin::Adapter)
    }

    /// Validates and converts into a domain event from `origin`: a persona-addressed one only
    /// from the daemon, naming neither an actor nor a command act.
    pub fn into_domain_from(self, limits: Limits, origin: Origin) -> Result<Event, EnvelopeError> {
        check_version(self.v)?;
        let target = match (self.persona_id, self.actor, self.command_act_id) {
            (Some(_), _, _) if origin == Origin::Adapter => {
                return Err(err(
                    "persona_id",
                    "set by the daemon alone: an event names its actor (actor.external_id)",
                ))
            }
            (Some(p), None, None) => Target::Persona(crate::domain::PersonaId(p)),
            (Some(_), _, _) => {
                return Err(err(
                    "persona_id",
                    "names the target alone: no actor or command_act_id beside it",
                ))
            }
            (None, Some(a), _) => {
                if a.external_id.is_empty() || a.external_id.len() > MAX_EXTERNAL_ID_BYTES {
                    return Err(err(
                        "actor.external_id",
                        format!("must be 1 to {MAX_EXTERNAL_ID_BYTES} bytes"),
                    ));
                }
                if a.name
                    .as_ref()
                    .is_some_and(|n| n.len() > MAX_ACTOR_NAME_BYTES)
                {
                    return Err(err(
                        "actor.name",
                        format!("at most {MAX_ACTOR_NAME_BYTES} bytes"),
                    ));
                }
                Target::Actor(ActorRef {
                    external_id: a.external_id,
                    name: a.name,
                })
            }
            (None, None, Some(_)) => Target::ByCommandAct,
            (None, None, None) => {
                return Err(err(
                    "actor",
                    "required unless the event answers a command (command_act_id)",
                ))
            }
        };
        let arguments = self.arguments.into_domain()?;
        check_limits(&arguments, limits)?;
        if let Some(x) = &self.external_event_id {
            if x.is_empty() || x.len() > 256 {
                return Err(err("external_event_id", "must be 1 to 256 bytes"));
            }
        }
        Ok(Event {
            id: self.id.unwrap_or_else(Uuid::now_v7),
            external_event_id: self.external_event_id,
            account: Idn::parse("account", &self.account)?,
            integration: Idn::parse("integration_idn", &self.integration_idn)?,
            connector: Idn::parse("connector_idn", &self.connector_idn)?,
            event: Idn::parse("event_idn", &self.event_idn)?,
            target,
            arguments,
            uninterruptible: self.uninterruptible,
            command_act_id: self.command_act_id,
            occurred_at: self.occurred_at.unwrap_or_else(Utc::now),
            redelivered: false,
        })
    }

    pub fn from_domain(e: &Event) -> Self {
        let actor = match &e.target {
            Target::Actor(a) => Some(ActorWire {
                external_id: a.external_id.clone(),
                name: a.name.clone(),
            }),
            _ => None,
        };
        EventEnvelope {
            v: VERSION,
            id: Some(e.id),
            external_event_id: e.external_event_id.clone(),
            account: e.account.to_string(),
            integration_idn: e.integration.to_string(),
            connector_idn: e.connector.to_string(),
            event_idn: e.event.to_string(),
            actor,
            arguments: ArgumentsWire::from_domain(&e.arguments),
            uninterruptible: e.uninterruptible,
            command_act_id: e.command_act_id,
            occurred_at: Some(e.occurred_at),
            persona_id: None,
        }
    }

    /// The envelope of an event the daemon made itself, for a daemon on the events stream: as
    /// [`EventEnvelope::from_domain`], and a persona-addressed event names its persona
    /// (`persona_id`; read back with [`Origin::Daemon`] only).
    pub fn from_daemon(e: &Event) -> Self {
        let mut envelope = EventEnvelope::from_domain(e);
        if let Target::Persona(p) = e.target {
            envelope.persona_id = Some(p.0);
        }
        envelope
    }
}

/// A command on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandEnvelope {
    /// The envelope version: 1.
    #[schema(minimum = 1, maximum = 1)]
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(default = "default_account")]
    pub account: String,
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub integration_idn: String,
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub connector_idn: String,
    #[schema(pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub command_idn: String,
    #[serde(default)]
    pub arguments: ArgumentsWire,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<Uuid>,
    /// Set by the daemon on commands it sends out: results carry it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_act_id: Option<Uuid>,
    /// Set by the daemon on commands it sends out: the user persona they act for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona_id: Option<Uuid>,
}

impl CommandEnvelope {
    pub fn into_domain(self, limits: Limits) -> Result<Command, EnvelopeError> {
        check_version(self.v)?;
        let arguments = self.arguments.into_domain()?;
        check_limits(&arguments, limits)?;
        Ok(Command {
            id: self.id.unwrap_or_else(Uuid::now_v7),
            account: Idn::parse("account", &self.account)?,
            integration: Idn::parse("integration_idn", &self.integration_idn)?,
            connector: Idn::parse("connector_idn", &self.connector_idn)?,
            command: Idn::parse("command_idn", &self.command_idn)?,
            arguments,
            invocation_id: self.invocation_id,
            defect: None,
        })
    }

    pub fn from_domain(c: &Command) -> Self {
        CommandEnvelope {
            v: VERSION,
            id: Some(c.id),
            account: c.account.to_string(),
            integration_idn: c.integration.to_string(),
            connector_idn: c.connector.to_string(),
            command_idn: c.command.to_string(),
            arguments: ArgumentsWire::from_domain(&c.arguments),
            invocation_id: c.invocation_id,
            command_act_id: None,
            persona_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_event(extra: &str) -> String {
        format!(
            r#"{{"v":1,"integration_idn":"telegram","connector_idn":"bot","event_idn":"user_message","actor":{{"external_id":"42"}}{extra}}}"#
        )
    }

    #[test]
    fn decodes_json_with_list_or_map_arguments() {
        let e: EventEnvelope = Encoding::Json
            .decode(json_event(r#","arguments":[{"name":"text","value":"hi"}]"#).as_bytes())
            .unwrap();
        let d = e.into_domain(Limits::default()).unwrap();
        assert_eq!(d.arguments.get("text"), Some("hi"));
        assert_eq!(d.account.as_str(), "default");
        let e: EventEnvelope = Encoding::Json
            .decode(json_event(r#","arguments":{"text":"hey"}"#).as_bytes())
            .unwrap();
        assert_eq!(
            e.into_domain(Limits::default())
                .unwrap()
                .arguments
                .get("text"),
            Some("hey")
        );
    }

    #[test]
    fn arguments_are_a_list_or_a_map_and_nothing_else() {
        let decode = |args: &str| {
            Encoding::Json
                .decode::<EventEnvelope>(json_event(&format!(r#","arguments":{args}"#)).as_bytes())
        };
        for refused in [
            r#""text""#,
            "1",
            r#"[{"name":"a"}]"#,
            r#"[{"name":"a","value":"b","x":1}]"#,
            r#"{"a":1}"#,
            "[1]",
        ] {
            assert_eq!(decode(refused).unwrap_err().field, "body", "{refused}");
        }
        let map = decode(r#"{"b":"2","a":"1"}"#)
            .unwrap()
            .into_domain(Limits::default())
            .unwrap();
        let names: Vec<&str> = map.arguments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let list = decode(r#"[{"name":"b","value":"2"},{"name":"a","value":"1"}]"#).unwrap();
        assert_eq!(
            list.arguments,
            ArgumentsWire::List(vec![
                ArgumentWire {
                    name: "b".into(),
                    value: "2".into()
                },
                ArgumentWire {
                    name: "a".into(),
                    value: "1".into()
                },
            ])
        );
        let mut wire = list;
        wire.arguments = ArgumentsWire::Map([("k".into(), "v".into())].into());
        let back: EventEnvelope = Encoding::MessagePack
            .decode(&Encoding::MessagePack.encode(&wire))
            .unwrap();
        assert_eq!(back, wire);
    }

    #[test]
    fn messagepack_round_trip() {
        let e: EventEnvelope = Encoding::Json.decode(json_event("").as_bytes()).unwrap();
        let d = e.into_domain(Limits::default()).unwrap();
        let wire = EventEnvelope::from_domain(&d);
        let bytes = Encoding::MessagePack.encode(&wire);
        let back: EventEnvelope = Encoding::MessagePack.decode(&bytes).unwrap();
        assert_eq!(back, wire);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json_event("").replace("\"v\":1", "\"v\":2"), "v"),
            (
                json_event("").replace("\"bot\"", "\"Bot\""),
                "connector_idn",
            ),
            (
                json_event("").replace(r#","actor":{"external_id":"42"}"#, ""),
                "actor",
            ),
            (
                json_event("").replace("\"42\"", "\"\""),
                "actor.external_id",
            ),
            (
                json_event(r#","arguments":[{"name":"","value":"x"}]"#),
                "arguments[0].name",
            ),
            (json_event(r#","surprise":1"#), "body"),
            (
                json_event("").replace("\"42\"", &format!("\"{}\"", "x".repeat(257))),
                "actor.external_id",
            ),
            (
                json_event("").replace(
                    "\"42\"",
                    &format!("\"42\",\"name\":\"{}\"", "n".repeat(257)),
                ),
                "actor.name",
            ),
        ];
        for (body, field) in cases {
            let r = Encoding::Json
                .decode::<EventEnvelope>(body.as_bytes())
                .and_then(|e| e.into_domain(Limits::default()));
            assert_eq!(r.unwrap_err().field, field, "{body}");
        }
        let big = format!(r#","arguments":{{"text":"{}"}}"#, "x".repeat(100));
        let limits = Limits {
            max_arguments: 10,
            max_argument_bytes: 50,
        };
        let e: EventEnvelope = Encoding::Json.decode(json_event(&big).as_bytes()).unwrap();
        assert_eq!(
            e.into_domain(limits).unwrap_err().field,
            "arguments[0].value"
        );
    }

    #[test]
    fn only_the_daemon_addresses_a_persona() {
        let persona = Uuid::from_u128(7);
        let mut e = Event::for_persona(
            Idn::known("default"),
            Idn::known("program_timer"),
            Idn::known("timers"),
            Idn::known("timer"),
            crate::domain::PersonaId(persona),
        );
        e.arguments.push("timerName", "t");
        for enc in [Encoding::Json, Encoding::MessagePack] {
            let bytes = enc.encode(&EventEnvelope::from_daemon(&e));
            let decode = |origin| {
                enc.decode::<EventEnvelope>(&bytes)
                    .and_then(|w| w.into_domain_from(Limits::default(), origin))
            };
            let back = decode(Origin::Daemon).unwrap();
            assert!(matches!(back.target, Target::Persona(p) if p.0 == persona));
            assert_eq!(back.id, e.id, "the daemon's id is kept");
            assert_eq!(back.arguments.get("timerName"), Some("t"));
            assert_eq!(decode(Origin::Adapter).unwrap_err().field, "persona_id");
        }
        // Without a persona the daemon's envelope is the adapters' one.
        let actor = Encoding::Json.decode::<EventEnvelope>(json_event("").as_bytes());
        let actor = actor.unwrap().into_domain(Limits::default()).unwrap();
        assert_eq!(
            EventEnvelope::from_daemon(&actor),
            EventEnvelope::from_domain(&actor)
        );
        assert_eq!(EventEnvelope::from_domain(&e).persona_id, None);
        let id = r#","persona_id":"00000000-0000-0000-0000-000000000007""#;
        let refused = |body: String, origin| {
            Encoding::Json
                .decode::<EventEnvelope>(body.as_bytes())
                .and_then(|w| w.into_domain_from(Limits::default(), origin))
                .unwrap_err()
        };
        let from_adapter = refused(json_event(id), Origin::Adapter);
        assert_eq!(from_adapter.field, "persona_id");
        assert!(
            from_adapter.reason.contains("daemon alone"),
            "{from_adapter}"
        );
        let beside_actor = refused(json_event(id), Origin::Daemon);
        assert!(beside_actor.reason.contains("alone"), "{beside_actor}");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("application/msgpack"),
            Some(Encoding::MessagePack)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }
}
