//! Explain: which subscriptions an event would reach, and why; or why it reaches none.
//! Reads the same index dispatch uses, plus the admission view of the connector.

use crate::connectors::registry::{ConnectorRegistry, Status};
use crate::domain::{Idn, InterruptMode, SkillSelector};

use super::index::{Matches, ScopeKey, SubscriptionIndex};

/// One subscription the explanation speaks of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedSubscription {
    pub agent: String,
    pub flow: String,
    /// Position in the flow's `events` list.
    pub position: u32,
    pub skill: String,
    pub interrupt_mode: InterruptMode,
    /// `exact`, `connector_null` or `integration_null`.
    pub scope: &'static str,
    pub why: String,
    /// Set when the subscription names a connector that does not exist (yet): it matches
    /// nothing until that connector is created.
    pub warning: Option<String>,
}

/// The full answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// `None` when the event would be admitted; else the reason it would be refused.
    pub refused: Option<String>,
    pub matched: Vec<ExplainedSubscription>,
    pub not_matched: Vec<ExplainedSubscription>,
}

fn scope_name(tier: u8) -> &'static str {
    match tier {
        2 => "exact",
        1 => "connector_null",
        _ => "integration_null",
    }
}

fn skill_text(s: &SkillSelector) -> String {
    match s {
        SkillSelector::Skill(n) => n.to_string(),
        SkillSelector::FromState(f) => format!("state:{f}"),
    }
}

/// The warning for a subscription of `account` naming a connector that does not exist.
pub fn absent_connector(
    registry: &ConnectorRegistry,
    account: &Idn,
    sub: &crate::domain::Subscription,
) -> Option<String> {
    let (Some(i), Some(c)) = (&sub.integration, &sub.connector) else {
        return None;
    };
    registry
        .find(account, i.as_str(), c.as_str())
        .is_none()
        .then(|| {
            format!(
                "no connector {i}/{c} (yet): this subscription matches nothing until it is created"
            )
        })
}

/// Explains an event `event` on `(integration, connector)` of `account`.
pub fn explain(
    index: &SubscriptionIndex,
    registry: &ConnectorRegistry,
    account: &Idn,
    integration: &Idn,
    connector: &Idn,
    event: &Idn,
) -> Explanation {
    let refused = match registry.catalog().get(integration.as_str()) {
        None => Some(format!("unknown integration {integration}")),
        Some(i) if !i.emits(event.as_str()) => Some(format!(
            "integration {integration} does not declare event {event}"
        )),
        Some(_) => match registry.find(account, integration.as_str(), connector.as_str()) {
            None => Some(format!("no connector {integration}/{connector}")),
            Some(c) if c.status == Status::Stopped => {
                Some(format!("connector {integration}/{connector} is stopped"))
            }
            Some(_) => None,
        },
    };
    let scope = ScopeKey::new(account.clone(), integration.clone(), connector.clone());
    let matches: Matches<'_> = index.lookup(&scope, event.as_str());
    let winners: Vec<_> = matches.iter().map(|m| (m.flow.id, m.position)).collect();
    let mut matched = Vec::new();
    let mut not_matched = Vec::new();
    for c in index.candidates(account, event) {
        let sub = &c.flow.flow.subscriptions[c.position as usize];
        let mut e = ExplainedSubscription {
            agent: c.flow.flow.agent.to_string(),
            flow: c.flow.flow.flow.to_string(),
            position: c.position,
            skill: skill_text(&sub.skill),
            interrupt_mode: sub.interrupt_mode,
            scope: scope_name(sub.specificity()),
            why: String::new(),
            warning: absent_connector(registry, account, sub),
        };
        if winners.contains(&(c.flow.id, c.position)) {
            e.why = match sub.specificity() {
                2 => format!("exact scope {integration}/{connector}"),
                1 => format!("connector null: any connector of {integration}"),
                _ => "integration null: any integration".to_owned(),
            };
            matched.push(e);
        } else if sub.matches(integration.as_str(), connector.as_str(), event.as_str()) {
            let winner = winners
                .iter()
                .find(|(f, _)| *f == c.flow.id)
                .map(|(_, p)| *p)
                .unwrap_or_default();
            e.why = format!("matches, but the flow's events[{winner}] is more specific or earlier");
            not_matched.push(e);
        } else {
            e.why = format!(
                "scope {}/{} does not cover {integration}/{connector}",
                sub.integration.as_ref().map_or("*", |i| i.as_str()),
                sub.connector.as_ref().map_or("*", |c| c.as_str()),
            );
            not_matched.push(e);
        }
    }
    Explanation {
        refused,
        matched,
        not_matched,
    }
}
