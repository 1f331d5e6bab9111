//! `[transport]`: how events and commands travel between adapters and the engine, and the
//! `[transport.nats]` table of the NATS JetStream transport.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{check, ConfigError};

/// The transport in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// In process: adapters talk to the engine through the HTTP API.
    #[default]
    Embedded,
    /// NATS JetStream: adapters and queue runners speak to the daemon over subjects.
    Nats,
}

/// The encoding the daemon publishes in (it reads both, by `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireEncoding {
    #[default]
    Msgpack,
    Json,
}

/// `[transport.nats]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URLs, tried in turn.
    pub urls: Vec<String>,
    /// Subject prefix: `<prefix>.events.<account>.<integration>.<connector>` and so on.
    pub prefix: String,
    /// Stream names (created or updated at start).
    pub stream_events: String,
    pub stream_commands: String,
    pub stream_invocations: String,
    pub stream_results: String,
    pub stream_dlq: String,
    /// Replicas of each stream (1 on a single server).
    pub replicas: usize,
    /// How long commands and dead letters are kept, in milliseconds.
    pub retention_ms: u64,
    /// Durable consumer names of the daemon.
    pub consumer_events: String,
    pub consumer_results: String,
    /// Messages per pull.
    pub pull_batch: usize,
    /// Unacknowledged messages a consumer may hold: the bound on intake.
    pub max_ack_pending: i64,
    /// Redelivery after this long without an ack or a progress ack.
    pub ack_wait_ms: u64,
    /// Largest message the daemon takes.
    pub max_message_bytes: usize,
    /// Deduplication window of the streams (`Nats-Msg-Id`).
    pub duplicate_window_ms: u64,
    /// How long a publish waits for the stream's acknowledgement before it is tried again.
    pub publish_ack_timeout_ms: u64,
    /// How long a runner's result waits for its invocation (one being replayed after a
    /// restart) before it is dead-lettered as `unknown_invocation`.
    pub result_wait_ms: u64,
    /// Connection attempts at start before giving up.
    pub connect_retries: u32,
    /// Most invocations in one message to queue runners.
    pub invocation_batch_max: usize,
    /// Invocation batches published and not yet acknowledged; while at the bound, the next
    /// batch waits and gathers what queues meanwhile.
    pub invocation_batches_in_flight: usize,
    pub publish_encoding: WireEncoding,
    /// Partitions of the events stream (scale-out: several daemons share them); 0 keeps one
    /// catch-all consumer for one daemon. Fixed up front: change it only on a drained stream.
    pub partitions: u32,
    /// The key-value bucket where each daemon holds its membership key (with `partitions`).
    pub members_bucket: String,
    /// The key-value bucket of flow state values every daemon shares (with `partitions`).
    pub state_bucket: String,
    /// How long a daemon's membership key lives without a refresh (refreshed every third of
    /// it): how long a killed daemon's partitions wait for a new owner. Whole seconds.
    pub member_ttl_ms: u64,
    /// With partitions: the key-value bucket of the shared control plane (accounts, tokens,
    /// connectors, settings, flows, runner secrets), which every daemon watches.
    pub control_bucket: String,
    pub user: String,
    pub password: String,
    pub token: String,
    pub creds_file: Option<PathBuf>,
    pub tls_required: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("urls", &self.urls)
            .field("prefix", &self.prefix)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish_non_exhaustive()
    }
}

impl NatsConfig {
    pub const DEFAULT_URL: &'static str = "nats://127.0.0.1:4222";
    pub const DEFAULT_PREFIX: &'static str = "sb";
    pub const DEFAULT_REPLICAS: usize = 1;
    pub const DEFAULT_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
    pub const DEFAULT_PULL_BATCH: usize = 100;
    pub const DEFAULT_MAX_ACK_PENDING: i64 = 10_000;
    pub const DEFAULT_ACK_WAIT_MS: u64 = 10_000;
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
    pub const DEFAULT_DUPLICATE_WINDOW_MS: u64 = 120_000;
    pub const DEFAULT_PUBLISH_ACK_TIMEOUT_MS: u64 = 5_000;
    pub const DEFAULT_RESULT_WAIT_MS: u64 = 30_000;
    pub const DEFAULT_CONNECT_RETRIES: u32 = 10;
    pub const DEFAULT_INVOCATION_BATCH_MAX: usize = 64;
    pub const DEFAULT_INVOCATION_BATCHES_IN_FLIGHT: usize = 4;
    pub const DEFAULT_PARTITIONS: u32 = 0;
    pub const MAX_PARTITIONS: u32 = 1024;
    pub const DEFAULT_MEMBERS_BUCKET: &'static str = "SB_MEMBERS";
    pub const DEFAULT_STATE_BUCKET: &'static str = "SB_STATE";
    pub const DEFAULT_MEMBER_TTL_MS: u64 = 5_000;
    pub const DEFAULT_CONTROL_BUCKET: &'static str = "SB_CONTROL";

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.urls.is_empty() {
            return Err(ConfigError::invalid(
                "transport.nats.urls",
                "must list at least one URL",
            ));
        }
        for u in &self.urls {
            if !(u.starts_with("nats://")
                || u.starts_with("tls://")
                || u.starts_with("ws://")
                || u.starts_with("wss://"))
            {
                return Err(ConfigError::invalid(
                    "transport.nats.urls",
                    format!("{u:?} is not a nats:// or tls:// URL"),
                ));
            }
        }
        if self.prefix.is_empty()
            || self.prefix.contains(['*', '>', ' '])
            || self.prefix.starts_with('.')
            || self.prefix.ends_with('.')
        {
            return Err(ConfigError::invalid(
                "transport.nats.prefix",
                "must be a subject token path without wildcards",
            ));
        }
        for (k, v) in [
            ("transport.nats.stream_events", &self.stream_events),
            ("transport.nats.stream_commands", &self.stream_commands),
            (
                "transport.nats.stream_invocations",
                &self.stream_invocations,
            ),
            ("transport.nats.stream_results", &self.stream_results),
            ("transport.nats.stream_dlq", &self.stream_dlq),
            ("transport.nats.consumer_events", &self.consumer_events),
            ("transport.nats.consumer_results", &self.consumer_results),
            ("transport.nats.members_bucket", &self.members_bucket),
            ("transport.nats.state_bucket", &self.state_bucket),
            ("transport.nats.control_bucket", &self.control_bucket),
        ] {
            check::non_empty(k, v)?;
            if v.contains(['.', '*', '>', ' ']) {
                return Err(ConfigError::invalid(
                    k,
                    "must not contain '.', '*', '>' or spaces",
                ));
            }
        }
        if self.control_bucket == self.members_bucket {
            return Err(ConfigError::invalid(
                "transport.nats.control_bucket",
                "must differ from transport.nats.members_bucket",
            ));
        }
        if [&self.members_bucket, &self.control_bucket].contains(&&self.state_bucket) {
            return Err(ConfigError::invalid(
                "transport.nats.state_bucket",
                "must differ from transport.nats.members_bucket and control_bucket",
            ));
        }
        check::at_least("transport.nats.replicas", self.replicas as u64, 1)?;
        check::positive_ms("transport.nats.retention_ms", self.retention_ms)?;
        check::at_least("transport.nats.pull_batch", self.pull_batch as u64, 1)?;
        check::at_least(
            "transport.nats.max_ack_pending",
            self.max_ack_pending.max(0) as u64,
            1,
        )?;
        check::positive_ms("transport.nats.ack_wait_ms", self.ack_wait_ms)?;
        check::at_least(
            "transport.nats.max_message_bytes",
            self.max_message_bytes as u64,
            1024,
        )?;
        check::positive_ms(
            "transport.nats.duplicate_window_ms",
            self.duplicate_window_ms,
        )?;
        check::positive_ms(
            "transport.nats.publish_ack_timeout_ms",
            self.publish_ack_timeout_ms,
        )?;
        check::positive_ms("transport.nats.result_wait_ms", self.result_wait_ms)?;
        check::between(
            "transport.nats.invocation_batch_max",
            self.invocation_batch_max as u64,
            1,
            1000,
        )?;
        check::at_least(
            "transport.nats.invocation_batches_in_flight",
            self.invocation_batches_in_flight as u64,
            1,
        )?;
        check::between(
            "transport.nats.partitions",
            u64::from(self.partitions),
            0,
            u64::from(Self::MAX_PARTITIONS),
        )?;
        if self.member_ttl_ms < 1000 || !self.member_ttl_ms.is_multiple_of(1000) {
            return Err(ConfigError::invalid(
                "transport.nats.member_ttl_ms",
                "must be whole seconds, at least 1000",
            ));
        }
        if !self.password.is_empty() && self.user.is_empty() {
            return Err(ConfigError::invalid(
                "transport.nats.user",
                "required with a password",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::invalid(
                "transport.nats.tls_key_file",
                "tls_cert_file and tls_key_file go together",
            ));
        }
        Ok(())
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            urls: vec![Self::DEFAULT_URL.to_owned()],
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            stream_events: "SB_EVENTS".into(),
            stream_commands: "SB_COMMANDS".into(),
            stream_invocations: "SB_INVOCATIONS".into(),
            stream_results: "SB_RESULTS".into(),
            stream_dlq: "SB_DLQ".into(),
            replicas: Self::DEFAULT_REPLICAS,
            retention_ms: Self::DEFAULT_RETENTION_MS,
            consumer_events: "switchboard_events".into(),
            consumer_results: "switchboard_results".into(),
            pull_batch: Self::DEFAULT_PULL_BATCH,
            max_ack_pending: Self::DEFAULT_MAX_ACK_PENDING,
            ack_wait_ms: Self::DEFAULT_ACK_WAIT_MS,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            duplicate_window_ms: Self::DEFAULT_DUPLICATE_WINDOW_MS,
            publish_ack_timeout_ms: Self::DEFAULT_PUBLISH_ACK_TIMEOUT_MS,
            result_wait_ms: Self::DEFAULT_RESULT_WAIT_MS,
            connect_retries: Self::DEFAULT_CONNECT_RETRIES,
            invocation_batch_max: Self::DEFAULT_INVOCATION_BATCH_MAX,
            invocation_batches_in_flight: Self::DEFAULT_INVOCATION_BATCHES_IN_FLIGHT,
            publish_encoding: WireEncoding::Msgpack,
            partitions: Self::DEFAULT_PARTITIONS,
            members_bucket: Self::DEFAULT_MEMBERS_BUCKET.into(),
            state_bucket: Self::DEFAULT_STATE_BUCKET.into(),
            member_ttl_ms: Self::DEFAULT_MEMBER_TTL_MS,
            control_bucket: Self::DEFAULT_CONTROL_BUCKET.into(),
            user: String::new(),
            password: String::new(),
            token: String::new(),
            creds_file: None,
            tls_required: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// The transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    pub kind: TransportKind,
    pub nats: NatsConfig,
}

impl TransportConfig {
    pub const DEFAULT_KIND: TransportKind = TransportKind::Embedded;

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == TransportKind::Nats {
            self.nats.validate()?;
        }
        Ok(())
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            kind: Self::DEFAULT_KIND,
            nats: NatsConfig::default(),
        }
    }
}
