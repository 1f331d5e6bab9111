//! Ingress: where decoded events enter the engine, from any transport. It takes an in-flight
//! permit (waiting for one is the engine's backpressure), checks admission against the
//! registry and the catalog, and hands the event to its connector actor. Refusals are answered
//! synchronously, counted and dead-lettered.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::admission::delivery::{Delivery, Settle};
use crate::admission::Refusal;
use crate::connectors::actor::Inbound;
use crate::connectors::registry::{ConnectorRegistry, Reach};
use crate::dead_letter::{self, DeadLetter, DeadLetterStore};
use crate::domain::{Event, Target};
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

    /// Admits `event`, waiting for an in-flight permit first. `source` is settled once the
    /// event is dispatched to every receiving flow, dropped as an outcome, or recorded.
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
        self.admit(event, source, permit)
    }

    /// Like [`Ingress::submit`], but refuses with [`Refusal::Busy`] instead of waiting.
    pub fn try_submit(&self, event: Event, source: Option<Box<dyn Settle>>) -> Result<(), Refusal> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        self.admit(event, source, permit)
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

    fn admit(
        &self,
        event: Event,
        source: Option<Box<dyn Settle>>,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), Refusal> {
        self.metrics.inflight.set(self.inflight() as f64);
        let delivery = Delivery::new(source, Some(permit));
        if let Err(refusal) = self.check(&event) {
            return Err(self.refuse(event, refusal));
        }
        let inbound = Inbound {
            event,
            delivery,
            admitted_at: Instant::now(),
        };
        let (account, integration, connector) = (
            inbound.event.account.clone(),
            inbound.event.integration.clone(),
            inbound.event.connector.clone(),
        );
        match self
            .registry
            .with_running(&account, &integration, &connector, inbound, |addr, i| {
                addr.do_send(i)
            }) {
            Ok(()) => Ok(()),
            Err((inbound, reach)) => {
                let refusal = Refusal::from(reach);
                Err(self.refuse(inbound.event, refusal))
            }
        }
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
