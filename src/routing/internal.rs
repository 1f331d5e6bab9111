//! The pump of the internal-events sink: drains [`InternalQueue`] in order, admits each event
//! through [`Ingress::admit_internal`] (the checks of the wire) and routes it. One task, so
//! events emitted from one thread are routed in the order they were emitted.

use std::sync::Arc;

use crate::admission::delivery::Delivery;
use crate::ingress::internal::Internal;
use crate::ingress::{Ingress, InternalQueue};

use super::dispatch::Dispatcher;

/// Events taken from the queue at once.
const BATCH: usize = 256;

/// Spawns the pump on the current arbiter; it ends when every sender is gone.
pub fn spawn(queue: InternalQueue, ingress: Ingress, dispatcher: Arc<Dispatcher>) {
    let InternalQueue(mut rx) = queue;
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
            dispatcher.route_admitted_batch(&mut admitted);
        }
    });
}
