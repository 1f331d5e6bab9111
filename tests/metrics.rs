//! The metrics the README lists that the engine produces, read back from a debugging
//! recorder after real traffic.

mod common;

use common::{eventually, Harness, PATIENCE};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::CompositeKey;

type Snap = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;
use switchboard::domain::{Command, Idn};
use switchboard::skill_runner::Outcome;
use switchboard::telemetry::metrics as m;

fn value<'a>(s: &'a Snap, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    s.iter().find_map(|(k, _, _, v)| {
        let key = k.key();
        let ok = key.name() == name
            && labels
                .iter()
                .all(|(n, want)| key.labels().any(|l| l.key() == *n && l.value() == *want));
        ok.then_some(v)
    })
}

fn counter(s: &Snap, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(s, name, labels) {
        Some(DebugValue::Counter(c)) => *c,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

fn gauge(s: &Snap, name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(s, name, labels) {
        Some(DebugValue::Gauge(g)) => g.into_inner(),
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

fn histogram_count(s: &Snap, name: &str) -> usize {
    match value(s, name, &[]) {
        Some(DebugValue::Histogram(h)) => h.len(),
        other => panic!("{name}: {other:?}"),
    }
}

#[actix_rt::test]
async fn the_engine_reports_its_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let mut h = Harness::start();
    h.connector("telegram", "bot");
    let http = h.connector("http", "api");
    h.engine.stop_connector(http).unwrap();
    h.flow(
        "Agent",
        "Main",
        r#"
runner: {kind: in_process, name: manual}
events:
  - {idn: user_message, skill_idn: Talk, integration_idn: telegram}
"#,
    )
    .await;
    h.submit(h.event("telegram", "bot", "user_message", "a"))
        .await;
    let (_, reply) = h.next_manual().await;
    reply.finish(
        Outcome::Completed,
        vec![
            Command::new(
                h.account.clone(),
                Idn::known("telegram"),
                Idn::known("bot"),
                Idn::known("send_message"),
            )
            .with_argument("text", "hi"),
            Command::new(
                h.account.clone(),
                Idn::known("http"),
                Idn::known("api"),
                Idn::known("send_request"),
            ),
        ],
    );
    h.relay.recv().await.unwrap();
    h.send(h.event("telegram", "bot", "conversation_started", "a"))
        .await
        .unwrap();
    assert!(h
        .send(h.event("telegram", "nope", "user_message", "a"))
        .await
        .is_err());
    eventually("two dead letters", PATIENCE, || {
        std::future::ready((h.dead.len() == 2).then_some(()))
    })
    .await;
    // One snapshot: taking one drains what it reads.
    let snap = snapshotter.snapshot().into_vec();

    assert_eq!(
        counter(
            &snap,
            m::EVENTS_RECEIVED_TOTAL,
            &[
                ("integration", "telegram"),
                ("event", "user_message"),
                ("channel", "chat")
            ]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            m::EVENTS_UNMATCHED_TOTAL,
            &[
                ("integration", "telegram"),
                ("event", "conversation_started")
            ]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            m::EVENTS_REJECTED_TOTAL,
            &[("reason", "unknown_connector")]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            m::INVOCATIONS_TOTAL,
            &[
                ("agent", "Agent"),
                ("flow", "Main"),
                ("outcome", "completed")
            ]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            m::COMMANDS_TOTAL,
            &[
                ("integration", "telegram"),
                ("command", "send_message"),
                ("outcome", "sent")
            ]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            m::COMMANDS_TOTAL,
            &[
                ("integration", "http"),
                ("command", "send_request"),
                ("outcome", "refused")
            ]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            m::DEAD_LETTERS_TOTAL,
            &[("reason", "unknown_connector")]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            m::DEAD_LETTERS_TOTAL,
            &[("reason", "command_refused")]
        ),
        1
    );
    assert_eq!(
        counter(&snap, m::SESSIONS_STARTED_TOTAL, &[("channel", "chat")]),
        1
    );
    assert_eq!(
        gauge(&snap, m::SESSIONS_ACTIVE, &[("channel", "chat")]),
        1.0
    );
    assert_eq!(
        gauge(
            &snap,
            m::CONNECTORS,
            &[("integration", "telegram"), ("status", "running")]
        ),
        2.0,
        "bot and the internal telegram/system"
    );
    assert_eq!(
        gauge(
            &snap,
            m::CONNECTORS,
            &[("integration", "http"), ("status", "stopped")]
        ),
        1.0
    );
    assert_eq!(histogram_count(&snap, m::DISPATCH_LATENCY_SECONDS), 1);
    assert!(histogram_count(&snap, m::INDEX_REBUILD_SECONDS) >= 1);
    assert_eq!(gauge(&snap, m::INDEX_SUBSCRIPTIONS, &[]), 1.0);
    assert_eq!(gauge(&snap, m::FLOW_INSTANCES_LIVE, &[]), 1.0);
}

/// Records the names described to it.
#[derive(Default)]
struct Descriptions(std::sync::Mutex<Vec<String>>);

impl metrics::Recorder for Descriptions {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.0.lock().unwrap().push(key.as_str().to_owned());
    }
    fn describe_gauge(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.0.lock().unwrap().push(key.as_str().to_owned());
    }
    fn describe_histogram(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.0.lock().unwrap().push(key.as_str().to_owned());
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// The names `describe` describes, sorted.
fn described(describe: impl FnOnce()) -> Vec<String> {
    let recorder = Descriptions::default();
    metrics::with_local_recorder(&recorder, describe);
    let mut names = recorder.0.into_inner().unwrap();
    names.sort();
    names
}

/// The metric names a `metrics.rs` declares (`pub const NAME: &str = "name";`), sorted.
fn declared(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut names: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \""))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .filter(|name| name != m::PREFIX)
        .collect();
    names.sort();
    names
}

/// Every metric name is declared once: the daemon's in `src/telemetry/metrics.rs`, each
/// native's in its own folder's `metrics.rs`; and every one is described at start, the
/// natives' through the registration list (each component's `metrics()`), not by the
/// telemetry naming them.
#[test]
fn every_metric_name_is_declared_once_in_its_metrics_rs_and_described() {
    use switchboard::natives::component::Listeners;
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let config = switchboard::config::Config::default();
    let natives = switchboard::boot::natives(&config, Listeners::Skip).unwrap();

    let own = declared(&src.join("telemetry/metrics.rs"));
    assert_eq!(described(|| m::describe(&[])), own, "the daemon's own");
    let mut all = own.clone();
    let mut with_metrics = 0;
    for native in &natives {
        let file = src.join("natives").join(native.idn()).join("metrics.rs");
        let names = if file.exists() {
            declared(&file)
        } else {
            Vec::new()
        };
        let got = native.metrics().map(described).unwrap_or_default();
        assert_eq!(
            got,
            names,
            "{}: its metrics.rs and its describe",
            native.idn()
        );
        with_metrics += usize::from(!names.is_empty());
        all.extend(names);
    }
    assert!(
        with_metrics >= 3,
        "program_timer, http and newo_chat name metrics"
    );

    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a metric name declared twice");
    // What the daemon describes at start: its own and every registered native's.
    let starts: Vec<fn()> = natives.iter().filter_map(|n| n.metrics()).collect();
    assert_eq!(described(|| m::describe(&starts)), all);
}
