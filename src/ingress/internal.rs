//! The internal-events sink: the one way events the daemon makes itself (command results,
//! session ends, system events, native integrations' events such as timer firings) enter
//! routing. Later stages hold an [`InternalEvents`] (wired at start-up); a pump drains the
//! bounded queue behind it through [`super::Ingress::admit_internal`], which applies the
//! admission checks of the wire, then routes. A full queue records the event as a dead letter
//! with the reason: never a silent drop.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::admission::delivery::{Delivery, Settle};
use crate::dead_letter::{self, DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::domain::Event;
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

/// The receiving end, drained by the routing stage's pump.
pub struct InternalQueue(pub mpsc::Receiver<Internal>);

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
