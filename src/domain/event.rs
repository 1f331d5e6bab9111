//! Inbound events as the engine sees them, after the wire envelope was decoded and validated.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use smol_str::SmolStr;
use uuid::Uuid;

use super::idn::Idn;
use super::persona::PersonaId;

/// A named string argument. Every argument value is a string. Both are `SmolStr`: names and
/// most values are short and then live inline, with no heap allocation to free per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argument {
    pub name: SmolStr,
    pub value: SmolStr,
}

/// An ordered list of arguments, looked up by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arguments(pub Vec<Argument>);

impl Arguments {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn push(&mut self, name: impl Into<SmolStr>, value: impl Into<SmolStr>) {
        self.0.push(Argument {
            name: name.into(),
            value: value.into(),
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &Argument> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<SmolStr>, V: Into<SmolStr>> FromIterator<(K, V)> for Arguments {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Arguments(
            iter.into_iter()
                .map(|(k, v)| Argument {
                    name: k.into(),
                    value: v.into(),
                })
                .collect(),
        )
    }
}

/// The person behind an event on its connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorRef {
    /// Inline when short, as ids usually are.
    pub external_id: SmolStr,
    pub name: Option<String>,
}

/// Whom an event is for. Adapters name an actor; the daemon's own events (timers, command
/// results, session lifecycle) already know the persona.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Actor(ActorRef),
    Persona(PersonaId),
    /// Only valid with a `command_act_id` that the connector issued: the persona is looked up.
    ByCommandAct,
}

/// An inbound event. Shared as `Arc<Event>` once admitted: several flows may receive it.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub external_event_id: Option<String>,
    pub account: Idn,
    pub integration: Idn,
    pub connector: Idn,
    pub event: Idn,
    pub target: Target,
    pub arguments: Arguments,
    pub uninterruptible: bool,
    pub command_act_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// Replayed after a restart or from the dead letters: it may have been dispatched before.
    pub redelivered: bool,
}

impl Event {
    /// A new event from an actor, stamped now, with a fresh id.
    pub fn from_actor(
        account: Idn,
        integration: Idn,
        connector: Idn,
        event: Idn,
        external_id: impl Into<SmolStr>,
    ) -> Self {
        Event {
            id: Uuid::now_v7(),
            external_event_id: None,
            account,
            integration,
            connector,
            event,
            target: Target::Actor(ActorRef {
                external_id: external_id.into(),
                name: None,
            }),
            arguments: Arguments::default(),
            uninterruptible: false,
            command_act_id: None,
            occurred_at: Utc::now(),
            redelivered: false,
        }
    }

    /// An event the daemon makes itself for a known persona.
    pub fn for_persona(
        account: Idn,
        integration: Idn,
        connector: Idn,
        event: Idn,
        persona: PersonaId,
    ) -> Self {
        Event {
            id: Uuid::now_v7(),
            external_event_id: None,
            account,
            integration,
            connector,
            event,
            target: Target::Persona(persona),
            arguments: Arguments::default(),
            uninterruptible: false,
            command_act_id: None,
            occurred_at: Utc::now(),
            redelivered: false,
        }
    }

    /// The event with argument `name` set to `value` (replacing one of that name).
    pub fn with_argument(mut self, name: &str, value: impl Into<SmolStr>) -> Self {
        match self.arguments.0.iter_mut().find(|a| a.name == name) {
            Some(a) => a.value = value.into(),
            None => self.arguments.push(name, value),
        }
        self
    }
}

/// An admitted event with the persona it was resolved to.
#[derive(Debug)]
pub struct RoutedEvent {
    pub event: Event,
    pub persona: PersonaId,
    /// The places admission reserved for the event in the flow instances it reaches, given
    /// back when the event's last holder drops it (see `ingress::FlowRoom`).
    pub room: Option<Reservation>,
}

/// A reservation held for an event: a guard that gives its places back when dropped, opaque
/// here (the stage that made it reads it back: routing keeps the event's matches in it).
pub struct Reservation(pub Box<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reservation")
    }
}

impl RoutedEvent {
    /// The event itself, moved out when this was its last holder (a refusal or a dead letter
    /// right after admission), cloned otherwise.
    pub fn into_event(shared: SharedEvent) -> Event {
        Arc::try_unwrap(shared).map_or_else(|s| s.event.clone(), |r| r.event)
    }

    /// `event` with the persona its target names. An event that names only a command act
    /// gets [`PersonaId::UNRESOLVED`]: its connector, which issued the act, resolves it.
    pub fn named(event: Event) -> Self {
        Self::named_with(event, &super::PersonaKey::Unkeyed)
    }

    /// [`RoutedEvent::named`], an actor's persona derived with `key`.
    pub fn named_with(event: Event, key: &super::PersonaKey) -> Self {
        let persona = match &event.target {
            Target::Actor(a) => key.derive(&event.account, &event.integration, &a.external_id),
            Target::Persona(p) => *p,
            Target::ByCommandAct => PersonaId::UNRESOLVED,
        };
        RoutedEvent {
            event,
            persona,
            room: None,
        }
    }
}

pub type SharedEvent = Arc<RoutedEvent>;
