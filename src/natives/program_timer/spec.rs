//! What a `set_timer` / `cancel_timer` command asks, checked: each argument parsed once, every
//! refusal naming the argument. Pure: the time is given, the connector's settings too.
//!
//! Arguments (the seed's, plus two of our own): `timerName` (required), `personaId` (default:
//! the invocation's persona), `fireAt` (ISO 8601; without an offset it is read in the
//! connector's `time_zone`), `interval` (seconds: between fires of a repeating timer, or before
//! the first fire when `fireAt` is absent), `repeatable` (default: true when an interval is
//! given, so an interval timer repeats unless `repeatable=false`), `enabled` (`false` cancels),
//! `eventIdn` (fired instead of `timer`). Extension: `scope=session` with `sessionConnector`
//! (`<integration>/<connector>`) binds the timer to the persona's live session there; when that
//! session ends the timer is cancelled and `timer_cancelled` tells the flow. Any other argument
//! is carried into the fired event.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::commands::CommandRefusal;
use crate::domain::{Command, Idn, PersonaId};

/// The arguments this module reads; the others travel with the timer into its event.
const KNOWN: &[&str] = &[
    "timerName",
    "personaId",
    "fireAt",
    "interval",
    "repeatable",
    "enabled",
    "eventIdn",
    "scope",
    "sessionConnector",
];

/// A timer's key: one timer per `(account, connector, persona, name)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerKey {
    pub account: Idn,
    pub connector: Idn,
    pub persona: PersonaId,
    pub name: String,
}

/// A timer, as the service schedules it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub key: TimerKey,
    /// Next fire, Unix milliseconds (UTC).
    pub due_ms: i64,
    pub interval_ms: Option<i64>,
    pub repeatable: bool,
    /// The event it fires (`timer`, or the `eventIdn` it was set with).
    pub event: Idn,
    /// Extra arguments carried into the event.
    pub arguments: Vec<(String, String)>,
    /// The session a session-scoped timer is bound to.
    pub session: Option<Uuid>,
}

/// The shortest interval a timer may have, whatever its connector allows.
pub const MIN_INTERVAL_MS: i64 = 1_000;
/// The longest interval, and how far ahead `fireAt` may be: ten years.
pub const MAX_AHEAD_MS: i64 = 10 * 365_250 * 86_400;

/// What a timer does after a firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It fires again at this time.
    At(i64),
    /// A one-shot: done.
    Done,
    /// It cannot be re-armed (an interval out of range, a due time that overflows): removed,
    /// never fired again.
    Broken,
}

impl Timer {
    /// When it fires after a firing scheduled at `scheduled_ms`, seen at `now_ms`: from the
    /// schedule (no drift), the first interval boundary after `now_ms`. Checked: an interval
    /// outside [`MIN_INTERVAL_MS`]..=[`MAX_AHEAD_MS`] (a row an older build stored) or a time
    /// past `i64` is [`Next::Broken`].
    pub fn next_after(&self, scheduled_ms: i64, now_ms: i64) -> Next {
        let Some(interval) = self.interval_ms.filter(|_| self.repeatable) else {
            return Next::Done;
        };
        if !(MIN_INTERVAL_MS..=MAX_AHEAD_MS).contains(&interval) {
            return Next::Broken;
        }
        let behind = now_ms.saturating_sub(scheduled_ms).max(0) / interval;
        behind
            .checked_add(1)
            .and_then(|n| n.checked_mul(interval))
            .and_then(|step| scheduled_ms.checked_add(step))
            .map_or(Next::Broken, Next::At)
    }
}

/// What a command asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Set(Timer),
    /// `cancel_timer`, or `set_timer` with `enabled=false`.
    Cancel(TimerKey),
}

/// The connector's settings and the daemon's limits a request is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The connector's `time_zone` (IANA), for `fireAt` without an offset.
    pub time_zone: chrono_tz::Tz,
    /// The connector's `min_interval_seconds`.
    pub min_interval_ms: i64,
    /// How far in the past `fireAt` may be (it then fires at once).
    pub past_grace_ms: i64,
}

fn invalid(argument: &str, reason: impl Into<String>) -> CommandRefusal {
    CommandRefusal::InvalidArgument {
        argument: argument.to_owned(),
        reason: reason.into(),
    }
}

/// `fireAt` in Unix milliseconds: RFC 3339 with an offset as given, a local date-time in the
/// connector's time zone.
pub fn parse_fire_at(text: &str, tz: chrono_tz::Tz) -> Result<i64, CommandRefusal> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .ok_or_else(|| {
        invalid(
            "fireAt",
            format!("{text:?} is not an ISO 8601 date-time (e.g. 2024-01-20T19:00:00)"),
        )
    })?;
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| {
            invalid(
                "fireAt",
                format!("{text} does not exist in {tz} (a clock change skips it)"),
            )
        })
}

fn flag(command: &Command, name: &str, default: bool) -> Result<bool, CommandRefusal> {
    match command.arguments.get(name) {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(invalid(
            name,
            format!("must be true or false (got {other:?})"),
        )),
    }
}

/// The key a command names: its connector, `personaId` or the invoking persona, `timerName`.
pub fn key_of(command: &Command, persona: PersonaId) -> Result<TimerKey, CommandRefusal> {
    let name = command.arguments.get("timerName").unwrap_or_default();
    if name.is_empty() || name.len() > 256 {
        return Err(invalid("timerName", "must be 1 to 256 bytes"));
    }
    let persona = match command.arguments.get("personaId") {
        None | Some("") => persona,
        Some(p) => PersonaId(
            Uuid::parse_str(p)
                .map_err(|_| invalid("personaId", format!("{p:?} is not a persona id")))?,
        ),
    };
    Ok(TimerKey {
        account: command.account.clone(),
        connector: command.connector.clone(),
        persona,
        name: name.to_owned(),
    })
}

/// Reads a `set_timer` (or its alias `set_repeatable_timer`) or a
/// `cancel_timer` at `now_ms`. A session-scoped timer's session is resolved by the caller
/// (`session` answers the live session of the key's persona on `<integration>/<connector>`).
pub fn parse(
    command: &Command,
    persona: PersonaId,
    now_ms: i64,
    limits: &Limits,
    session: impl FnOnce(&TimerKey, &str, &str) -> Option<Uuid>,
) -> Result<Request, CommandRefusal> {
    let key = key_of(command, persona)?;
    let verb = command.command.as_str();
    if verb == "cancel_timer" || !flag(command, "enabled", true)? {
        return Ok(Request::Cancel(key));
    }
    let interval_ms = match command.arguments.get("interval") {
        None | Some("") => None,
        Some(text) => {
            let secs: f64 = text
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    invalid(
                        "interval",
                        format!("{text:?} is not a positive number of seconds"),
                    )
                })?;
            // Compared as a float first: a cast saturates, and 1e16 s must not become i64::MAX.
            if secs * 1000.0 > MAX_AHEAD_MS as f64 {
                return Err(invalid(
                    "interval",
                    format!("{text} s is longer than ten years"),
                ));
            }
            let ms = (secs * 1000.0).round() as i64;
            if ms < limits.min_interval_ms.max(MIN_INTERVAL_MS) {
                return Err(invalid(
                    "interval",
                    format!(
                        "{text} s is below this connector's minimum of {} s",
                        limits.min_interval_ms.max(MIN_INTERVAL_MS) as f64 / 1000.0
                    ),
                ));
            }
            Some(ms)
        }
    };
    // An interval timer repeats (the seed's weekly follow-up) unless `repeatable=false`.
    let repeatable = flag(
        command,
        "repeatable",
        interval_ms.is_some() || verb == "set_repeatable_timer",
    )?;
    let fire_at = match command.arguments.get("fireAt") {
        None | Some("") => None,
        Some(text) => Some(parse_fire_at(text, limits.time_zone)?),
    };
    let due_ms = match (fire_at, interval_ms) {
        (None, None) => return Err(invalid("fireAt", "fireAt or interval is required")),
        (Some(at), _) if at < now_ms - limits.past_grace_ms => {
            return Err(invalid(
                "fireAt",
                format!(
                    "{} is in the past (more than {} s ago)",
                    DateTime::<Utc>::from_timestamp_millis(at)
                        .unwrap_or_default()
                        .to_rfc3339(),
                    limits.past_grace_ms / 1000
                ),
            ))
        }
        (Some(at), _) if at > now_ms.saturating_add(MAX_AHEAD_MS) => {
            return Err(invalid(
                "fireAt",
                format!(
                    "{} is more than ten years ahead",
                    DateTime::<Utc>::from_timestamp_millis(at)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| at.to_string())
                ),
            ))
        }
        (Some(at), _) => at.max(now_ms),
        (None, Some(interval)) => now_ms
            .checked_add(interval)
            .ok_or_else(|| invalid("interval", "the first fire is past the representable time"))?,
    };
    if repeatable && interval_ms.is_none() {
        return Err(invalid("interval", "required for a repeatable timer"));
    }
    let event = match command.arguments.get("eventIdn") {
        None | Some("") => Idn::known("timer"),
        Some(e) => Idn::parse("eventIdn", e).map_err(|e| invalid("eventIdn", e.reason))?,
    };
    let session = match command.arguments.get("scope") {
        None | Some("") | Some("persona") => None,
        Some("session") => {
            let at = command
                .arguments
                .get("sessionConnector")
                .unwrap_or_default();
            let (integration, connector) = at.split_once('/').ok_or_else(|| {
                invalid(
                    "sessionConnector",
                    "required with scope=session, as <integration>/<connector>",
                )
            })?;
            Some(session(&key, integration, connector).ok_or_else(|| {
                invalid(
                    "sessionConnector",
                    format!("the persona has no live session on {at}"),
                )
            })?)
        }
        Some(other) => {
            return Err(invalid(
                "scope",
                format!("must be session or persona (got {other:?})"),
            ))
        }
    };
    let arguments = command
        .arguments
        .iter()
        .filter(|a| !KNOWN.contains(&a.name.as_str()))
        .map(|a| (a.name.to_string(), a.value.to_string()))
        .collect();
    Ok(Request::Set(Timer {
        key,
        due_ms,
        interval_ms,
        repeatable,
        event,
        arguments,
        session,
    }))
}

#[cfg(test)]
mod tests;
