//! Every metric name of the daemon's own (the README lists them), in one place, with its
//! description; a native's names are in its folder's `metrics.rs` (names and `describe`), and
//! [`describe`] calls each registered native's at start (given by the registration list).
//!
//! Hot paths never build a metric from its name per event: they resolve a handle once per
//! connector, flow or label set (see [`crate::telemetry::handles`]) and increment that.

/// Prefix of every metric.
pub const PREFIX: &str = "switchboard_";

pub const EVENTS_RECEIVED_TOTAL: &str = "switchboard_events_received_total";
pub const EVENTS_REJECTED_TOTAL: &str = "switchboard_events_rejected_total";
pub const EVENTS_UNMATCHED_TOTAL: &str = "switchboard_events_unmatched_total";
pub const EVENTS_DEDUPLICATED_TOTAL: &str = "switchboard_events_deduplicated_total";
pub const INVOCATIONS_TOTAL: &str = "switchboard_invocations_total";
pub const INVOCATION_DURATION_SECONDS: &str = "switchboard_invocation_duration_seconds";
pub const DISPATCH_LATENCY_SECONDS: &str = "switchboard_dispatch_latency_seconds";
pub const COMMANDS_TOTAL: &str = "switchboard_commands_total";
pub const CONNECTORS: &str = "switchboard_connectors";
pub const SESSIONS_ACTIVE: &str = "switchboard_sessions_active";
pub const SESSIONS_STARTED_TOTAL: &str = "switchboard_sessions_started_total";
pub const FLOW_INSTANCE_QUEUE_DEPTH: &str = "switchboard_flow_instance_queue_depth";
pub const FLOW_INSTANCES_LIVE: &str = "switchboard_flow_instances_live";
pub const DEAD_LETTERS_TOTAL: &str = "switchboard_dead_letters_total";
pub const DEAD_LETTERS_PRUNED_TOTAL: &str = "switchboard_dead_letters_pruned_total";
pub const INDEX_REBUILD_SECONDS: &str = "switchboard_index_rebuild_seconds";
pub const INDEX_SUBSCRIPTIONS: &str = "switchboard_index_subscriptions";
pub const INFLIGHT_EVENTS: &str = "switchboard_inflight_events";
pub const INFLIGHT_LIMIT: &str = "switchboard_inflight_limit";
pub const NATS_INVOCATION_BATCH_SIZE: &str = "switchboard_nats_invocation_batch_size";
pub const FLOW_RELOADS_TOTAL: &str = "switchboard_flow_reloads_total";
pub const FLOW_RELOAD_LAST_SUCCESS: &str = "switchboard_flow_reload_last_success_timestamp_seconds";
pub const QUEUE_DEPTH: &str = "switchboard_queue_depth";
pub const QUEUE_CAPACITY: &str = "switchboard_queue_capacity";
pub const QUEUE_FULL_TOTAL: &str = "switchboard_queue_full_total";
pub const TRANSPORT_CONNECTED: &str = "switchboard_transport_connected";
pub const PARTITIONS_OWNED: &str = "switchboard_partitions_owned";
pub const MEMBERS_SEEN: &str = "switchboard_members_seen";
pub const PARTITION_REBALANCES_TOTAL: &str = "switchboard_partition_rebalances_total";
pub const EVENTS_FENCED_TOTAL: &str = "switchboard_events_fenced_total";
pub const COMMANDS_FENCED_TOTAL: &str = "switchboard_commands_fenced_total";
pub const CONTROL_PLANE_CHANGES_TOTAL: &str = "switchboard_control_plane_changes_total";
pub const BUILD_INFO: &str = "switchboard_build_info";
pub const HTTP_REQUESTS_TOTAL: &str = "switchboard_http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "switchboard_http_request_duration_seconds";
pub const EGRESS_DENIED_TOTAL: &str = "switchboard_egress_denied_total";
pub const CANCEL_NOTICES_TOTAL: &str = "switchboard_cancel_notices_total";
pub const QUEUE_RESULTS_TOTAL: &str = "switchboard_queue_results_total";
pub const RUNNER_ATTEMPTS_TOTAL: &str = "switchboard_runner_attempts_total";
pub const LIMITS_REACHED_TOTAL: &str = "switchboard_limits_reached_total";
pub const OUTBOX_PENDING: &str = "switchboard_outbox_pending";
pub const OUTBOX_DELIVERIES_TOTAL: &str = "switchboard_outbox_deliveries_total";
pub const OUTBOX_DELIVERY_SECONDS: &str = "switchboard_outbox_delivery_seconds";
pub const COMMAND_RECALLS_TOTAL: &str = "switchboard_command_recalls_total";
// Process metrics under their conventional (unprefixed) names, read from /proc at the scrape.
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";

/// Counters with a fractional value, read from elsewhere at the scrape: recorded as gauges (the
/// facade's counters are integers), exposed with the counter type.
pub const GAUGES_EXPOSED_AS_COUNTERS: &[&str] = &[PROCESS_CPU_SECONDS_TOTAL];

/// Upper bounds of the `_seconds` histograms: from 100 µs (the engine's own dispatch) to two
/// minutes (a slow skill). Prometheus' default buckets start at 5 ms, too coarse for dispatch.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Upper bounds of the histograms that count things (queue depth, batch size).
pub const COUNT_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The buckets of histogram `name`.
pub fn buckets(name: &str) -> &'static [f64] {
    if name.ends_with("_seconds") {
        SECONDS_BUCKETS
    } else {
        COUNT_BUCKETS
    }
}

/// Registers the descriptions with the installed recorder, the daemon's and then those of
/// `natives` (each registered native's `describe`). Call once at start.
pub fn describe(natives: &[fn()]) {
    describe_own();
    for describe in natives {
        describe();
    }
}

/// The daemon's own descriptions.
fn describe_own() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        EVENTS_RECEIVED_TOTAL,
        "Inbound events admitted, by integration, event and channel."
    );
    describe_counter!(
        EVENTS_REJECTED_TOTAL,
        "Inbound events refused at admission, by reason."
    );
    describe_counter!(
        EVENTS_UNMATCHED_TOTAL,
        "Admitted events that matched no subscription."
    );
    describe_counter!(
        EVENTS_DEDUPLICATED_TOTAL,
        "Events acknowledged but not routed again (repeated external_event_id)."
    );
    describe_counter!(
        INVOCATIONS_TOTAL,
        "Invocation outcomes: completed, failed, timed_out, interrupted, superseded, cancelled, no_skill, fenced."
    );
    describe_histogram!(
        INVOCATION_DURATION_SECONDS,
        Unit::Seconds,
        "From invocation sent to its outcome."
    );
    describe_histogram!(
        DISPATCH_LATENCY_SECONDS,
        Unit::Seconds,
        "From admission to invocation sent."
    );
    describe_counter!(
        COMMANDS_TOTAL,
        "Commands by target integration, command and outcome (sent, refused, dropped)."
    );
    describe_gauge!(CONNECTORS, "Connectors by integration and status.");
    describe_gauge!(SESSIONS_ACTIVE, "Live sessions by channel.");
    describe_counter!(SESSIONS_STARTED_TOTAL, "Sessions started by channel.");
    describe_histogram!(
        FLOW_INSTANCE_QUEUE_DEPTH,
        "Pending events of a flow instance, sampled when an event is queued."
    );
    describe_gauge!(FLOW_INSTANCES_LIVE, "Flow instances alive.");
    describe_counter!(DEAD_LETTERS_TOTAL, "Dead-letter records by reason.");
    describe_counter!(
        DEAD_LETTERS_PRUNED_TOTAL,
        "Dead letters pruned by the retention policy, by the limit that pruned them (age, count, bytes)."
    );
    describe_histogram!(
        INDEX_REBUILD_SECONDS,
        Unit::Seconds,
        "Time to rebuild the subscription index."
    );
    describe_gauge!(INDEX_SUBSCRIPTIONS, "Subscriptions in the live index.");
    describe_gauge!(
        INFLIGHT_EVENTS,
        "Admitted events not yet dispatched or recorded (bounded by the in-flight limit)."
    );
    describe_gauge!(
        INFLIGHT_LIMIT,
        "The in-flight limit: beyond it, ingress waits."
    );
    describe_histogram!(
        NATS_INVOCATION_BATCH_SIZE,
        "Invocations per message published to queue runners (NATS transport)."
    );
    describe_counter!(
        FLOW_RELOADS_TOTAL,
        "Reloads of the flow files on SIGHUP, by result (ok, refused)."
    );
    describe_gauge!(
        FLOW_RELOAD_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful reload of the flow files."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Items waiting in the bounded queues between stages, by queue."
    );
    describe_gauge!(
        QUEUE_CAPACITY,
        "Capacity of the bounded queues between stages, by queue."
    );
    describe_counter!(
        QUEUE_FULL_TOTAL,
        "Times a queue between stages was found full (a sender waited or gave up), by queue."
    );
    describe_gauge!(
        TRANSPORT_CONNECTED,
        "1 while the NATS transport is connected, else 0 (only with the NATS transport)."
    );
    describe_gauge!(
        PARTITIONS_OWNED,
        "Partitions of the events stream this daemon owns (NATS with transport.nats.partitions)."
    );
    describe_gauge!(
        MEMBERS_SEEN,
        "Daemons in the members bucket as this one sees them (with partitions)."
    );
    describe_counter!(
        PARTITION_REBALANCES_TOTAL,
        "Changes of this daemon's owned partitions (with partitions)."
    );
    describe_counter!(
        EVENTS_FENCED_TOTAL,
        "Queued events given up uninvoked because their partition was lost or its lease lapsed (with partitions): the new owner invokes them."
    );
    describe_counter!(
        COMMANDS_FENCED_TOTAL,
        "Commands of an invocation whose event's partition was lost or whose lease lapsed while it ran (with partitions), not carried out (no state written, nothing sent): the event goes to the partition's new owner."
    );
    describe_counter!(
        CONTROL_PLANE_CHANGES_TOTAL,
        "Entries of the shared control plane's bucket (NATS with partitions) by kind (account, token, connector, settings, flow, runner_secret) and outcome: applied here, seen (this daemon's own or older), failed to apply, conflict (a change of this daemon's lost its compare-and-set: 409)."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the daemon's version in the label.");
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests by route template and status class."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request durations by route template."
    );
    describe_counter!(
        EGRESS_DENIED_TOTAL,
        "Outbound requests refused by the egress policy, by reason (loopback, link_local, private, shared_address_space, unspecified, multicast, broadcast, documentation, reserved)."
    );
    describe_counter!(
        RUNNER_ATTEMPTS_TOTAL,
        "Attempts to reach webhook runners, by agent, flow and result (answered, pending, retry, failed, gone): the runners' health."
    );
    describe_counter!(
        LIMITS_REACHED_TOTAL,
        "Creates refused at an account's limit, by limit (the [limits] key: limits.connectors_per_account, limits.flows_per_account, limits.tokens_per_account, limits.timers_per_account)."
    );
    describe_counter!(
        QUEUE_RESULTS_TOTAL,
        "Queue runners' answers on the results stream, by outcome (applied; unknown: no invocation waited, dead-lettered; repeat: a redelivered message's answer whose invocation had settled before a restart; elsewhere: with partitions, a message handed back for the daemon whose invocation waits for it)."
    );
    describe_counter!(
        CANCEL_NOTICES_TOTAL,
        "Cancel notices to remote runners holding a given-up invocation, by runner (webhook, queue) and result (sent, failed)."
    );
    describe_gauge!(
        OUTBOX_PENDING,
        "Messages in the durable outbox not yet settled, by destination kind (api, adapter, ...)."
    );
    describe_counter!(
        COMMAND_RECALLS_TOTAL,
        "Commands of superseded invocations by outcome: withdrawn (still queued, never sent), notified (a recall sent to the adapter that held it), and the adapters' answers recalled and too_late."
    );
    describe_counter!(
        OUTBOX_DELIVERIES_TOTAL,
        "Outbox delivery attempts by destination kind and outcome (delivered, retry, failed: refused for good, exhausted: the retry budget ended with it, gone: the destination is gone, also counted once per message settled with it), and messages withdrawn unsent (withdrawn)."
    );
    describe_histogram!(
        OUTBOX_DELIVERY_SECONDS,
        Unit::Seconds,
        "Duration of outbox delivery attempts, by destination kind."
    );
    describe_gauge!(
        PROCESS_CPU_SECONDS_TOTAL,
        "User and system CPU time of the process, in seconds."
    );
    describe_gauge!(
        PROCESS_RESIDENT_MEMORY_BYTES,
        "Resident memory of the process, in bytes."
    );
    describe_gauge!(PROCESS_OPEN_FDS, "Open file descriptors of the process.");
    describe_gauge!(
        PROCESS_START_TIME_SECONDS,
        "Start time of the process, in seconds since the Unix epoch."
    );
}

/// Sets the metrics fixed for the life of the process: the build info and the start time.
/// Call once at start, after [`describe`].
pub fn record_start() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!(PROCESS_START_TIME_SECONDS).set(now);
}
