//! The NATS JetStream transport: integration adapters publish events and consume commands,
//! queue runners consume invocations and publish results, refusals go to the DLQ subject.
//! `[transport] kind = "nats"` turns it on; the embedded transport (HTTP only) stays the default.

pub mod assignment;
pub mod buckets;
pub mod client;
pub mod commands;
pub mod connection;
pub mod control_bucket;
pub mod daemon_mac;
pub mod dlq;
pub mod headers;
pub mod inbound;
pub mod invocation_batches;
pub mod members;
pub mod partitions;
pub mod persona_keys;
pub mod publisher;
pub mod queue_runner;
pub mod results;
pub mod state_bucket;
pub mod stream_inbox;
pub mod subjects;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;

use crate::config::NatsConfig;
use crate::daemon::Daemon;
use crate::skill_runner::pending::PendingInvocations;
use crate::store::Store;
use crate::wire::envelope::{Encoding, Limits};
pub use connection::NatsError;
use invocation_batches::{BatchSettings, InvocationBatches};
use publisher::Publisher;
use queue_runner::QueueRunner;
use subjects::Subjects;

/// Invocations waiting for a batch before the queue runner waits for room.
const INVOCATION_QUEUE: usize = 4096;

/// The NATS client's connection state (it reconnects by itself), and with partitions the
/// membership view.
pub struct NatsLink(async_nats::Client, Option<watch::Receiver<members::View>>);

impl crate::daemon::TransportLink for NatsLink {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn connected(&self) -> bool {
        self.0.connection_state() == async_nats::connection::State::Connected
    }

    fn member(&self) -> Option<bool> {
        self.1.as_ref().map(|v| v.borrow().joined)
    }
}

/// The membership of a daemon on a partitioned events stream, before it joins.
struct Members {
    store: async_nats::jetstream::kv::Store,
    me: String,
    view: (watch::Sender<members::View>, watch::Receiver<members::View>),
}

/// A connected transport, before its consumers run.
pub struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub subjects: Subjects,
    pub publisher: Publisher,
    pub encoding: Encoding,
    consumers: connection::Consumers,
    /// With partitions: the members bucket, this daemon's member id (random per start), and
    /// the view the membership task keeps.
    members: Option<Members>,
    /// With partitions: the shared control plane's bucket.
    control: Option<control_bucket::ControlBucket>,
    /// Signs the daemon's own events on the events stream and verifies them when consumed.
    mac: Arc<daemon_mac::DaemonMac>,
    config: NatsConfig,
}

impl Nats {
    /// Connects (with retries) and creates or updates the streams and consumers; `mac` signs
    /// the daemon's own events (the same key on every daemon of the stream).
    pub async fn connect(
        config: &NatsConfig,
        publish_capacity: usize,
        mac: daemon_mac::DaemonMac,
    ) -> Result<Nats, NatsError> {
        let client = connection::connect(config, "switchboard").await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_millis(config.publish_ack_timeout_ms));
        let subjects = Subjects::new(&config.prefix);
        // The members bucket first: a server without per-key TTLs refuses it before the
        // events stream is changed to partitioned subjects.
        let members = if config.partitions > 0 {
            let store = members::bucket(
                &js,
                &config.members_bucket,
                Duration::from_millis(config.member_ttl_ms),
                config.replicas,
            )
            .await?;
            Some(Members {
                store,
                me: uuid::Uuid::new_v4().simple().to_string(),
                view: watch::channel(members::View::default()),
            })
        } else {
            None
        };
        let control = if config.partitions > 0 {
            let store =
                control_bucket::bucket(&js, &config.control_bucket, config.replicas).await?;
            Some(control_bucket::ControlBucket::new(js.clone(), store))
        } else {
            None
        };
        let consumers = connection::ensure(&js, config, &subjects).await?;
        let publisher = Publisher::start(js.clone(), publish_capacity);
        tracing::info!(urls = %config.urls.join(","), prefix = %config.prefix, "NATS JetStream transport ready");
        Ok(Nats {
            client,
            js,
            subjects,
            publisher,
            encoding: headers::encoding(config.publish_encoding),
            consumers,
            members,
            control,
            mac: Arc::new(mac),
            config: config.clone(),
        })
    }

    /// The events stream as the intake's durable step; with partitions, `store` tells the
    /// actor of a persona the daemon addresses an event to.
    pub fn stream_inbox(&self, store: Store) -> stream_inbox::StreamIntake {
        let keyed = self.config.partitions > 0;
        stream_inbox::StreamIntake {
            js: self.js.clone(),
            subjects: self.subjects.clone(),
            encoding: self.encoding,
            keyed,
            publisher: self.publisher.clone(),
            mac: self.mac.clone(),
            persona_keys: keyed.then(|| Arc::new(persona_keys::PersonaKeys::new(store))),
        }
    }

    /// With partitions: the flow state every daemon of the stream shares (values journalled to
    /// `local` too), entries kept `ttl`; `None` for one daemon.
    pub async fn shared_state(
        &self,
        local: Arc<dyn crate::flow_instance::state::StateJournal>,
        ttl: Duration,
    ) -> Result<Option<state_bucket::SharedState>, NatsError> {
        let Some(m) = &self.members else {
            return Ok(None);
        };
        let store = state_bucket::bucket(
            &self.js,
            &self.config.state_bucket,
            ttl,
            self.config.replicas,
        )
        .await?;
        Ok(Some(state_bucket::SharedState::new(
            store,
            m.me.clone(),
            local,
        )))
    }

    /// With partitions, the shared control plane's bucket (the daemon's [`ControlPlane`];
    /// [`control_bucket::follow`] feeds it the bucket's changes).
    ///
    /// [`ControlPlane`]: crate::daemon::control_plane::ControlPlane
    pub fn control_plane(&self) -> Option<control_bucket::ControlBucket> {
        self.control.clone()
    }

    /// The client's connection state, for readiness and `/metrics`.
    pub fn link(&self) -> NatsLink {
        NatsLink(
            self.client.clone(),
            self.members.as_ref().map(|m| m.view.1.clone()),
        )
    }

    /// The runner of `runner: {kind: queue}` flows; starts its invocation batcher.
    pub fn queue_runner(&self, pending: Arc<PendingInvocations>, store: Store) -> QueueRunner {
        let batches = InvocationBatches::start(
            self.publisher.clone(),
            store,
            self.encoding,
            pending.clone(),
            BatchSettings {
                max: self.config.invocation_batch_max,
                in_flight: self.config.invocation_batches_in_flight,
                capacity: INVOCATION_QUEUE,
                keep_ms: self.config.duplicate_window_ms as i64,
            },
            metrics::histogram!(crate::telemetry::metrics::NATS_INVOCATION_BATCH_SIZE),
        );
        QueueRunner {
            batches,
            subjects: self.subjects.clone(),
            pending,
            client: self.client.clone(),
            encoding: self.encoding,
        }
    }

    /// Starts consuming events and results for `daemon`.
    pub fn start(self, daemon: Arc<Daemon>, limits: Limits) {
        let c = &self.config;
        let settings = inbound::InboundSettings {
            pull_batch: c.pull_batch,
            ack_wait: Duration::from_millis(c.ack_wait_ms),
            max_message_bytes: c.max_message_bytes,
            limits,
            max_ack_pending: c.max_ack_pending.max(1) as usize,
            mac: self.mac.clone(),
        };
        // One acknowledging task for events and results: a result message is acknowledged
        // after the events it answers (`Acks::settle_after`).
        let acks = inbound::Acks::start(&settings, (c.partitions as usize).max(1) + 1);
        if let Some(events) = self.consumers.events {
            inbound::spawn(
                daemon.clone(),
                events,
                self.subjects.clone(),
                settings,
                acks.clone(),
            );
        } else if let Some(Members { store, me, view }) = self.members {
            let ttl = Duration::from_millis(c.member_ttl_ms);
            tracing::info!(member = %me, partitions = c.partitions, "partitioned events stream: joining the members");
            let (tx, view) = view;
            let tenure =
                members::spawn(daemon.clone(), self.js.clone(), store, me.clone(), ttl, tx);
            partitions::spawn(
                daemon.clone(),
                self.consumers.events_stream,
                self.subjects.clone(),
                settings,
                partitions::PartitionSettings {
                    partitions: c.partitions,
                    consumer_events: c.consumer_events.clone(),
                    ack_wait: Duration::from_millis(c.ack_wait_ms),
                    max_ack_pending: c.max_ack_pending,
                    member_ttl: ttl,
                    gate_bound: Duration::from_millis(daemon.config().engine.invocation_timeout_ms)
                        + Duration::from_millis(c.ack_wait_ms) * 2,
                },
                partitions::Member { me, view, tenure },
                acks.clone(),
            );
        }
        results::spawn(
            daemon,
            self.consumers.results,
            results::Settings {
                pull_batch: c.pull_batch,
                limits,
                wait: Duration::from_millis(c.result_wait_ms),
                progress: Duration::from_millis(c.ack_wait_ms / 3).max(Duration::from_millis(100)),
                shared: (c.partitions > 0).then(|| self.js.clone()),
                acks,
            },
        );
    }
}
