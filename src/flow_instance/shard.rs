//! The flow shard: one actix actor per worker arbiter, hosting the flow instances placed on it.
//! Events reach it through a bounded [`crate::inbox`] that it drains in batches, runner reports
//! through its bounded reply queue ([`super::replies`]), inspections through its actix mailbox;
//! the instances' deadlines and idle timers live in one delay queue (a timer wheel). Each flow instance is still its own state machine with
//! its own queue: the shard only schedules them, one message at a time.
//!
//! Why not one actix actor per flow instance: that costs a task wake-up, a mailbox envelope and
//! a cold poll for every event (about a microsecond on this machine, half the per-event budget
//! of the throughput target), where a shard that stays busy drains its inbox without waking.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use actix::{Actor, Context, Handler};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

use super::directory::{FlowDeps, FlowInstanceKey};
use super::instance::{drop_stale, FlowInstance, ShardCx, Timer};
use super::messages::{Enqueue, FlowInstanceSnapshot, Inspect, InvocationReport};
use super::replies::{self, Replies};
use crate::inbox::{BatchInbox, BATCH};
use crate::invocation::ReportSink;

/// How a runner reaches the shard of its invocation: its reply queue. Shared, so a
/// [`crate::invocation::Reply`] costs a reference count.
pub type ShardAddr = Arc<dyn ReportSink>;

/// Below this many instances the map is never shrunk.
const SHRINK_FLOOR: usize = 1024;

/// What the shard's instances reach while they handle a message: apart from the instances
/// themselves, so one instance and these can be borrowed at once.
struct Reach {
    deps: Arc<FlowDeps>,
    timers: DelayQueue<Timer>,
    /// The shard's address, set when it starts.
    me: Option<ShardAddr>,
}

impl Reach {
    fn cx(&mut self, now: Instant) -> ShardCx<'_> {
        ShardCx {
            deps: &self.deps,
            timers: &mut self.timers,
            reply_to: self.me.as_ref().expect("set when the shard started"),
            now,
        }
    }
}

pub struct FlowShard {
    instances: FxHashMap<FlowInstanceKey, FlowInstance>,
    reach: Reach,
    inbox: mpsc::Receiver<Vec<Enqueue>>,
    /// Runners' reports, set when the shard starts.
    replies: Option<mpsc::Receiver<InvocationReport>>,
    /// Reports taken from `replies` at once, kept for its buffer.
    reports: Vec<InvocationReport>,
    /// Live instances of this shard (the directory reads it).
    live: Arc<AtomicUsize>,
}

impl FlowShard {
    pub(crate) fn new(
        inbox: mpsc::Receiver<Vec<Enqueue>>,
        deps: Arc<FlowDeps>,
        live: Arc<AtomicUsize>,
    ) -> Self {
        FlowShard {
            instances: FxHashMap::default(),
            reach: Reach {
                deps,
                timers: DelayQueue::new(),
                me: None,
            },
            inbox,
            replies: None,
            reports: Vec::new(),
            live,
        }
    }

    /// Hands a runner's report to its instance (dropped, counted, when it retired).
    fn report(&mut self, msg: InvocationReport) {
        let Some(instance) = self.instances.get_mut(&msg.key) else {
            drop_stale(msg.kind);
            return;
        };
        let mut cx = self.reach.cx(Instant::now());
        instance.report(msg.invocation_id, msg.kind, &mut cx);
    }

    fn enqueue(&mut self, msg: Enqueue, now: Instant) {
        let key = msg.key;
        let instance = self.instances.entry(key).or_insert_with(|| {
            self.live.fetch_add(1, Ordering::Relaxed);
            self.reach.deps.metrics.flow_instances_live.increment(1.0);
            FlowInstance::new(key, now)
        });
        let mut cx = self.reach.cx(now);
        instance.enqueue(msg, &mut cx);
    }

    fn fire(&mut self, timer: Timer) {
        let key = match timer {
            Timer::Deadline { key, .. } | Timer::Idle { key } => key,
        };
        let Some(instance) = self.instances.get_mut(&key) else {
            return;
        };
        let mut cx = self.reach.cx(Instant::now());
        if instance.fire(timer, &mut cx) {
            self.instances.remove(&key);
            self.live.fetch_sub(1, Ordering::Relaxed);
            self.reach.deps.metrics.flow_instances_live.decrement(1.0);
            // Memory follows the active personas: give back what a burst left behind.
            let (len, capacity) = (self.instances.len(), self.instances.capacity());
            if capacity > SHRINK_FLOOR && len * 4 < capacity {
                self.instances.shrink_to(len * 2);
            }
        }
    }
}

impl BatchInbox for FlowShard {
    type Item = Vec<Enqueue>;

    fn inbox(&mut self) -> &mut mpsc::Receiver<Vec<Enqueue>> {
        &mut self.inbox
    }

    fn handle_batch(&mut self, batch: &mut Vec<Vec<Enqueue>>, _ctx: &mut Context<Self>) -> usize {
        let mut handled = 0;
        for events in batch.drain(..) {
            handled += events.len();
            // One clock reading per message: its events arrived together.
            let now = Instant::now();
            for msg in events {
                self.enqueue(msg, now);
            }
        }
        handled
    }

    fn inbox_closed(&mut self, _ctx: &mut Context<Self>) {
        // The engine is gone; reports and timers still come until the system stops.
    }

    fn poll_other(&mut self, task: &mut std::task::Context<'_>, _ctx: &mut Context<Self>) -> bool {
        let mut progress = false;
        if let Some(replies) = &mut self.replies {
            let mut reports = std::mem::take(&mut self.reports);
            if let Poll::Ready(n) = replies.poll_recv_many(task, &mut reports, BATCH) {
                progress = n > 0;
                for msg in reports.drain(..) {
                    self.report(msg);
                }
            }
            self.reports = reports;
        }
        while let Poll::Ready(Some(expired)) = self.reach.timers.poll_expired(task) {
            self.fire(expired.into_inner());
            progress = true;
        }
        progress
    }
}

impl Actor for FlowShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // This worker records metrics per event: it takes a metrics shard of its own first.
        crate::telemetry::thread_slot::claim();
        let (replies, rx) = Replies::new(replies::CAPACITY, tokio::runtime::Handle::current());
        self.replies = Some(rx);
        self.reach.me = Some(Arc::new(replies));
        Self::start_pump(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Only reachable with work left when the system shuts down: ask for redelivery of what
        // was queued and not invoked.
        let n = self.instances.len();
        self.live.fetch_sub(n, Ordering::Relaxed);
        self.reach
            .deps
            .metrics
            .flow_instances_live
            .decrement(n as f64);
        for (_, instance) in self.instances.drain() {
            instance.give_up();
        }
        self.inbox.close();
        while let Ok(events) = self.inbox.try_recv() {
            for msg in events {
                msg.delivery.give_up();
            }
        }
        if let Some(replies) = &mut self.replies {
            replies.close();
            while let Ok(msg) = replies.try_recv() {
                drop_stale(msg.kind);
            }
        }
    }
}

impl Handler<Inspect> for FlowShard {
    type Result = Option<FlowInstanceSnapshot>;

    fn handle(&mut self, msg: Inspect, _ctx: &mut Context<Self>) -> Self::Result {
        self.instances.get(&msg.0).map(FlowInstance::snapshot)
    }
}
