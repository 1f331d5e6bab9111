//! Sessions on the paused clock: `session_started` before the first event of a session,
//! `session_ended` on idleness and on `conversation_ended`.

mod common;

use std::time::Duration;

use common::Harness;
use switchboard::EngineConfig;

const FLOW: &str = r#"
events:
  - {idn: session_started, skill_idn: Hello, integration_idn: system, connector_idn: system}
  - {idn: session_ended, skill_idn: Bye, integration_idn: system, connector_idn: system}
  - {idn: user_message, skill_idn: Talk, integration_idn: telegram}
  - {idn: conversation_ended, skill_idn: Ended, integration_idn: telegram}
"#;

/// The running `telegram/bot`, its own conversation timeout (24 h by default) set to the
/// daemon's 30 min: a connector's own timeout wins (tested below).
fn bot(h: &Harness) {
    let view = h
        .engine
        .create_connector(
            &h.account,
            "telegram",
            "bot",
            "Bot",
            &[
                ("bot_token".into(), "t".into()),
                ("conversation_timeout_seconds".into(), "1800".into()),
            ],
        )
        .unwrap();
    h.engine.run_connector(view.id).unwrap();
}

fn skills(h: &Harness) -> Vec<String> {
    h.recorded
        .lock()
        .unwrap()
        .iter()
        .map(|i| i.skill.to_string())
        .collect()
}

#[actix_rt::test]
async fn sessions_start_before_the_first_event_and_end_when_idle() {
    tokio::time::pause();
    let h = Harness::with_config(EngineConfig {
        session_idle_timeout: Duration::from_secs(30 * 60),
        session_sweep_interval: Duration::from_secs(10),
        ..EngineConfig::default()
    });
    bot(&h);
    h.flow("Agent", "Main", FLOW).await;
    let alice = h.persona("telegram", "alice");

    h.send(h.event("telegram", "bot", "user_message", "alice"))
        .await
        .unwrap();
    h.send(h.event("telegram", "bot", "user_message", "alice"))
        .await
        .unwrap();
    let rec = h.wait_recorded("three invocations", |r| r.len() == 3).await;
    assert_eq!(skills(&h), vec!["Hello", "Talk", "Talk"]);
    let started = &rec[0].event.event;
    assert_eq!(rec[0].persona, alice);
    assert_eq!(started.arguments.get("integrationIdn"), Some("telegram"));
    assert_eq!(started.arguments.get("connectorIdn"), Some("bot"));
    let session_id = started.arguments.get("sessionId").unwrap().to_owned();
    let live = h
        .engine
        .sessions(&switchboard::domain::Idn::known("default"));
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id.to_string(), session_id);
    assert_eq!(live[0].channel, "chat");

    let quiet_from = tokio::time::Instant::now();
    let rec = h.wait_recorded("session_ended", |r| r.len() == 4).await;
    assert!(
        quiet_from.elapsed() >= Duration::from_secs(30 * 60),
        "not before the idle timeout"
    );
    let ended = &rec[3];
    assert_eq!(ended.skill.as_str(), "Bye");
    assert_eq!(ended.persona, alice);
    assert_eq!(
        ended.event.event.arguments.get("sessionId"),
        Some(session_id.as_str())
    );
    assert_eq!(ended.event.event.arguments.get("reason"), Some("idle"));
    assert!(h
        .engine
        .sessions(&switchboard::domain::Idn::known("default"))
        .is_empty());

    // The next message starts a new session.
    h.send(h.event("telegram", "bot", "user_message", "alice"))
        .await
        .unwrap();
    let rec = h.wait_recorded("new session", |r| r.len() == 6).await;
    assert_eq!(rec[4].skill.as_str(), "Hello");
    assert_ne!(
        rec[4].event.event.arguments.get("sessionId"),
        Some(session_id.as_str())
    );
}

#[actix_rt::test]
async fn conversation_ended_ends_the_session() {
    tokio::time::pause();
    let h = Harness::start();
    bot(&h);
    h.flow("Agent", "Main", FLOW).await;
    h.send(h.event("telegram", "bot", "user_message", "bob"))
        .await
        .unwrap();
    h.send(h.event("telegram", "bot", "conversation_ended", "bob"))
        .await
        .unwrap();
    h.wait_recorded("four invocations", |r| r.len() == 4).await;
    assert_eq!(skills(&h), vec!["Hello", "Talk", "Ended", "Bye"]);
    let rec = h.recorded.lock().unwrap().clone();
    assert_eq!(
        rec[3].event.event.arguments.get("reason"),
        Some("conversation_ended")
    );
    assert_eq!(
        rec[3].event.event.arguments.get("sessionId"),
        rec[0].event.event.arguments.get("sessionId")
    );
    assert!(h
        .engine
        .sessions(&switchboard::domain::Idn::known("default"))
        .is_empty());
}

#[actix_rt::test]
async fn a_connector_s_own_session_timeout_wins_over_the_daemon_s() {
    tokio::time::pause();
    let h = Harness::with_config(EngineConfig {
        session_idle_timeout: Duration::from_secs(30 * 60),
        session_sweep_interval: Duration::from_secs(10),
        ..EngineConfig::default()
    });
    let view = h
        .engine
        .create_connector(
            &h.account,
            "sandbox",
            "quick",
            "Quick chat",
            &[("session_timeout_seconds".into(), "60".into())],
        )
        .unwrap();
    h.engine.run_connector(view.id).unwrap();
    h.flow(
        "Agent",
        "Main",
        r#"
events:
  - {idn: session_ended, skill_idn: Bye, integration_idn: system, connector_idn: system}
  - {idn: user_message, skill_idn: Talk, integration_idn: sandbox}
"#,
    )
    .await;
    h.send(h.event("sandbox", "quick", "user_message", "alice"))
        .await
        .unwrap();
    let quiet_from = tokio::time::Instant::now();
    let rec = h.wait_recorded("session_ended", |r| r.len() == 2).await;
    let quiet = quiet_from.elapsed();
    assert_eq!(rec[1].skill.as_str(), "Bye");
    assert!(
        quiet >= Duration::from_secs(60) && quiet < Duration::from_secs(30 * 60),
        "ended by the connector's 60 s, not the daemon's 30 min: {quiet:?}"
    );
}
