//! How an incoming webhook's JSON body becomes an event (the documented rule): the body is a
//! JSON object in Standard Webhooks' payload shape, `{"type": "<event idn>", "data": {…}}`
//! (other top-level fields, `timestamp` included, are ignored). `type` names the event, which
//! the connector's `incoming_events` must list; each field of `data` becomes an argument of the
//! same name (in name order): a string as it is, a number or boolean as its JSON text, an object or array as its
//! JSON text, `null` left out. The actor's external id comes from where `incoming_actor` says:
//! `body:<field>` (a field of `data`, as its argument's text) or `header:<name>`.

use serde_json::{Map, Value};

use crate::domain::Arguments;

/// Where the actor's external id is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorFrom {
    /// A field of `data`.
    Body(String),
    /// A request header.
    Header(String),
}

/// The default of `incoming_actor`.
pub const DEFAULT_ACTOR: &str = "body:user_id";

impl ActorFrom {
    /// `body:<field>` or `header:<name>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<ActorFrom> {
        let (kind, name) = text.trim().split_once(':')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        match kind {
            "body" => Some(ActorFrom::Body(name.to_owned())),
            "header" => Some(ActorFrom::Header(name.to_ascii_lowercase())),
            _ => None,
        }
    }

    /// How a refusal names it: `data.<field>` or the header.
    pub fn field(&self) -> String {
        match self {
            ActorFrom::Body(f) => format!("data.{f}"),
            ActorFrom::Header(h) => h.clone(),
        }
    }
}

/// Why a body does not map to an event: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBody {
    pub field: &'static str,
    pub reason: &'static str,
}

/// A body, read: the event it names and its arguments.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub event: String,
    pub arguments: Arguments,
    /// `data` as it came (for the actor).
    data: Map<String, Value>,
}

impl Mapped {
    /// The text of `data`'s field `name`, as its argument has it.
    pub fn argument(&self, name: &str) -> Option<&str> {
        self.arguments.get(name)
    }

    /// Whether `data` had a field `name` at all.
    pub fn has(&self, name: &str) -> bool {
        self.data.contains_key(name)
    }
}

/// The text an argument gets for `value`; `None` for `null` (the rule commands' answers use too).
pub use crate::relay::webhook::text_of;

/// Reads `body` by the rule above.
pub fn map(body: &[u8]) -> Result<Mapped, BadBody> {
    let bad = |field, reason| BadBody { field, reason };
    let value: Value =
        serde_json::from_slice(body).map_err(|_| bad("body", "the body is not JSON"))?;
    let Value::Object(mut top) = value else {
        return Err(bad("body", "the body must be a JSON object"));
    };
    let event = match top.remove("type") {
        Some(Value::String(t)) if !t.is_empty() => t,
        Some(_) => return Err(bad("type", "must be a non-empty string")),
        None => return Err(bad("type", "missing: it names the event")),
    };
    let data = match top.remove("data") {
        Some(Value::Object(d)) => d,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(bad("data", "must be a JSON object")),
    };
    let mut arguments = Arguments::default();
    for (name, value) in &data {
        if let Some(text) = text_of(value) {
            arguments.push(name.as_str(), text);
        }
    }
    Ok(Mapped {
        event,
        arguments,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event and arguments a body maps to, or the field at fault and why.
    type Want<'a> = Result<(&'a str, &'a [(&'a str, &'a str)]), (&'a str, &'a str)>;

    fn check(body: &str, want: Want<'_>) {
        let got = map(body.as_bytes());
        match (got, want) {
            (Ok(m), Ok((event, args))) => {
                assert_eq!(m.event, event, "{body}");
                let got: Vec<(String, String)> = m
                    .arguments
                    .iter()
                    .map(|a| (a.name.to_string(), a.value.to_string()))
                    .collect();
                let want: Vec<(String, String)> = args
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect();
                assert_eq!(got, want, "{body}");
            }
            (Err(e), Err((field, _))) => assert_eq!(e.field, field, "{body}: {e:?}"),
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn a_body_maps_to_an_event_by_the_rule() {
        check(
            r#"{"type":"user_message","timestamp":"x","data":{"text":"hi","n":3,"ok":true,"gone":null,"o":{"a":[1,"b"]},"l":[1]}}"#,
            Ok((
                "user_message",
                &[
                    ("l", "[1]"),
                    ("n", "3"),
                    ("o", r#"{"a":[1,"b"]}"#),
                    ("ok", "true"),
                    ("text", "hi"),
                ],
            )),
        );
        check(r#"{"type":"ping"}"#, Ok(("ping", &[])));
        check(r#"{"type":"ping","data":null}"#, Ok(("ping", &[])));
        check("nope", Err(("body", "")));
        check("[1]", Err(("body", "")));
        check(r#"{"data":{}}"#, Err(("type", "")));
        check(r#"{"type":""}"#, Err(("type", "")));
        check(r#"{"type":7}"#, Err(("type", "")));
        check(r#"{"type":"a","data":"x"}"#, Err(("data", "")));
    }

    #[test]
    fn the_actor_comes_from_a_body_field_or_a_header() {
        for (text, want) in [
            ("body:user_id", Some(ActorFrom::Body("user_id".into()))),
            ("header:X-User", Some(ActorFrom::Header("x-user".into()))),
            ("body:", None),
            ("query:a", None),
            ("user_id", None),
        ] {
            assert_eq!(ActorFrom::parse(text), want, "{text}");
        }
        assert_eq!(
            ActorFrom::parse(DEFAULT_ACTOR).unwrap().field(),
            "data.user_id"
        );
    }
}
