//! Room in flow instances, reserved at admission ([`crate::ingress::FlowRoom`]): an event from
//! outside is acknowledged only when every flow instance it reaches now has a place for it, so
//! what was acknowledged is never dead-lettered for lack of room. A flow instance `(flow,
//! persona)` holds at most `max_pending` queued events plus the running one; the reservation
//! travels with the event and is given back when the event's last holder drops it (queued,
//! run and done, superseded, or matched by no flow once dispatched).

use std::sync::Arc;

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use super::dispatch::LiveIndex;
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

/// Places reserved for one event; given back when dropped.
struct Reserved {
    held: Arc<Held>,
    keys: SmallVec<[(FlowId, PersonaId); 2]>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        for key in &self.keys {
            give_back(&self.held, key);
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

impl FlowRoom for InstanceRoom {
    fn reserve(
        &self,
        event: &RoutedEvent,
        force: bool,
    ) -> Result<Option<Box<dyn Send + Sync>>, NoRoom> {
        // A result naming only its command act finds its persona later, in its connector.
        if matches!(event.event.target, Target::ByCommandAct) {
            return Ok(None);
        }
        let e = &event.event;
        let index = self.index.load();
        let matches = index.lookup_str(
            e.account.as_str(),
            e.integration.as_str(),
            e.connector.as_str(),
            e.event.as_str(),
        );
        let mut reserved = Reserved {
            held: self.held.clone(),
            keys: SmallVec::new(),
        };
        for m in matches.iter() {
            let key = (m.flow_id, event.persona);
            let mut n = self.held.entry(key).or_insert(0);
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
            reserved.keys.push(key);
        }
        Ok((!reserved.keys.is_empty()).then(|| Box::new(reserved) as Box<dyn Send + Sync>))
    }
}
