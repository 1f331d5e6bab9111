//! Data-driven routing tests: one world of connectors and flows, one `check(input, expected)`
//! helper, many cases. Each case sends a real event through the engine and compares the
//! skills invoked (or the refusal) with the expectation.

mod common;

use common::Harness;

/// What a case expects.
enum Expect {
    /// These `Agent/Flow:Skill` invocations, in any order, and no others.
    Reaches(&'static [&'static str]),
    /// Refused at admission with this reason code (and dead-lettered with it).
    Refused(&'static str),
}
use Expect::*;

const FLOWS: &[(&str, &str, &str)] = &[
    (
        "Agent",
        "Exact",
        r#"
events:
  - {idn: user_message, skill_idn: ExactBotA, integration_idn: telegram, connector_idn: bot_a}
  - {idn: user_message, skill_idn: AnyTelegram, integration_idn: telegram}
  - {idn: user_message, skill_idn: Anything}
"#,
    ),
    (
        "Agent",
        "Broad",
        r#"
events:
  - {idn: user_message, skill_idn: BroadAny}
  - {idn: user_message, skill_idn: BroadTelegram, integration_idn: telegram}
  - {idn: user_message, skill_idn: BroadTelegramLater, integration_idn: telegram}
"#,
    ),
    (
        "Other",
        "Global",
        r#"
events:
  - {idn: user_message, skill_idn: GlobalMsg}
  - {idn: timer, skill_idn: GlobalTimer}
  - {idn: user_message, skill_idn: GlobalMsgTwice}
"#,
    ),
    (
        "Other",
        "Custom",
        r#"
events:
  - {idn: order_placed, skill_idn: OnOrder, integration_idn: api, connector_idn: webhook}
  - {idn: book_slot, skill_idn: OnBook, integration_idn: system, connector_idn: system}
  - {idn: result_success, skill_idn: OnHttpOk, integration_idn: http, connector_idn: api_x}
  - {idn: user_message, skill_idn: OnStoppedSms, integration_idn: twilio_messenger, connector_idn: sms}
"#,
    ),
];

async fn world() -> Harness {
    let h = Harness::start();
    for (i, c) in [
        ("telegram", "bot_a"),
        ("telegram", "bot_b"),
        ("sandbox", "sb"),
        ("api", "webhook"),
        ("http", "api_x"),
        ("program_timer", "reminders"),
        ("twilio_messenger", "sms"),
    ] {
        h.connector(i, c);
    }
    let sms = h
        .engine
        .registry()
        .find(&h.account, "twilio_messenger", "sms")
        .unwrap();
    h.engine.stop_connector(sms.id).unwrap();
    for (agent, flow, yaml) in FLOWS {
        h.flow(agent, flow, yaml).await;
    }
    h
}

async fn check(h: &Harness, (integration, connector, event): (&str, &str, &str), expected: Expect) {
    let case = format!("{integration}/{connector}/{event}");
    let mut e = h.event(integration, connector, event, &format!("actor-{case}"));
    // With the arguments the catalog requires of it (a case is about routing, not arguments).
    if let Some(i) = switchboard::catalog::Catalog::builtin().get(integration) {
        for name in i.required_arguments(event).iter() {
            e = e.with_argument(name, "x");
        }
    }
    let id = e.id;
    let dead_before = h.dead.len();
    match (h.send(e).await, expected) {
        (Ok(_), Reaches(skills)) => {
            let mut want: Vec<(String, String, String)> = skills
                .iter()
                .map(|s| {
                    let (af, skill) = s.split_once(':').unwrap();
                    let (a, f) = af.split_once('/').unwrap();
                    (a.to_owned(), f.to_owned(), skill.to_owned())
                })
                .collect();
            want.sort();
            assert_eq!(h.invoked_by(id), want, "{case}");
            assert_eq!(h.dead.len(), dead_before, "{case}: nothing dead-lettered");
        }
        (Err(refusal), Refused(code)) => {
            assert_eq!(refusal.code(), code, "{case}: {refusal}");
            assert_eq!(h.dead.len(), dead_before + 1, "{case}: one dead letter");
            assert_eq!(h.dead_letter_codes().last(), Some(&code), "{case}");
            assert!(h.invoked_by(id).is_empty(), "{case}");
        }
        (Ok(_), Refused(code)) => panic!("{case}: admitted, expected refusal {code}"),
        (Err(r), Reaches(_)) => panic!("{case}: refused ({r}), expected to route"),
    }
}

#[actix_rt::test]
async fn routing_table() {
    let h = world().await;
    let cases: &[((&str, &str, &str), Expect)] = &[
        // Exact beats connector-null beats integration-null inside one flow; every flow once.
        (
            ("telegram", "bot_a", "user_message"),
            Reaches(&[
                "Agent/Exact:ExactBotA",
                "Agent/Broad:BroadTelegram",
                "Other/Global:GlobalMsg",
            ]),
        ),
        (
            ("telegram", "bot_b", "user_message"),
            Reaches(&[
                "Agent/Exact:AnyTelegram",
                "Agent/Broad:BroadTelegram",
                "Other/Global:GlobalMsg",
            ]),
        ),
        // Integration-null subscriptions cover every integration.
        (
            ("sandbox", "sb", "user_message"),
            Reaches(&[
                "Agent/Exact:Anything",
                "Agent/Broad:BroadAny",
                "Other/Global:GlobalMsg",
            ]),
        ),
        (
            ("system", "system", "user_message"),
            Reaches(&[
                "Agent/Exact:Anything",
                "Agent/Broad:BroadAny",
                "Other/Global:GlobalMsg",
            ]),
        ),
        (
            ("program_timer", "reminders", "timer"),
            Reaches(&["Other/Global:GlobalTimer"]),
        ),
        // Custom events on open integrations.
        (
            ("api", "webhook", "order_placed"),
            Reaches(&["Other/Custom:OnOrder"]),
        ),
        (
            ("system", "system", "book_slot"),
            Reaches(&["Other/Custom:OnBook"]),
        ),
        (("api", "webhook", "never_subscribed"), Reaches(&[])),
        // Exact scope: another connector of the same integration does not match.
        (
            ("http", "api_x", "result_success"),
            Reaches(&["Other/Custom:OnHttpOk"]),
        ),
        (("api", "webhook", "book_slot"), Reaches(&[])),
        // Admission refusals.
        (
            ("twilio_messenger", "sms", "user_message"),
            Refused("connector_stopped"),
        ),
        (
            ("telegram", "bot_zzz", "user_message"),
            Refused("unknown_connector"),
        ),
        (
            ("fax", "machine", "user_message"),
            Refused("unknown_integration"),
        ),
        (("sandbox", "sb", "timer"), Refused("undeclared_event")),
        (
            ("http", "api_x", "user_message"),
            Refused("undeclared_event"),
        ),
        (
            ("telegram", "bot_a", "made_up_event"),
            Refused("undeclared_event"),
        ),
    ];
    for (input, expected) in cases {
        let expected = match expected {
            Reaches(s) => Reaches(s),
            Refused(c) => Refused(c),
        };
        check(&h, *input, expected).await;
    }
}

#[actix_rt::test]
async fn a_missing_required_argument_is_malformed_naming_it() {
    let h = world().await;
    let mut e = h.event("telegram", "bot_a", "user_message", "alice");
    e.arguments = Default::default();
    let refusal = h.send(e).await.unwrap_err();
    assert_eq!(refusal.code(), "malformed");
    assert_eq!(refusal.field(), Some("arguments.text"));
    assert_eq!(h.dead_letter_codes(), vec!["malformed"]);
}

#[actix_rt::test]
async fn an_empty_actor_is_malformed() {
    let h = world().await;
    let e = h.event("telegram", "bot_a", "user_message", "");
    let refusal = h.send(e).await.unwrap_err();
    assert_eq!(refusal.code(), "malformed");
    assert_eq!(refusal.field(), Some("actor.external_id"));
    assert_eq!(h.dead_letter_codes(), vec!["malformed"]);
}

#[actix_rt::test]
async fn explain_agrees_with_dispatch_and_says_why() {
    let h = world().await;
    let idn = switchboard::domain::Idn::known;
    let x = h.engine.explain(
        &h.account,
        &idn("telegram"),
        &idn("bot_b"),
        &idn("user_message"),
    );
    assert_eq!(x.refused, None);
    let matched: Vec<_> = x
        .matched
        .iter()
        .map(|m| (m.flow.as_str(), m.skill.as_str(), m.scope))
        .collect();
    assert!(
        matched.contains(&("Exact", "AnyTelegram", "connector_null")),
        "{matched:?}"
    );
    assert!(matched.contains(&("Broad", "BroadTelegram", "connector_null")));
    assert!(matched.contains(&("Global", "GlobalMsg", "integration_null")));
    assert_eq!(matched.len(), 3);
    let exact = x
        .not_matched
        .iter()
        .find(|m| m.skill == "ExactBotA")
        .unwrap();
    assert!(
        exact.why.contains("does not cover telegram/bot_b"),
        "{}",
        exact.why
    );
    let later = x
        .not_matched
        .iter()
        .find(|m| m.skill == "BroadTelegramLater")
        .unwrap();
    assert!(
        later.why.contains("more specific or earlier"),
        "{}",
        later.why
    );
    let stopped = h.engine.explain(
        &h.account,
        &idn("twilio_messenger"),
        &idn("sms"),
        &idn("user_message"),
    );
    assert_eq!(
        stopped.refused.as_deref(),
        Some("connector twilio_messenger/sms is stopped")
    );
    assert_eq!(
        stopped.matched.len(),
        4,
        "explain still shows what would match"
    );
    assert!(stopped.matched.iter().any(|m| m.skill == "OnStoppedSms"));
}
