//! The subscription index: `(account, integration, connector, event)` → the subscriptions that
//! match, precomputed so a lookup is one hash probe in the common case and at most three
//! (exact scope, then connector-null, then integration-null), whatever the number of
//! subscriptions.
//!
//! Each exact entry also points at the broader tiers for its event, so a hit on the exact key
//! has everything. Precedence inside a flow is resolved while iterating: a flow present in a
//! more specific tier is skipped in the broader ones, and inside one tier the first
//! subscription of a flow (in flow order) was kept at build time.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};
use smallvec::SmallVec;

use crate::domain::{Flow, Idn, InterruptMode, Name, SkillSelector, Subscription};
pub use crate::domain::{FlowId, ScopeKey};
use crate::invocation::SkillRunner;
use crate::telemetry::handles::FlowMetrics;

/// A flow as the engine runs it: the definition plus its resolved runner and deadline.
pub struct FlowRoute {
    pub id: FlowId,
    pub flow: Flow,
    pub runner: Arc<dyn SkillRunner>,
    pub invocation_timeout: Duration,
    pub metrics: FlowMetrics,
    /// `(account, agent, flow)` encoded once for the invocation ids of this flow.
    pub id_parts: Box<[u8]>,
}

impl std::fmt::Debug for FlowRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRoute")
            .field("id", &self.id)
            .field("agent", &self.flow.agent)
            .field("flow", &self.flow.flow)
            .finish()
    }
}

impl FlowRoute {
    pub fn new(
        id: FlowId,
        flow: Flow,
        runner: Arc<dyn SkillRunner>,
        invocation_timeout: Duration,
    ) -> Self {
        FlowRoute {
            id,
            invocation_timeout,
            metrics: FlowMetrics::new(flow.agent.as_str(), flow.flow.as_str()),
            id_parts: crate::domain::derived_id::encode(&[
                flow.account.as_str().as_bytes(),
                flow.agent.as_str().as_bytes(),
                flow.flow.as_str().as_bytes(),
            ]),
            runner,
            flow,
        }
    }

    pub fn agent(&self) -> &Name {
        &self.flow.agent
    }

    pub fn name(&self) -> &Name {
        &self.flow.flow
    }
}

/// One matching subscription: which flow, which of its subscriptions.
#[derive(Debug, Clone)]
pub struct Match {
    /// The flow's id, beside it so precedence checks do not chase the pointer.
    pub flow_id: FlowId,
    pub flow: Arc<FlowRoute>,
    /// Position of the subscription in the flow's `events` list.
    pub position: u32,
    pub interrupt_mode: InterruptMode,
}

impl Match {
    pub fn subscription(&self) -> &Subscription {
        &self.flow.flow.subscriptions[self.position as usize]
    }

    pub fn skill(&self) -> &SkillSelector {
        &self.subscription().skill
    }
}

fn hash_str(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

fn mix(parts: &[u64]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    for p in parts {
        h.write_u64(*p);
    }
    h.finish()
}

/// Marks a null scope in the hash of a broader tier.
const ANY: u64 = 0x9e37_79b9_7f4a_7c15;

struct AnyEntry {
    hash: u64,
    account: Idn,
    event: Idn,
    own: Arc<[Match]>,
}

struct IntegrationEntry {
    hash: u64,
    account: Idn,
    integration: Idn,
    event: Idn,
    own: Arc<[Match]>,
    any: Option<Arc<[Match]>>,
}

struct ExactEntry {
    hash: u64,
    account: Idn,
    integration: Idn,
    connector: Idn,
    event: Idn,
    /// Usually one subscription: held inline.
    own: SmallVec<[Match; 1]>,
    integration_tier: Option<Arc<[Match]>>,
    any: Option<Arc<[Match]>>,
}

/// The key hash of each tier, from the hashes of its parts; a null scope hashes as [`ANY`].
fn exact_hash(account: u64, integration: u64, connector: u64, event: u64) -> u64 {
    mix(&[account, integration, connector, event])
}

fn integration_hash(account: u64, integration: u64, event: u64) -> u64 {
    mix(&[account, integration, ANY, event])
}

fn any_hash(account: u64, event: u64) -> u64 {
    mix(&[account, ANY, ANY, event])
}

impl ExactEntry {
    fn is(&self, hash: u64, [account, integration, connector]: [&str; 3], event: &str) -> bool {
        self.hash == hash
            && self.event.as_str() == event
            && self.connector.as_str() == connector
            && self.integration.as_str() == integration
            && self.account.as_str() == account
    }
}

impl IntegrationEntry {
    fn is(&self, hash: u64, account: &str, integration: &str, event: &str) -> bool {
        self.hash == hash
            && self.event.as_str() == event
            && self.integration.as_str() == integration
            && self.account.as_str() == account
    }
}

impl AnyEntry {
    fn is(&self, hash: u64, account: &str, event: &str) -> bool {
        self.hash == hash && self.event.as_str() == event && self.account.as_str() == account
    }
}

/// The subscriptions matching one event, by tier. Iterate with [`Matches::iter`], which
/// yields each flow once, by its most specific subscription.
#[derive(Clone, Copy, Default)]
pub struct Matches<'a> {
    pub exact: &'a [Match],
    pub integration: &'a [Match],
    pub any: &'a [Match],
}

impl<'a> Matches<'a> {
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.integration.is_empty() && self.any.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a Match> + 'a {
        let (exact, integration, any) = (self.exact, self.integration, self.any);
        let has = |tier: &[Match], m: &Match| tier.iter().any(|x| x.flow_id == m.flow_id);
        exact
            .iter()
            .chain(integration.iter().filter(move |m| !has(exact, m)))
            .chain(
                any.iter()
                    .filter(move |m| !has(exact, m) && !has(integration, m)),
            )
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

/// A subscription as explain sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub flow: Arc<FlowRoute>,
    pub position: u32,
}

/// The whole index: immutable once built; swapped atomically by the router.
#[derive(Default)]
pub struct SubscriptionIndex {
    exact: HashTable<ExactEntry>,
    integration: HashTable<IntegrationEntry>,
    any: HashTable<AnyEntry>,
    flows: FxHashMap<(Idn, Name, Name), Arc<FlowRoute>>,
    /// The flows in the order they were given (explain lists candidates in this order).
    routes: Vec<Arc<FlowRoute>>,
    /// Every subscription by `(account, event)`, for explain: built on the first explain, not
    /// on every rebuild (it is off the hot path and as large as the index itself).
    by_event: OnceLock<FxHashMap<(Idn, Idn), Vec<Candidate>>>,
    subscriptions: usize,
    /// Tells this index from every other built in this process (0: an empty default one).
    generation: u64,
}

/// The generation of the next index built.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

#[cfg(test)]
thread_local! {
    /// Lookups made on this thread (tests count them: one per event).
    pub(crate) static LOOKUPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn push_first_per_flow(list: &mut SmallVec<[Match; 1]>, m: Match) {
    // Flows are added one after another, so a flow's earlier entry is at the end.
    if list.last().is_some_and(|l| l.flow_id == m.flow_id) {
        return;
    }
    list.push(m);
}

/// A broader-tier entry while the index is being built.
struct Gathering<K> {
    hash: u64,
    key: K,
    list: SmallVec<[Match; 1]>,
}

/// Finds or adds the entry `key` (hashed `hash`) of `table` and adds `m` to its list.
fn gather<K: PartialEq>(table: &mut HashTable<Gathering<K>>, hash: u64, key: K, m: Match) {
    match table.entry(hash, |x| x.hash == hash && x.key == key, |x| x.hash) {
        hashbrown::hash_table::Entry::Occupied(mut o) => {
            push_first_per_flow(&mut o.get_mut().list, m)
        }
        hashbrown::hash_table::Entry::Vacant(v) => {
            v.insert(Gathering {
                hash,
                key,
                list: smallvec::smallvec![m],
            });
        }
    }
}

impl SubscriptionIndex {
    /// Builds the index of `flows`. Cost is linear in the number of subscriptions: one pass
    /// puts every subscription straight into the table of its tier (exact entries hold one
    /// match inline, the common case), a second links each exact entry to its broader tiers.
    pub fn build(flows: &[Arc<FlowRoute>]) -> SubscriptionIndex {
        let mut exact: HashTable<ExactEntry> = HashTable::new();
        let mut integ: HashTable<Gathering<(Idn, Idn, Idn)>> = HashTable::new();
        let mut any: HashTable<Gathering<(Idn, Idn)>> = HashTable::new();
        let mut flow_map = FxHashMap::default();
        let mut subscriptions = 0;
        for route in flows {
            let f = &route.flow;
            flow_map.insert(
                (f.account.clone(), f.agent.clone(), f.flow.clone()),
                route.clone(),
            );
            let h_account = hash_str(f.account.as_str());
            for (pos, sub) in f.subscriptions.iter().enumerate() {
                subscriptions += 1;
                let m = Match {
                    flow_id: route.id,
                    flow: route.clone(),
                    position: pos as u32,
                    interrupt_mode: sub.interrupt_mode,
                };
                let h_event = hash_str(sub.event.as_str());
                match (&sub.integration, &sub.connector) {
                    (Some(i), Some(c)) => {
                        let h = exact_hash(
                            h_account,
                            hash_str(i.as_str()),
                            hash_str(c.as_str()),
                            h_event,
                        );
                        let (a, e) = (&f.account, &sub.event);
                        let parts = [a.as_str(), i.as_str(), c.as_str()];
                        match exact.entry(h, |x| x.is(h, parts, e.as_str()), |x| x.hash) {
                            hashbrown::hash_table::Entry::Occupied(mut o) => {
                                push_first_per_flow(&mut o.get_mut().own, m)
                            }
                            hashbrown::hash_table::Entry::Vacant(v) => {
                                v.insert(ExactEntry {
                                    hash: h,
                                    account: a.clone(),
                                    integration: i.clone(),
                                    connector: c.clone(),
                                    event: e.clone(),
                                    own: smallvec::smallvec![m],
                                    integration_tier: None,
                                    any: None,
                                });
                            }
                        }
                    }
                    (Some(i), None) => {
                        let h = integration_hash(h_account, hash_str(i.as_str()), h_event);
                        let key = (f.account.clone(), i.clone(), sub.event.clone());
                        gather(&mut integ, h, key, m);
                    }
                    (None, _) => {
                        let h = any_hash(h_account, h_event);
                        gather(&mut any, h, (f.account.clone(), sub.event.clone()), m);
                    }
                }
            }
        }

        let mut index = SubscriptionIndex {
            flows: flow_map,
            routes: flows.to_vec(),
            subscriptions,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            ..Default::default()
        };
        for g in any {
            let (a, e) = g.key;
            index.any.insert_unique(
                g.hash,
                AnyEntry {
                    hash: g.hash,
                    account: a,
                    event: e,
                    own: g.list.into_iter().collect(),
                },
                |x| x.hash,
            );
        }
        for g in integ {
            let (a, i, e) = g.key;
            let h = any_hash(hash_str(a.as_str()), hash_str(e.as_str()));
            let any = index
                .any
                .find(h, |x| x.is(h, a.as_str(), e.as_str()))
                .map(|x| x.own.clone());
            index.integration.insert_unique(
                g.hash,
                IntegrationEntry {
                    hash: g.hash,
                    account: a,
                    integration: i,
                    event: e,
                    own: g.list.into_iter().collect(),
                    any,
                },
                |x| x.hash,
            );
        }
        if !(index.integration.is_empty() && index.any.is_empty()) {
            let (integration, any_tier) = (&index.integration, &index.any);
            for x in exact.iter_mut() {
                let (a, i, e) = (x.account.as_str(), x.integration.as_str(), x.event.as_str());
                let (h_account, h_event) = (hash_str(a), hash_str(e));
                let h = integration_hash(h_account, hash_str(i), h_event);
                x.integration_tier = integration
                    .find(h, |t| t.is(h, a, i, e))
                    .map(|t| t.own.clone());
                let h = any_hash(h_account, h_event);
                x.any = any_tier.find(h, |t| t.is(h, a, e)).map(|t| t.own.clone());
            }
        }
        index.exact = exact;
        index
    }

    /// The subscriptions an event named `event` on the scope `key` matches.
    #[inline]
    pub fn lookup<'a>(&'a self, key: &ScopeKey, event: &str) -> Matches<'a> {
        self.lookup_hashed(
            key.hashes(),
            [
                key.account.as_str(),
                key.integration.as_str(),
                key.connector.as_str(),
            ],
            event,
        )
    }

    /// The same lookup for a caller holding plain strings: hashes them, clones nothing.
    #[inline]
    pub fn lookup_str<'a>(
        &'a self,
        account: &str,
        integration: &str,
        connector: &str,
        event: &str,
    ) -> Matches<'a> {
        self.lookup_hashed(
            [
                hash_str(account),
                hash_str(integration),
                hash_str(connector),
            ],
            [account, integration, connector],
            event,
        )
    }

    #[inline]
    fn lookup_hashed<'a>(
        &'a self,
        h3: [u64; 3],
        [account, integration, connector]: [&str; 3],
        event: &str,
    ) -> Matches<'a> {
        #[cfg(test)]
        LOOKUPS.with(|n| n.set(n.get() + 1));
        let [h_account, h_integration, h_connector] = h3;
        let h_event = hash_str(event);
        let h = exact_hash(h_account, h_integration, h_connector, h_event);
        if let Some(e) = self
            .exact
            .find(h, |x| x.is(h, [account, integration, connector], event))
        {
            return Matches {
                exact: &e.own,
                integration: e.integration_tier.as_deref().unwrap_or_default(),
                any: e.any.as_deref().unwrap_or_default(),
            };
        }
        let h = integration_hash(h_account, h_integration, h_event);
        if let Some(e) = self
            .integration
            .find(h, |x| x.is(h, account, integration, event))
        {
            return Matches {
                exact: &[],
                integration: &e.own,
                any: e.any.as_deref().unwrap_or_default(),
            };
        }
        let h = any_hash(h_account, h_event);
        match self.any.find(h, |x| x.is(h, account, event)) {
            Some(e) => Matches {
                exact: &[],
                integration: &[],
                any: &e.own,
            },
            None => Matches::default(),
        }
    }

    /// The flow `(account, agent, flow)`, if loaded.
    pub fn flow(&self, account: &str, agent: &str, flow: &str) -> Option<&Arc<FlowRoute>> {
        // Small, off the hot path: a linear-free lookup needs owned keys, so build them.
        let key = (
            Idn::parse("account", account).ok()?,
            Name::parse("agent", agent).ok()?,
            Name::parse("flow", flow).ok()?,
        );
        self.flows.get(&key)
    }

    pub fn flows(&self) -> impl Iterator<Item = &Arc<FlowRoute>> {
        self.flows.values()
    }

    /// Every subscription of `account` to `event`, whatever its scope (for explain). The
    /// first call on an index gathers them all.
    pub fn candidates(&self, account: &Idn, event: &Idn) -> &[Candidate] {
        self.by_event
            .get_or_init(|| {
                let mut by_event: FxHashMap<(Idn, Idn), Vec<Candidate>> = FxHashMap::default();
                for route in &self.routes {
                    for (pos, sub) in route.flow.subscriptions.iter().enumerate() {
                        by_event
                            .entry((route.flow.account.clone(), sub.event.clone()))
                            .or_default()
                            .push(Candidate {
                                flow: route.clone(),
                                position: pos as u32,
                            });
                    }
                }
                by_event
            })
            .get(&(account.clone(), event.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Which index this is: equal generations are the same index (matches found in one hold
    /// in the other).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }
}

#[cfg(test)]
mod tests;
