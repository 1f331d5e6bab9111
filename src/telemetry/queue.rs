//! Every bounded queue between stages is made here, under a name from [`names`]: its depth is
//! exported as `switchboard_queue_depth{queue}` (summed over the queues of one name, read at each
//! scrape, so the hot path pays nothing for it), and each time it is found full as
//! `switchboard_queue_full_total{queue}` ([`full`]). Label values are these constants only.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::metrics::{QUEUE_CAPACITY, QUEUE_DEPTH, QUEUE_FULL_TOTAL};

/// The queue names (the `queue` label's values).
pub mod names {
    /// Admitted events waiting in a connector actor's inbox.
    pub const CONNECTOR_INBOX: &str = "connector_inbox";
    /// Batches of matches waiting in a flow shard's inbox.
    pub const FLOW_SHARD_INBOX: &str = "flow_shard_inbox";
    /// Runners' reports (commands, outcomes) waiting for their flow shard.
    pub const SHARD_REPLIES: &str = "shard_replies";
    /// Events the daemon made itself, waiting to be routed.
    pub const INTERNAL_EVENTS: &str = "internal_events";
    /// Writes waiting for the store's writer thread.
    pub const STORE_WRITER: &str = "store_writer";
    /// Messages waiting to be published to NATS.
    pub const NATS_PUBLISHER: &str = "nats_publisher";
    /// Settlements of NATS events waiting to be acknowledged.
    pub const NATS_SETTLE: &str = "nats_settle";
    /// Invocations waiting to be batched for queue runners.
    pub const NATS_INVOCATIONS: &str = "nats_invocations";
    /// Timer commands waiting for the timer service.
    pub const TIMER_COMMANDS: &str = "timer_commands";
    /// Ids of timer firings handed on, waiting to be forgotten in bulk.
    pub const TIMER_FIRINGS_DONE: &str = "timer_firings_done";
    /// `send_request` commands of one conversation waiting their turn (natives/http).
    pub const HTTP_REQUEST_LANES: &str = "http_request_lanes";
    /// Commands for external adapters waiting in a channel sink (`relay::ChannelSink`).
    pub const ADAPTER_COMMANDS: &str = "adapter_commands";
    /// Session ends not yet read by every listener (session-scoped timers).
    pub const SESSION_ENDS: &str = "session_ends";
    /// Messages enqueued and requests (withdrawals) waiting for the outbox's worker.
    pub const OUTBOX: &str = "outbox";
    /// Messages waiting to be written to a sandbox page's socket (natives/sandbox).
    pub const SANDBOX_SOCKETS: &str = "sandbox_sockets";
    /// Flow state values waiting to be put into the shared state bucket (with partitions).
    pub const STATE_SHARE: &str = "state_share";
}

/// How one live queue tells its depth and capacity; `None` once it is gone.
type Probe = Box<dyn Fn() -> Option<(usize, usize)> + Send>;

static QUEUES: Mutex<Vec<(&'static str, Probe)>> = Mutex::new(Vec::new());

/// A bounded tokio channel named `name`, observed.
pub fn bounded<T: Send + 'static>(
    name: &'static str,
    capacity: usize,
) -> (mpsc::Sender<T>, mpsc::Receiver<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    // The series exists from the start (at 0), so a rate over it is defined before a first
    // time full.
    metrics::counter!(QUEUE_FULL_TOTAL, "queue" => name).increment(0);
    let weak = tx.downgrade();
    let probe: Probe = Box::new(move || {
        let tx = weak.upgrade()?;
        Some((tx.max_capacity() - tx.capacity(), tx.max_capacity()))
    });
    QUEUES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((name, probe));
    (tx, rx)
}

/// A bounded broadcast channel observed like [`bounded`]'s queues: its depth is what the
/// slowest listener has not read yet; a listener that lags past `capacity` misses the oldest
/// values, counted by the listener with [`full`].
pub fn broadcast<T: Clone + Send + 'static>(
    name: &'static str,
    capacity: usize,
) -> tokio::sync::broadcast::Sender<T> {
    let (tx, _) = tokio::sync::broadcast::channel(capacity.max(1));
    metrics::counter!(QUEUE_FULL_TOTAL, "queue" => name).increment(0);
    let weak = tx.downgrade();
    let probe: Probe = Box::new(move || Some((weak.upgrade()?.len(), capacity.max(1))));
    QUEUES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((name, probe));
    tx
}

/// Counts that the queue `name` was found full (a sender waited, or gave up).
pub fn full(name: &'static str) {
    metrics::counter!(QUEUE_FULL_TOTAL, "queue" => name).increment(1);
}

/// Sets the depth and capacity gauges of every queue name, forgetting queues that are gone.
/// Called when metrics are read.
pub fn report() {
    let mut totals: Vec<(&'static str, usize, usize)> = Vec::new();
    let mut queues = QUEUES.lock().unwrap_or_else(|p| p.into_inner());
    queues.retain(|(name, probe)| match probe() {
        None => false,
        Some((depth, capacity)) => {
            match totals.iter_mut().find(|(n, _, _)| n == name) {
                Some(t) => {
                    t.1 += depth;
                    t.2 += capacity;
                }
                None => totals.push((name, depth, capacity)),
            }
            true
        }
    });
    drop(queues);
    for (name, depth, capacity) in totals {
        metrics::gauge!(QUEUE_DEPTH, "queue" => name).set(depth as f64);
        metrics::gauge!(QUEUE_CAPACITY, "queue" => name).set(capacity as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_read_from_live_queues_and_gone_ones_are_forgotten() {
        let (tx, _rx) = bounded::<u8>("test_queue", 4);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        let (tx2, rx2) = bounded::<u8>("test_queue", 2);
        tx2.try_send(1).unwrap();
        let depth = |name: &str| {
            QUEUES
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| *n == name)
                .filter_map(|(_, p)| p())
                .fold((0, 0), |(d, c), (pd, pc)| (d + pd, c + pc))
        };
        assert_eq!(depth("test_queue"), (3, 6));
        drop((tx2, rx2));
        report();
        assert_eq!(depth("test_queue"), (2, 4));
        assert!(
            QUEUES
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| *n == "test_queue")
                .count()
                == 1
        );
    }

    #[test]
    fn a_broadcast_is_as_deep_as_its_slowest_listener_is_behind() {
        let tx = broadcast::<u8>("test_broadcast", 8);
        let mut slow = tx.subscribe();
        let mut fast = tx.subscribe();
        for v in 0..3 {
            tx.send(v).unwrap();
        }
        for _ in 0..3 {
            fast.try_recv().unwrap();
        }
        slow.try_recv().unwrap();
        let probe = |name: &str| {
            QUEUES
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| *n == name)
                .filter_map(|(_, p)| p())
                .fold((0, 0), |(d, c), (pd, pc)| (d + pd, c + pc))
        };
        assert_eq!(probe("test_broadcast"), (2, 8));
        drop((tx, slow, fast));
        assert_eq!(probe("test_broadcast"), (0, 0), "gone with its sender");
    }
}
