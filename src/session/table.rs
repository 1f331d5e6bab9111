//! Sessions: one conversation of a persona on a connector. The first event from an actor on a
//! connector starts one; `conversation_ended` or idleness ends it.

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

use super::clock::SessionClock;
use crate::domain::ScopeKey;
use crate::domain::{Idn, PersonaId};
use crate::telemetry::handles;

#[derive(Debug)]
struct Session {
    id: Uuid,
    integration: Idn,
    connector: Idn,
    channel: &'static str,
    started_at: chrono::DateTime<chrono::Utc>,
    /// When last seen, shared with the connector actor that touches it (see [`SessionClock`]).
    clock: Arc<SessionClock>,
    /// Its connector's own idle timeout (`session_timeout_seconds` /
    /// `conversation_timeout_seconds`), over the daemon's.
    idle: Option<Duration>,
}

/// A session as operations see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub id: Uuid,
    pub account: Idn,
    pub persona: PersonaId,
    pub integration: Idn,
    pub connector: Idn,
    pub channel: &'static str,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// A session that ended, for the `session_ended` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub id: Uuid,
    pub account: Idn,
    pub persona: PersonaId,
    pub integration: Idn,
    pub connector: Idn,
}

/// Where session starts and ends are recorded (the durable store), off the hot path.
pub trait SessionJournal: Send + Sync + 'static {
    fn started(&self, session: &SessionView, external_id: Option<&str>);
    fn ended(&self, id: Uuid, reason: &'static str);
}

/// Live sessions by `(account, persona)`.
pub struct SessionTable {
    live: DashMap<(Idn, PersonaId), SmallVec<[Session; 1]>, FxBuildHasher>,
    journal: Option<std::sync::Arc<dyn SessionJournal>>,
    base: Instant,
    /// Every session end, with its reason, for whoever listens (session-scoped timers).
    ends: tokio::sync::broadcast::Sender<(Uuid, &'static str)>,
}

/// Session ends a listener may lag behind by before it misses some (it then learns of them
/// otherwise: a session-scoped timer checks its session when it falls due).
const ENDS_BUFFER: usize = 4096;

impl Default for SessionTable {
    fn default() -> Self {
        SessionTable::new(None)
    }
}

impl SessionTable {
    pub fn new(journal: Option<std::sync::Arc<dyn SessionJournal>>) -> Self {
        SessionTable {
            live: DashMap::with_hasher(FxBuildHasher),
            journal,
            base: Instant::now(),
            ends: crate::telemetry::queue::broadcast(
                crate::telemetry::queue::names::SESSION_ENDS,
                ENDS_BUFFER,
            ),
        }
    }

    /// Session ends from now on: `(session id, reason)`.
    pub fn subscribe_ends(&self) -> tokio::sync::broadcast::Receiver<(Uuid, &'static str)> {
        self.ends.subscribe()
    }

    /// Whether session `id` of `persona` is live.
    pub fn is_live(&self, account: &Idn, persona: PersonaId, id: Uuid) -> bool {
        self.live
            .get(&(account.clone(), persona))
            .is_some_and(|l| l.iter().any(|s| s.id == id && !s.clock.ended()))
    }

    /// `t` as a session clock reading: nanoseconds since the table's base.
    pub fn stamp(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Puts back a session that was live when the daemon stopped; it counts as seen now.
    pub fn restore(&self, s: SessionView, now: Instant) {
        let mut entry = self.live.entry((s.account.clone(), s.persona)).or_default();
        if entry.iter().any(|x| x.id == s.id) {
            return;
        }
        handles::sessions(s.channel).0.increment(1.0);
        entry.push(Session {
            id: s.id,
            integration: s.integration,
            connector: s.connector,
            channel: s.channel,
            started_at: s.started_at,
            clock: Arc::new(SessionClock::new(self.stamp(now))),
            // Restored: the daemon's idle time until it ends.
            idle: None,
        });
    }

    /// Notes activity of `persona` on `scope`; returns the new session's id if one started,
    /// and the session's clock (connector actors keep it, see [`super::seen::SeenSessions`]).
    pub fn touch(
        &self,
        scope: &ScopeKey,
        channel: &'static str,
        persona: PersonaId,
        now: Instant,
        external_id: Option<&str>,
        idle: Option<Duration>,
    ) -> (Option<Uuid>, Arc<SessionClock>) {
        let stamp = self.stamp(now);
        let same =
            |s: &Session| s.connector == scope.connector && s.integration == scope.integration;
        // The common case, an event of a live session: a read lock on its shard, no key clone.
        let key = (scope.account.clone(), persona);
        if let Some(list) = self.live.get(&key) {
            if let Some(s) = list.iter().find(|s| same(s)) {
                if s.clock.touch(stamp) {
                    return (None, s.clock.clone());
                }
            }
        }
        let mut entry = self.live.entry(key).or_default();
        // Ended sessions leave the table under this write lock; one still here is live.
        if let Some(s) = entry.iter().find(|s| same(s)) {
            if s.clock.touch(stamp) {
                return (None, s.clock.clone());
            }
        }
        let id = Uuid::now_v7();
        let started_at = chrono::Utc::now();
        let clock = Arc::new(SessionClock::new(stamp));
        entry.push(Session {
            id,
            integration: scope.integration.clone(),
            connector: scope.connector.clone(),
            channel,
            started_at,
            clock: clock.clone(),
            idle,
        });
        drop(entry);
        if let Some(j) = &self.journal {
            j.started(
                &SessionView {
                    id,
                    account: scope.account.clone(),
                    persona,
                    integration: scope.integration.clone(),
                    connector: scope.connector.clone(),
                    channel,
                    started_at,
                },
                external_id,
            );
        }
        let (active, started) = handles::sessions(channel);
        active.increment(1.0);
        started.increment(1);
        (Some(id), clock)
    }

    /// Ends every session of `persona` on `integration` (a conversation ended).
    pub fn end_integration(
        &self,
        account: &Idn,
        persona: PersonaId,
        integration: &Idn,
    ) -> Vec<Uuid> {
        let key = (account.clone(), persona);
        let mut ended = Vec::new();
        if let Some(mut list) = self.live.get_mut(&key) {
            list.retain(|s| {
                if &s.integration == integration {
                    if s.clock.end() {
                        handles::sessions(s.channel).0.decrement(1.0);
                        ended.push(s.id);
                    }
                    false
                } else {
                    true
                }
            });
        }
        self.live.remove_if(&key, |_, l| l.is_empty());
        for id in &ended {
            if let Some(j) = &self.journal {
                j.ended(*id, "conversation_ended");
            }
            let _ = self.ends.send((*id, "conversation_ended"));
        }
        ended
    }

    /// Ends sessions idle for `idle` or longer.
    pub fn sweep(&self, now: Instant, idle: Duration) -> Vec<Ended> {
        let mut ended = Vec::new();
        let stamp = self.stamp(now);
        self.live.retain(|(account, persona), list| {
            list.retain(|s| {
                // Younger than its idle time: nothing can be idle yet.
                let idle = s.idle.unwrap_or(idle);
                let Some(cut) = stamp.checked_sub(idle.as_nanos() as u64) else {
                    return true;
                };
                // Ends it only if no touch came after the cut, atomically with the touches.
                if s.clock.end_if_idle(cut) {
                    handles::sessions(s.channel).0.decrement(1.0);
                    ended.push(Ended {
                        id: s.id,
                        account: account.clone(),
                        persona: *persona,
                        integration: s.integration.clone(),
                        connector: s.connector.clone(),
                    });
                    false
                } else {
                    true
                }
            });
            !list.is_empty()
        });
        for e in &ended {
            if let Some(j) = &self.journal {
                j.ended(e.id, "idle");
            }
            let _ = self.ends.send((e.id, "idle"));
        }
        ended
    }

    /// The live session of `persona` on `(integration, connector)`, if any.
    pub fn find(
        &self,
        account: &Idn,
        persona: PersonaId,
        integration: &Idn,
        connector: &Idn,
    ) -> Option<SessionView> {
        let list = self.live.get(&(account.clone(), persona))?;
        list.iter()
            .find(|s| &s.integration == integration && &s.connector == connector)
            .map(|s| SessionView {
                id: s.id,
                account: account.clone(),
                persona,
                integration: s.integration.clone(),
                connector: s.connector.clone(),
                channel: s.channel,
                started_at: s.started_at,
            })
    }

    /// Live sessions of `account`.
    pub fn list(&self, account: &Idn) -> Vec<SessionView> {
        let mut out = Vec::new();
        for e in self.live.iter() {
            let (a, persona) = e.key();
            if a != account {
                continue;
            }
            for s in e.value() {
                out.push(SessionView {
                    id: s.id,
                    account: a.clone(),
                    persona: *persona,
                    integration: s.integration.clone(),
                    connector: s.connector.clone(),
                    channel: s.channel,
                    started_at: s.started_at,
                });
            }
        }
        out.sort_by_key(|s| s.id);
        out
    }

    pub fn len(&self) -> usize {
        self.live.iter().map(|e| e.value().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}
