//! Connectors: the directory the hot path reads, the lifecycle that changes it, one actor per
//! running connector, the command acts issued to adapters, and the interface through which
//! the connector stage hands its events to routing.

pub mod actor;
pub mod acts;
pub mod directory;
pub mod registry;
pub mod route;

pub use directory::Directory;
pub use registry::{ConnectorKey, ConnectorRegistry, ConnectorView, ControlError, Status};
