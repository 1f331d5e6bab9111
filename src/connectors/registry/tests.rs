//! The connector lifecycle and the directory it changes: real connector actors in an actix
//! system, started by a factory that records what it started, routing to a stub that drops
//! everything.

use std::sync::Mutex;
use std::time::Duration;

use actix::{Actor, Addr};

use super::*;
use crate::admission::Unreachable;
use crate::catalog::Catalog;
use crate::connectors::actor::{ConnectorActor, ConnectorDeps};
use crate::connectors::acts::CommandActs;
use crate::connectors::route::{Routable, Routes};
use crate::dead_letter::memory::MemoryDeadLetters;
use crate::domain::ScopeKey;
use crate::ingress::Inboxes;
use crate::session::SessionTable;
use crate::telemetry::handles::EngineMetrics;
use crate::testing::until;

/// Routing that reaches no flow.
struct Nowhere;

impl Routes for Nowhere {
    fn route(
        &self,
        _: &ScopeKey,
        _: &ScopeKey,
        batch: &mut Vec<Routable>,
        matched: &mut Vec<usize>,
    ) {
        matched.extend(batch.drain(..).map(|_| 0));
    }
}

/// Every actor the factory started: its connector, whether internal, its address.
type Started = Arc<Mutex<Vec<(ConnectorKey, bool, Addr<ConnectorActor>)>>>;

struct World {
    registry: ConnectorRegistry,
    started: Started,
    account: Idn,
}

impl World {
    fn new() -> World {
        let deps = Arc::new(ConnectorDeps {
            routes: Arc::new(Nowhere),
            sessions: Arc::new(SessionTable::default()),
            acts: Arc::new(CommandActs::new(Duration::from_secs(60), 10)),
            dead_letters: Arc::new(MemoryDeadLetters::new(10)),
            metrics: Arc::new(EngineMetrics::new()),
            dedupe_window: Duration::from_secs(60),
            dedupe_capacity: 10,
        });
        let started: Started = Arc::default();
        let record = started.clone();
        let factory: ActorFactory = Box::new(move |key, integration, internal, _settings| {
            let addr = ConnectorActor::new(
                key.clone(),
                integration.clone(),
                internal,
                None,
                deps.clone(),
            )
            .start();
            record
                .lock()
                .unwrap()
                .push((key.clone(), internal, addr.clone()));
            ConnectorHandle::new(addr)
        });
        let registry =
            ConnectorRegistry::new(Arc::new(Directory::new(Catalog::builtin())), factory);
        World {
            registry,
            started,
            account: Idn::known("default"),
        }
    }

    fn create(
        &self,
        integration: &str,
        connector: &str,
        settings: &[(&str, &str)],
    ) -> Result<ConnectorView, ControlError> {
        self.registry.create(
            &self.account,
            integration,
            connector,
            &format!("{integration} {connector}"),
            &owned(settings),
            |_| Vec::new(),
        )
    }

    /// How many actors were started for `integration/connector`.
    fn starts(&self, integration: &str, connector: &str) -> usize {
        self.started
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| k.integration == *integration && k.connector == *connector)
            .count()
    }

    /// The address of the last actor started for `integration/connector`.
    fn addr(&self, integration: &str, connector: &str) -> Addr<ConnectorActor> {
        self.started
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(k, _, _)| k.integration == *integration && k.connector == *connector)
            .map(|(_, _, a)| a.clone())
            .expect("an actor was started")
    }

    fn key(&self, integration: &str, connector: &str) -> ConnectorKey {
        ConnectorKey::new(
            &self.account,
            &Idn::known(integration),
            &Idn::known(connector),
        )
    }

    /// What `with_running` answers for `integration/connector`.
    fn reach(&self, integration: &str, connector: &str) -> Result<(), Unreachable> {
        self.registry
            .with_running(&self.key(integration, connector), 7, |_, n| {
                assert_eq!(n, 7)
            })
            .map_err(|(payload, reach)| {
                assert_eq!(payload, 7, "the payload comes back");
                reach
            })
    }
}

fn owned(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn invalid(field: &str) -> impl Fn(&ControlError) -> bool + '_ {
    move |e| matches!(e, ControlError::Invalid { field: f, .. } if f == field)
}

#[actix_rt::test]
async fn create_makes_a_stopped_connector_with_no_actor() {
    let w = World::new();
    let view = w.create("sandbox", "sb", &[]).unwrap();
    assert_eq!(view.status, Status::Stopped);
    assert!(!view.internal);
    assert_eq!(view.key, w.key("sandbox", "sb"));
    assert_eq!(view.title, "sandbox sb");
    assert_eq!(w.registry.get(view.id).unwrap(), view);
    assert_eq!(
        w.registry.find(&w.account, "sandbox", "sb"),
        Some(view.clone())
    );
    assert_eq!(w.starts("sandbox", "sb"), 0, "no actor until it runs");
    assert_eq!(
        w.reach("sandbox", "sb"),
        Err(Unreachable::ConnectorStopped {
            integration: "sandbox".into(),
            connector: "sb".into()
        })
    );
}

#[actix_rt::test]
async fn create_refuses_invalid_input_naming_the_field() {
    let w = World::new();
    w.create("sandbox", "sb", &[]).unwrap();
    assert_eq!(
        w.create("nope", "sb", &[]).unwrap_err(),
        ControlError::UnknownIntegration("nope".into())
    );
    assert!(invalid("connector_idn")(
        &w.create("sandbox", "Not Valid", &[]).unwrap_err()
    ));
    let untitled = w
        .registry
        .create(&w.account, "sandbox", "other", "  ", &[], |_| Vec::new())
        .unwrap_err();
    assert!(invalid("title")(&untitled));
    let conflict = w.create("sandbox", "sb", &[]).unwrap_err();
    assert_eq!(
        conflict,
        ControlError::Conflict {
            integration: "sandbox".into(),
            connector: "sb".into()
        }
    );
    assert_eq!(conflict.field(), Some("connector_idn"));
    assert!(invalid("settings.no_such_setting")(
        &w.create("sandbox", "other", &[("no_such_setting", "x")])
            .unwrap_err()
    ));
    // The daemon's own connectors cannot be created.
    assert_eq!(
        w.create("sandbox", "system", &[]).unwrap_err(),
        ControlError::InternalConnector("sandbox/system".into())
    );
    assert_eq!(
        w.create("system", "anything", &[]).unwrap_err(),
        ControlError::InternalConnector("system/anything".into())
    );
    assert!(w.registry.find(&w.account, "sandbox", "other").is_none());
}

#[actix_rt::test]
async fn the_internal_connectors_of_an_account_exist_and_run() {
    let w = World::new();
    let acme = Idn::known("acme");
    w.registry.ensure_account(&acme);
    let listed = w.registry.list(&acme, None);
    let names: Vec<String> = listed
        .iter()
        .map(|v| format!("{}/{}", v.key.integration, v.key.connector))
        .collect();
    for expected in [
        "system/system",
        "system/project",
        "system/customer",
        "sandbox/system",
        "telegram/system",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(listed
        .iter()
        .all(|v| v.internal && v.status == Status::Running));
    let mut sorted = listed.clone();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed, sorted, "listed in key order");
    let started = w.started.lock().unwrap().len();
    assert_eq!(started, listed.len(), "one actor each");
    assert!(w
        .started
        .lock()
        .unwrap()
        .iter()
        .all(|(k, internal, _)| *internal && k.account == acme));
    w.registry.ensure_account(&acme);
    assert_eq!(w.started.lock().unwrap().len(), started, "made once");
    assert!(
        w.registry.list(&w.account, None).is_empty(),
        "other accounts untouched"
    );
    assert_eq!(w.registry.list(&acme, Some("system")).len(), 3);
}

#[actix_rt::test]
async fn run_is_refused_while_a_required_connector_setting_has_no_value() {
    let w = World::new();
    // http needs a `base_url` per connector.
    let view = w.create("http", "api", &[]).unwrap();
    assert_eq!(
        w.registry.run(view.id).unwrap_err(),
        ControlError::Invalid {
            field: "settings.base_url".into(),
            reason: "required, and has no value".into()
        }
    );
    assert_eq!(w.registry.get(view.id).unwrap().status, Status::Stopped);
    assert_eq!(w.starts("http", "api"), 0);
    assert!(matches!(
        w.reach("http", "api"),
        Err(Unreachable::ConnectorStopped { .. })
    ));
    w.registry
        .update(
            view.id,
            None,
            &owned(&[("base_url", "https://example.test")]),
        )
        .unwrap();
    let running = w.registry.run(view.id).unwrap();
    assert_eq!(running.status, Status::Running);
    assert_eq!(w.starts("http", "api"), 1);
    assert_eq!(w.reach("http", "api"), Ok(()));
    // Running again changes nothing.
    assert_eq!(w.registry.run(view.id).unwrap(), running);
    assert_eq!(w.starts("http", "api"), 1);
}

#[actix_rt::test]
async fn run_is_refused_while_a_required_integration_setting_has_no_value() {
    let w = World::new();
    // apify needs an `api_token` (a secret) per account, none per connector.
    let view = w.create("apify", "scraper", &[]).unwrap();
    assert_eq!(
        w.registry.run(view.id).unwrap_err(),
        ControlError::Invalid {
            field: "integration_settings.api_token".into(),
            reason: "required, and has no value".into()
        }
    );
    assert_eq!(w.registry.get(view.id).unwrap().status, Status::Stopped);
    assert_eq!(w.starts("apify", "scraper"), 0);
    // Another account's settings do not count.
    let acme = Idn::known("acme");
    w.registry
        .set_integration_settings(&acme, "apify", &owned(&[("api_token", "t")]))
        .unwrap();
    assert!(invalid("integration_settings.api_token")(
        &w.registry.run(view.id).unwrap_err()
    ));
    let public = w
        .registry
        .set_integration_settings(&w.account, "apify", &owned(&[("api_token", "t")]))
        .unwrap();
    assert!(public.is_empty(), "the secret is left out: {public:?}");
    assert_eq!(w.registry.run(view.id).unwrap().status, Status::Running);
    assert_eq!(w.starts("apify", "scraper"), 1);
}

#[actix_rt::test]
async fn stop_and_delete() {
    let w = World::new();
    let view = w.create("sandbox", "sb", &[]).unwrap();
    w.registry.run(view.id).unwrap();
    let addr = w.addr("sandbox", "sb");
    assert_eq!(
        w.registry.delete(view.id),
        Err(ControlError::StillRunning("sandbox/sb".into()))
    );
    let stopped = w.registry.stop(view.id).unwrap();
    assert_eq!(stopped.status, Status::Stopped);
    until("the actor to stop", || (!addr.connected()).then_some(())).await;
    assert!(matches!(
        w.reach("sandbox", "sb"),
        Err(Unreachable::ConnectorStopped { .. })
    ));
    assert_eq!(
        w.registry.stop(view.id).unwrap(),
        stopped,
        "stopping twice is no error"
    );

    // Runs again with a new actor.
    w.registry.run(view.id).unwrap();
    assert_eq!(w.starts("sandbox", "sb"), 2);
    w.registry.stop(view.id).unwrap();

    w.registry.delete(view.id).unwrap();
    assert_eq!(
        w.registry.get(view.id),
        Err(ControlError::NotFound(view.id.to_string()))
    );
    assert!(w.registry.find(&w.account, "sandbox", "sb").is_none());
    assert_eq!(
        w.registry.delete(view.id),
        Err(ControlError::NotFound(view.id.to_string()))
    );
    assert_eq!(
        w.reach("sandbox", "sb"),
        Err(Unreachable::UnknownConnector {
            integration: "sandbox".into(),
            connector: "sb".into()
        })
    );
    // The name is free again.
    w.create("sandbox", "sb", &[]).unwrap();
}

#[actix_rt::test]
async fn internal_connectors_cannot_be_stopped_changed_or_deleted() {
    let w = World::new();
    w.registry.ensure_account(&w.account);
    let internal = w.registry.find(&w.account, "sandbox", "system").unwrap();
    let refusal = ControlError::InternalConnector("sandbox/system".into());
    assert_eq!(w.registry.stop(internal.id), Err(refusal.clone()));
    assert_eq!(w.registry.delete(internal.id), Err(refusal.clone()));
    assert_eq!(w.registry.update(internal.id, Some("x"), &[]), Err(refusal));
    assert_eq!(w.reach("sandbox", "system"), Ok(()));
    assert_eq!(w.registry.get(internal.id).unwrap().status, Status::Running);
}

#[actix_rt::test]
async fn with_running_says_why_a_connector_cannot_be_reached() {
    let w = World::new();
    let view = w.create("sandbox", "sb", &[]).unwrap();
    assert_eq!(
        w.reach("nope", "sb"),
        Err(Unreachable::UnknownIntegration("nope".into()))
    );
    assert_eq!(
        w.reach("telegram", "sb"),
        Err(Unreachable::UnknownConnector {
            integration: "telegram".into(),
            connector: "sb".into()
        })
    );
    assert!(matches!(
        w.reach("sandbox", "sb"),
        Err(Unreachable::ConnectorStopped { .. })
    ));
    w.registry.run(view.id).unwrap();
    // Reached: `send` gets the running actor's handle.
    let addr = w.addr("sandbox", "sb");
    let same = w
        .registry
        .with_running(&w.key("sandbox", "sb"), (), |handle, ()| {
            handle.addr == addr
        })
        .map_err(|(_, reach)| reach);
    assert_eq!(same, Ok(true));
    // The ingress view of it: the running connector's inbox.
    let mut called = 0;
    let reached = w
        .registry
        .directory()
        .with_inbox(&w.key("sandbox", "sb"), &mut |inbox| {
            called += 1;
            assert!(!inbox.is_closed());
        });
    assert_eq!((reached, called), (Ok(()), 1));
    let mut called = 0;
    let stopped = w
        .registry
        .directory()
        .with_inbox(&w.key("telegram", "sb"), &mut |_| called += 1);
    assert!(matches!(stopped, Err(Unreachable::UnknownConnector { .. })));
    assert_eq!(called, 0, "not called when unreachable");
}

#[actix_rt::test]
async fn secret_settings_are_left_out_of_views() {
    let w = World::new();
    let view = w
        .create(
            "http",
            "api",
            &[
                ("base_url", "https://example.test"),
                ("auth_token", "s3cret"),
            ],
        )
        .unwrap();
    let public = owned(&[("base_url", "https://example.test")]);
    assert_eq!(view.settings, public);
    assert_eq!(w.registry.get(view.id).unwrap().settings, public);
    assert_eq!(
        w.registry.list(&w.account, Some("http"))[0].settings,
        public
    );
    let updated = w
        .registry
        .update(view.id, Some("Renamed"), &owned(&[("password", "hunter2")]))
        .unwrap();
    assert_eq!(updated.settings, public);
    assert_eq!(updated.title, "Renamed");
    // The daemon itself still reads them.
    let key = w.key("http", "api");
    assert_eq!(
        w.registry.setting(&key, "auth_token").as_deref(),
        Some("s3cret")
    );
    assert_eq!(
        w.registry.setting(&key, "timeout_seconds").as_deref(),
        Some("30"),
        "a default"
    );
    let (_, stored, _) = w.registry.stored(view.id).unwrap();
    assert_eq!(stored.get("password"), Some("hunter2"));
    // Integration-level secrets likewise.
    let shown = w
        .registry
        .set_integration_settings(&w.account, "apify", &owned(&[("api_token", "t0ken")]))
        .unwrap();
    assert!(shown.is_empty());
    assert!(w
        .registry
        .integration_settings(&w.account, "apify")
        .unwrap()
        .is_empty());
    assert_eq!(
        w.registry
            .stored_integration_settings(&w.account, &Idn::known("apify"))
            .get("api_token"),
        Some("t0ken")
    );
}

#[actix_rt::test]
async fn a_running_connector_keeps_its_required_settings() {
    let w = World::new();
    let view = w
        .create("http", "api", &[("base_url", "https://example.test")])
        .unwrap();
    w.registry.run(view.id).unwrap();
    assert!(invalid("settings.base_url")(
        &w.registry
            .update(view.id, None, &owned(&[("base_url", "")]))
            .unwrap_err()
    ));
    assert!(invalid("title")(
        &w.registry.update(view.id, Some(" "), &[]).unwrap_err()
    ));
    assert_eq!(
        w.registry.get(view.id).unwrap().settings,
        owned(&[("base_url", "https://example.test")]),
        "nothing applied"
    );
    // Stopped, it may.
    w.registry.stop(view.id).unwrap();
    let cleared = w
        .registry
        .update(view.id, None, &owned(&[("base_url", "")]))
        .unwrap();
    assert!(cleared.settings.is_empty());
}

#[actix_rt::test]
async fn restore_puts_back_a_connector_with_its_id_and_runs_it_if_it_can() {
    let w = World::new();
    let id = uuid::Uuid::new_v4();
    let at = chrono::Utc::now();
    w.registry
        .restore(
            &w.account,
            "sandbox",
            "sb",
            id,
            "Restored",
            Settings::default(),
            true,
            at,
        )
        .unwrap();
    let view = w.registry.get(id).unwrap();
    assert_eq!(
        (view.status, view.title.as_str(), view.created_at),
        (Status::Running, "Restored", at)
    );
    assert_eq!(w.starts("sandbox", "sb"), 1);
    // One that cannot run any more stays stopped, and says why.
    let api = uuid::Uuid::new_v4();
    let refused = w
        .registry
        .restore(
            &w.account,
            "http",
            "api",
            api,
            "Api",
            Settings::default(),
            true,
            at,
        )
        .unwrap_err();
    assert!(invalid("settings.base_url")(&refused));
    assert_eq!(w.registry.get(api).unwrap().status, Status::Stopped);
    assert_eq!(w.starts("http", "api"), 0);
}

#[actix_rt::test]
async fn stop_all_stops_every_actor() {
    let w = World::new();
    let view = w.create("sandbox", "sb", &[]).unwrap();
    w.registry.run(view.id).unwrap();
    let addrs: Vec<Addr<ConnectorActor>> = w
        .started
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, a)| a.clone())
        .collect();
    assert!(addrs.len() > 1, "the internal connectors and sandbox/sb");
    w.registry.stop_all();
    until("every actor to stop", || {
        addrs.iter().all(|a| !a.connected()).then_some(())
    })
    .await;
    assert!(matches!(
        w.reach("sandbox", "sb"),
        Err(Unreachable::ConnectorStopped { .. })
    ));
    // Left as `stop` leaves a connector: stopped, not running without an actor.
    assert!(w
        .registry
        .list(&Idn::known("default"), Some("sandbox"))
        .iter()
        .filter(|v| !v.internal)
        .all(|v| v.status == Status::Stopped));
}

#[actix_rt::test]
async fn internal_connectors_keep_their_ids_across_registries() {
    let ids = |w: &World| {
        let mut v: Vec<_> = w
            .registry
            .list(&Idn::known("acme"), None)
            .into_iter()
            .map(|v| (v.key, v.id))
            .collect();
        v.sort();
        v
    };
    let (a, b) = (World::new(), World::new());
    a.registry.ensure_account(&Idn::known("acme"));
    b.registry.ensure_account(&Idn::known("acme"));
    let (ids_a, ids_b) = (ids(&a), ids(&b));
    assert!(!ids_a.is_empty());
    assert_eq!(ids_a, ids_b, "the same ids after a restart");
}
