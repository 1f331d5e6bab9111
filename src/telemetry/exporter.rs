//! The metrics recorder the daemon installs, and the exposition `/metrics` serves: gauges live in
//! metrics-exporter-prometheus; counters and histograms, which hot paths touch per event, live
//! in per-thread shards ([`ShardedCounter`], [`ShardedHistogram`] with the buckets of
//! [`super::metrics::buckets`]), rendered after the gauges with the exporter's own formatting.
//! Code records through the `metrics` facade either way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use indexmap::IndexMap;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::formatting::{
    write_help_line, write_metric_line, write_type_line,
};
use metrics_exporter_prometheus::{
    LabelSet, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::counter::ShardedCounter;
use super::histogram::ShardedHistogram;
use super::metrics::{buckets, GAUGES_EXPOSED_AS_COUNTERS};

/// The sharded metrics and their descriptions, shared by the recorder and the exporter.
#[derive(Default)]
struct Sharded {
    counters: Mutex<HashMap<Key, Arc<ShardedCounter>>>,
    histograms: Mutex<HashMap<Key, Arc<ShardedHistogram>>>,
    descriptions: Mutex<HashMap<String, SharedString>>,
}

/// The series of one metric family, in a stable order of their labels.
type Families<T> = BTreeMap<String, Vec<(String, LabelSet, Arc<T>)>>;

fn families<T>(by_key: &Mutex<HashMap<Key, Arc<T>>>) -> Families<T> {
    let none = IndexMap::new();
    let mut families: Families<T> = BTreeMap::new();
    for (key, metric) in lock(by_key).iter() {
        let labels = LabelSet::from_key_and_global(key, &none);
        let order = labels.to_strings().collect::<Vec<_>>().join(",");
        families
            .entry(key.name().to_owned())
            .or_default()
            .push((order, labels, metric.clone()));
    }
    for series in families.values_mut() {
        series.sort_by(|a, b| a.0.cmp(&b.0));
    }
    families
}

/// The sharded metrics of the recorder installed for the process, for [`forget_installed`].
static INSTALLED: OnceLock<Arc<Sharded>> = OnceLock::new();

/// Removes, from the recorder installed for the process, every counter and histogram series
/// whose labels include all of `labels` (the series of a deleted flow). Handles still held keep
/// counting into a series nobody renders; one registered again starts from zero.
pub fn forget_installed(labels: &[(&str, &str)]) {
    if let Some(sharded) = INSTALLED.get() {
        sharded.forget(labels);
    }
}

impl Sharded {
    fn forget(&self, labels: &[(&str, &str)]) {
        let matches = |key: &Key| {
            labels
                .iter()
                .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        };
        lock(&self.counters).retain(|key, _| !matches(key));
        lock(&self.histograms).retain(|key, _| !matches(key));
    }
}

/// Renders what the installed [`SplitRecorder`] holds. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    prometheus: PrometheusHandle,
    sharded: Arc<Sharded>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

/// The recorder: histograms to [`ShardedHistogram`]s, everything else to the Prometheus
/// recorder.
pub struct SplitRecorder {
    prometheus: PrometheusRecorder,
    sharded: Arc<Sharded>,
}

impl Exporter {
    /// A recorder and the exporter that renders it, not installed (tests install it locally).
    pub fn recorder() -> (SplitRecorder, Exporter) {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let sharded = Arc::new(Sharded::default());
        let exporter = Exporter {
            prometheus: prometheus.handle(),
            sharded: sharded.clone(),
        };
        (
            SplitRecorder {
                prometheus,
                sharded,
            },
            exporter,
        )
    }

    /// Installs the recorder for the whole process.
    pub fn install() -> Result<Exporter, metrics::SetRecorderError<SplitRecorder>> {
        let (recorder, exporter) = Exporter::recorder();
        let sharded = exporter.sharded.clone();
        metrics::set_global_recorder(recorder)?;
        let _ = INSTALLED.set(sharded);
        Ok(exporter)
    }

    /// Removes the counter and histogram series whose labels include all of `labels` (see
    /// [`forget_installed`]).
    pub fn forget(&self, labels: &[(&str, &str)]) {
        self.sharded.forget(labels);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        // Counters and histograms are read before the gauges: what sets a gauge before it
        // counts (`handles::flow_reload`) is never seen counted without its gauge.
        let mut sharded = String::new();
        let descriptions = lock(&self.sharded.descriptions).clone();
        let head = |out: &mut String, name: &str, kind: &str| {
            if let Some(desc) = descriptions.get(name) {
                write_help_line(out, name, None, None, desc);
            }
            write_type_line(out, name, None, None, kind);
        };
        for (name, series) in families(&self.sharded.counters) {
            head(&mut sharded, &name, "counter");
            for (_, labels, c) in series {
                write_metric_line::<&str, u64>(
                    &mut sharded,
                    &name,
                    None,
                    &labels,
                    None,
                    c.value(),
                    None,
                );
            }
        }
        for (name, series) in families(&self.sharded.histograms) {
            let name = name.as_str();
            head(&mut sharded, name, "histogram");
            for (_, labels, h) in series {
                let s = h.snapshot();
                for (bound, count) in &s.buckets {
                    write_metric_line(
                        &mut sharded,
                        name,
                        Some("bucket"),
                        &labels,
                        Some(("le", bound)),
                        count,
                        None,
                    );
                }
                write_metric_line(
                    &mut sharded,
                    name,
                    Some("bucket"),
                    &labels,
                    Some(("le", "+Inf")),
                    s.count,
                    None,
                );
                write_metric_line::<&str, f64>(
                    &mut sharded,
                    name,
                    Some("sum"),
                    &labels,
                    None,
                    s.sum,
                    None,
                );
                write_metric_line::<&str, u64>(
                    &mut sharded,
                    name,
                    Some("count"),
                    &labels,
                    None,
                    s.count,
                    None,
                );
            }
        }
        let mut out = self.prometheus.render();
        for name in GAUGES_EXPOSED_AS_COUNTERS {
            let gauge = format!("# TYPE {name} gauge\n");
            if let Some(at) = out.find(&gauge) {
                out.replace_range(at..at + gauge.len(), &format!("# TYPE {name} counter\n"));
            }
        }
        // Gauges hold no samples; this only keeps the exporter's own house.
        self.prometheus.run_upkeep();
        out.push_str(&sharded);
        out
    }
}

/// A metric registry poisoned by a panic elsewhere is still consistent (entries are only
/// inserted whole), so it is used as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SplitRecorder {
    fn describe(&self, key: KeyName, description: SharedString) {
        lock(&self.sharded.descriptions)
            .entry(key.as_str().to_owned())
            .or_insert(description);
    }
}

impl Recorder for SplitRecorder {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description)
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description)
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description)
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        let c = lock(&self.sharded.counters)
            .entry(key.clone())
            .or_default()
            .clone();
        Counter::from_arc(c)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.prometheus.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        let h = lock(&self.sharded.histograms)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(ShardedHistogram::new(buckets(key.name()))))
            .clone();
        Histogram::from_arc(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics as m;

    #[test]
    fn forgetting_removes_the_series_with_those_labels_only() {
        let (recorder, exporter) = Exporter::recorder();
        metrics::with_local_recorder(&recorder, || {
            for (agent, flow) in [("A", "F"), ("A", "G"), ("B", "F")] {
                metrics::counter!(m::INVOCATIONS_TOTAL, "agent" => agent, "flow" => flow, "outcome" => "completed")
                    .increment(1);
                metrics::histogram!(m::INVOCATION_DURATION_SECONDS, "agent" => agent, "flow" => flow)
                    .record(0.1);
            }
        });
        exporter.forget(&[("agent", "A"), ("flow", "F")]);
        let text = exporter.render();
        assert!(!text.contains(r#"agent="A",flow="F""#), "{text}");
        for kept in [r#"agent="A",flow="G""#, r#"agent="B",flow="F""#] {
            assert!(
                text.contains(&format!(
                    "switchboard_invocations_total{{{kept},outcome=\"completed\"}} 1"
                )),
                "{kept}: {text}"
            );
            assert!(
                text.contains(&format!(
                    "switchboard_invocation_duration_seconds_count{{{kept}}} 1"
                )),
                "{kept}: {text}"
            );
        }
        // Registered again, a series starts from zero.
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(m::INVOCATIONS_TOTAL, "agent" => "A", "flow" => "F", "outcome" => "completed")
                .increment(1);
        });
        assert!(exporter.render().contains(
            r#"switchboard_invocations_total{agent="A",flow="F",outcome="completed"} 1"#
        ));
    }

    #[test]
    fn histograms_render_as_prometheus_histograms_beside_counters() {
        let (recorder, exporter) = Exporter::recorder();
        metrics::with_local_recorder(&recorder, || {
            m::describe(&[]);
            metrics::counter!(m::EVENTS_DEDUPLICATED_TOTAL).increment(2);
            let h =
                metrics::histogram!(m::INVOCATION_DURATION_SECONDS, "agent" => "A", "flow" => "F");
            h.record(0.003);
            h.record(200.0);
            // The same key is the same histogram.
            metrics::histogram!(m::INVOCATION_DURATION_SECONDS, "agent" => "A", "flow" => "F")
                .record(0.5);
            metrics::histogram!(m::FLOW_INSTANCE_QUEUE_DEPTH).record(3.0);
        });
        let text = exporter.render();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        has("# TYPE switchboard_events_deduplicated_total counter");
        has("switchboard_events_deduplicated_total 2");
        has("# TYPE switchboard_invocation_duration_seconds histogram");
        has("# HELP switchboard_invocation_duration_seconds From invocation sent to its outcome.");
        has(r#"switchboard_invocation_duration_seconds_bucket{agent="A",flow="F",le="0.0025"} 0"#);
        has(r#"switchboard_invocation_duration_seconds_bucket{agent="A",flow="F",le="0.005"} 1"#);
        has(r#"switchboard_invocation_duration_seconds_bucket{agent="A",flow="F",le="120"} 2"#);
        has(r#"switchboard_invocation_duration_seconds_bucket{agent="A",flow="F",le="+Inf"} 3"#);
        has(r#"switchboard_invocation_duration_seconds_sum{agent="A",flow="F"} 200.503"#);
        has(r#"switchboard_invocation_duration_seconds_count{agent="A",flow="F"} 3"#);
        has(r#"switchboard_flow_instance_queue_depth_bucket{le="2"} 0"#);
        has(r#"switchboard_flow_instance_queue_depth_bucket{le="4"} 1"#);
        has("switchboard_flow_instance_queue_depth_count 1");
        assert_eq!(
            text.matches("# TYPE switchboard_invocation_duration_seconds ")
                .count(),
            1,
            "one family"
        );
        assert!(!text.contains("quantile"), "no summaries: {text}");
    }

    #[test]
    fn cpu_seconds_are_exposed_as_a_counter() {
        let (recorder, exporter) = Exporter::recorder();
        metrics::with_local_recorder(&recorder, || {
            m::describe(&[]);
            metrics::gauge!(m::PROCESS_CPU_SECONDS_TOTAL).set(1.25);
        });
        let text = exporter.render();
        assert!(
            text.contains(
                "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.25\n"
            ),
            "{text}"
        );
    }
}
