//! The partition key of a persona-addressed event the daemon puts on a partitioned events
//! stream (a timer firing): its persona's actor's, as the adapter computes it for the
//! persona's own events (`subjects::partition_key` of `actor.external_id`), so the firing lands
//! in the partition of the daemon that owns the persona. The actor is read from the store's
//! `actors` table (written when the persona's first session started) on a blocking thread, and
//! kept in a small bounded cache.

use std::sync::Mutex;

use rustc_hash::FxHashMap;

use super::subjects::partition_key;
use crate::domain::{Idn, PersonaId};
use crate::store::{Store, StoreError};

/// Personas whose keys are kept, at most: past it the cache starts again.
const CACHED: usize = 65_536;

pub struct PersonaKeys {
    store: Store,
    cache: Mutex<FxHashMap<(Idn, PersonaId), String>>,
}

impl PersonaKeys {
    pub fn new(store: Store) -> PersonaKeys {
        PersonaKeys {
            store,
            cache: Mutex::default(),
        }
    }

    /// The partition key of `persona` in `account`.
    pub async fn key(&self, account: &Idn, persona: PersonaId) -> Result<String, StoreError> {
        let cached = (account.clone(), persona);
        if let Some(key) = self.cache.lock().expect("cache lock").get(&cached) {
            return Ok(key.clone());
        }
        let (store, a) = (self.store.clone(), account.to_string());
        let external_id = tokio::task::spawn_blocking(move || store.actor_of_persona(&a, &persona))
            .await
            .map_err(|e| StoreError::Sqlite(format!("a blocking read failed: {e}")))??;
        let Some(external_id) = external_id else {
            // No actor for the persona (a timer set with a `personaId` argument naming one the
            // store never saw): the empty key's partition, as for any event without an actor
            // (`StreamIntake::subject`). Not cached: its actor may be recorded later.
            return Ok(partition_key(""));
        };
        let key = partition_key(&external_id);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= CACHED {
            cache.clear();
        }
        cache.insert(cached, key.clone());
        Ok(key)
    }
}
