//! The internal-events sink: the one way events the daemon makes itself (command results,
//! session ends, system events, native integrations' events such as timer firings) enter
//! routing. Later stages hold an [`InternalEvents`] (wired at start-up); its pump (owned here)
//! drains the bounded queue behind it through [`super::Ingress::admit_internal`], which applies the
//! admission checks of the wire, then routes. A full queue records the event as a dead letter
//! with the reason: never a silent drop.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::admission::delivery::{Delivery, Settle};
use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::{Event, SharedEvent};
use crate::telemetry::{handles, queue};

/// Where later stages emit events. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct InternalEvents {
    tx: mpsc::Sender<Internal>,
    dead_letters: Arc<dyn DeadLetterStore>,
}

/// An internal event, with who waits for it to be handed on (a durable producer: timers).
pub struct Internal {
    pub event: Event,
    pub source: Option<Box<dyn Settle>>,
}

/// The receiving end, drained by its pump ([`InternalQueue::pump`]).
pub struct InternalQueue(pub mpsc::Receiver<Internal>);

/// Where the pump hands admitted internal events: the routing stage (its dispatcher), wired
/// by the engine.
pub trait RouteAdmitted: Send + Sync + 'static {
    /// Routes `events` in order, draining the vector.
    fn route_admitted(&self, events: &mut Vec<(SharedEvent, Delivery)>);
}

/// Events the pump takes from the queue at once.
const BATCH: usize = 256;

impl InternalQueue {
    /// Spawns the pump on the current arbiter: drains the queue in order, admits each event
    /// through [`super::Ingress::admit_internal`] (the checks of the wire) and hands the batch
    /// to `routes`. One task, so events emitted from one thread are routed in the order they
    /// were emitted. It ends when every sender is gone.
    pub fn pump(self, ingress: super::Ingress, routes: Arc<dyn RouteAdmitted>) {
        let InternalQueue(mut rx) = self;
        actix_rt::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut admitted = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                for Internal { event, source } in batch.drain(..) {
                    match ingress.admit_internal(event) {
                        Ok(event) => admitted.push((event, Delivery::new(source, None))),
                        // Recorded as a dead letter: the source settles (a refusal is an answer).
                        Err(_) => drop(Delivery::new(source, None)),
                    }
                }
                routes.route_admitted(&mut admitted);
            }
        });
    }
}

impl InternalEvents {
    /// A sink holding at most `capacity` events not yet routed.
    pub fn new(capacity: usize, dead_letters: Arc<dyn DeadLetterStore>) -> (Self, InternalQueue) {
        let (tx, rx) = queue::bounded(queue::names::INTERNAL_EVENTS, capacity);
        (InternalEvents { tx, dead_letters }, InternalQueue(rx))
    }

    /// Emits `event` (it names its persona). In the order of the calls from one thread.
    pub fn emit(&self, event: Event) {
        self.emit_with(event, None);
    }

    /// Emits `event`; `source` settles as a wire event's would: once it was dispatched to every
    /// receiving flow, dropped as an outcome, or recorded (refused, or the queue full).
    pub fn emit_with(&self, event: Event, source: Option<Box<dyn Settle>>) {
        match self.tx.try_send(Internal { event, source }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Internal { event, source })) => {
                drop(Delivery::new(source, None));
                queue::full(queue::names::INTERNAL_EVENTS);
                handles::rejected(DeadLetterReason::FlowQueueFull.code());
                dead_letter::record(
                    &*self.dead_letters,
                    DeadLetter::event(
                        DeadLetterReason::FlowQueueFull,
                        format!(
                            "the internal-events queue holds {} events",
                            self.tx.max_capacity()
                        ),
                        event,
                        None,
                    ),
                );
            }
            // The engine is stopping: nothing routes any more.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}
