//! Metric labels never come from unvalidated input: commands to an unknown integration, or
//! commands an integration does not declare, are counted under one bounded label value.

mod common;

use common::Harness;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use switchboard::domain::{Command, Idn};
use switchboard::skill_runner::Outcome;
use switchboard::telemetry::metrics as m;

#[actix_rt::test]
async fn unknown_integrations_and_commands_share_one_label_value() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let mut h = Harness::start();
    h.connector("telegram", "bot");
    h.flow(
        "Agent",
        "Main",
        r#"
runner: {kind: in_process, name: manual}
events:
  - {idn: user_message, skill_idn: Talk, integration_idn: telegram}
  - {idn: result_error, skill_idn: OnError}
"#,
    )
    .await;
    h.submit(h.event("telegram", "bot", "user_message", "alice"))
        .await;
    let (_, reply) = h.next_manual().await;
    let cmd = |integration: &str, connector: &str, command: &str| {
        Command::new(
            h.account.clone(),
            Idn::known(integration),
            Idn::known(connector),
            Idn::known(command),
        )
    };
    reply.finish(
        Outcome::Completed,
        vec![
            cmd("zz_rand_2815", "c_3002", "send_message"),
            cmd("telegram", "bot", "zz_no_such_command"),
        ],
    );
    for _ in 0..2 {
        let (inv, reply) = h.next_manual().await;
        assert_eq!(inv.skill.as_str(), "OnError");
        reply.finish(Outcome::Completed, vec![]);
    }
    let snap = snapshotter.snapshot().into_vec();
    let mut series = Vec::new();
    for (k, _, _, v) in &snap {
        let key = k.key();
        if key.name() != m::COMMANDS_TOTAL {
            continue;
        }
        let label = |n: &str| {
            key.labels()
                .find(|l| l.key() == n)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        if let DebugValue::Counter(n) = v {
            series.push((label("integration"), label("command"), label("outcome"), *n));
        }
    }
    series.sort();
    assert!(
        series
            .iter()
            .all(|(i, c, _, _)| !i.contains("zz_") && !c.contains("zz_")),
        "no label carries what the skill made up: {series:?}"
    );
    assert!(series.contains(&(
        "unknown".to_owned(),
        "unknown".to_owned(),
        "refused".to_owned(),
        1
    )));
    assert!(series.contains(&(
        "telegram".to_owned(),
        "unknown".to_owned(),
        "refused".to_owned(),
        1
    )));
}
