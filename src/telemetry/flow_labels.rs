//! The `agent` and `flow` label values of per-flow series, bounded: the first flows (by name,
//! in the order they are loaded) up to the cap (`limits.flow_series`) get series of their own;
//! the rest share [`OTHER`], so `/metrics` stays bounded however many flows accounts load. A
//! flow removed frees its place for the next one loaded. Per-connector series (a native's
//! request metrics) are bounded the same way, by a set of their own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rustc_hash::FxHashSet;

/// The label value of the flows past the cap.
pub const OTHER: &str = "_other";

/// The default cap (`limits.flow_series`).
pub const DEFAULT_CAP: usize = 200;

/// The flows with series of their own, and how many may have them.
pub struct FlowLabels {
    cap: AtomicUsize,
    labelled: Mutex<Option<FxHashSet<(String, String)>>>,
}

/// The daemon's (metrics are process-wide).
static DAEMON: FlowLabels = FlowLabels::new(DEFAULT_CAP);

/// The same bound for per-connector series (`account`, `connector`): natives' request
/// metrics.
static CONNECTORS: FlowLabels = FlowLabels::new(DEFAULT_CAP);

fn other() -> (String, String) {
    (OTHER.to_owned(), OTHER.to_owned())
}

impl FlowLabels {
    pub const fn new(cap: usize) -> Self {
        FlowLabels {
            cap: AtomicUsize::new(cap),
            labelled: Mutex::new(None),
        }
    }

    /// The process' own.
    pub fn daemon() -> &'static FlowLabels {
        &DAEMON
    }

    /// The process' bound on per-connector series (pairs of account and connector).
    pub fn connectors() -> &'static FlowLabels {
        &CONNECTORS
    }

    /// Sets the cap; flows labelled already keep their labels.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    fn set(&self) -> std::sync::MutexGuard<'_, Option<FxHashSet<(String, String)>>> {
        self.labelled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The label values of flow `agent/flow`: its own names while the cap allows, else
    /// [`OTHER`].
    pub fn labels(&self, agent: &str, flow: &str) -> (String, String) {
        let mut guard = self.set();
        let set = guard.get_or_insert_with(FxHashSet::default);
        let key = (agent.to_owned(), flow.to_owned());
        if set.contains(&key) {
            return key;
        }
        if set.len() < self.cap.load(Ordering::Relaxed) {
            set.insert(key.clone());
            return key;
        }
        other()
    }

    /// The label values of flow `agent/flow` if it was given its own (by
    /// [`FlowLabels::labels`]), else [`OTHER`]; admits nothing (for series of a flow that may be
    /// gone, such as runner retries).
    pub fn known(&self, agent: &str, flow: &str) -> (String, String) {
        let key = (agent.to_owned(), flow.to_owned());
        if self.set().as_ref().is_some_and(|set| set.contains(&key)) {
            return key;
        }
        other()
    }

    /// Flow `agent/flow` is gone: frees its place. Whether it had series of its own (to
    /// remove).
    pub fn release(&self, agent: &str, flow: &str) -> bool {
        self.set()
            .as_mut()
            .is_some_and(|set| set.remove(&(agent.to_owned(), flow.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(agent: &str, flow: &str) -> (String, String) {
        (agent.to_owned(), flow.to_owned())
    }

    /// The audit's case: 300 flows added 29 series each. Past the cap they share one set.
    #[test]
    fn flows_past_the_cap_share_other_and_a_freed_place_is_taken_again() {
        let l = FlowLabels::new(2);
        assert_eq!(l.labels("Agent", "A"), pair("Agent", "A"));
        assert_eq!(l.labels("Agent", "B"), pair("Agent", "B"));
        assert_eq!(l.labels("Agent", "C"), other());
        assert_eq!(l.labels("Agent", "A"), pair("Agent", "A"), "kept");
        assert_eq!(l.known("Agent", "A"), pair("Agent", "A"));
        assert_eq!(l.known("Agent", "Z"), other(), "known admits nothing");
        assert!(l.release("Agent", "A"));
        assert!(!l.release("Agent", "C"), "C had no series of its own");
        assert_eq!(l.labels("Agent", "C"), pair("Agent", "C"));
        l.set_cap(1);
        assert_eq!(l.labels("Agent", "D"), other());
        assert_eq!(
            l.labels("Agent", "B"),
            pair("Agent", "B"),
            "a lower cap takes none away"
        );
    }
}
