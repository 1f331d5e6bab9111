//! The shared control plane (issue 25, item 4): daemons on one partitioned events stream share
//! accounts, tokens, connectors with their sealed settings, flows and runner secrets through a
//! key-value bucket, each its own SQLite file beside it. A daemon started later has every
//! record before it listens; a change made on one daemon reaches the others; a write on a
//! stale revision answers 409 and both daemons end on the same value; a daemon down meanwhile
//! catches up (deletions included) before it listens again. Real binary, real
//! nats-server (recent: per-key TTLs), loopback only.

mod common;

use std::path::Path;
use std::time::Duration;

use common::daemon::{bearer_client, temp_dir, DaemonProcess};
use common::eventually;
use common::nats::{user_message, NatsServer};
use common::runner_server::{argument, completed, RunnerServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// Daemon `i` on `nats` with partitions, sharing `key` (the sealing key every daemon of a
/// shared control plane is given).
fn start(base: &Path, i: usize, nats: &NatsServer, key: &str) -> DaemonProcess {
    let dir = base.join(format!("d{i}"));
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    DaemonProcess::builder(&dir)
        .envs(nats.daemon_env())
        .env("SWITCHBOARD_TRANSPORT__NATS__PARTITIONS", "8")
        .env("SWITCHBOARD_TRANSPORT__NATS__MEMBER_TTL_MS", "2000")
        .env("SWITCHBOARD_TRANSPORT__NATS__ACK_WAIT_MS", "3000")
        .env("SWITCHBOARD_SECRET_KEY", key)
        .env("SWITCHBOARD_LOG__LEVEL", "warn,switchboard=info")
        .start()
}

async fn get(d: &DaemonProcess, path: &str) -> (StatusCode, Value) {
    let r = d.client().get(d.url(path)).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The connector `integration`/`idn` as `d` lists it.
async fn listed(d: &DaemonProcess, integration: &str, idn: &str) -> Option<Value> {
    let (s, v) = get(d, &format!("/v1/integrations/{integration}/connectors")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array()?
        .iter()
        .find(|c| c["connector_idn"] == idn)
        .cloned()
}

/// The webhook flow `Bot/<flow>` on `telegram`'s `user_message`.
fn flow(runner: &RunnerServer, path: &str) -> Value {
    json!({"runner": {"kind": "webhook", "url": format!("{}/{path}", runner.base)},
        "events": [{"idn": "user_message", "skill_idn": "Talk", "integration_idn": "telegram"}]})
}

/// Whether `token` may read on `d`.
async fn authenticates(d: &DaemonProcess, token: &str) -> bool {
    bearer_client(token)
        .get(d.url("/v1/flows"))
        .send()
        .await
        .unwrap()
        .status()
        == StatusCode::OK
}

#[actix_rt::test]
async fn what_one_daemon_configures_every_daemon_has_and_routes() {
    let base = temp_dir("control-plane-share");
    let nats = NatsServer::start_recent(&base);
    let mut runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let key = switchboard::store::SecretBox::generate();
    let a = start(&base, 0, &nats, &key);
    // On A: an account and its token, a connector with a secret setting (sealed), running,
    // and a webhook flow (its runner secret sealed too).
    let acme = a.account_token("acme", &["read"]).await;
    a.run_connector(
        "telegram",
        json!({"title": "Bot", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t-secret"}]}),
    )
    .await;
    let secret = a
        .put_flow("Bot", "Main", &flow(&runner, "main"))
        .await
        .expect("a webhook flow's first PUT shows its secret");

    // B starts later: it listens only once it has materialized the bucket, so everything is
    // there at once (no waiting).
    let b = start(&base, 1, &nats, &key);
    let bot = listed(&b, "telegram", "bot")
        .await
        .expect("the connector made on A is on B");
    assert_eq!(bot["status"], "running", "{bot}");
    assert_eq!(bot["title"], "Bot");
    let (s, v) = get(&b, "/v1/flows/Bot/Main").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(authenticates(&b, &acme).await, "A's token on B");
    // B's own first-start admin token works, on A too (seeded into the bucket).
    assert!(authenticates(&b, &b.token).await);
    eventually("B's admin token on A", LIMIT, || async {
        authenticates(&a, &b.token).await.then_some(())
    })
    .await;
    // Never a plain secret in the bucket: the setting travels sealed and is not listed.
    assert!(!bot.to_string().contains("t-secret"), "{bot}");

    // Live changes made on A reach B.
    let later = a.account_token("acme", &["read"]).await;
    a.run_connector(
        "telegram",
        json!({"title": "Second", "connector_idn": "second", "settings": [{"idn": "bot_token", "value": "t2"}]}),
    )
    .await;
    a.put_flow("Bot", "Second", &flow(&runner, "second")).await;
    eventually(
        "A's later token, connector and flow on B",
        LIMIT,
        || async {
            let c = listed(&b, "telegram", "second").await?;
            let (s, _) = get(&b, "/v1/flows/Bot/Second").await;
            (c["status"] == "running" && s == StatusCode::OK && authenticates(&b, &later).await)
                .then_some(())
        },
    )
    .await;
    // Integration settings made on A (a secret one, sealed) reach B and open there: a
    // connector on B that needs them runs once they came.
    let r = b
        .client()
        .post(b.url("/v1/integrations/apify/connectors"))
        .json(&json!({"title": "Scraper", "connector_idn": "scraper"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let scraper = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = |d: &DaemonProcess| {
        let (http, url) = (
            d.client(),
            d.url(&format!("/v1/integrations/connectors/{scraper}/run")),
        );
        async move { http.post(url).send().await.unwrap().status() }
    };
    assert_eq!(run(&b).await, StatusCode::BAD_REQUEST, "no api_token yet");
    let s = a
        .client()
        .post(a.url("/v1/integrations/apify/settings"))
        .json(&json!([{"idn": "api_token", "value": "apify-secret"}]))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    eventually(
        "B runs the connector with A's integration settings",
        LIMIT,
        || async { (run(&b).await == StatusCode::OK).then_some(()) },
    )
    .await;
    eventually("A sees it running", LIMIT, || async {
        (listed(&a, "apify", "scraper").await?["status"] == "running").then_some(())
    })
    .await;
    // A flow deleted on A goes on B.
    let s = a
        .client()
        .delete(a.url("/v1/flows/Bot/Second"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(s.is_success(), "{s}");
    eventually("the deleted flow gone from B", LIMIT, || async {
        (get(&b, "/v1/flows/Bot/Second").await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    // A revoked token stops on B.
    let (s, tokens) = get(&a, "/v1/tokens").await;
    assert_eq!(s, StatusCode::OK);
    let id = later.trim_start_matches("sbt_")[..12].to_owned();
    assert!(
        tokens.to_string().contains(&id),
        "the token's id {id} is listed"
    );
    let s = a
        .client()
        .delete(a.url(&format!("/v1/tokens/{id}")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::NO_CONTENT);
    eventually("the revoked token refused on B", LIMIT, || async {
        (!authenticates(&b, &later).await).then_some(())
    })
    .await;

    // A goes: B owns every partition and routes A's connector to A's flow, signing with the
    // runner secret A made (unsealed on B with the shared key).
    a.kill9();
    eventually("B owns every partition", LIMIT, || async {
        (b.metric("switchboard_partitions_owned").await == Some(8.0)).then_some(())
    })
    .await;
    let r = b
        .client()
        .post(b.url("/v1/events"))
        .json(&user_message("persona-1", "hello B"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let got = tokio::time::timeout(LIMIT, runner.rx.recv())
        .await
        .expect("an invocation within the limit")
        .expect("the runner runs");
    assert_eq!(got.path, "/main");
    assert_eq!(
        argument(&got.json["event"], "text").as_deref(),
        Some("hello B")
    );
    assert!(got.signed_with(&secret), "signed with A's runner secret");
    let m = b.metrics().await;
    assert!(
        m.contains(
            r#"switchboard_control_plane_changes_total{kind="connector",outcome="applied"}"#
        ),
        "{m}"
    );
    assert!(
        !m.contains(
            r#"switchboard_control_plane_changes_total{kind="connector",outcome="failed"}"#
        ) && !m.contains(r#"kind="flow",outcome="failed""#)
            && !m.contains(r#"kind="settings",outcome="failed""#),
        "{m}"
    );
}

#[actix_rt::test]
async fn a_write_on_a_stale_revision_answers_409_and_both_daemons_converge() {
    let base = temp_dir("control-plane-conflict");
    let nats = NatsServer::start_recent(&base);
    let key = switchboard::store::SecretBox::generate();
    let a = start(&base, 0, &nats, &key);
    let b = start(&base, 1, &nats, &key);
    let id = a
        .run_connector(
            "telegram",
            json!({"title": "T0", "connector_idn": "bot", "settings": [{"idn": "bot_token", "value": "t"}]}),
        )
        .await;
    eventually("the connector on B", LIMIT, || async {
        listed(&b, "telegram", "bot").await.map(|_| ())
    })
    .await;
    // Both daemons change the same connector at once until one of them wrote on a revision
    // the other had replaced (each writes on the revision it last saw).
    let mut conflict = None;
    for round in 0..50 {
        let put = |d: &DaemonProcess, title: String| {
            d.client()
                .put(d.url(&format!("/v1/integrations/connectors/{id}")))
                .json(&json!({"title": title}))
                .send()
        };
        let (ra, rb) = tokio::join!(put(&a, format!("A{round}")), put(&b, format!("B{round}")));
        for r in [ra.unwrap(), rb.unwrap()] {
            let s = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if s == StatusCode::CONFLICT {
                conflict = Some(v);
            } else {
                assert_eq!(s, StatusCode::OK, "{v}");
            }
        }
        if conflict.is_some() {
            break;
        }
    }
    let v = conflict.expect("a 409 within 50 rounds of concurrent writes");
    assert_eq!(v["error"]["code"], "changed_elsewhere", "{v}");
    assert_eq!(v["error"]["field"], "connector.default.telegram.bot", "{v}");
    // Both end on one title: the bucket's.
    let title = eventually("both daemons on one title", LIMIT, || async {
        let ta = listed(&a, "telegram", "bot").await?["title"].clone();
        let tb = listed(&b, "telegram", "bot").await?["title"].clone();
        (ta == tb).then_some(ta)
    })
    .await;
    // A retry on the value now seen succeeds, and reaches the other.
    let r = b
        .client()
        .put(b.url(&format!("/v1/integrations/connectors/{id}")))
        .json(&json!({"title": "Final"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "after {title}");
    eventually("the retried title on A", LIMIT, || async {
        (listed(&a, "telegram", "bot").await?["title"] == "Final").then_some(())
    })
    .await;
    let m = a.metrics().await + &b.metrics().await;
    assert!(
        m.contains(
            r#"switchboard_control_plane_changes_total{kind="connector",outcome="conflict"}"#
        ),
        "{m}"
    );
}

#[actix_rt::test]
async fn a_daemon_down_meanwhile_catches_up_at_restart_deletions_included() {
    let base = temp_dir("control-plane-restart");
    let nats = NatsServer::start_recent(&base);
    let runner = RunnerServer::start(|_| (200, completed(json!([]))));
    let key = switchboard::store::SecretBox::generate();
    let a = start(&base, 0, &nats, &key);
    let b = start(&base, 1, &nats, &key);
    let old = a
        .run_connector(
            "telegram",
            json!({"title": "Old", "connector_idn": "old", "settings": [{"idn": "bot_token", "value": "t"}]}),
        )
        .await;
    a.put_flow("Bot", "Old", &flow(&runner, "old")).await;
    // And the only flow of another account.
    let acme = bearer_client(&a.account_token("acme", &["read", "flows:write"]).await);
    let s = acme
        .put(a.url("/v1/flows/Acme/Only"))
        .json(&flow(&runner, "acme"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    let acme_flow = |d: &DaemonProcess| {
        let (acme, url) = (acme.clone(), d.url("/v1/flows/Acme/Only"));
        async move { acme.get(url).send().await.unwrap().status() }
    };
    eventually("the connector and flows on B", LIMIT, || async {
        let c = listed(&b, "telegram", "old").await?;
        (c["status"] == "running"
            && get(&b, "/v1/flows/Bot/Old").await.0 == StatusCode::OK
            && acme_flow(&b).await == StatusCode::OK)
            .then_some(())
    })
    .await;
    // B goes (its store keeps both); meanwhile A deletes them and makes another connector.
    b.kill9();
    let http = a.client();
    for (method, path) in [
        ("POST", format!("/v1/integrations/connectors/{old}/stop")),
        ("DELETE", format!("/v1/integrations/connectors/{old}")),
        ("DELETE", "/v1/flows/Bot/Old".to_owned()),
    ] {
        let req = match method {
            "POST" => http.post(a.url(&path)),
            _ => http.delete(a.url(&path)),
        };
        let s = req.send().await.unwrap().status();
        assert!(s.is_success(), "{method} {path}: {s}");
    }
    let s = acme
        .delete(a.url("/v1/flows/Acme/Only"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(s.is_success(), "{s}");
    a.run_connector(
        "telegram",
        json!({"title": "New", "connector_idn": "new", "settings": [{"idn": "bot_token", "value": "t"}]}),
    )
    .await;
    // B back on its old store: it listens once it has read the bucket, deletions included,
    // and seeds nothing of what was deleted.
    let b = start(&base, 1, &nats, &key);
    assert_eq!(listed(&b, "telegram", "old").await, None);
    assert_eq!(get(&b, "/v1/flows/Bot/Old").await.0, StatusCode::NOT_FOUND);
    assert_eq!(acme_flow(&b).await, StatusCode::NOT_FOUND);
    let new = listed(&b, "telegram", "new")
        .await
        .expect("A's new connector");
    assert_eq!(new["status"], "running", "{new}");
    // Nor did B's start bring them back on A.
    assert_eq!(listed(&a, "telegram", "old").await, None);
    assert_eq!(get(&a, "/v1/flows/Bot/Old").await.0, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn a_change_made_while_nats_is_away_reaches_the_others_once_it_is_back() {
    let base = temp_dir("control-plane-away");
    let mut nats = NatsServer::start_recent(&base);
    let key = switchboard::store::SecretBox::generate();
    let a = start(&base, 0, &nats, &key);
    let b = start(&base, 1, &nats, &key);
    nats.kill();
    // Made on A, not shared: 503, retryable, the bucket named.
    let r = a
        .client()
        .post(a.url("/v1/integrations/telegram/connectors"))
        .json(&json!({"title": "Away", "connector_idn": "away", "settings": [{"idn": "bot_token", "value": "t"}]}))
        .send()
        .await
        .unwrap();
    let s = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "control_plane", "{v}");
    assert!(listed(&a, "telegram", "away").await.is_some(), "made on A");
    assert_eq!(listed(&b, "telegram", "away").await, None);
    // Back: A shares it again from its store, B applies it.
    nats.resume();
    eventually(
        "the connector made while NATS was away on B",
        LIMIT,
        || async { listed(&b, "telegram", "away").await.map(|_| ()) },
    )
    .await;
}
