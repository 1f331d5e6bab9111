//! Observability: metric names ([`metrics`]), the per-label-set handles hot paths hold, the
//! recorder and exposition the daemon installs ([`exporter`]), the observed queues between
//! stages ([`queue`]), the process' own figures ([`process`]) and rate-limited warnings
//! ([`throttle`]).

pub mod counter;
pub mod exporter;
pub mod flow_labels;
pub mod handles;
pub mod histogram;
pub mod metrics;
pub mod process;
pub mod queue;
pub mod thread_slot;
pub mod throttle;
