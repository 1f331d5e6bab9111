//! Ingress: where decoded events enter the engine, from any transport. It takes an in-flight
//! permit (waiting for one is the engine's backpressure), checks admission against the
//! registry and the catalog, and puts the event in its connector actor's bounded inbox (waiting
//! for room when it is full). Refusals are answered synchronously, counted and dead-lettered.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::admission::delivery::{Delivery, Settle};
use crate::admission::Refusal;
use crate::connectors::actor::Inbound;
use crate::connectors::registry::{ConnectorRegistry, Reach};
use crate::dead_letter::{self, DeadLetter, DeadLetterStore};
use crate::domain::{Event, RoutedEvent, SharedEvent, Target};
use crate::telemetry::handles::{self, EngineMetrics};

impl From<Reach> for Refusal {
    fn from(reach: Reach) -> Self {
        match reach {
            Reach::UnknownIntegration(i) => Refusal::UnknownIntegration(i),
            Reach::UnknownConnector {
                integration,
                connector,
            } => Refusal::UnknownConnector {
                integration,
                connector,
            },
            Reach::Stopped {
                integration,
                connector,
            } => Refusal::ConnectorStopped {
                integration,
                connector,
            },
        }
    }
}

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
    registry: Arc<ConnectorRegistry>,
    permits: Arc<Semaphore>,
    dead_letters: Arc<dyn DeadLetterStore>,
    metrics: Arc<EngineMetrics>,
    limit: usize,
}

impl Ingress {
    pub fn new(
        registry: Arc<ConnectorRegistry>,
        dead_letters: Arc<dyn DeadLetterStore>,
        metrics: Arc<EngineMetrics>,
        inflight_limit: usize,
    ) -> Self {
        let limit = inflight_limit.max(1);
        metrics::gauge!(crate::telemetry::metrics::INFLIGHT_LIMIT).set(limit as f64);
        Ingress {
            registry,
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
        let Some((pending, inbox)) = self.admit(event, source, permit)? else {
            return Ok(());
        };
        match inbox.reserve_owned().await {
            Ok(slot) => {
                slot.send(pending.into_inbound());
                Ok(())
            }
            // Stopped while we waited: nothing was sent after its inbox closed.
            Err(_) => {
                let refusal = Refusal::ConnectorStopped {
                    integration: pending.event.event.integration.to_string(),
                    connector: pending.event.event.connector.to_string(),
                };
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
        match self.admit(event, source, permit)? {
            None => Ok(()),
            Some(_) => Err(Refusal::Busy),
        }
    }

    /// Whether `event` would be admitted now, without taking it in. A refusal is counted and
    /// dead-lettered, as on submit.
    pub fn admissible(&self, event: &Event) -> Result<(), Refusal> {
        let checked = self.check(event).and_then(|()| {
            self.registry
                .with_running(
                    &event.account,
                    &event.integration,
                    &event.connector,
                    (),
                    |_, ()| (),
                )
                .map_err(|((), reach)| Refusal::from(reach))
        });
        checked.map_err(|r| self.refuse(event.clone(), r))
    }

    /// Admitted events not yet dispatched or recorded.
    pub fn inflight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Checks `event` and puts it in its connector's inbox if there is room (`None`);
    /// otherwise hands it back with the inbox to wait on.
    fn admit(
        &self,
        event: Event,
        source: Option<Box<dyn Settle>>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Option<(PendingInbound, mpsc::Sender<Inbound>)>, Refusal> {
        self.metrics.inflight.set(self.inflight() as f64);
        let pending = PendingInbound {
            // Shared from here on, so the event is not copied again on its way. The persona is
            // derived here, on the submitting thread, off the engine's workers.
            event: Arc::new(RoutedEvent::named(event)),
            source,
            permit,
            admitted_at: Instant::now(),
        };
        if let Err(refusal) = self.check(&pending.event.event) {
            return Err(self.refuse_pending(pending, refusal));
        }
        let (account, integration, connector) = (
            pending.event.event.account.clone(),
            pending.event.event.integration.clone(),
            pending.event.event.connector.clone(),
        );
        let sent = self.registry.with_running(
            &account,
            &integration,
            &connector,
            pending,
            |actor, pending| match actor.inbox().try_reserve() {
                Ok(slot) => {
                    slot.send(pending.into_inbound());
                    Admitted::Sent
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    Admitted::Full(pending, actor.inbox().clone())
                }
                Err(mpsc::error::TrySendError::Closed(())) => Admitted::Closed(pending),
            },
        );
        match sent {
            Ok(Admitted::Closed(pending)) => {
                let refusal = Refusal::ConnectorStopped {
                    integration: integration.to_string(),
                    connector: connector.to_string(),
                };
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
        let event = Arc::try_unwrap(event).map_or_else(|e| e.event.clone(), |r| r.event);
        let refusal = self.refuse(event, refusal);
        drop(Delivery::new(source, Some(permit)));
        refusal
    }

    /// Checks that need no connector: the integration exists and declares the event.
    fn check(&self, event: &Event) -> Result<(), Refusal> {
        let integration = self
            .registry
            .catalog()
            .get(event.integration.as_str())
            .ok_or_else(|| Refusal::UnknownIntegration(event.integration.to_string()))?;
        if !integration.emits(event.event.as_str()) {
            return Err(Refusal::UndeclaredEvent {
                integration: event.integration.to_string(),
                event: event.event.to_string(),
            });
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
