//! Connecting to NATS with the configured credentials and TLS, retrying at start, and making
//! sure the streams and the daemon's durable consumers exist with the configured settings
//! (created or updated, idempotently).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::subjects::Subjects;
use crate::config::NatsConfig;
use crate::fault::{Blame, Fault};

/// The NATS transport's failures: all a peer's (the server) or the operator's (config).
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot reach NATS at {urls} after {attempts} attempts: {last}")]
    Unreachable {
        urls: String,
        attempts: u32,
        last: String,
    },
    #[error("credentials file {0}: {1}")]
    Credentials(String, String),
    #[error("JetStream {what}: {detail}")]
    JetStream { what: String, detail: String },
}

impl Blame for NatsError {
    fn fault(&self) -> Fault {
        match self {
            // The operator's configuration.
            NatsError::Credentials(..) => Fault::Caller,
            NatsError::Unreachable { .. } | NatsError::JetStream { .. } => Fault::Peer,
        }
    }

    fn retryable(&self) -> bool {
        !matches!(self, NatsError::Credentials(..))
    }
}

fn js_err(what: impl Into<String>, e: impl std::fmt::Display) -> NatsError {
    NatsError::JetStream {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// Connects, retrying `connect_retries` times with a growing pause.
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, NatsError> {
    let mut last = String::new();
    let attempts = cfg.connect_retries.max(1);
    for attempt in 1..=attempts {
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .max_reconnects(None)
            .require_tls(cfg.tls_required);
        if !cfg.user.is_empty() {
            opts = opts.user_and_password(cfg.user.clone(), cfg.password.clone());
        }
        if !cfg.token.is_empty() {
            opts = opts.token(cfg.token.clone());
        }
        if let Some(creds) = &cfg.creds_file {
            opts = opts
                .credentials_file(creds)
                .await
                .map_err(|e| NatsError::Credentials(creds.display().to_string(), e.to_string()))?;
        }
        if let Some(ca) = &cfg.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let addrs: Vec<async_nats::ServerAddr> =
            cfg.urls.iter().filter_map(|u| u.parse().ok()).collect();
        match opts.connect(addrs).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                last = e.to_string();
                tracing::warn!(attempt, attempts, error = %last, "NATS not reachable yet");
                if attempt < attempts {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt).min(10)))
                        .await;
                }
            }
        }
    }
    Err(NatsError::Unreachable {
        urls: cfg.urls.join(","),
        attempts,
        last,
    })
}

async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, NatsError> {
    let name = config.name.clone();
    match js.get_stream(&name).await {
        Ok(_) => {
            js.update_stream(config)
                .await
                .map_err(|e| js_err(format!("updating stream {name}"), e))?;
        }
        Err(_) => {
            js.create_stream(config)
                .await
                .map_err(|e| js_err(format!("creating stream {name}"), e))?;
        }
    }
    js.get_stream(&name)
        .await
        .map_err(|e| js_err(format!("stream {name}"), e))
}

/// The daemon's consumers: of events the catch-all one (without partitions; with them each
/// partition's consumer is made by its owner, see `partitions.rs`), and of results.
pub struct Consumers {
    pub events: Option<consumer::PullConsumer>,
    pub events_stream: stream::Stream,
    pub results: consumer::PullConsumer,
}

/// Creates or updates the five streams and the daemon's durable consumers.
pub async fn ensure(
    js: &jetstream::Context,
    cfg: &NatsConfig,
    subjects: &Subjects,
) -> Result<Consumers, NatsError> {
    let retention = Duration::from_millis(cfg.retention_ms);
    let dup = Duration::from_millis(cfg.duplicate_window_ms);
    let base = |name: &str, kind: &str, policy: stream::RetentionPolicy| stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.all(kind)],
        retention: policy,
        storage: stream::StorageType::File,
        num_replicas: cfg.replicas,
        duplicate_window: dup,
        ..Default::default()
    };
    let mut events_config = base(
        &cfg.stream_events,
        "events",
        stream::RetentionPolicy::WorkQueue,
    );
    if cfg.partitions > 0 {
        // Keyed subjects in, their partition appended by the stream (5-token subjects find no
        // stream: the publisher hears it, nothing waits unconsumed).
        let (source, destination) = subjects.partition_transform(cfg.partitions);
        events_config.subjects = subjects.partitioned_events();
        events_config.subject_transform = Some(stream::SubjectTransform {
            source,
            destination,
        });
    }
    let events = ensure_stream(js, events_config).await?;
    ensure_stream(
        js,
        stream::Config {
            max_age: retention,
            ..base(
                &cfg.stream_commands,
                "commands",
                stream::RetentionPolicy::Limits,
            )
        },
    )
    .await?;
    ensure_stream(
        js,
        base(
            &cfg.stream_invocations,
            "invoke",
            stream::RetentionPolicy::WorkQueue,
        ),
    )
    .await?;
    let results = ensure_stream(
        js,
        base(
            &cfg.stream_results,
            "results",
            stream::RetentionPolicy::WorkQueue,
        ),
    )
    .await?;
    ensure_stream(
        js,
        stream::Config {
            max_age: retention,
            ..base(&cfg.stream_dlq, "dlq", stream::RetentionPolicy::Limits)
        },
    )
    .await?;
    let consumer_config = |name: &str, kind: &str| consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject: subjects.all(kind),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_millis(cfg.ack_wait_ms),
        max_ack_pending: cfg.max_ack_pending,
        max_deliver: -1,
        ..Default::default()
    };
    let events_consumer = if cfg.partitions == 0 {
        Some(ensure_consumer(&events, consumer_config(&cfg.consumer_events, "events")).await?)
    } else {
        None
    };
    let results =
        ensure_consumer(&results, consumer_config(&cfg.consumer_results, "results")).await?;
    Ok(Consumers {
        events: events_consumer,
        events_stream: events,
        results,
    })
}

/// The durable consumer `config` names, created, or updated when it exists with another
/// `ack_wait` or `max_ack_pending` (the settings an operator tunes for long queues).
pub(super) async fn ensure_consumer(
    stream: &stream::Stream,
    config: consumer::pull::Config,
) -> Result<consumer::PullConsumer, NatsError> {
    let name = config.durable_name.clone().unwrap_or_default();
    let what = || format!("consumer {name}");
    let mut existing = stream
        .get_or_create_consumer(&name, config.clone())
        .await
        .map_err(|e| js_err(what(), e))?;
    let info = existing.info().await.map_err(|e| js_err(what(), e))?;
    if info.config.ack_wait != config.ack_wait
        || info.config.max_ack_pending != config.max_ack_pending
    {
        tracing::info!(
            consumer = %name,
            ack_wait_ms = config.ack_wait.as_millis() as u64,
            max_ack_pending = config.max_ack_pending,
            "updating the consumer's settings"
        );
        existing = stream
            .create_consumer(config)
            .await
            .map_err(|e| js_err(format!("updating consumer {name}"), e))?;
    }
    Ok(existing)
}
