//! Shared generator of the index benchmarks (`index_lookup`, `index_rebuild`): a synthetic but
//! realistic population of flows and the lookup keys real traffic would produce against it.
//!
//! - 10k connectors: 8 integrations × 1250 connectors each; 500 event idns; account `default`.
//! - Subscriptions come in flows of 10. A quarter have a null scope (half connector-null, half
//!   integration-null); the rest name an exact `(integration, connector)`.
//! - A lookup key is an existing connector and an event some subscription covers for it: pick
//!   a random subscription (so the key mix follows the tiers), keep its scope where it has one,
//!   draw a random connector where it is null.
//!
//! The keys use a *second* set of identifiers (same strings, other allocations), as a connector
//! actor's scope does: the index never gets the pointer-equality shortcut for free.

#![allow(dead_code)] // each bench uses part of this module

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use switchboard::domain::{
    Flow, Idn, InterruptMode, Name, RunnerSpec, SkillSelector, Subscription,
};
use switchboard::routing::index::{FlowId, FlowRoute, ScopeKey};
use switchboard::skill_runner::in_process::FnRunner;
use switchboard::skill_runner::SkillRunner;

pub const INTEGRATIONS: usize = 8;
pub const CONNECTORS_PER_INTEGRATION: usize = 1250;
pub const CONNECTORS: usize = INTEGRATIONS * CONNECTORS_PER_INTEGRATION;
pub const EVENTS: usize = 500;
pub const SUBSCRIPTIONS_PER_FLOW: usize = 10;

const INTEGRATION_NAMES: [&str; INTEGRATIONS] = [
    "telegram",
    "twilio",
    "vapi",
    "newo_chat",
    "newo_sms",
    "newo_voice",
    "sandbox",
    "http",
];

/// The identifiers of the population. Build it twice for separate allocations.
pub struct Vocab {
    pub account: Idn,
    pub integrations: Vec<Idn>,
    /// By connector number `0..CONNECTORS`: connector `n` belongs to integration
    /// `n / CONNECTORS_PER_INTEGRATION`.
    pub connectors: Vec<Idn>,
    pub events: Vec<Idn>,
}

impl Vocab {
    pub fn new() -> Self {
        Vocab {
            account: Idn::known("default"),
            integrations: INTEGRATION_NAMES.iter().map(|s| Idn::known(s)).collect(),
            connectors: (0..CONNECTORS)
                .map(|n| Idn::known(&format!("connector_{:04}", n % CONNECTORS_PER_INTEGRATION)))
                .collect(),
            events: (0..EVENTS)
                .map(|n| Idn::known(&format!("event_{n:03}")))
                .collect(),
        }
    }

    pub fn integration_of(connector: usize) -> usize {
        connector / CONNECTORS_PER_INTEGRATION
    }

    /// One pre-hashed scope per connector, as connector actors hold them.
    pub fn scopes(&self) -> Vec<ScopeKey> {
        (0..CONNECTORS)
            .map(|c| {
                ScopeKey::new(
                    self.account.clone(),
                    self.integrations[Self::integration_of(c)].clone(),
                    self.connectors[c].clone(),
                )
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Exact { connector: u32 },
    Integration { integration: u8 },
    Any,
}

/// One generated subscription, in numbers.
#[derive(Debug, Clone, Copy)]
pub struct SubSpec {
    pub tier: Tier,
    pub event: u16,
}

/// A lookup key: connector number and event number.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub connector: u32,
    pub event: u16,
}

pub fn sub_specs(n: usize, seed: u64) -> Vec<SubSpec> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let event = rng.random_range(0..EVENTS) as u16;
            let tier = match rng.random_range(0..8u8) {
                0 => Tier::Integration {
                    integration: rng.random_range(0..INTEGRATIONS) as u8,
                },
                1 => Tier::Any,
                _ => Tier::Exact {
                    connector: rng.random_range(0..CONNECTORS) as u32,
                },
            };
            SubSpec { tier, event }
        })
        .collect()
}

/// The flows holding `specs`, ten subscriptions each, all on one shared runner.
pub fn flows(vocab: &Vocab, specs: &[SubSpec]) -> Vec<Arc<FlowRoute>> {
    let runner: Arc<dyn SkillRunner> = Arc::new(FnRunner::completing());
    let skill = SkillSelector::Skill(Name::known("Reply"));
    specs
        .chunks(SUBSCRIPTIONS_PER_FLOW)
        .enumerate()
        .map(|(n, chunk)| {
            let subscriptions = chunk
                .iter()
                .map(|s| {
                    let (integration, connector) = match s.tier {
                        Tier::Exact { connector } => (
                            Some(
                                vocab.integrations[Vocab::integration_of(connector as usize)]
                                    .clone(),
                            ),
                            Some(vocab.connectors[connector as usize].clone()),
                        ),
                        Tier::Integration { integration } => {
                            (Some(vocab.integrations[integration as usize].clone()), None)
                        }
                        Tier::Any => (None, None),
                    };
                    Subscription {
                        event: vocab.events[s.event as usize].clone(),
                        integration,
                        connector,
                        skill: skill.clone(),
                        interrupt_mode: InterruptMode::Queue,
                    }
                })
                .collect();
            let agent = Name::known(&format!("Agent{}", n / 10));
            let flow = Name::known(&format!("Flow{}", n % 10));
            Arc::new(FlowRoute::new(
                FlowId(n as u32 + 1),
                Flow {
                    account: vocab.account.clone(),
                    agent,
                    flow,
                    runner: RunnerSpec::Default,
                    invocation_timeout: None,
                    state_fields: Vec::new(),
                    subscriptions,
                },
                runner.clone(),
                Duration::from_secs(30),
            ))
        })
        .collect()
}

/// `n` keys real traffic would produce against `specs`.
pub fn keys(specs: &[SubSpec], n: usize, seed: u64) -> Vec<Key> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let s = specs[rng.random_range(0..specs.len())];
            let connector = match s.tier {
                Tier::Exact { connector } => connector,
                Tier::Integration { integration } => {
                    (integration as usize * CONNECTORS_PER_INTEGRATION
                        + rng.random_range(0..CONNECTORS_PER_INTEGRATION))
                        as u32
                }
                Tier::Any => rng.random_range(0..CONNECTORS) as u32,
            };
            Key {
                connector,
                event: s.event,
            }
        })
        .collect()
}
