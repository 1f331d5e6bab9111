//! Observability: metric names ([`metrics`]) and the per-label-set handles hot paths hold.

pub mod handles;
pub mod metrics;
