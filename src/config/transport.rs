//! `[transport]`: how events and commands travel between adapters and the engine.

use serde::{Deserialize, Serialize};

/// The transport in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// In process: adapters talk to the engine through the HTTP API and in-process channels.
    #[default]
    Embedded,
    // Next: `Nats`, with its settings in a `[transport.nats]` table (a `nats` field of
    // `TransportConfig`, validated when `kind = "nats"`).
}

/// The transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    pub kind: TransportKind,
}

impl TransportConfig {
    pub const DEFAULT_KIND: TransportKind = TransportKind::Embedded;
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            kind: Self::DEFAULT_KIND,
        }
    }
}
