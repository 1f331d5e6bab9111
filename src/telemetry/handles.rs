//! Metric handles resolved once and held: per connector, per flow, and process-wide.
//! Incrementing a held handle costs a few nanoseconds; building one from labels costs hundreds.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use rustc_hash::FxHashMap;

use super::metrics as m;
use crate::domain::Idn;

/// Label value for custom event idns nobody subscribes to: keeps label values bounded.
pub const CUSTOM_EVENT_LABEL: &str = "custom";

/// Handles one connector actor holds.
pub struct ConnectorMetrics {
    integration: Idn,
    channel: &'static str,
    received: FxHashMap<Idn, Counter>,
    /// The counter of the event idn received last: a connector mostly receives one kind of
    /// event in a row, and comparing an inline idn is cheaper than hashing it.
    last_received: Option<(Idn, Counter)>,
    unmatched: FxHashMap<Idn, Counter>,
    commands: FxHashMap<(Idn, &'static str), Counter>,
}

impl ConnectorMetrics {
    pub fn new(integration: &Idn, channel: &'static str) -> Self {
        ConnectorMetrics {
            integration: integration.clone(),
            channel,
            received: FxHashMap::default(),
            last_received: None,
            unmatched: FxHashMap::default(),
            commands: FxHashMap::default(),
        }
    }

    pub fn received(&mut self, event: &Idn) {
        if let Some((idn, counter)) = &self.last_received {
            if idn == event {
                counter.increment(1);
                return;
            }
        }
        let (integration, channel) = (&self.integration, self.channel);
        let counter = self
            .received
            .entry(event.clone())
            .or_insert_with(|| {
                counter!(m::EVENTS_RECEIVED_TOTAL, "integration" => integration.to_string(), "event" => event.to_string(), "channel" => channel)
            })
            .clone();
        counter.increment(1);
        self.last_received = Some((event.clone(), counter));
    }

    pub fn unmatched(&mut self, event: &Idn) {
        let integration = &self.integration;
        self.unmatched
            .entry(event.clone())
            .or_insert_with(|| {
                counter!(m::EVENTS_UNMATCHED_TOTAL, "integration" => integration.to_string(), "event" => event.to_string())
            })
            .increment(1);
    }

    pub fn command(&mut self, command: &Idn, outcome: &'static str) {
        let integration = &self.integration;
        self.commands
            .entry((command.clone(), outcome))
            .or_insert_with(|| {
                counter!(m::COMMANDS_TOTAL, "integration" => integration.to_string(), "command" => command.to_string(), "outcome" => outcome)
            })
            .increment(1);
    }
}

/// The outcomes an invocation (or an event queued for one) can end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationOutcome {
    Completed,
    Failed,
    TimedOut,
    Interrupted,
    Superseded,
    Cancelled,
    NoSkill,
    /// Its event's source revoked it before the runner had it (a partition lost): given up
    /// for the partition's new owner.
    Fenced,
}

impl InvocationOutcome {
    pub const ALL: [InvocationOutcome; 8] = [
        InvocationOutcome::Completed,
        InvocationOutcome::Failed,
        InvocationOutcome::TimedOut,
        InvocationOutcome::Interrupted,
        InvocationOutcome::Superseded,
        InvocationOutcome::Cancelled,
        InvocationOutcome::NoSkill,
        InvocationOutcome::Fenced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvocationOutcome::Completed => "completed",
            InvocationOutcome::Failed => "failed",
            InvocationOutcome::TimedOut => "timed_out",
            InvocationOutcome::Interrupted => "interrupted",
            InvocationOutcome::Superseded => "superseded",
            InvocationOutcome::Cancelled => "cancelled",
            InvocationOutcome::NoSkill => "no_skill",
            InvocationOutcome::Fenced => "fenced",
        }
    }
}

/// Handles of one flow, resolved when the flow is loaded.
pub struct FlowMetrics {
    outcomes: [Counter; 8],
    pub duration: Histogram,
}

impl FlowMetrics {
    /// The handles of flow `agent/flow`, under its own labels while `limits.flow_series`
    /// allows (see [`super::flow_labels`]).
    pub fn new(agent: &str, flow: &str) -> Self {
        let (agent, flow) = super::flow_labels::FlowLabels::daemon().labels(agent, flow);
        let outcomes = InvocationOutcome::ALL.map(|o| {
            counter!(m::INVOCATIONS_TOTAL, "agent" => agent.clone(), "flow" => flow.clone(), "outcome" => o.as_str())
        });
        FlowMetrics {
            outcomes,
            duration: histogram!(m::INVOCATION_DURATION_SECONDS, "agent" => agent, "flow" => flow),
        }
    }

    pub fn outcome(&self, o: InvocationOutcome) {
        self.outcomes[o as usize].increment(1);
    }

    /// Removes the series of flow `agent/flow` once no flow of that name is left (in any
    /// account: the labels do not name the account).
    pub fn forget(agent: &str, flow: &str) {
        if super::flow_labels::FlowLabels::daemon().release(agent, flow) {
            super::exporter::forget_installed(&[("agent", agent), ("flow", flow)]);
        }
    }
}

/// Process-wide handles.
pub struct EngineMetrics {
    pub dispatch_latency: Histogram,
    pub queue_depth: Histogram,
    pub deduplicated: Counter,
    pub flow_instances_live: Gauge,
    pub inflight: Gauge,
    pub index_rebuild: Histogram,
    pub index_subscriptions: Gauge,
}

impl EngineMetrics {
    pub fn new() -> Self {
        EngineMetrics {
            dispatch_latency: histogram!(m::DISPATCH_LATENCY_SECONDS),
            queue_depth: histogram!(m::FLOW_INSTANCE_QUEUE_DEPTH),
            deduplicated: counter!(m::EVENTS_DEDUPLICATED_TOTAL),
            flow_instances_live: gauge!(m::FLOW_INSTANCES_LIVE),
            inflight: gauge!(m::INFLIGHT_EVENTS),
            index_rebuild: histogram!(m::INDEX_REBUILD_SECONDS),
            index_subscriptions: gauge!(m::INDEX_SUBSCRIPTIONS),
        }
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A refusal at admission, by reason. Rare: built per call.
pub fn rejected(reason: &'static str) {
    counter!(m::EVENTS_REJECTED_TOTAL, "reason" => reason).increment(1);
}

/// Dead letters pruned by retention, by the limit that pruned them (`age`, `count`, `bytes`).
pub fn dead_letters_pruned(by: &'static str, n: u64) {
    counter!(m::DEAD_LETTERS_PRUNED_TOTAL, "by" => by).increment(n);
}

/// A dead-letter record, by reason. Rare: built per call.
pub fn dead_letter(reason: &'static str) {
    counter!(m::DEAD_LETTERS_TOTAL, "reason" => reason).increment(1);
}

/// A command outcome outside a connector actor (refused before reaching one, or dropped).
pub fn command(integration: &str, command: &str, outcome: &'static str) {
    counter!(m::COMMANDS_TOTAL, "integration" => integration.to_owned(), "command" => command.to_owned(), "outcome" => outcome).increment(1);
}

/// Counts a recall's `outcome` (`withdrawn`, `notified`, `recalled`, `too_late`).
pub fn recall(outcome: &'static str) {
    counter!(m::COMMAND_RECALLS_TOTAL, "outcome" => outcome).increment(1);
}

/// `n` commands of a superseded turn were withdrawn before they left.
pub fn recalls_withdrawn(n: usize) {
    counter!(m::COMMAND_RECALLS_TOTAL, "outcome" => "withdrawn").increment(n as u64);
}

/// The connectors gauge of one integration and status.
pub fn connectors(integration: &str, status: &'static str) -> Gauge {
    gauge!(m::CONNECTORS, "integration" => integration.to_owned(), "status" => status)
}

/// Sessions gauges and counters of one channel.
pub fn sessions(channel: &'static str) -> (Gauge, Counter) {
    (
        gauge!(m::SESSIONS_ACTIVE, "channel" => channel),
        counter!(m::SESSIONS_STARTED_TOTAL, "channel" => channel),
    )
}

/// An attempt to reach the webhook runner of flow `agent/flow` came to `result`.
pub fn runner_attempt(agent: &str, flow: &str, result: &'static str) {
    let (agent, flow) = super::flow_labels::FlowLabels::daemon().known(agent, flow);
    counter!(m::RUNNER_ATTEMPTS_TOTAL, "agent" => agent, "flow" => flow, "result" => result)
        .increment(1);
}

/// A create was refused at an account's `limit` (its configuration key).
pub fn limit_reached(limit: &'static str) {
    counter!(m::LIMITS_REACHED_TOTAL, "limit" => limit).increment(1);
}

/// A cancel notice to a remote runner (`webhook`, `queue`) was `sent` or `failed`.
pub fn cancel_notice(runner: &'static str, result: &'static str) {
    counter!(m::CANCEL_NOTICES_TOTAL, "runner" => runner, "result" => result).increment(1);
}

/// A queue runner's answer was `applied`, `unknown` or a `repeat` (see the metric).
pub fn queue_result(outcome: &'static str) {
    counter!(m::QUEUE_RESULTS_TOTAL, "outcome" => outcome).increment(1);
}

/// A reload of the flow files (SIGHUP), by result; a success also stamps the time.
/// The stamp is set before the count, so a scrape that sees the success counted
/// also sees its time.
pub fn flow_reload(ok: bool) {
    if ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        gauge!(m::FLOW_RELOAD_LAST_SUCCESS).set(now);
    }
    counter!(m::FLOW_RELOADS_TOTAL, "result" => if ok { "ok" } else { "refused" }).increment(1);
}
