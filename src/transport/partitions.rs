//! Partition ownership (`transport.nats.partitions` > 0): one durable pull consumer per
//! partition, with the pinned-client priority policy; each daemon consumes the partitions the
//! assignment gives it among the live members (`members.rs`, `assignment.rs`).
//!
//! Taking a partition over: wait (bounded) until the previous owner, if still a member,
//! released its pin; release it ourselves otherwise (a new pull waits on standby while a pin is
//! held); read what the consumer delivered so far (stream sequence D); deliveries above D wait
//! until the ack floor passes every delivery made before (a re-pin does not wait for the
//! previous owner's in-flight messages: see [`Gate`]), and those at or below D are marked
//! redelivered. Losing one: the pull stops at once, messages in
//! flight still settle (acks need no pin), and the pin is released for the next owner.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::assignment;
use super::connection::ensure_consumer;
use super::inbound::{self, Acks, Gate, InboundSettings, Lease};
use super::members::{Tenure, View};
use super::subjects::Subjects;
use crate::daemon::Daemon;
use crate::telemetry::metrics as m;

/// The priority group every partition consumer pins in.
pub const GROUP: &str = "owner";

/// How long a pin outlives its holder's last pull (pulls expire after 5 s, so a live owner
/// renews it well within); owners release pins explicitly, this is the backstop.
const PIN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long membership changes settle before partitions move (daemons starting together).
const SETTLE: Duration = Duration::from_millis(300);

/// How often a taking-over daemon asks whether the previous owner released its pin.
const RELEASE_POLL: Duration = Duration::from_millis(100);

/// What the partition consumers are.
#[derive(Clone)]
pub struct PartitionSettings {
    pub partitions: u32,
    /// Consumer `p` is `<consumer_events>_p<p>`.
    pub consumer_events: String,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    pub member_ttl: Duration,
    /// A take-over's gate opens by this long whatever the server still counts pending (see
    /// [`Gate`]): the previous owner, dead, has its deliveries come back within `ack_wait`;
    /// alive, it gives up what it queued at once and what runs ends by its invocation timeout.
    pub gate_bound: Duration,
}

impl PartitionSettings {
    fn consumer(&self, subjects: &Subjects, p: u32) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(format!("{}_p{p}", self.consumer_events)),
            filter_subject: subjects.partition(p),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: self.max_ack_pending,
            max_deliver: -1,
            priority_policy: consumer::PriorityPolicy::PinnedClient,
            priority_groups: vec![GROUP.to_owned()],
            priority_timeout: PIN_TIMEOUT,
            ..Default::default()
        }
    }
}

/// Everything a partition's consumer task needs.
#[derive(Clone)]
struct Shared {
    daemon: Arc<Daemon>,
    stream: stream::Stream,
    subjects: Subjects,
    inbound: InboundSettings,
    settings: PartitionSettings,
    acks: Acks,
    tenure: Arc<Tenure>,
}

/// This daemon as a member: its id, its view of the members, its tenure.
pub struct Member {
    pub me: String,
    pub view: watch::Receiver<View>,
    pub tenure: Arc<Tenure>,
}

/// Follows the member's view and consumes the partitions it owns, until the daemon drains.
pub fn spawn(
    daemon: Arc<Daemon>,
    stream: stream::Stream,
    subjects: Subjects,
    inbound: InboundSettings,
    settings: PartitionSettings,
    member: Member,
    acks: Acks,
) {
    let Member { me, view, tenure } = member;
    let shared = Shared {
        daemon,
        stream,
        subjects,
        inbound,
        settings,
        acks,
        tenure,
    };
    // Partitions are released (unpinned) before the daemon exits.
    let farewell = shared.daemon.farewell();
    tokio::spawn(async move {
        manage(shared, me, view).await;
        drop(farewell);
    });
}

async fn manage(shared: Shared, me: String, mut view: watch::Receiver<View>) {
    let partitions = shared.settings.partitions;
    let owned_gauge = metrics::gauge!(m::PARTITIONS_OWNED);
    let members_gauge = metrics::gauge!(m::MEMBERS_SEEN);
    let rebalances = metrics::counter!(m::PARTITION_REBALANCES_TOTAL);
    owned_gauge.set(0.0);
    let mut owned: BTreeMap<u32, CancellationToken> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    // The members the current assignment was computed from: who owned what before a change.
    let mut before: Vec<String> = Vec::new();
    while !shared.daemon.is_draining() {
        tokio::select! {
            r = view.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if shared.daemon.is_draining() {
            break;
        }
        // Released partitions' tasks, reaped.
        while tasks.try_join_next().is_some() {}
        let v = view.borrow_and_update().clone();
        members_gauge.set(v.members.len() as f64);
        let want: BTreeSet<u32> = if v.joined {
            assignment::owned(partitions, &v.members, &me)
                .into_iter()
                .collect()
        } else {
            BTreeSet::new()
        };
        if want.iter().eq(owned.keys()) {
            before = v.members;
            continue;
        }
        // Losing is at once (the key is gone, or another daemon is due); gaining waits for
        // the view to settle, so daemons starting together move partitions once.
        let lose: Vec<u32> = owned
            .keys()
            .filter(|p| !want.contains(p))
            .copied()
            .collect();
        for p in lose {
            if let Some(stop) = owned.remove(&p) {
                stop.cancel();
            }
        }
        if want.iter().any(|p| !owned.contains_key(p)) {
            tokio::time::sleep(SETTLE).await;
            if *view.borrow() != v {
                // Changed again meanwhile: decide on the newer view.
                owned_gauge.set(owned.len() as f64);
                continue;
            }
            let previous = assignment::assign(partitions, &before);
            let gain: Vec<u32> = want
                .iter()
                .copied()
                .filter(|p| !owned.contains_key(p))
                .collect();
            for p in gain {
                let previous_owner = previous.get(p as usize).map(|&i| before[i].as_str());
                // A previous owner still among the members releases its pin itself; without a
                // known one (this daemon just joined others), one may exist.
                let owner_alive = match previous_owner {
                    Some(o) => o != me && v.members.iter().any(|x| x == o),
                    None => v.members.iter().any(|x| *x != me),
                };
                let stop = CancellationToken::new();
                owned.insert(p, stop.clone());
                tasks.spawn(own(shared.clone(), p, owner_alive, stop));
            }
        }
        rebalances.increment(1);
        owned_gauge.set(owned.len() as f64);
        tracing::info!(member = %me, members = v.members.len(), owned = ?owned.keys().collect::<Vec<_>>(), "partitions: assignment changed");
        before = v.members;
    }
    for (_, stop) in owned {
        stop.cancel();
    }
    owned_gauge.set(0.0);
    while tasks.join_next().await.is_some() {}
}

/// Owns partition `p` until `stop` (or the daemon drains).
async fn own(shared: Shared, p: u32, owner_alive: bool, stop: CancellationToken) {
    let config = shared.settings.consumer(&shared.subjects, p);
    let mut pause = Duration::from_millis(100);
    let consumer = loop {
        match ensure_consumer(&shared.stream, config.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "partitions: the consumer is not available; again soon");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    };
    if owner_alive {
        // The previous owner stops pulling and unpins as soon as it sees the change; bounded
        // by two TTLs (by then its key has expired if it cannot act).
        let deadline = tokio::time::Instant::now() + shared.settings.member_ttl * 2;
        while tokio::time::Instant::now() < deadline && pinned(&consumer).await {
            tokio::select! {
                _ = tokio::time::sleep(RELEASE_POLL) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
    // A dead owner's pin would hold every new pull on standby until it times out.
    inbound::unpin(&shared.stream, &consumer, GROUP).await;
    // Without the consumer's info there is no knowing what the previous owner was given: the
    // partition is taken again (after a pause) rather than gated on a guess.
    let info = loop {
        match consumer.get_info().await {
            Ok(i) => break i.clone(),
            Err(e) => {
                tracing::debug!(partition = p, error = %e, "partitions: reading the consumer failed; again soon");
                tokio::select! {
                    _ = tokio::time::sleep(RELEASE_POLL) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    };
    let until = tokio::time::Instant::now() + shared.settings.gate_bound;
    let gate = Gate::after(&info.delivered, &info.ack_floor).map(|g| g.opening_by(until));
    let given = info.delivered.stream_sequence;
    tracing::debug!(partition = p, given, gate = ?gate, "partitions: taking over");
    let lease = Lease {
        group: Some((GROUP.to_owned(), shared.stream.clone())),
        stop: stop.clone(),
        gate,
        given_before: given,
        tenure: Some(shared.tenure.clone()),
    };
    inbound::consume(
        shared.daemon.clone(),
        consumer.clone(),
        shared.subjects.clone(),
        shared.inbound.clone(),
        shared.acks.clone(),
        lease,
    )
    .await;
    // Released at once for the next owner, whose pull waits on standby until then.
    inbound::unpin(&shared.stream, &consumer, GROUP).await;
    tracing::debug!(partition = p, "partitions: released");
}

/// Whether some client holds the pin of `consumer`.
async fn pinned(consumer: &PullConsumer) -> bool {
    match consumer.get_info().await {
        Ok(i) => i
            .priority_groups
            .iter()
            .any(|g| g.group == GROUP && g.pinned_client_id.is_some()),
        Err(_) => true,
    }
}
