//! Ingress: where decoded events enter the engine, from any transport. It takes an in-flight
//! permit (waiting for one is the engine's backpressure), checks admission against the
//! registry and the catalog, and puts the event in its connector actor's bounded inbox (waiting
//! for room when it is full). Refusals are answered synchronously, counted and dead-lettered.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub mod inboxes;
pub mod internal;

use crate::admission::delivery::{Delivery, Settle};
use crate::admission::Refusal;
use crate::catalog::Catalog;
use crate::dead_letter::{self, DeadLetter, DeadLetterStore};
use crate::domain::{ConnectorKey, Event, Idn, RoutedEvent, SharedEvent, Target};
use crate::telemetry::handles::{self, EngineMetrics};
pub use inboxes::{Inbound, Inboxes, Reach};
pub use internal::{InternalEvents, InternalQueue};

/// An event that holds its permit, on its way into a connector's inbox.
struct PendingInbound {
    event: SharedEvent,
    source: Option<Box<dyn Settle>>,
    permit: OwnedSemaphorePermit,
    admitted_at: Instant,
}

impl PendingInbound {
    fn into_inbound(self) -> Inbound {
        Inbound {
            event: self.event,
            delivery: Delivery::new(self.source, Some(self.permit)),
            admitted_at: self.admitted_at,
        }
    }
}

/// Permits [`Ingress::submit_batch`] takes at once, at most.
pub const BATCH_PERMITS: usize = 256;

/// The connector `event` is for.
fn key_of(event: &Event) -> ConnectorKey {
    ConnectorKey::new(&event.account, &event.integration, &event.connector)
}

/// The refusal of `event` when its connector stopped after the registry was read.
fn stopped(event: &Event) -> Refusal {
    Refusal::ConnectorStopped {
        integration: event.integration.to_string(),
        connector: event.connector.to_string(),
    }
}

fn same_connector(a: &PendingInbound, b: &PendingInbound) -> bool {
    let (a, b) = (&a.event.event, &b.event.event);
    a.connector == b.connector && a.integration == b.integration && a.account == b.account
}

/// What became of an event offered to its connector's inbox. Lives on the stack for one call,
/// so the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Admitted {
    Sent,
    /// The connector's inbox is full: wait on this sender.
    Full(PendingInbound, mpsc::Sender<Inbound>),
    /// The inbox is closed by a stop that has not left the registry yet: as stopped.
    Closed(PendingInbound),
}

#[derive(Clone)]
pub struct Ingress {
    inboxes: Arc<dyn Inboxes>,
    catalog: Arc<Catalog>,
    permits: Arc<Semaphore>,
    dead_letters: Arc<dyn DeadLetterStore>,
    metrics: Arc<EngineMetrics>,
    limit: usize,
}

impl Ingress {
    pub fn new(
        inboxes: Arc<dyn Inboxes>,
        catalog: Arc<Catalog>,
        dead_letters: Arc<dyn DeadLetterStore>,
        metrics: Arc<EngineMetrics>,
        inflight_limit: usize,
    ) -> Self {
        let limit = inflight_limit.max(1);
        metrics::gauge!(crate::telemetry::metrics::INFLIGHT_LIMIT).set(limit as f64);
        Ingress {
            inboxes,
            catalog,
            permits: Arc::new(Semaphore::new(limit)),
            dead_letters,
            metrics,
            limit,
        }
    }

    /// Admits `event`, waiting for an in-flight permit and then for room in its connector's
    /// inbox. `source` is settled once the event is dispatched to every receiving flow, dropped
    /// as an outcome, or recorded.
    pub async fn submit(
        &self,
        event: Event,
        source: Option<Box<dyn Settle>>,
    ) -> Result<(), Refusal> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the permit semaphore is never closed");
        let pending = self.prepare(event, source, permit, Instant::now(), &mut None)?;
        match self.offer(pending)? {
            None => Ok(()),
            Some((pending, inbox)) => self.wait_for_room(pending, inbox).await,
        }
    }

    /// Admits `events` in order, as [`Ingress::submit`] would one by one, sharing what can be
    /// shared: the in-flight permits are taken together (at most [`BATCH_PERMITS`] at a time),
    /// the clock is read once, and the events of each connector look it up once and reserve
    /// their inbox slots at once. Events of one connector keep their order; events of
    /// different connectors are independent. Queue transports hand over what they pulled this way.
    /// One result per event, in order.
    pub async fn submit_batch(
        &self,
        events: Vec<(Event, Option<Box<dyn Settle>>)>,
    ) -> Vec<Result<(), Refusal>> {
        let mut results = Vec::with_capacity(events.len());
        let mut events = events.into_iter();
        let most = self.limit.min(BATCH_PERMITS);
        while events.len() > 0 {
            // Taken from the batch as they are prepared, not collected first: an event is
            // moved as few times as can be.
            let chunk = events.len().min(most);
            let mut permits = self
                .permits
                .clone()
                .acquire_many_owned(chunk as u32)
                .await
                .expect("the permit semaphore is never closed");
            let admitted_at = Instant::now();
            let mut declared = None;
            // Grouped by connector, each group in arrival order: the order that matters (per
            // connector, hence per conversation) is kept.
            let mut groups: Vec<Vec<(usize, PendingInbound)>> = Vec::new();
            for (event, source) in events.by_ref().take(chunk) {
                let permit = permits.split(1).expect("one permit per event of the chunk");
                let at = results.len();
                results.push(Ok(()));
                match self.prepare(event, source, permit, admitted_at, &mut declared) {
                    Err(refusal) => results[at] = Err(refusal),
                    Ok(pending) => {
                        match groups
                            .iter_mut()
                            .find(|g| same_connector(&g[0].1, &pending))
                        {
                            Some(g) => g.push((at, pending)),
                            None => groups.push(vec![(at, pending)]),
                        }
                    }
                }
            }
            for group in groups {
                self.offer_run(group, &mut results).await;
            }
        }
        results
    }

    /// Puts events for one connector in its inbox, reserving the slots at once; when
    /// that cannot be done (a full inbox, a stopped connector), each goes the one-by-one way.
    async fn offer_run(
        &self,
        run: Vec<(usize, PendingInbound)>,
        results: &mut [Result<(), Refusal>],
    ) {
        let Some((_, first)) = run.first() else {
            return;
        };
        let key = key_of(&first.event.event);
        let sent = self.with_inbox(&key, run, |inbox, run| {
            match inbox.try_reserve_many(run.len()) {
                Ok(slots) => {
                    for (slot, (_, pending)) in slots.zip(run) {
                        slot.send(pending.into_inbound());
                    }
                    None
                }
                Err(_) => Some(run),
            }
        });
        let run = match sent {
            Ok(None) => return,
            Ok(Some(run)) | Err((run, _)) => run,
        };
        for (at, pending) in run {
            results[at] = match self.offer(pending) {
                Ok(None) => Ok(()),
                Ok(Some((pending, inbox))) => self.wait_for_room(pending, inbox).await,
                Err(refusal) => Err(refusal),
            };
        }
    }

    /// Waits for room in a full inbox, then sends.
    async fn wait_for_room(
        &self,
        pending: PendingInbound,
        inbox: mpsc::Sender<Inbound>,
    ) -> Result<(), Refusal> {
        match inbox.reserve_owned().await {
            Ok(slot) => {
                slot.send(pending.into_inbound());
                Ok(())
            }
            // Stopped while we waited: nothing was sent after its inbox closed.
            Err(_) => {
                let refusal = stopped(&pending.event.event);
                Err(self.refuse_pending(pending, refusal))
            }
        }
    }

    /// Like [`Ingress::submit`], but refuses with [`Refusal::Busy`] instead of waiting. A busy
    /// refusal leaves `source` unsettled: nothing was taken in.
    pub fn try_submit(&self, event: Event, source: Option<Box<dyn Settle>>) -> Result<(), Refusal> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        let pending = self.prepare(event, source, permit, Instant::now(), &mut None)?;
        match self.offer(pending)? {
            None => Ok(()),
            Some(_) => Err(Refusal::Busy),
        }
    }

    /// Whether `event` would be admitted now, without taking it in. A refusal is counted and
    /// dead-lettered, as on submit.
    pub fn admissible(&self, event: &Event) -> Result<(), Refusal> {
        let checked = self.check(event, &mut None).and_then(|()| {
            self.with_inbox(&key_of(event), (), |_, ()| ())
                .map_err(|((), reach)| Refusal::from(reach))
        });
        checked.map_err(|r| self.refuse(event.clone(), r))
    }

    /// Calls `send(inbox, payload)` with the inbox of the running connector `key` (see
    /// [`Inboxes::with_inbox`]); gives `payload` back with the reason when it cannot be reached.
    #[inline]
    fn with_inbox<T, R>(
        &self,
        key: &ConnectorKey,
        payload: T,
        send: impl FnOnce(&mpsc::Sender<Inbound>, T) -> R,
    ) -> Result<R, (T, Reach)> {
        let mut call = Some((payload, send));
        let mut out = None;
        let reached = self.inboxes.with_inbox(key, &mut |inbox| {
            if let Some((payload, send)) = call.take() {
                out = Some(send(inbox, payload));
            }
        });
        match (reached, out) {
            (Ok(()), Some(out)) => Ok(out),
            (Err(reach), _) => Err((call.expect("not called when unreachable").0, reach)),
            (Ok(()), None) => unreachable!("an implementation reports Ok only after calling send"),
        }
    }

    /// Admits an event the daemon made itself (from [`InternalEvents`]): the catalog checks of
    /// the wire apply (its integration exists and declares the event); it names its persona and
    /// its scope is the daemon's own, so its connector need not run (a `result_error` for a
    /// stopped connector still reaches the skill). A refusal is counted and dead-lettered.
    pub fn admit_internal(&self, event: Event) -> Result<SharedEvent, Refusal> {
        match self.check(&event, &mut None) {
            Ok(()) => Ok(Arc::new(RoutedEvent::named(event))),
            Err(refusal) => Err(self.refuse(event, refusal)),
        }
    }

    /// Admitted events not yet dispatched or recorded.
    pub fn inflight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Sets the in-flight gauge to [`Ingress::inflight`]. Called when metrics are read, not per
    /// event: the value is read from the permits, so it is exact at the scrape, idle or not.
    pub fn report_inflight(&self) {
        self.metrics.inflight.set(self.inflight() as f64);
    }

    /// Checks `event` (refusing it with its permit and source) and readies it for its inbox.
    fn prepare(
        &self,
        event: Event,
        source: Option<Box<dyn Settle>>,
        permit: OwnedSemaphorePermit,
        admitted_at: Instant,
        declared: &mut Option<(Idn, Idn)>,
    ) -> Result<PendingInbound, Refusal> {
        let pending = PendingInbound {
            // Shared from here on, so the event is not copied again on its way. The persona is
            // derived here, on the submitting thread, off the engine's workers.
            event: Arc::new(RoutedEvent::named(event)),
            source,
            permit,
            admitted_at,
        };
        match self.check(&pending.event.event, declared) {
            Ok(()) => Ok(pending),
            Err(refusal) => Err(self.refuse_pending(pending, refusal)),
        }
    }

    /// Puts a checked event in its connector's inbox if there is room (`None`); otherwise hands
    /// it back with the inbox to wait on.
    fn offer(
        &self,
        pending: PendingInbound,
    ) -> Result<Option<(PendingInbound, mpsc::Sender<Inbound>)>, Refusal> {
        let key = key_of(&pending.event.event);
        let sent = self.with_inbox(&key, pending, |inbox, pending| match inbox.try_reserve() {
            Ok(slot) => {
                slot.send(pending.into_inbound());
                Admitted::Sent
            }
            Err(mpsc::error::TrySendError::Full(())) => Admitted::Full(pending, inbox.clone()),
            Err(mpsc::error::TrySendError::Closed(())) => Admitted::Closed(pending),
        });
        match sent {
            Ok(Admitted::Closed(pending)) => {
                let refusal = stopped(&pending.event.event);
                Err(self.refuse_pending(pending, refusal))
            }
            Ok(Admitted::Sent) => Ok(None),
            Ok(Admitted::Full(pending, inbox)) => Ok(Some((pending, inbox))),
            Err((pending, reach)) => Err(self.refuse_pending(pending, Refusal::from(reach))),
        }
    }

    /// Refuses an event that holds a permit and a source: the refusal is recorded, then the
    /// source settles (a refusal is an answer) and the permit returns.
    fn refuse_pending(&self, pending: PendingInbound, refusal: Refusal) -> Refusal {
        let PendingInbound {
            event,
            source,
            permit,
            ..
        } = pending;
        let refusal = self.refuse(RoutedEvent::into_event(event), refusal);
        drop(Delivery::new(source, Some(permit)));
        refusal
    }

    /// Checks that need no connector: the integration exists and declares the event.
    ///
    /// `declared` remembers the last `(integration, event)` the catalog accepted, so a batch of
    /// events of one kind asks the catalog once.
    fn check(&self, event: &Event, declared: &mut Option<(Idn, Idn)>) -> Result<(), Refusal> {
        let known = declared
            .as_ref()
            .is_some_and(|(i, e)| *i == event.integration && *e == event.event);
        if !known {
            let integration = self
                .catalog
                .get(event.integration.as_str())
                .ok_or_else(|| Refusal::UnknownIntegration(event.integration.to_string()))?;
            if !integration.emits(event.event.as_str()) {
                return Err(Refusal::UndeclaredEvent {
                    integration: event.integration.to_string(),
                    event: event.event.to_string(),
                });
            }
            *declared = Some((event.integration.clone(), event.event.clone()));
        }
        if matches!(event.target, Target::ByCommandAct) && event.command_act_id.is_none() {
            return Err(Refusal::Malformed {
                field: "actor".into(),
                reason: "required unless the event answers a command (command_act_id)".into(),
            });
        }
        if let Target::Actor(a) = &event.target {
            if a.external_id.is_empty() {
                return Err(Refusal::Malformed {
                    field: "actor.external_id".into(),
                    reason: "must not be empty".into(),
                });
            }
        }
        Ok(())
    }

    /// Counts and dead-letters a refused event; the caller answers with the refusal.
    pub fn refuse(&self, event: Event, refusal: Refusal) -> Refusal {
        handles::rejected(refusal.code());
        if let Some(reason) = refusal.dead_letter_reason() {
            dead_letter::record(
                &*self.dead_letters,
                DeadLetter::event(reason, refusal.to_string(), event, None),
            );
        }
        refusal
    }
}
