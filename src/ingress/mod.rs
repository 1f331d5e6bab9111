//! Ingress: where decoded events enter the engine, from any transport. It takes an in-flight
//! permit (waiting for one is the engine's backpressure), checks admission against the
//! registry and the catalog, and puts the event in its connector actor's bounded inbox (waiting
//! for room when it is full). Refusals are answered synchronously, counted and dead-lettered.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub mod inboxes;
pub mod internal;
pub mod room;

use crate::admission::delivery::{Delivery, Settle};
use crate::admission::{Refusal, Unreachable};
use crate::catalog::Catalog;
use crate::dead_letter::{self, DeadLetter, DeadLetterStore};
use crate::domain::{
    ConnectorKey, Event, Idn, PersonaKey, Reservation, RoutedEvent, SharedEvent, Target,
};
use crate::telemetry::handles::{self, EngineMetrics};
use crate::telemetry::queue;
pub use inboxes::{Inbound, Inboxes};
pub use internal::{InternalEvents, InternalQueue, RouteAdmitted};
pub use room::{FlowRoom, NoRoom};

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

/// An event that passed admission ([`Ingress::admit`]), with the persona its actor names.
pub struct Admitted(SharedEvent);

impl Admitted {
    pub fn event(&self) -> &Event {
        &self.0.event
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
    Refusal::Unreachable(Unreachable::ConnectorStopped {
        integration: event.integration.to_string(),
        connector: event.connector.to_string(),
    })
}

fn same_connector(a: &PendingInbound, b: &PendingInbound) -> bool {
    let (a, b) = (&a.event.event, &b.event.event);
    a.connector == b.connector && a.integration == b.integration && a.account == b.account
}

/// What became of an event offered to its connector's inbox. Lives on the stack for one call,
/// so the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Offered {
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
    /// Derives the persona id of an event's actor.
    persona_key: PersonaKey,
    /// Reserves room in the flow instances an event reaches; `None`: no reservation.
    room: Option<Arc<dyn FlowRoom>>,
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
            persona_key: PersonaKey::Unkeyed,
            room: None,
        }
    }

    /// Reserves room in flow instances with `room` before admitting (built so before it is
    /// shared).
    pub fn with_room(mut self, room: Arc<dyn FlowRoom>) -> Self {
        self.room = Some(room);
        self
    }

    /// An in-flight permit now, or [`Refusal::Busy`]: a caller that must answer at once
    /// (HTTP ingest) takes it before it acknowledges anything.
    pub fn try_permit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            // Counted like any refusal; nothing was taken in, so nothing is dead-lettered.
            handles::rejected(Refusal::Busy.code());
            Refusal::Busy
        })
    }

    /// Derives actors' persona ids with `key` (built so before it is shared).
    pub fn with_persona_key(mut self, key: PersonaKey) -> Self {
        self.persona_key = key;
        self
    }

    /// How this engine derives persona ids.
    pub fn persona_key(&self) -> &PersonaKey {
        &self.persona_key
    }

    /// Admits `event` (see [`Ingress::admit`]: the catalog checks here, its connector when it
    /// is handed over), waiting for an in-flight permit and then for room in its connector's
    /// inbox. `source` is settled once the event is dispatched to every receiving flow, dropped
    /// as an outcome, or recorded; a refusal settles it too (a refusal is an answer).
    pub async fn submit(
        &self,
        event: Event,
        source: Option<Box<dyn Settle>>,
    ) -> Result<(), Refusal> {
        match self.checked(event, &mut None, Reserve::Force) {
            Ok(admitted) => self.submit_admitted(admitted, source).await,
            Err(refusal) => {
                drop(Delivery::new(source, None));
                Err(refusal)
            }
        }
    }

    /// Hands an admitted event to its connector, waiting for an in-flight permit and then for
    /// room in its inbox. Refused only if the connector stopped since it was admitted.
    pub async fn submit_admitted(
        &self,
        admitted: Admitted,
        source: Option<Box<dyn Settle>>,
    ) -> Result<(), Refusal> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the permit semaphore is never closed");
        self.submit_with_permit(admitted, permit, source).await
    }

    /// [`Ingress::submit_admitted`] under a permit already taken ([`Ingress::try_permit`]).
    pub async fn submit_with_permit(
        &self,
        admitted: Admitted,
        permit: OwnedSemaphorePermit,
        source: Option<Box<dyn Settle>>,
    ) -> Result<(), Refusal> {
        let pending = PendingInbound {
            event: admitted.0,
            source,
            permit,
            admitted_at: Instant::now(),
        };
        match self.offer(pending)? {
            None => Ok(()),
            Some((pending, inbox)) => self.wait_for_room(pending, inbox).await,
        }
    }

    /// Admits `events` in order, as [`Ingress::submit`] would one by one: a batch of events of
    /// one kind asks the catalog once. One result per event, in order.
    pub async fn submit_batch(
        &self,
        events: Vec<(Event, Option<Box<dyn Settle>>)>,
    ) -> Vec<Result<(), Refusal>> {
        let mut declared = None;
        let mut refused = Vec::new();
        let mut admitted = Vec::with_capacity(events.len());
        for (at, (event, source)) in events.into_iter().enumerate() {
            match self.checked(event, &mut declared, Reserve::Force) {
                Ok(a) => admitted.push((a, source)),
                Err(refusal) => {
                    drop(Delivery::new(source, None));
                    refused.push((at, refusal));
                }
            }
        }
        if refused.is_empty() {
            return self.submit_batch_admitted(admitted).await;
        }
        let mut sent = self.submit_batch_admitted(admitted).await.into_iter();
        let total = sent.len() + refused.len();
        let mut refused = refused.into_iter().peekable();
        let mut results = Vec::with_capacity(total);
        while results.len() < total {
            match refused.next_if(|(at, _)| *at == results.len()) {
                Some((_, refusal)) => results.push(Err(refusal)),
                None => results.push(sent.next().expect("one result per admitted event")),
            }
        }
        results
    }

    /// Hands admitted events to their connectors in order, as [`Ingress::submit_admitted`]
    /// would one by one, sharing what can be shared: the in-flight permits are taken together
    /// (at most [`BATCH_PERMITS`] at a time), the clock is read once, and the events of each
    /// connector look it up once and reserve their inbox slots at once. Events of one connector
    /// keep their order; events of different connectors are independent. Queue transports hand
    /// over what they pulled this way. One result per event, in order.
    pub async fn submit_batch_admitted(
        &self,
        events: Vec<(Admitted, Option<Box<dyn Settle>>)>,
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
            // Grouped by connector, each group in arrival order: the order that matters (per
            // connector, hence per conversation) is kept.
            let mut groups: Vec<Vec<(usize, PendingInbound)>> = Vec::new();
            for (admitted, source) in events.by_ref().take(chunk) {
                let permit = permits.split(1).expect("one permit per event of the chunk");
                let at = results.len();
                results.push(Ok(()));
                let pending = PendingInbound {
                    event: admitted.0,
                    source,
                    permit,
                    admitted_at,
                };
                match groups
                    .iter_mut()
                    .find(|g| same_connector(&g[0].1, &pending))
                {
                    Some(g) => g.push((at, pending)),
                    None => groups.push(vec![(at, pending)]),
                }
            }
            // Connectors are independent: one whose inbox is full does not hold up the others
            // (their groups wait for room concurrently; the common case never waits at all).
            let offered =
                futures_util::future::join_all(groups.into_iter().map(|g| self.offer_run(g))).await;
            for (at, result) in offered.into_iter().flatten() {
                results[at] = result;
            }
        }
        results
    }

    /// Puts events for one connector in its inbox, reserving the slots at once; when
    /// that cannot be done (a full inbox, a stopped connector), each goes the one-by-one way.
    /// Answers the events that were not sent at once (the others succeeded), by position.
    async fn offer_run(
        &self,
        run: Vec<(usize, PendingInbound)>,
    ) -> Vec<(usize, Result<(), Refusal>)> {
        let Some((_, first)) = run.first() else {
            return Vec::new();
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
            Ok(None) => return Vec::new(),
            Ok(Some(run)) | Err((run, _)) => run,
        };
        let mut answers = Vec::with_capacity(run.len());
        for (at, pending) in run {
            answers.push((
                at,
                match self.offer(pending) {
                    Ok(None) => Ok(()),
                    Ok(Some((pending, inbox))) => self.wait_for_room(pending, inbox).await,
                    Err(refusal) => Err(refusal),
                },
            ));
        }
        answers
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
        let admitted = match self.checked(event, &mut None, Reserve::IfRoom) {
            Ok(a) => a,
            Err(refusal) => {
                drop(Delivery::new(source, Some(permit)));
                return Err(refusal);
            }
        };
        let pending = PendingInbound {
            event: admitted.0,
            source,
            permit,
            admitted_at: Instant::now(),
        };
        match self.offer(pending)? {
            None => Ok(()),
            Some(_) => Err(Refusal::Busy),
        }
    }

    /// Admission, the one check every event from outside passes, before anything is recorded:
    /// its integration exists and declares the event, it is well formed, and its connector
    /// exists and runs. A refusal is counted and dead-lettered. The admitted event carries the
    /// persona its actor names; [`Ingress::submit_admitted`] hands it over.
    pub fn admit(&self, event: Event) -> Result<Admitted, Refusal> {
        let admitted = self.checked(event, &mut None, Reserve::IfRoom)?;
        match self.with_inbox(&key_of(&admitted.0.event), (), |_, ()| ()) {
            Ok(()) => Ok(admitted),
            Err(((), reach)) => Err(self.refuse(RoutedEvent::into_event(admitted.0), reach.into())),
        }
    }

    /// Admission's checks without taking room or submitting: the catalog's, and that the
    /// event's connector runs. For an event that another path submits later (appended to the
    /// events stream, whose consumer admits it again): the caller hears a refusal at once. A
    /// refusal is counted and dead-lettered.
    pub fn precheck(&self, event: Event) -> Result<Event, Refusal> {
        if let Err(refusal) = self.check(&event, &mut None) {
            return Err(self.refuse(event, refusal));
        }
        match self.with_inbox(&key_of(&event), (), |_, ()| ()) {
            Ok(()) => Ok(event),
            Err(((), reach)) => Err(self.refuse(event, reach.into())),
        }
    }

    /// The catalog's part of admission (see [`Ingress::check`]) and the room the event needs
    /// in its flow instances; the connector's part is checked when the event is handed over. A
    /// refusal is counted and dead-lettered (one for lack of room only counted: nothing was
    /// acknowledged, the caller is told to retry).
    fn checked(
        &self,
        event: Event,
        declared: &mut Option<Declared>,
        reserve: Reserve,
    ) -> Result<Admitted, Refusal> {
        if let Err(refusal) = self.check(&event, declared) {
            return Err(self.refuse(event, refusal));
        }
        // The persona is derived here, on the submitting thread, off the engine's workers.
        let mut routed = RoutedEvent::named_with(event, &self.persona_key);
        if let Some(room) = &self.room {
            match room.reserve(&routed, reserve == Reserve::Force) {
                Ok(reserved) => routed.room = reserved.map(Reservation),
                Err(NoRoom { agent, flow }) => {
                    let refusal = Refusal::FlowInstanceFull { agent, flow };
                    return Err(self.refuse(routed.event, refusal));
                }
            }
        }
        // Shared from here on, so the event is not copied again on its way.
        Ok(Admitted(Arc::new(routed)))
    }

    /// Calls `send(inbox, payload)` with the inbox of the running connector `key` (see
    /// [`Inboxes::with_inbox`]); gives `payload` back with the reason when it cannot be reached.
    #[inline]
    fn with_inbox<T, R>(
        &self,
        key: &ConnectorKey,
        payload: T,
        send: impl FnOnce(&mpsc::Sender<Inbound>, T) -> R,
    ) -> Result<R, (T, Unreachable)> {
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
            Ok(()) => Ok(Arc::new(RoutedEvent::named_with(event, &self.persona_key))),
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
                Offered::Sent
            }
            Err(mpsc::error::TrySendError::Full(())) => {
                queue::full(queue::names::CONNECTOR_INBOX);
                Offered::Full(pending, inbox.clone())
            }
            Err(mpsc::error::TrySendError::Closed(())) => Offered::Closed(pending),
        });
        match sent {
            Ok(Offered::Closed(pending)) => {
                let refusal = stopped(&pending.event.event);
                Err(self.refuse_pending(pending, refusal))
            }
            Ok(Offered::Sent) => Ok(None),
            Ok(Offered::Full(pending, inbox)) => Ok(Some((pending, inbox))),
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

    /// Checks that need no connector: the integration exists and declares the event, and the
    /// event carries the arguments the catalog says it requires (`command_act_id` may come as
    /// the envelope's field).
    ///
    /// `declared` remembers the last `(integration, event, required arguments)` the catalog
    /// accepted, so a batch of events of one kind asks the catalog once.
    fn check(&self, event: &Event, declared: &mut Option<Declared>) -> Result<(), Refusal> {
        let known = declared
            .as_ref()
            .is_some_and(|(i, e, _)| *i == event.integration && *e == event.event);
        if !known {
            let integration = self
                .catalog
                .get(event.integration.as_str())
                .ok_or_else(|| Unreachable::UnknownIntegration(event.integration.to_string()))?;
            if !integration.emits(event.event.as_str()) {
                return Err(Refusal::UndeclaredEvent {
                    integration: event.integration.to_string(),
                    event: event.event.to_string(),
                });
            }
            let required = integration.required_arguments(event.event.as_str());
            *declared = Some((event.integration.clone(), event.event.clone(), required));
        }
        let (_, _, required) = declared.as_ref().expect("set above");
        for name in required.iter() {
            let given = event.arguments.get(name).is_some()
                || (name == "command_act_id" && event.command_act_id.is_some());
            if !given {
                return Err(Refusal::Malformed {
                    field: format!("arguments.{name}"),
                    reason: format!("required by event {}/{}", event.integration, event.event),
                });
            }
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

/// Whether admission may refuse an event for lack of room in its flow instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserve {
    /// Refuse it (`FlowInstanceFull`): nothing was acknowledged yet.
    IfRoom,
    /// Take it all the same (counted): it was acknowledged before (replayed at start), or the
    /// caller waits for room otherwise (in-process submitters).
    Force,
}

/// The last `(integration, event)` the catalog accepted, with its required arguments.
type Declared = (Idn, Idn, Arc<[String]>);

#[cfg(test)]
mod tests;
