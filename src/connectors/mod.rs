//! Connectors: the registry and lifecycle, settings validation, one actor per running
//! connector, and the daemon's native integrations.

pub mod actor;
pub mod registry;
pub mod settings;
pub mod system;

pub use registry::{ConnectorKey, ConnectorRegistry, ConnectorView, ControlError, Status};
