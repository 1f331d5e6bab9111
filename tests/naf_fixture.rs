//! The 186 real subscriptions of `tests/fixtures/naf-events.yaml`: every connector they name is
//! created and run, and for every subscription an event that should reach it does, and reaches
//! no flow that did not subscribe to it. The expectation comes from a brute-force oracle over
//! the export, independent of the index.

mod common;

use std::collections::BTreeSet;

use common::{eventually, Harness, PATIENCE};
use switchboard::domain::{Command, Idn, PersonaId};
use switchboard::wire::{SubscriptionDoc, SubscriptionExport};

const FIXTURE: &str = include_str!("fixtures/naf-events.yaml");

/// The state values the fixture's two `skill_idn_from_state` subscriptions read.
const STATE: &[(&str, &str, &str, &str)] = &[
    (
        "ConvoAgent",
        "CAMainFlow",
        "phone_reply_skill",
        "PhoneReplySkill",
    ),
    (
        "ConvoAgent",
        "CAMainFlow",
        "conversation_started_newo_voice_skill",
        "ConversationStartedSkill",
    ),
];

fn specificity(s: &SubscriptionDoc) -> u8 {
    match (&s.integration_idn, &s.connector_idn) {
        (Some(_), Some(_)) => 2,
        (Some(_), None) => 1,
        _ => 0,
    }
}

/// For each flow, its most specific matching subscription (earliest on ties).
fn oracle(
    rows: &[SubscriptionDoc],
    integration: &str,
    connector: &str,
    event: &str,
) -> BTreeSet<(String, String, String)> {
    let mut best: std::collections::BTreeMap<(String, String), (u8, usize)> = Default::default();
    for (i, r) in rows.iter().enumerate() {
        let covers = r.idn == event
            && r.integration_idn
                .as_deref()
                .is_none_or(|x| x == integration)
            && r.connector_idn.as_deref().is_none_or(|x| x == connector);
        if !covers {
            continue;
        }
        let key = (r.agent_idn.clone().unwrap(), r.flow_idn.clone().unwrap());
        let spec = specificity(r);
        let e = best.entry(key).or_insert((spec, i));
        if spec > e.0 {
            *e = (spec, i);
        }
    }
    best.into_iter()
        .map(|((a, f), (_, i))| {
            let r = &rows[i];
            let skill = match r.skill_selector.as_str() {
                "skill_idn" => r.skill_idn.clone().unwrap(),
                _ => {
                    let state = r.state_idn.as_deref().unwrap();
                    STATE.iter().find(|s| s.2 == state).unwrap().3.to_owned()
                }
            };
            (a, f, skill)
        })
        .collect()
}

#[actix_rt::test]
async fn every_subscription_is_reached_and_nothing_else() {
    let h = Harness::start();
    let export = SubscriptionExport::from_yaml(FIXTURE).unwrap();
    assert_eq!(export.events.len(), 186);
    let flows = export.to_flows(&h.account).unwrap();
    h.engine.replace_flows(&h.account, flows).await.unwrap();

    // Create and run every connector the fixture names (internal ones already run).
    let catalog = h.engine.catalog().clone();
    let mut connectors: BTreeSet<(String, String)> = BTreeSet::new();
    for r in &export.events {
        if let (Some(i), Some(c)) = (&r.integration_idn, &r.connector_idn) {
            connectors.insert((i.clone(), c.clone()));
        }
    }
    for (i, c) in &connectors {
        if !catalog.get(i).unwrap().is_internal_connector(c) {
            h.connector(i, c);
        }
    }

    // Set the state fields through the system integration's set_state command.
    let system = Idn::known("system");
    let persona = PersonaId::derive(&h.account, &system, "setup");
    for (agent, flow, field, value) in STATE {
        let c = Command::new(
            h.account.clone(),
            system.clone(),
            system.clone(),
            Idn::known("set_state"),
        )
        .with_argument("idn", *field)
        .with_argument("value", *value)
        .with_argument("agentIdn", *agent)
        .with_argument("flowIdn", *flow)
        .with_argument("scope", "agent");
        h.engine.send_command(c, persona);
    }
    let main_flow = h
        .engine
        .dispatcher()
        .index()
        .flow("default", "ConvoAgent", "CAMainFlow")
        .unwrap()
        .clone();
    for (_, _, field, value) in STATE {
        let field = Idn::known(field);
        eventually(&format!("the state field {field} set"), PATIENCE, || {
            let set = h.engine.state().get(&main_flow.flow, &field, persona);
            std::future::ready((set.as_deref() == Some(*value)).then_some(()))
        })
        .await;
    }

    let catalog = switchboard::catalog::Catalog::builtin();
    let mut checked = 0;
    for (n, r) in export.events.iter().enumerate() {
        let integration = r.integration_idn.as_deref().unwrap_or("system");
        let connector = match (&r.integration_idn, &r.connector_idn) {
            (Some(_), Some(c)) => c.clone(),
            (Some(i), None) => connectors
                .iter()
                .find(|(ci, _)| ci == i)
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| "system".into()),
            _ => "system".into(),
        };
        let mut event = h.event(integration, &connector, &r.idn, &format!("naf-{n}"));
        // With the arguments the catalog requires of it.
        if let Some(i) = catalog.get(integration) {
            for name in i.required_arguments(&r.idn).iter() {
                event = event.with_argument(name, "x");
            }
        }
        let id = event.id;
        h.send(event).await.unwrap_or_else(|e| {
            panic!(
                "row {n} ({integration}/{connector}/{}): refused: {e}",
                r.idn
            )
        });
        let want = oracle(&export.events, integration, &connector, &r.idn);
        let me = (r.agent_idn.clone().unwrap(), r.flow_idn.clone().unwrap());
        assert!(
            want.iter().any(|(a, f, _)| (a, f) == (&me.0, &me.1)),
            "row {n}: the oracle must include the subscribing flow"
        );
        let got: BTreeSet<_> = h.invoked_by(id).into_iter().collect();
        assert_eq!(got, want, "row {n}: {integration}/{connector}/{}", r.idn);
        checked += 1;
    }
    assert_eq!(checked, 186);
    assert!(
        h.dead.is_empty(),
        "no dead letters: {:?}",
        h.dead_letter_codes()
    );
}
