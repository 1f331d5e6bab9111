//! Room in flow instances, reserved at admission ([`crate::ingress::FlowRoom`]): an event from
//! outside is acknowledged only when every flow instance it reaches now has a place for it, so
//! what was acknowledged is never dead-lettered for lack of room. A flow instance `(flow,
//! persona)` holds at most `max_pending` queued events plus the running one; the reservation
//! travels with the event and is given back when the event's last holder drops it (queued,
//! run and done, superseded, or matched by no flow once dispatched). It also carries the
//! matches found to reserve it, which dispatch uses instead of a second lookup.

use std::any::Any;
use std::sync::Arc;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use super::dispatch::LiveIndex;
use super::index::{Match, SubscriptionIndex};
use crate::domain::{FlowId, PersonaId, RoutedEvent, Target};
use crate::ingress::{FlowRoom, NoRoom};

type Held = DashMap<(FlowId, PersonaId), u32, FxBuildHasher>;

/// Events admitted per flow instance, against the live index.
pub struct InstanceRoom {
    index: Arc<LiveIndex>,
    held: Arc<Held>,
    /// Events one instance may hold: its queue and the running one.
    max: u32,
}

impl InstanceRoom {
    pub fn new(index: Arc<LiveIndex>, max_pending: usize) -> Self {
        InstanceRoom {
            index,
            held: Arc::default(),
            max: u32::try_from(max_pending)
                .unwrap_or(u32::MAX)
                .saturating_add(1),
        }
    }
}

/// Places reserved for one event, given back when dropped, and what admission matched to
/// reserve them: dispatch takes the matches from here instead of looking the event up again.
struct Reserved {
    held: Arc<Held>,
    /// The persona the places were taken for (its connector may resolve another later).
    persona: PersonaId,
    /// Places taken: one for each of the first `taken` matches.
    taken: usize,
    /// The generation of the index the matches come from.
    generation: u64,
    /// The event's matches, in the order [`crate::routing::Matches::iter`] yields them.
    matched: SmallVec<[Match; 1]>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        for m in &self.matched[..self.taken] {
            give_back(&self.held, &(m.flow_id, self.persona));
        }
    }
}

fn give_back(held: &Held, key: &(FlowId, PersonaId)) {
    if let dashmap::Entry::Occupied(mut e) = held.entry(*key) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}

/// The matches admission found for `event` when they come from `index` (the one dispatch
/// holds), `None` otherwise. Decision: when the live index changed between the reservation and
/// dispatch, dispatch looks the event up again: it routes by the flows in force as it
/// dispatches, as without a reservation (a flow deleted meanwhile gets nothing, one put
/// meanwhile gets the event; an acknowledged change holds for every event dispatched after
/// it); the places reserved stay as they were, given back when the event is dropped. Swaps are
/// rare, so the second lookup costs nothing that matters.
pub(super) fn matched_in<'a>(
    event: &'a RoutedEvent,
    index: &SubscriptionIndex,
) -> Option<&'a [Match]> {
    let reserved = event.room.as_ref()?.0.downcast_ref::<Reserved>()?;
    (reserved.generation == index.generation()).then_some(&reserved.matched[..])
}

impl FlowRoom for InstanceRoom {
    fn reserve(
        &self,
        event: &RoutedEvent,
        force: bool,
    ) -> Result<Option<Box<dyn Any + Send + Sync>>, NoRoom> {
        let e = &event.event;
        let index = self.index.load();
        let mut reserved = Reserved {
            held: self.held.clone(),
            persona: event.persona,
            taken: 0,
            generation: index.generation(),
            matched: index
                .lookup_str(
                    e.account.as_str(),
                    e.integration.as_str(),
                    e.connector.as_str(),
                    e.event.as_str(),
                )
                .iter()
                .cloned()
                .collect(),
        };
        drop(index);
        // A result naming only its command act finds its persona later, in its connector: it
        // takes no place, but its matches still go to dispatch.
        if !matches!(e.target, Target::ByCommandAct) {
            for m in &reserved.matched {
                let mut n = self.held.entry((m.flow_id, event.persona)).or_insert(0);
                if *n >= self.max && !force {
                    drop(n);
                    // `reserved` gives back what it took when dropped here.
                    return Err(NoRoom {
                        agent: m.flow.flow.agent.to_string(),
                        flow: m.flow.flow.flow.to_string(),
                    });
                }
                *n += 1;
                drop(n);
                reserved.taken += 1;
            }
        }
        // Kept even when nothing matched: dispatch then need not look the event up either.
        Ok(Some(Box::new(reserved)))
    }
}

#[cfg(test)]
mod tests;
