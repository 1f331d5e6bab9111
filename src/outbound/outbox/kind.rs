//! A destination kind as the worker holds it: its [`Destination`] and the handles of its
//! metrics (`destination_kind` is the label: kinds are registered in code, so bounded).

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram};

use super::Destination;
use crate::telemetry::metrics as m;

/// The outcomes of `switchboard_outbox_deliveries_total`.
const OUTCOMES: [&str; 6] = [
    "delivered",
    "retry",
    "failed",
    "exhausted",
    "gone",
    "withdrawn",
];

/// A kind's destination and metric handles.
pub(super) struct Kind {
    pub destination: Arc<dyn Destination>,
    pending: i64,
    pending_gauge: Gauge,
    outcomes: [Counter; 6],
    pub seconds: Histogram,
}

impl Kind {
    pub fn new(kind: &str, destination: Arc<dyn Destination>, pending: u64) -> Self {
        let label = kind.to_owned();
        let gauge = metrics::gauge!(m::OUTBOX_PENDING, "destination_kind" => label.clone());
        gauge.set(pending as f64);
        Kind {
            destination,
            pending: pending as i64,
            pending_gauge: gauge,
            outcomes: OUTCOMES.map(|outcome| {
                let c = metrics::counter!(m::OUTBOX_DELIVERIES_TOTAL, "destination_kind" => label.clone(), "outcome" => outcome);
                c.increment(0);
                c
            }),
            seconds: metrics::histogram!(m::OUTBOX_DELIVERY_SECONDS, "destination_kind" => label),
        }
    }

    pub fn count(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.outcomes[i].increment(1);
        }
    }

    pub fn pending(&mut self, delta: i64) {
        self.pending += delta;
        self.pending_gauge.set(self.pending.max(0) as f64);
    }
}
