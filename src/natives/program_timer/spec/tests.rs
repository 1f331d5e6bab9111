//! Cases of `set_timer` / `cancel_timer` arguments through one `check` helper.

use super::*;
use crate::domain::{Command, Idn, PersonaId};

const NOW: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

fn limits(tz: &str) -> Limits {
    Limits {
        time_zone: tz.parse().unwrap(),
        min_interval_ms: 60_000,
        past_grace_ms: 60_000,
    }
}

fn persona() -> PersonaId {
    PersonaId(Uuid::from_u128(7))
}

fn command(verb: &str, args: &[(&str, &str)]) -> Command {
    let mut c = Command::new(
        Idn::known("default"),
        Idn::known("program_timer"),
        Idn::known("reminders"),
        Idn::known(verb),
    );
    for (n, v) in args {
        c = c.with_argument(n, *v);
    }
    c
}

/// What one case expects: a timer's due time, interval and repeat flag, a cancel, or a
/// refusal naming its argument.
#[derive(Debug, PartialEq)]
enum Want {
    Set {
        due_ms: i64,
        interval_ms: Option<i64>,
        repeatable: bool,
    },
    Cancel,
    Refused(&'static str),
}

fn check(verb: &str, args: &[(&str, &str)], tz: &str, want: Want) {
    let got = match parse(
        &command(verb, args),
        persona(),
        NOW,
        &limits(tz),
        |_, _, _| None,
    ) {
        Ok(Request::Set(t)) => Want::Set {
            due_ms: t.due_ms,
            interval_ms: t.interval_ms,
            repeatable: t.repeatable,
        },
        Ok(Request::Cancel(_)) => Want::Cancel,
        Err(CommandRefusal::InvalidArgument { argument, .. }) => {
            Want::Refused(Box::leak(argument.into_boxed_str()))
        }
        Err(other) => panic!("{verb} {args:?}: {other:?}"),
    };
    assert_eq!(got, want, "{verb} {args:?} in {tz}");
}

/// `(command, arguments, the connector's time zone, what it comes to)`.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    Want,
);

#[test]
fn set_timer_cases() {
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
    use Want::*;
    let cases: &[Case] = &[
        // One-shot at a time with an offset.
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "2023-11-15T09:00:00+01:00")],
            "UTC",
            Set {
                due_ms: at("2023-11-15T08:00:00Z"),
                interval_ms: None,
                repeatable: false,
            },
        ),
        // Without an offset: the connector's time zone (New York is UTC-5 in November).
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "2023-11-15T09:00:00")],
            "America/New_York",
            Set {
                due_ms: at("2023-11-15T14:00:00Z"),
                interval_ms: None,
                repeatable: false,
            },
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "2023-11-15T09:00:00")],
            "UTC",
            Set {
                due_ms: at("2023-11-15T09:00:00Z"),
                interval_ms: None,
                repeatable: false,
            },
        ),
        // An interval alone: first fire after it, and it repeats.
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "604800")],
            "UTC",
            Set {
                due_ms: NOW + 604_800_000,
                interval_ms: Some(604_800_000),
                repeatable: true,
            },
        ),
        // ...unless repeatable=false: once, after the interval.
        (
            "set_timer",
            &[
                ("timerName", "a"),
                ("interval", "120"),
                ("repeatable", "false"),
            ],
            "UTC",
            Set {
                due_ms: NOW + 120_000,
                interval_ms: Some(120_000),
                repeatable: false,
            },
        ),
        // The alias with fireAt and interval: from fireAt, every interval.
        (
            "set_repeatable_timer",
            &[
                ("timerName", "a"),
                ("fireAt", "2023-11-15T02:00:00Z"),
                ("interval", "86400"),
            ],
            "UTC",
            Set {
                due_ms: at("2023-11-15T02:00:00Z"),
                interval_ms: Some(86_400_000),
                repeatable: true,
            },
        ),
        // A fireAt just past, inside the grace: fires now.
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "2023-11-14T22:12:50Z")],
            "UTC",
            Set {
                due_ms: NOW,
                interval_ms: None,
                repeatable: false,
            },
        ),
        // Cancels.
        (
            "set_timer",
            &[("timerName", "a"), ("enabled", "false")],
            "UTC",
            Cancel,
        ),
        ("cancel_timer", &[("timerName", "a")], "UTC", Cancel),
        // Refusals name their argument.
        ("set_timer", &[("timerName", "a")], "UTC", Refused("fireAt")),
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "2023-11-14T20:00:00Z")],
            "UTC",
            Refused("fireAt"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "tomorrow")],
            "UTC",
            Refused("fireAt"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "30")],
            "UTC",
            Refused("interval"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "-5")],
            "UTC",
            Refused("interval"),
        ),
        (
            "set_timer",
            &[
                ("timerName", "a"),
                ("fireAt", "2023-11-15T02:00:00Z"),
                ("repeatable", "true"),
            ],
            "UTC",
            Refused("interval"),
        ),
        (
            "set_timer",
            &[
                ("timerName", "a"),
                ("interval", "60"),
                ("repeatable", "maybe"),
            ],
            "UTC",
            Refused("repeatable"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "60"), ("enabled", "no")],
            "UTC",
            Refused("enabled"),
        ),
        (
            "set_timer",
            &[
                ("timerName", "a"),
                ("interval", "60"),
                ("eventIdn", "Not An Idn"),
            ],
            "UTC",
            Refused("eventIdn"),
        ),
        (
            "set_timer",
            &[
                ("timerName", "a"),
                ("interval", "60"),
                ("personaId", "alice"),
            ],
            "UTC",
            Refused("personaId"),
        ),
        (
            "set_timer",
            &[("timerName", ""), ("interval", "60")],
            "UTC",
            Refused("timerName"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "60"), ("scope", "session")],
            "UTC",
            Refused("sessionConnector"),
        ),
        (
            "set_timer",
            &[
                ("timerName", "a"),
                ("interval", "60"),
                ("scope", "session"),
                ("sessionConnector", "sandbox/chat"),
            ],
            "UTC",
            Refused("sessionConnector"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "60"), ("scope", "forever")],
            "UTC",
            Refused("scope"),
        ),
        // Out of range: intervals past ten years (1e16 s overflowed the due time once), a
        // fireAt more than ten years ahead; the connector's minimum is never below 1 s.
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "1e16")],
            "UTC",
            Refused("interval"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "315576001")],
            "UTC",
            Refused("interval"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "inf")],
            "UTC",
            Refused("interval"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("interval", "315576000")],
            "UTC",
            Set {
                due_ms: NOW + MAX_AHEAD_MS,
                interval_ms: Some(MAX_AHEAD_MS),
                repeatable: true,
            },
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "2034-01-01T00:00:00Z")],
            "UTC",
            Refused("fireAt"),
        ),
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "+262000-01-01T00:00:00Z")],
            "UTC",
            Refused("fireAt"),
        ),
        // 02:30 does not exist in New York on 2024-03-10 (clocks jump from 02:00 to 03:00).
        (
            "set_timer",
            &[("timerName", "a"), ("fireAt", "2024-03-10T02:30:00")],
            "America/New_York",
            Refused("fireAt"),
        ),
    ];
    for (verb, args, tz, want) in cases {
        let want = match want {
            Set {
                due_ms,
                interval_ms,
                repeatable,
            } => Set {
                due_ms: *due_ms,
                interval_ms: *interval_ms,
                repeatable: *repeatable,
            },
            Cancel => Cancel,
            Refused(a) => Refused(a),
        };
        check(verb, args, tz, want);
    }
}

#[test]
fn the_key_extra_arguments_event_and_session_come_from_the_command() {
    let c = command(
        "set_timer",
        &[
            ("timerName", "follow_up"),
            ("interval", "60"),
            ("eventIdn", "follow_up_due"),
            ("personaId", "00000000-0000-0000-0000-000000000009"),
            ("topic", "invoice"),
            ("scope", "session"),
            ("sessionConnector", "sandbox/chat"),
        ],
    );
    let session = Uuid::from_u128(42);
    let Request::Set(t) = parse(&c, persona(), NOW, &limits("UTC"), |key, i, conn| {
        assert_eq!((i, conn), ("sandbox", "chat"));
        assert_eq!(key.persona, PersonaId(Uuid::from_u128(9)), "personaId wins");
        Some(session)
    })
    .unwrap() else {
        panic!("a set");
    };
    assert_eq!(t.key.name, "follow_up");
    assert_eq!(t.key.connector.as_str(), "reminders");
    assert_eq!(t.event.as_str(), "follow_up_due");
    assert_eq!(
        t.arguments,
        vec![("topic".to_owned(), "invoice".to_owned())]
    );
    assert_eq!(t.session, Some(session));
}

#[test]
fn a_repeating_timer_moves_on_from_its_schedule_without_drift() {
    let t = Timer {
        key: key_of(&command("set_timer", &[("timerName", "a")]), persona()).unwrap(),
        due_ms: 1_000,
        interval_ms: Some(10_000),
        repeatable: true,
        event: Idn::known("timer"),
        arguments: Vec::new(),
        session: None,
    };
    assert_eq!(t.next_after(1_000, 1_000), Next::At(11_000), "on time");
    assert_eq!(
        t.next_after(1_000, 1_037),
        Next::At(11_000),
        "late, same schedule"
    );
    assert_eq!(
        t.next_after(1_000, 25_000),
        Next::At(31_000),
        "missed ones are not burst"
    );
    let once = Timer {
        repeatable: false,
        ..t.clone()
    };
    assert_eq!(once.next_after(1_000, 1_000), Next::Done);
}

/// A row an older build stored with an interval out of range, or one whose next due time
/// overflows, is never re-armed (the audit's timer storm: `interval: 1e16` wrapped negative).
#[test]
fn a_timer_that_cannot_be_rearmed_is_broken_not_rearmed() {
    let t = |interval_ms: i64, due_ms: i64| Timer {
        key: key_of(&command("set_timer", &[("timerName", "a")]), persona()).unwrap(),
        due_ms,
        interval_ms: Some(interval_ms),
        repeatable: true,
        event: Idn::known("timer"),
        arguments: Vec::new(),
        session: None,
    };
    assert_eq!(t(i64::MAX, NOW).next_after(NOW, NOW), Next::Broken);
    assert_eq!(t(-5_000, NOW).next_after(NOW, NOW), Next::Broken);
    assert_eq!(t(500, NOW).next_after(NOW, NOW), Next::Broken);
    assert_eq!(
        t(MAX_AHEAD_MS, i64::MAX - 10).next_after(i64::MAX - 10, i64::MAX - 10),
        Next::Broken
    );
    assert_eq!(
        t(MAX_AHEAD_MS, NOW).next_after(NOW, NOW),
        Next::At(NOW + MAX_AHEAD_MS)
    );
}

/// A connector's minimum below 1 s (`min_interval_seconds=-5` was once accepted) does not let
/// a timer fire more often than once a second.
#[test]
fn no_connector_setting_allows_an_interval_below_one_second() {
    let loose = Limits {
        min_interval_ms: -5_000,
        ..limits("UTC")
    };
    for interval in ["0.5", "0.001"] {
        let refused = parse(
            &command("set_timer", &[("timerName", "a"), ("interval", interval)]),
            persona(),
            NOW,
            &loose,
            |_, _, _| None,
        );
        assert!(
            matches!(&refused, Err(CommandRefusal::InvalidArgument { argument, .. }) if argument == "interval"),
            "{interval}: {refused:?}"
        );
    }
}
