//! Consuming the events stream: each message is decoded by its `Content-Type`, admitted, and
//! handed to the engine; it is acknowledged only when its delivery settles (dispatched to
//! every flow and handed over, dropped as an outcome, or recorded). Meanwhile it gets progress
//! acknowledgements so JetStream does not redeliver it. Malformed and refused messages are
//! dead-lettered (copied to the DLQ subject) and terminated, never redelivered forever. A
//! message a daemon signed (`daemon_mac.rs`: its own events, such as timer firings) may address
//! a persona and keeps its event id; an envelope naming a persona without a valid signature is
//! refused as malformed.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::AckKind;
use dashmap::DashMap;
use futures_util::StreamExt;
use rustc_hash::{FxBuildHasher, FxHashMap};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::daemon_mac::DaemonMac;
use super::headers;
use super::members::Tenure;
use super::subjects::{partition_key, Subjects};
use crate::admission::delivery::{Settle, Settlement};
use crate::daemon::Daemon;
use crate::dead_letter::{self, DeadLetter};
use crate::domain::{Idn, Target};
use crate::fault::Blame;
use crate::ingress::Admitted;
use crate::telemetry::throttle::Throttle;
use crate::telemetry::{handles, queue};
use crate::wire::envelope::{EventEnvelope, Limits, Origin};

/// Unsettled messages by token. The ackers are shared so the progress loop can copy them out
/// and await without holding a map guard (a guard held across an await deadlocks the shard).
type Ackers = Arc<DashMap<u64, Arc<async_nats::jetstream::message::Acker>, FxBuildHasher>>;

/// Settings of the events consumer.
#[derive(Clone)]
pub struct InboundSettings {
    pub pull_batch: usize,
    pub ack_wait: Duration,
    pub max_message_bytes: usize,
    pub limits: Limits,
    /// Messages delivered and not yet acknowledged, at most (the consumer's
    /// `max_ack_pending`): each settles once, so the settlement queue never holds more.
    pub max_ack_pending: usize,
    /// Verifies the daemons' own events.
    pub mac: Arc<DaemonMac>,
}

/// Messages tracked by [`Unadmitted`], at most.
const UNADMITTED: usize = 65_536;

/// Deliveries of a message that were refused for room before admission (and handed back for
/// later): they handed nothing on, so the delivery after them is not a repeat unless an
/// earlier one was admitted. Kept by the consumer (one task), per stream sequence, until the
/// message is admitted; bounded: past [`UNADMITTED`] messages, or after a restart, a message is
/// marked as JetStream counts its deliveries (a mark too many, never one missing).
///
/// A message at or below the hand-over mark of an earlier run (`handed_before`) may have been
/// invoked then, whatever its delivery count says (a NATS server killed can forget the count):
/// marked too. `handed` is this run's highest admitted sequence, recorded as the next mark.
#[derive(Default)]
struct Unadmitted {
    refused: FxHashMap<u64, u64>,
    handed_before: u64,
    handed: u64,
}

impl Unadmitted {
    /// Whether delivery number `delivered` of message `seq` may repeat an admitted one.
    fn redelivered(&self, seq: u64, delivered: u64) -> bool {
        seq <= self.handed_before
            || delivered.saturating_sub(self.refused.get(&seq).copied().unwrap_or(0)) > 1
    }

    /// `seq` was admitted: forgotten, and counted in this run's mark.
    fn admitted(&mut self, seq: u64) {
        self.forget(seq);
        self.handed = self.handed.max(seq);
    }

    /// A delivery of `seq` was refused for room.
    fn refused(&mut self, seq: u64) {
        if self.refused.len() < UNADMITTED || self.refused.contains_key(&seq) {
            *self.refused.entry(seq).or_default() += 1;
        }
    }

    /// `seq` was admitted, or refused for good: forgotten.
    fn forget(&mut self, seq: u64) {
        self.refused.remove(&seq);
    }
}

/// The acknowledgement side every events consumer of a daemon shares: the unsettled messages
/// and the task that acknowledges them as they settle (and keeps them alive meanwhile).
#[derive(Clone)]
pub struct Acks {
    ackers: Ackers,
    settled_tx: mpsc::Sender<(u64, Settlement)>,
    /// Tokens name messages across all consumers of the daemon.
    tokens: Arc<std::sync::atomic::AtomicU64>,
}

impl Acks {
    /// Starts the acknowledging task for `consumers` consumers of `settings`.
    pub fn start(settings: &InboundSettings, consumers: usize) -> Acks {
        let ackers: Ackers = Arc::new(DashMap::with_hasher(FxBuildHasher));
        // Bounded by what can be outstanding: a message settles once, and the server delivers
        // at most `max_ack_pending` unacknowledged ones per consumer (plus one pull in hand).
        let (settled_tx, settled_rx) = queue::bounded::<(u64, Settlement)>(
            queue::names::NATS_SETTLE,
            (settings.max_ack_pending + settings.pull_batch) * consumers.max(1),
        );
        tokio::spawn(acknowledge(ackers.clone(), settled_rx, settings.ack_wait));
        Acks {
            ackers,
            settled_tx,
            tokens: Arc::default(),
        }
    }

    /// Settles another consumer's message (a result message) after every settlement queued
    /// before it: the events it answers were queued when they settled, so on the one
    /// connection their acknowledgements reach the server first (a crash between the two
    /// leaves the answer to come again, harmless, never the event without its answer).
    pub async fn settle_after(&self, acker: async_nats::jetstream::message::Acker, s: Settlement) {
        let token = self.next_token();
        self.ackers.insert(token, Arc::new(acker));
        if self.settled_tx.send((token, s)).await.is_err() {
            // The acknowledging task stopped (the daemon exits): JetStream redelivers it.
            self.ackers.remove(&token);
        }
    }

    fn next_token(&self) -> u64 {
        self.tokens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1)
    }
}

/// How a consumer is held: the whole events stream for the daemon's life (one daemon), or one
/// partition while the daemon owns it (see `partitions.rs`).
pub struct Lease {
    /// The pinned-client priority group to pull in (partitions), and the consumer's stream.
    pub group: Option<(String, async_nats::jetstream::stream::Stream)>,
    /// Cancelled when the partition is lost: the pull stops at once.
    pub stop: CancellationToken,
    /// What was delivered before this owner took over: later messages wait until the previous
    /// owner is done with it, so a persona's events are never invoked out of order across
    /// owners.
    pub gate: Option<Gate>,
    /// Messages at or below this may have been invoked by a previous owner: marked redelivered.
    pub given_before: u64,
    /// Held while the daemon is a member (partitions): what is taken under it is given up
    /// uninvoked once it lapses (see [`Settle::revoked`]).
    pub tenure: Option<Arc<Tenure>>,
}

/// A message's settlement, fenced by the lease it was taken under.
struct Settler {
    tx: mpsc::Sender<(u64, Settlement)>,
    token: u64,
    /// The partition's lease (stopped when it moves) and the membership it needs.
    fence: Option<(CancellationToken, Arc<Tenure>)>,
}

impl Settle for Settler {
    fn settle(&self, s: Settlement) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send((self.token, s)) {
            // Not expected (see the bound above); the message is then delivered again after
            // `ack_wait`, marked redelivered: never lost.
            queue::full(queue::names::NATS_SETTLE);
        }
    }

    fn revoked(&self) -> bool {
        self.fence
            .as_ref()
            .is_some_and(|(stop, tenure)| stop.is_cancelled() || !tenure.held())
    }
}

/// The consumer's deliveries when an owner took over a partition.
///
/// While it stands every delivery is held, the previous owner's redelivered ones too (JetStream
/// redelivers in the order acknowledgement timers expire and naks arrive, not in the stream's);
/// it opens once nothing delivered before the take-over is open elsewhere, and what it held goes
/// on in stream order. Open: the ack floor's *consumer* sequence reached `delivery` (every
/// earlier delivery settled), or every message pending on the consumer is one held here. (Not
/// the floor's stream sequence: a filtered consumer's delivered stream sequence moves past
/// other partitions' messages, its ack floor only to the last message it acked.)
///
/// A gate also opens at a bound (`until`): a count the server keeps past what any previous
/// owner can still hold (a message acknowledged and removed while the server restarted, whose
/// consumer state was not flushed) would otherwise hold it shut for ever. After a restart of
/// the one daemon the previous run is dead: what it held comes back within `ack_wait` (bound:
/// twice that). A partition's previous owner, if alive, gives up what it queued at once and
/// what runs ends by the invocation timeout (bound: that and twice `ack_wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// The consumer sequence of the last delivery before the take-over.
    pub delivery: u64,
    /// Opens at this instant whatever is still pending.
    pub until: Option<tokio::time::Instant>,
}

impl Gate {
    /// The gate for a consumer whose info says `delivered` and `ack_floor`: none when every
    /// delivery is settled already.
    pub fn after(
        delivered: &async_nats::jetstream::consumer::SequenceInfo,
        ack_floor: &async_nats::jetstream::consumer::SequenceInfo,
    ) -> Option<Gate> {
        (ack_floor.consumer_sequence < delivered.consumer_sequence).then_some(Gate {
            delivery: delivered.consumer_sequence,
            until: None,
        })
    }

    /// The same gate, opening by `until` at the latest.
    pub fn opening_by(self, until: tokio::time::Instant) -> Gate {
        Gate {
            until: Some(until),
            ..self
        }
    }

    /// Whether the gate opens at `now`, the consumer's ack floor at consumer sequence `floor`
    /// with `pending` messages unacknowledged, `held` of them here.
    fn opens(&self, floor: u64, pending: u64, held: usize, now: tokio::time::Instant) -> bool {
        floor >= self.delivery || pending <= held as u64 || self.until.is_some_and(|u| now >= u)
    }
}

impl Lease {
    /// The whole stream, until the daemon drains.
    pub fn whole() -> Lease {
        Lease {
            group: None,
            stop: CancellationToken::new(),
            gate: None,
            given_before: 0,
            tenure: None,
        }
    }
}

/// How often a gated consumer asks for its ack floor (and keeps held messages alive).
const GATE_POLL: Duration = Duration::from_millis(200);

/// Runs the events consumer until the daemon drains. What the previous run was given and did
/// not settle (a kill) is gated, as a partition's previous owner's is: JetStream redelivers it
/// as acknowledgement timers expire, and newer messages would otherwise overtake it.
pub fn spawn(
    daemon: Arc<Daemon>,
    consumer: PullConsumer,
    subjects: Subjects,
    settings: InboundSettings,
    acks: Acks,
) {
    tokio::spawn(async move {
        let mut lease = Lease::whole();
        let mut c = consumer.clone();
        for attempt in 1..=GATE_INFO_ATTEMPTS {
            match c.info().await {
                Ok(i) => {
                    let until = tokio::time::Instant::now() + settings.ack_wait * 2;
                    lease.gate =
                        Gate::after(&i.delivered, &i.ack_floor).map(|g| g.opening_by(until));
                    tracing::debug!(gate = ?lease.gate, "events consumer: taking up the previous run's deliveries");
                    break;
                }
                Err(e) if attempt == GATE_INFO_ATTEMPTS => {
                    tracing::warn!(error = %e, "events consumer: its deliveries unknown; not gated")
                }
                Err(_) => tokio::time::sleep(GATE_POLL).await,
            }
        }
        consume(daemon, consumer, subjects, settings, acks, lease).await
    });
}

/// Attempts to read the events consumer's info at start before going on ungated.
const GATE_INFO_ATTEMPTS: u32 = 25;

/// One consumer's state across its pulls.
struct Taker<'a> {
    daemon: &'a Arc<Daemon>,
    subjects: &'a Subjects,
    settings: &'a InboundSettings,
    acks: &'a Acks,
    unadmitted: Unadmitted,
    mark: String,
    recorded: u64,
    fence: Option<(CancellationToken, Arc<Tenure>)>,
}

impl Taker<'_> {
    /// Admits `messages` and hands the admitted ones to the engine together.
    async fn take(&mut self, messages: Vec<async_nats::jetstream::Message>) {
        // Taken after the lease lapsed (the daemon was stopped past its TTL, say): handed back
        // at once for the partition's owner.
        if let Some((stop, tenure)) = &self.fence {
            if stop.is_cancelled() || !tenure.held() {
                for m in messages {
                    let _ = m.ack_with(AckKind::Nak(None)).await;
                }
                return;
            }
        }
        let mut admitted = Vec::with_capacity(messages.len());
        for m in messages {
            let token = self.acks.next_token();
            let taken = handle(
                self.daemon,
                self.subjects,
                self.settings,
                &self.acks.ackers,
                &self.acks.settled_tx,
                &mut self.unadmitted,
                token,
                m,
                self.fence.clone(),
            )
            .await;
            admitted.extend(taken);
        }
        // The mark is committed before the batch is handed on, so no invocation goes out for
        // a message it does not cover (one group commit per pulled batch).
        if self.unadmitted.handed > self.recorded {
            match self
                .daemon
                .raise_handed_mark(self.mark.clone(), self.unadmitted.handed)
                .await
            {
                Ok(()) => self.recorded = self.unadmitted.handed,
                // Repeats are then marked as JetStream counts deliveries.
                Err(e) => {
                    tracing::warn!(error = %e, "events consumer: the hand-over mark was not recorded")
                }
            }
        }
        // Waits for in-flight permits: a full engine slows the pull, it never grows memory.
        for r in self
            .daemon
            .engine()
            .ingress()
            .submit_batch_admitted(admitted)
            .await
        {
            if let Err(r) = r {
                tracing::debug!(reason = %r, "event refused after admission (connector changed meanwhile)");
            }
        }
    }
}

/// Messages held back by the gate, by stream sequence (a redelivered copy replaces the
/// earlier one: its acker is the live one).
#[derive(Default)]
struct Held(std::collections::BTreeMap<u64, async_nats::jetstream::Message>);

impl Held {
    fn hold(&mut self, seq: u64, m: async_nats::jetstream::Message) {
        self.0.insert(seq, m);
    }

    async fn keep_alive(&self) {
        for m in self.0.values() {
            let _ = m.ack_with(AckKind::Progress).await;
        }
    }

    fn release(&mut self) -> Vec<async_nats::jetstream::Message> {
        std::mem::take(&mut self.0).into_values().collect()
    }
}

/// Whether `gate` may open (see [`Gate`]).
async fn gate_open(consumer: &PullConsumer, gate: Gate, held: usize) -> bool {
    match consumer.get_info().await {
        Ok(info) => {
            let floor = info.ack_floor.consumer_sequence;
            tracing::debug!(consumer = %info.name, floor, given = gate.delivery, held, pending = info.num_ack_pending, "events consumer: gated until the previous owner's deliveries are settled");
            gate.opens(
                floor,
                info.num_ack_pending as u64,
                held,
                tokio::time::Instant::now(),
            )
        }
        Err(e) => {
            tracing::debug!(error = %e, "events consumer: reading the ack floor failed");
            false
        }
    }
}

/// Consumes `consumer` as `lease` says, until the daemon drains or the lease is stopped.
pub async fn consume(
    daemon: Arc<Daemon>,
    consumer: PullConsumer,
    subjects: Subjects,
    settings: InboundSettings,
    acks: Acks,
    lease: Lease,
) {
    let mark = consumer_mark(&consumer);
    let handed_before = match daemon.handed_mark(mark.clone()).await {
        Ok(seq) => seq,
        Err(e) => {
            // Without it, repeats are marked as JetStream counts deliveries.
            tracing::warn!(error = %e, "events consumer: the hand-over mark could not be read");
            0
        }
    };
    let mut taker = Taker {
        daemon: &daemon,
        subjects: &subjects,
        settings: &settings,
        acks: &acks,
        unadmitted: Unadmitted {
            handed_before: handed_before.max(lease.given_before),
            ..Unadmitted::default()
        },
        mark,
        recorded: handed_before,
        fence: lease.tenure.clone().map(|t| (lease.stop.clone(), t)),
    };
    let mut gate = lease.gate;
    let mut held = Held::default();
    let mut gate_tick = tokio::time::interval(GATE_POLL);
    let mut pause = Duration::from_millis(100);
    let mut pulls = 0u32;
    'outer: while !daemon.is_draining() && !lease.stop.is_cancelled() {
        // A new pull stream on a pinned consumer waits on standby while an earlier one holds
        // the pin: the earlier one (this owner's, now gone) is released first.
        if let (Some((group, stream)), true) = (&lease.group, pulls > 0) {
            unpin(stream, &consumer, group).await;
        }
        pulls += 1;
        let mut pull = consumer
            .stream()
            .max_messages_per_batch(settings.pull_batch)
            // A partition's pull notices a lost consumer leader after two missed heartbeats.
            .heartbeat(Duration::from_secs(if lease.group.is_some() {
                1
            } else {
                5
            }))
            .expires(Duration::from_secs(if lease.group.is_some() {
                5
            } else {
                30
            }));
        if let Some((group, _)) = &lease.group {
            pull = pull.group(group.clone());
        }
        let messages = match pull.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "events consumer: pulling failed; again soon");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = lease.stop.cancelled() => break 'outer,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // Whatever has arrived is handed to the engine together (no waiting to fill a batch):
        // one permit request and one inbox reservation per connector and batch.
        let mut chunks = messages.ready_chunks(settings.pull_batch.max(1));
        loop {
            let chunk = tokio::select! {
                _ = lease.stop.cancelled() => break 'outer,
                _ = gate_tick.tick(), if gate.is_some() => {
                    let Some(g) = gate else { continue };
                    if gate_open(&consumer, g, held.0.len()).await {
                        gate = None;
                        taker.take(held.release()).await;
                    } else {
                        held.keep_alive().await;
                    }
                    continue;
                }
                c = chunks.next() => c,
            };
            let Some(chunk) = chunk else { break };
            if daemon.is_draining() {
                break 'outer;
            }
            let mut ready = Vec::with_capacity(chunk.len());
            let mut failed = None;
            for next in chunk {
                match next {
                    Ok(m) => match (gate, m.info().map(|i| i.stream_sequence)) {
                        (Some(_), Ok(seq)) => held.hold(seq, m),
                        _ => ready.push(m),
                    },
                    Err(e) => failed = Some(e),
                }
            }
            taker.take(ready).await;
            if let Some(e) = failed {
                // (A consumer electing a leader answers every pull with an error at once.)
                static STREAM_ERROR: Throttle = Throttle::new();
                if let Some(suppressed) = STREAM_ERROR.allow(Throttle::EVERY) {
                    tracing::warn!(error = %e, suppressed, "events consumer: stream error; pulling again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = lease.stop.cancelled() => break 'outer,
                }
                pause = (pause * 2).min(Duration::from_secs(1));
                break;
            }
            pause = Duration::from_millis(100);
        }
    }
    // Held messages were never admitted: they come back (to this or the next owner) after
    // `ack_wait`; a prompt nak hands them on at once.
    for m in held.release() {
        let _ = m.ack_with(AckKind::Nak(None)).await;
    }
}

/// How long an unpin may take: a consumer without a leader does not answer (the JetStream
/// request would wait 5 s), and once one is elected the pin is gone anyway (it lives in the
/// leader's memory).
const UNPIN_WAIT: Duration = Duration::from_secs(1);

/// Releases `group`'s pin on `consumer`, so a standby pull (the next owner's, or this owner's
/// next stream) gets it at once.
pub async fn unpin(
    stream: &async_nats::jetstream::stream::Stream,
    consumer: &PullConsumer,
    group: &str,
) {
    let name = &consumer.cached_info().name;
    match tokio::time::timeout(UNPIN_WAIT, stream.unpin_consumer(name, group)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(consumer = %name, error = %e, "unpinning failed (no pin to release)")
        }
        // A consumer electing a leader answers nothing; its new leader holds no pin.
        Err(_) => tracing::debug!(consumer = %name, "unpinning: no answer; pulling anyway"),
    }
}

/// The key of a consumer's hand-over mark: `stream/consumer`.
fn consumer_mark(consumer: &PullConsumer) -> String {
    let info = consumer.cached_info();
    format!("{}/{}", info.stream_name, info.name)
}

/// Acknowledges settled messages and keeps the unsettled ones alive with progress acks.
async fn acknowledge(
    ackers: Ackers,
    mut settled: mpsc::Receiver<(u64, Settlement)>,
    ack_wait: Duration,
) {
    let mut tick = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            s = settled.recv() => {
                let Some((token, s)) = s else { break };
                if let Some((_, acker)) = ackers.remove(&token) {
                    let kind = match s {
                        Settlement::Done => AckKind::Ack,
                        Settlement::Redeliver => AckKind::Nak(None),
                    };
                    if let Err(e) = acker.ack_with(kind).await {
                        tracing::warn!(error = %e, "acknowledging an event failed; JetStream will redeliver it");
                    }
                }
            }
            _ = tick.tick() => {
                let unsettled: Vec<_> = ackers.iter().map(|a| a.value().clone()).collect();
                for a in unsettled {
                    let _ = a.ack_with(AckKind::Progress).await;
                }
            }
        }
    }
}

/// How long a message refused for a reason that may pass waits before its next delivery.
const REFUSED_RETRY_DELAY: Duration = Duration::from_secs(1);

async fn terminate(acker: &async_nats::jetstream::message::Acker) {
    if let Err(e) = acker.ack_with(AckKind::Term).await {
        tracing::warn!(error = %e, "terminating a refused message failed");
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    daemon: &Arc<Daemon>,
    subjects: &Subjects,
    settings: &InboundSettings,
    ackers: &Ackers,
    settled_tx: &mpsc::Sender<(u64, Settlement)>,
    unadmitted: &mut Unadmitted,
    token: u64,
    m: async_nats::jetstream::Message,
    fence: Option<(CancellationToken, Arc<Tenure>)>,
) -> Option<(Admitted, Option<Box<dyn Settle>>)> {
    let (stream_seq, delivered, stream_name) = match m.info() {
        Ok(i) => (i.stream_sequence, i.delivered, i.stream.to_owned()),
        Err(_) => (0, 1, String::new()),
    };
    let (msg, acker) = m.split();
    let subject = msg.subject.to_string();
    let from = subjects.parse_event(&subject);
    let account = from
        .as_ref()
        .and_then(|f| Idn::parse("account", f.account).ok())
        .unwrap_or_else(|| daemon.home_account());
    let refuse_raw = |detail: String, content_type: &str| {
        handles::rejected("malformed");
        dead_letter::record(
            &**daemon.engine().dead_letters(),
            DeadLetter::raw(
                account.clone(),
                format!("{detail} (subject {subject})"),
                content_type.to_owned(),
                msg.payload.to_vec(),
            ),
        );
    };
    let Some(encoding) = headers::inbound_encoding(msg.headers.as_ref()) else {
        let ct = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::CONTENT_TYPE))
            .map(|v| v.to_string())
            .unwrap_or_default();
        refuse_raw(
            format!("Content-Type: {ct:?} is neither application/json nor application/msgpack"),
            &ct,
        );
        terminate(&acker).await;
        return None;
    };
    if msg.payload.len() > settings.max_message_bytes {
        refuse_raw(
            format!(
                "body: {} bytes, more than the {} allowed",
                msg.payload.len(),
                settings.max_message_bytes
            ),
            encoding.content_type(),
        );
        terminate(&acker).await;
        return None;
    }
    // Only a daemon sharing the stream's key signs: an adapter's signature is refused, not
    // ignored (it would otherwise pass for an unsigned event and be refused less clearly).
    let origin = match msg
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::DAEMON_MAC))
    {
        None => Origin::Adapter,
        Some(mac) if settings.mac.verify(&msg.payload, mac.as_str()) => Origin::Daemon,
        Some(_) => {
            refuse_raw(
                format!(
                    "{}: does not verify (only a daemon sharing this stream's sealing key signs)",
                    headers::DAEMON_MAC
                ),
                encoding.content_type(),
            );
            terminate(&acker).await;
            return None;
        }
    };
    let decoded = encoding
        .decode::<EventEnvelope>(&msg.payload)
        .and_then(|e| e.into_domain_from(settings.limits, origin));
    let mut event = match decoded {
        Ok(x) => x,
        Err(e) => {
            refuse_raw(e.to_string(), encoding.content_type());
            terminate(&acker).await;
            return None;
        }
    };
    let matches_subject = from.as_ref().is_some_and(|f| {
        f.account == event.account.as_str()
            && f.integration == event.integration.as_str()
            && f.connector == event.connector.as_str()
    });
    // A keyed subject's key is the actor's: another would put the persona's events in two
    // partitions, out of order.
    let key_matches = match (from.as_ref().and_then(|f| f.key), &event.target) {
        (Some(key), Target::Actor(actor)) => key == partition_key(&actor.external_id),
        _ => true,
    };
    if !key_matches {
        refuse_raw(
            "subject: the partition key is not the actor's (lowercase hex of the first 8 bytes of SHA-256 of actor.external_id)".into(),
            encoding.content_type(),
        );
        terminate(&acker).await;
        return None;
    }
    if !matches_subject {
        refuse_raw(
            format!(
                "subject: the envelope says {}/{}/{}",
                event.account, event.integration, event.connector
            ),
            encoding.content_type(),
        );
        terminate(&acker).await;
        return None;
    }
    // The daemon's id, never the envelope's (two events could share one, and with it their
    // invocations). Stable across redeliveries: the same message is the same event, so a
    // redelivered one gets the same invocation ids. A daemon's own event keeps the id it was
    // made with (a timer firing's is the same at every refire).
    if origin == Origin::Adapter {
        event.id = stream_event_id(&stream_name, stream_seq);
    }
    if event.external_event_id.is_none() {
        // The adapter's message id names the event as much as an external id does: a copy
        // published again after a lost publish acknowledgement is a repeat even when the
        // stream no longer remembers the id (a work-queue stream forgets consumed messages'
        // ids when the server restarts).
        event.external_event_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::MSG_ID))
            .map(|v| v.to_string())
            .filter(|id| !id.is_empty() && id.len() <= 256);
    }
    // A daemon's own event says when it may repeat one emitted by a run before.
    let emitted_again = origin == Origin::Daemon
        && msg
            .headers
            .as_ref()
            .is_some_and(|h| h.get(headers::REDELIVERED).is_some());
    event.redelivered = emitted_again || unadmitted.redelivered(stream_seq, delivered as u64);
    let event = match daemon.engine().ingress().admit(event) {
        Ok(event) => {
            unadmitted.admitted(stream_seq);
            event
        }
        // The refusal says whether the same message may be taken later (a busy daemon): then
        // it is delivered again; otherwise it was counted, dead-lettered and copied to the DLQ
        // subject by `admit`, and is never delivered again.
        Err(refusal) if refusal.retryable() => {
            unadmitted.refused(stream_seq);
            let _ = acker
                .ack_with(AckKind::Nak(Some(REFUSED_RETRY_DELAY)))
                .await;
            return None;
        }
        Err(_) => {
            unadmitted.forget(stream_seq);
            terminate(&acker).await;
            return None;
        }
    };
    ackers.insert(token, Arc::new(acker));
    let settle = Settler {
        tx: settled_tx.clone(),
        token,
        fence,
    };
    Some((event, Some(Box::new(settle))))
}

/// The id of the event the stream holds at `seq`: stable across redeliveries.
pub(super) fn stream_event_id(stream: &str, seq: u64) -> Uuid {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(stream.as_bytes());
    h.update(&seq.to_le_bytes());
    Uuid::new_v8(h.digest128().to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::consumer::SequenceInfo;

    fn seq(consumer_sequence: u64, stream_sequence: u64) -> SequenceInfo {
        SequenceInfo {
            consumer_sequence,
            stream_sequence,
            last_active: None,
        }
    }

    /// The case that stalled partitions: the previous owner acked everything it was given, the
    /// last at stream sequence 185, and the consumer's delivered stream sequence moved on to
    /// 208 past other partitions' messages. No gate: nothing of the previous owner is open.
    #[test]
    fn a_partition_whose_deliveries_are_all_acked_is_not_gated_whatever_its_stream_sequences() {
        assert_eq!(Gate::after(&seq(40, 208), &seq(40, 185)), None);
        assert_eq!(
            Gate::after(&seq(0, 96), &seq(0, 0)),
            None,
            "never delivered"
        );
    }

    #[test]
    fn a_gate_opens_once_nothing_delivered_before_the_take_over_is_open_elsewhere() {
        let gate = Gate::after(&seq(42, 208), &seq(40, 170)).expect("two deliveries open");
        assert_eq!(
            gate,
            Gate {
                delivery: 42,
                until: None
            }
        );
        let now = tokio::time::Instant::now();
        // The previous owner still holds two: 5 pending, 3 of them held here.
        assert!(!gate.opens(40, 5, 3, now));
        // Settled there (the floor passed them), or redelivered here and held.
        assert!(gate.opens(42, 3, 3, now));
        assert!(gate.opens(40, 5, 5, now));
    }

    #[test]
    fn a_gate_with_a_bound_opens_there_whatever_the_server_still_counts() {
        let now = tokio::time::Instant::now();
        let gate = Gate {
            delivery: 200,
            until: Some(now + Duration::from_secs(6)),
        };
        assert!(!gate.opens(70, 129, 128, now));
        assert!(gate.opens(70, 129, 128, now + Duration::from_secs(6)));
    }

    #[test]
    fn deliveries_refused_for_room_do_not_count_as_repeats() {
        let mut u = Unadmitted::default();
        assert!(!u.redelivered(7, 1));
        assert!(u.redelivered(7, 2), "an unknown second delivery is marked");
        // Refused twice for room: the third delivery is the first one admitted.
        u.refused(7);
        u.refused(7);
        assert!(!u.redelivered(7, 3));
        u.forget(7);
        // Admitted, then delivered again (its ack lost): a repeat.
        assert!(u.redelivered(7, 4));
        // Admitted once, then refused once: the delivery after is still a repeat.
        u.refused(8);
        assert!(!u.redelivered(8, 2));
        assert!(u.redelivered(8, 3), "delivery 1 was refused, 2 admitted");
    }

    #[test]
    fn messages_at_or_below_an_earlier_runs_mark_are_repeats_whatever_their_count() {
        // An earlier run handed on up to 40; the NATS server forgot the delivery counts.
        let mut u = Unadmitted {
            handed_before: 40,
            ..Unadmitted::default()
        };
        assert!(
            u.redelivered(40, 1),
            "handed on before the crash: may have been invoked"
        );
        assert!(u.redelivered(3, 1));
        assert!(!u.redelivered(41, 1), "past the mark: new");
        // This run's mark follows what it admits.
        u.admitted(45);
        u.admitted(43);
        assert_eq!(u.handed, 45);
    }
}
