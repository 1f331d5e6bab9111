//! Observability: metric names ([`metrics`]), the per-label-set handles hot paths hold, and
//! the recorder and exposition the daemon installs ([`exporter`]).

pub mod counter;
pub mod exporter;
pub mod handles;
pub mod histogram;
pub mod metrics;
pub mod thread_slot;
