//! Flow state shared by the daemons of a partitioned events stream: a persona's partition
//! moves between daemons, so what its skills set (`set_state`) must be where it goes next.
//! Each value a daemon sets is put, besides its own store's journal, into a key-value bucket
//! (`transport.nats.state_bucket`; history 1, entries kept the flow state's TTL); every daemon
//! watches the bucket from its start (history first, before it takes partitions) and applies
//! what others set. Values are a last-writer-wins register by the time they were set (ties
//! by writer): every daemon converges on the same value whatever order the watch brings.
//! A daemon whose partition was taken while it ran writes nothing: the command stage fences
//! an invocation whose event was revoked before its `set_state` is carried out.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::NatsError;
use crate::domain::{Idn, Name, PersonaId};
use crate::flow_instance::state::{StateEntry, StateJournal, StateOwner, StateStore};
use crate::telemetry::queue;

/// Values set here waiting to be put into the bucket.
const CAPACITY: usize = 4096;
/// How long a start waits for the bucket's history before it goes on (and keeps applying).
const CATCH_UP: Duration = Duration::from_secs(10);

/// A value as the bucket holds it (`v: 1`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct StateWire {
    v: u8,
    account: String,
    agent: String,
    flow: String,
    field: String,
    /// The persona whose value it is; `None`: the agent's.
    persona: Option<uuid::Uuid>,
    value: String,
    set_at_ms: i64,
    /// The member id of the daemon that set it.
    writer: String,
}

impl StateWire {
    fn new(e: &StateEntry, writer: &str) -> StateWire {
        StateWire {
            v: 1,
            account: e.account.to_string(),
            agent: e.agent.to_string(),
            flow: e.flow.to_string(),
            field: e.field.to_string(),
            persona: match e.owner {
                StateOwner::User(p) => Some(p.0),
                StateOwner::Agent => None,
            },
            value: e.value.clone(),
            set_at_ms: e.set_at_ms,
            writer: writer.to_owned(),
        }
    }

    fn entry(self) -> Option<StateEntry> {
        Some(StateEntry {
            account: Idn::parse("account", &self.account).ok()?,
            agent: Name::parse("agent", &self.agent).ok()?,
            flow: Name::parse("flow", &self.flow).ok()?,
            field: Idn::parse("field", &self.field).ok()?,
            owner: match self.persona {
                Some(p) => StateOwner::User(PersonaId(p)),
                None => StateOwner::Agent,
            },
            value: self.value,
            set_at_ms: self.set_at_ms,
        })
    }
}

/// The bucket's key of a value: a derived id of whose field of which flow.
fn key(e: &StateEntry) -> String {
    let owner = match e.owner {
        StateOwner::User(p) => *p.0.as_bytes(),
        StateOwner::Agent => [0; 16],
    };
    let id = crate::domain::derived_id::derive(
        b"state",
        &[
            e.account.as_str().as_bytes(),
            e.agent.as_str().as_bytes(),
            e.flow.as_str().as_bytes(),
            e.field.as_str().as_bytes(),
            &owner,
        ],
    );
    format!("s.{}", id.simple())
}

/// Opens (or creates) the state bucket: history 1, entries kept `ttl`.
pub async fn bucket(
    js: &jetstream::Context,
    name: &str,
    ttl: Duration,
    replicas: usize,
) -> Result<kv::Store, NatsError> {
    let config = kv::Config {
        bucket: name.to_owned(),
        description: "switchboard's shared flow state".to_owned(),
        history: 1,
        max_age: ttl,
        num_replicas: replicas,
        ..Default::default()
    };
    super::buckets::open(js, config, "state bucket").await
}

/// The daemon's side of the shared state: its journal (the store's, then the bucket) and the
/// watch that applies what the others set.
pub struct SharedState {
    store: kv::Store,
    me: String,
    journal: Arc<SharedJournal>,
}

/// Journals a value to the daemon's store, then queues it for the bucket.
pub struct SharedJournal {
    local: Arc<dyn StateJournal>,
    tx: mpsc::Sender<(String, StateWire)>,
    me: String,
}

impl StateJournal for SharedJournal {
    fn set(&self, e: &StateEntry) {
        self.local.set(e);
        if self
            .tx
            .try_send((key(e), StateWire::new(e, &self.me)))
            .is_err()
        {
            // Kept in this daemon's store; the others miss it until it is set again.
            queue::full(queue::names::STATE_SHARE);
            warn_full();
        }
    }
}

fn warn_full() {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp();
    if LAST.swap(now, Ordering::Relaxed) < now - 10 {
        tracing::warn!(
            capacity = CAPACITY,
            "flow state: the queue to the state bucket is full; a value stays on this daemon"
        );
    }
}

impl SharedState {
    /// The shared state on `store` for member `me`; values are journalled to `local` first.
    pub fn new(store: kv::Store, me: String, local: Arc<dyn StateJournal>) -> SharedState {
        let (tx, rx) = queue::bounded(queue::names::STATE_SHARE, CAPACITY);
        tokio::spawn(put_all(store.clone(), rx));
        SharedState {
            store,
            journal: Arc::new(SharedJournal {
                local,
                tx,
                me: me.clone(),
            }),
            me,
        }
    }

    /// The journal the flow state store writes to.
    pub fn journal(&self) -> Arc<dyn StateJournal> {
        self.journal.clone()
    }

    /// Applies the bucket's values to `state`, and from then on what the others set; answers
    /// once the history is applied (or after [`CATCH_UP`], the watch going on).
    pub async fn follow(&self, state: Arc<StateStore>) {
        let (caught_up, mut done) = tokio::sync::watch::channel(false);
        tokio::spawn(watch(self.store.clone(), self.me.clone(), state, caught_up));
        if tokio::time::timeout(CATCH_UP, done.wait_for(|c| *c))
            .await
            .is_err()
        {
            tracing::warn!(
                "flow state: the state bucket's history was not read within {CATCH_UP:?}; going on, applying it as it comes"
            );
        }
    }
}

/// Puts each queued value into the bucket, retrying one until it is stored.
async fn put_all(store: kv::Store, mut rx: mpsc::Receiver<(String, StateWire)>) {
    while let Some((k, w)) = rx.recv().await {
        let bytes = Bytes::from(rmp_serde::to_vec_named(&w).expect("a value encodes"));
        let mut backoff = Duration::from_millis(50);
        while let Err(err) = store.put(&k, bytes.clone()).await {
            tracing::debug!(error = %err, "flow state: putting a value failed; again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Watches the bucket from its first revision, applying others' values to `state`; a broken
/// watch starts again after the last revision seen. Says `caught_up` once the history is in.
async fn watch(
    store: kv::Store,
    me: String,
    state: Arc<StateStore>,
    caught_up: tokio::sync::watch::Sender<bool>,
) {
    if store.status().await.is_ok_and(|s| s.values() == 0) {
        let _ = caught_up.send(true);
    }
    let mut next = 1;
    loop {
        let mut w = match store.watch_all_from_revision(next).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "flow state: watching the state bucket failed; again soon");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(entry) = w.next().await {
            let Ok(entry) = entry else { break };
            next = entry.revision + 1;
            if entry.operation == kv::Operation::Put {
                apply(&entry.value, &me, &state);
            }
            if entry.seen_current || entry.delta == 0 {
                let _ = caught_up.send(true);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies one value of the bucket unless this daemon set it (it holds it already).
fn apply(bytes: &[u8], me: &str, state: &StateStore) {
    let Ok(w) = rmp_serde::from_slice::<StateWire>(bytes) else {
        tracing::debug!("flow state: a value in the state bucket does not decode; skipped");
        return;
    };
    if w.v != 1 || w.writer == me {
        return;
    }
    if let Some(e) = w.entry() {
        state.apply(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(owner: StateOwner) -> StateEntry {
        StateEntry {
            account: Idn::known("default"),
            agent: Name::parse("agent", "Bot").unwrap(),
            flow: Name::parse("flow", "Main").unwrap(),
            field: Idn::known("mood"),
            owner,
            value: "sunny".into(),
            set_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_value_round_trips_through_its_wire_form() {
        for owner in [
            StateOwner::Agent,
            StateOwner::User(PersonaId(uuid::Uuid::now_v7())),
        ] {
            let e = entry(owner);
            let w = StateWire::new(&e, "member-a");
            let bytes = rmp_serde::to_vec_named(&w).unwrap();
            let back: StateWire = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, w);
            assert_eq!(back.entry(), Some(e));
        }
    }

    #[test]
    fn keys_name_whose_field_of_which_flow_in_the_bucket_s_charset() {
        let p = PersonaId(uuid::Uuid::now_v7());
        let (user, agent) = (
            key(&entry(StateOwner::User(p))),
            key(&entry(StateOwner::Agent)),
        );
        assert_ne!(user, agent);
        assert_eq!(user, key(&entry(StateOwner::User(p))), "stable");
        assert!(user.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
    }
}
