//! A connector actor's own view of its live sessions: persona → the session's clock. An event
//! of a live session touches the clock here, without going to the shared [`SessionTable`]; only
//! a persona without a live session (a new conversation, or one that ended) takes the table's
//! path, which starts the session.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use tokio::time::Instant;
use uuid::Uuid;

use super::clock::SessionClock;
use super::table::SessionTable;
use crate::domain::PersonaId;
use crate::domain::ScopeKey;

/// Entries kept before ended sessions are pruned for the first time.
const PRUNE_FLOOR: usize = 1024;

pub struct SeenSessions {
    clocks: FxHashMap<PersonaId, Arc<SessionClock>>,
    /// Prune ended sessions when the map reaches this size (twice the live count at the last
    /// prune): memory stays within twice the connector's live sessions, for O(1) per event.
    prune_at: usize,
}

impl Default for SeenSessions {
    fn default() -> Self {
        SeenSessions {
            clocks: FxHashMap::default(),
            prune_at: PRUNE_FLOOR,
        }
    }
}

impl SeenSessions {
    /// Notes activity of `persona` on `scope`; returns the new session's id if one started.
    #[allow(clippy::too_many_arguments)] // the table's touch, plus the table
    pub fn touch(
        &mut self,
        table: &SessionTable,
        scope: &ScopeKey,
        channel: &'static str,
        persona: PersonaId,
        now: Instant,
        external_id: Option<&str>,
        idle: Option<std::time::Duration>,
    ) -> Option<Uuid> {
        let stamp = table.stamp(now);
        if self.clocks.get(&persona).is_some_and(|c| c.touch(stamp)) {
            return None;
        }
        let (started, clock) = table.touch(scope, channel, persona, now, external_id, idle);
        self.clocks.insert(persona, clock);
        if self.clocks.len() >= self.prune_at {
            self.clocks.retain(|_, c| !c.ended());
            self.prune_at = (self.clocks.len() * 2).max(PRUNE_FLOOR);
        }
        started
    }
}
