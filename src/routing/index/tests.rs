//! The subscription index on small hand-built flows: which tier a subscription lands in, how
//! the tiers combine into one answer per flow, and what the index says about its flows.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::domain::{Flow, FlowId, Idn, InterruptMode, Name, RunnerSpec, SkillSelector};
use crate::invocation::{Handoff, Invocation, Reply, SkillRunner};

/// The index never invokes a runner: a flow route only needs one to exist. (The in-process
/// runners of `skill_runner` are a later stage than routing, so not imported here.)
struct NoRunner;

impl SkillRunner for NoRunner {
    fn invoke(&self, _invocation: Invocation, _reply: Reply, _handoff: Handoff) {}

    fn cancel(&self, _invocation_id: Uuid, _reason: &'static str) {}
}

/// `(event, integration, connector, skill)`: a subscription in the queue mode.
type Sub<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str);

fn sub((event, integration, connector, skill): Sub<'_>) -> Subscription {
    Subscription {
        event: Idn::known(event),
        integration: integration.map(Idn::known),
        connector: connector.map(Idn::known),
        skill: SkillSelector::Skill(Name::known(skill)),
        interrupt_mode: InterruptMode::Queue,
    }
}

fn route_of(
    id: u32,
    account: &str,
    agent: &str,
    flow: &str,
    subs: Vec<Subscription>,
) -> Arc<FlowRoute> {
    Arc::new(FlowRoute::new(
        FlowId(id),
        Flow {
            account: Idn::known(account),
            agent: Name::known(agent),
            flow: Name::known(flow),
            runner: RunnerSpec::Default,
            invocation_timeout: None,
            state_fields: Vec::new(),
            subscriptions: subs,
        },
        Arc::new(NoRunner),
        Duration::from_secs(30),
    ))
}

/// A flow of account `default`, agent `Agent`.
fn flow(id: u32, name: &str, subs: &[Sub<'_>]) -> Arc<FlowRoute> {
    route_of(
        id,
        "default",
        "Agent",
        name,
        subs.iter().copied().map(sub).collect(),
    )
}

fn key(integration: &str, connector: &str) -> ScopeKey {
    ScopeKey::new(
        Idn::known("default"),
        Idn::known(integration),
        Idn::known(connector),
    )
}

/// `flow:skill` of each match, in the order `Matches::iter` yields them.
fn reached(
    index: &SubscriptionIndex,
    integration: &str,
    connector: &str,
    event: &str,
) -> Vec<String> {
    let matches = index.lookup(&key(integration, connector), event);
    let out: Vec<String> = matches
        .iter()
        .map(|m| {
            let SkillSelector::Skill(skill) = m.skill() else {
                panic!("the tests subscribe skills by name");
            };
            format!("{}:{}", m.flow.name(), skill)
        })
        .collect();
    assert_eq!(matches.len(), out.len(), "len() counts what iter() yields");
    assert_eq!(matches.is_empty(), out.is_empty());
    out
}

/// `flow:position` of each match of one tier.
fn tier(matches: &[Match]) -> Vec<String> {
    matches
        .iter()
        .map(|m| format!("{}:{}", m.flow.name(), m.position))
        .collect()
}

#[test]
fn an_exact_subscription_matches_only_its_connector_and_event() {
    let index = SubscriptionIndex::build(&[flow(
        1,
        "Main",
        &[("user_message", Some("telegram"), Some("bot"), "Reply")],
    )]);
    assert_eq!(
        reached(&index, "telegram", "bot", "user_message"),
        ["Main:Reply"]
    );
    assert!(reached(&index, "telegram", "other_bot", "user_message").is_empty());
    assert!(reached(&index, "sandbox", "bot", "user_message").is_empty());
    assert!(reached(&index, "telegram", "bot", "conversation_ended").is_empty());
}

#[test]
fn a_connector_null_subscription_matches_every_connector_of_its_integration() {
    let index = SubscriptionIndex::build(&[flow(
        1,
        "Main",
        &[("user_message", Some("telegram"), None, "Reply")],
    )]);
    assert_eq!(
        reached(&index, "telegram", "bot", "user_message"),
        ["Main:Reply"]
    );
    assert_eq!(
        reached(&index, "telegram", "bot_b", "user_message"),
        ["Main:Reply"]
    );
    assert!(reached(&index, "sandbox", "bot", "user_message").is_empty());
    assert!(reached(&index, "telegram", "bot", "timer").is_empty());
}

#[test]
fn an_integration_null_subscription_matches_every_scope_of_its_account() {
    let index =
        SubscriptionIndex::build(&[flow(1, "Main", &[("user_message", None, None, "Reply")])]);
    for (i, c) in [("telegram", "bot"), ("sandbox", "sb"), ("system", "system")] {
        assert_eq!(
            reached(&index, i, c, "user_message"),
            ["Main:Reply"],
            "{i}/{c}"
        );
    }
    assert!(reached(&index, "telegram", "bot", "timer").is_empty());
}

#[test]
fn a_lookup_reports_each_tier_for_the_event() {
    let index = SubscriptionIndex::build(&[
        flow(
            1,
            "Exact",
            &[("user_message", Some("telegram"), Some("bot"), "E")],
        ),
        flow(2, "Integ", &[("user_message", Some("telegram"), None, "I")]),
        flow(3, "Any", &[("user_message", None, None, "A")]),
    ]);
    // A hit on the exact key carries the broader tiers of its event with it.
    let m = index.lookup(&key("telegram", "bot"), "user_message");
    assert_eq!(tier(m.exact), ["Exact:0"]);
    assert_eq!(tier(m.integration), ["Integ:0"]);
    assert_eq!(tier(m.any), ["Any:0"]);
    // Another connector of the integration: the connector-null tier and the rest.
    let m = index.lookup(&key("telegram", "bot_b"), "user_message");
    assert!(m.exact.is_empty());
    assert_eq!(tier(m.integration), ["Integ:0"]);
    assert_eq!(tier(m.any), ["Any:0"]);
    // Another integration: the integration-null tier alone.
    let m = index.lookup(&key("sandbox", "sb"), "user_message");
    assert!(m.exact.is_empty() && m.integration.is_empty());
    assert_eq!(tier(m.any), ["Any:0"]);
    assert_eq!(
        reached(&index, "telegram", "bot", "user_message"),
        ["Exact:E", "Integ:I", "Any:A"],
        "most specific tier first"
    );
}

#[test]
fn an_exact_key_links_the_integration_null_tier_without_a_connector_null_one() {
    let index = SubscriptionIndex::build(&[
        flow(
            1,
            "Exact",
            &[("user_message", Some("telegram"), Some("bot"), "E")],
        ),
        flow(2, "Any", &[("user_message", None, None, "A")]),
    ]);
    let m = index.lookup(&key("telegram", "bot"), "user_message");
    assert_eq!(tier(m.exact), ["Exact:0"]);
    assert!(m.integration.is_empty());
    assert_eq!(tier(m.any), ["Any:0"]);
}

#[test]
fn a_flow_matched_at_a_more_specific_tier_is_skipped_in_broader_ones() {
    // Listed broadest first: precedence is by tier, not by position in the flow.
    let index = SubscriptionIndex::build(&[
        flow(
            1,
            "Main",
            &[
                ("user_message", None, None, "Anything"),
                ("user_message", Some("telegram"), None, "AnyTelegram"),
                ("user_message", Some("telegram"), Some("bot"), "ExactBot"),
            ],
        ),
        flow(2, "Other", &[("user_message", None, None, "OtherAnything")]),
    ]);
    assert_eq!(
        reached(&index, "telegram", "bot", "user_message"),
        ["Main:ExactBot", "Other:OtherAnything"]
    );
    assert_eq!(
        reached(&index, "telegram", "bot_b", "user_message"),
        ["Main:AnyTelegram", "Other:OtherAnything"]
    );
    assert_eq!(
        reached(&index, "sandbox", "sb", "user_message"),
        ["Main:Anything", "Other:OtherAnything"]
    );
    // The shadowed subscriptions are still in their tiers; only iteration skips them.
    let m = index.lookup(&key("telegram", "bot"), "user_message");
    assert_eq!(tier(m.integration), ["Main:1"]);
    assert_eq!(tier(m.any), ["Main:0", "Other:0"]);
}

#[test]
fn the_first_subscription_of_a_flow_within_a_tier_wins() {
    let index = SubscriptionIndex::build(&[flow(
        1,
        "Main",
        &[
            ("user_message", Some("telegram"), Some("bot"), "ExactFirst"),
            ("user_message", Some("telegram"), Some("other"), "OtherBot"),
            ("user_message", Some("telegram"), Some("bot"), "ExactSecond"),
            ("user_message", Some("telegram"), None, "IntegFirst"),
            ("user_message", Some("telegram"), None, "IntegSecond"),
            ("user_message", None, None, "AnyFirst"),
            ("user_message", None, None, "AnySecond"),
        ],
    )]);
    let m = index.lookup(&key("telegram", "bot"), "user_message");
    assert_eq!(tier(m.exact), ["Main:0"]);
    assert_eq!(tier(m.integration), ["Main:3"]);
    assert_eq!(tier(m.any), ["Main:5"]);
    assert_eq!(
        reached(&index, "telegram", "bot", "user_message"),
        ["Main:ExactFirst"]
    );
    assert_eq!(
        reached(&index, "telegram", "other", "user_message"),
        ["Main:OtherBot"]
    );
    assert_eq!(
        reached(&index, "telegram", "third", "user_message"),
        ["Main:IntegFirst"]
    );
    assert_eq!(
        reached(&index, "sandbox", "sb", "user_message"),
        ["Main:AnyFirst"]
    );
    assert_eq!(
        index.subscription_count(),
        7,
        "shadowed subscriptions still count"
    );
}

#[test]
fn flows_of_one_tier_keep_the_order_they_were_given_in() {
    let flows: Vec<_> = ["Charlie", "Alpha", "Bravo"]
        .iter()
        .enumerate()
        .map(|(n, name)| {
            flow(
                n as u32 + 1,
                name,
                &[("user_message", Some("telegram"), None, "S")],
            )
        })
        .collect();
    let index = SubscriptionIndex::build(&flows);
    assert_eq!(
        reached(&index, "telegram", "bot", "user_message"),
        ["Charlie:S", "Alpha:S", "Bravo:S"]
    );
}

#[test]
fn a_match_carries_its_flow_position_and_interrupt_mode() {
    let mut subs = vec![
        sub(("timer", None, None, "Tick")),
        sub(("user_message", Some("telegram"), Some("bot"), "Barge")),
    ];
    subs[1].interrupt_mode = InterruptMode::Interrupt;
    let index = SubscriptionIndex::build(&[route_of(7, "default", "Agent", "Main", subs)]);
    let m = index.lookup(&key("telegram", "bot"), "user_message");
    let only: Vec<&Match> = m.iter().collect();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].flow_id, FlowId(7));
    assert_eq!(only[0].flow.id, FlowId(7));
    assert_eq!(only[0].position, 1);
    assert_eq!(only[0].interrupt_mode, InterruptMode::Interrupt);
    assert_eq!(only[0].subscription().event.as_str(), "user_message");
    assert_eq!(only[0].skill(), &SkillSelector::Skill(Name::known("Barge")));
}

#[test]
fn accounts_are_isolated() {
    let acme = route_of(
        1,
        "acme",
        "Agent",
        "Main",
        vec![
            sub(("user_message", Some("telegram"), Some("bot"), "AcmeExact")),
            sub(("timer", Some("telegram"), None, "AcmeInteg")),
            sub(("ping", None, None, "AcmeAny")),
        ],
    );
    let default = flow(2, "Main", &[("user_message", None, None, "DefaultAny")]);
    let index = SubscriptionIndex::build(&[acme, default]);
    let in_acme = |i: &str, c: &str, e: &str| {
        let k = ScopeKey::new(Idn::known("acme"), Idn::known(i), Idn::known(c));
        index
            .lookup(&k, e)
            .iter()
            .map(|m| m.flow.flow.account.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(in_acme("telegram", "bot", "user_message"), ["acme"]);
    assert_eq!(in_acme("telegram", "bot", "timer"), ["acme"]);
    assert_eq!(in_acme("sandbox", "sb", "ping"), ["acme"]);
    // The default account sees none of acme's subscriptions, whatever the tier.
    assert_eq!(
        reached(&index, "telegram", "bot", "user_message"),
        ["Main:DefaultAny"]
    );
    assert!(reached(&index, "telegram", "bot", "timer").is_empty());
    assert!(reached(&index, "sandbox", "sb", "ping").is_empty());
    // ... and acme none of the default account's.
    assert!(in_acme("sandbox", "sb", "user_message").is_empty());
    assert!(index
        .lookup_str("other", "telegram", "bot", "user_message")
        .is_empty());
}

#[test]
fn lookup_str_answers_as_lookup() {
    let index = SubscriptionIndex::build(&[
        flow(
            1,
            "Exact",
            &[("user_message", Some("telegram"), Some("bot"), "E")],
        ),
        flow(2, "Integ", &[("user_message", Some("telegram"), None, "I")]),
        flow(3, "Any", &[("user_message", None, None, "A")]),
    ]);
    for (i, c) in [
        ("telegram", "bot"),
        ("telegram", "bot_b"),
        ("sandbox", "sb"),
    ] {
        let by_key: Vec<_> = index
            .lookup(&key(i, c), "user_message")
            .iter()
            .map(|m| (m.flow_id, m.position))
            .collect();
        let by_str: Vec<_> = index
            .lookup_str("default", i, c, "user_message")
            .iter()
            .map(|m| (m.flow_id, m.position))
            .collect();
        assert_eq!(by_key, by_str, "{i}/{c}");
        assert!(!by_key.is_empty());
    }
}

#[test]
fn an_empty_index_matches_nothing() {
    let index = SubscriptionIndex::build(&[]);
    assert!(reached(&index, "telegram", "bot", "user_message").is_empty());
    assert_eq!(index.subscription_count(), 0);
    assert_eq!(index.flow_count(), 0);
    assert_eq!(index.flows().count(), 0);
    let default = SubscriptionIndex::default();
    assert!(default
        .lookup(&key("telegram", "bot"), "user_message")
        .is_empty());
}

#[test]
fn counts_and_finds_its_flows() {
    let a = flow(
        1,
        "Main",
        &[
            ("user_message", Some("telegram"), Some("bot"), "E"),
            ("user_message", Some("telegram"), None, "I"),
            ("timer", None, None, "T"),
        ],
    );
    let b = route_of(
        2,
        "acme",
        "Helper",
        "Side",
        vec![sub(("timer", None, None, "T"))],
    );
    let c = flow(3, "Empty", &[]);
    let index = SubscriptionIndex::build(&[a.clone(), b.clone(), c.clone()]);
    assert_eq!(index.subscription_count(), 4);
    assert_eq!(index.flow_count(), 3);
    let found = index.flow("default", "Agent", "Main").expect("loaded");
    assert!(Arc::ptr_eq(found, &a));
    assert!(Arc::ptr_eq(
        index.flow("acme", "Helper", "Side").unwrap(),
        &b
    ));
    assert!(Arc::ptr_eq(
        index.flow("default", "Agent", "Empty").unwrap(),
        &c
    ));
    assert!(
        index.flow("acme", "Agent", "Main").is_none(),
        "another account"
    );
    assert!(index.flow("default", "Agent", "Missing").is_none());
    assert!(index.flow("default", "Other", "Main").is_none());
    // Strings that are no identifier find nothing instead of failing.
    assert!(index.flow("Not An Account", "Agent", "Main").is_none());
    assert!(index.flow("default", "no spaces allowed", "Main").is_none());
    let mut ids: Vec<_> = index.flows().map(|f| f.id).collect();
    ids.sort();
    assert_eq!(ids, [FlowId(1), FlowId(2), FlowId(3)]);
}

#[test]
fn candidates_list_every_subscription_to_an_event_in_flow_order() {
    let index = SubscriptionIndex::build(&[
        flow(
            1,
            "Main",
            &[
                ("user_message", None, None, "A"),
                ("timer", None, None, "T"),
                ("user_message", Some("telegram"), Some("bot"), "E"),
            ],
        ),
        flow(2, "Other", &[("user_message", Some("sandbox"), None, "S")]),
    ]);
    let (default, event) = (Idn::known("default"), Idn::known("user_message"));
    let found: Vec<_> = index
        .candidates(&default, &event)
        .iter()
        .map(|c| (c.flow.name().to_string(), c.position))
        .collect();
    assert_eq!(
        found,
        [
            ("Main".to_owned(), 0),
            ("Main".to_owned(), 2),
            ("Other".to_owned(), 0)
        ]
    );
    assert!(index.candidates(&Idn::known("acme"), &event).is_empty());
    assert!(index.candidates(&default, &Idn::known("ping")).is_empty());
}
