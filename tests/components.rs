//! The component seam of native integrations, as a new native uses it: settings the daemon
//! writes for a new connector (secret ones revealed in the creation answer only, read-only
//! ones the caller cannot write), the lifecycle a native hears (running, stopped, deleted),
//! and HTTP routes it owns, served and documented.

mod common;

use std::sync::{Arc, Mutex};

use actix_web::{get, test as web_test, web, App, HttpResponse};
use common::Harness;
use switchboard::commands::{
    Answered, CommandRefusal, ConnectorChange, NativeCommand, NativeIntegration,
};
use switchboard::domain::ConnectorKey;
use switchboard::natives::component::{Built, Component, NativeContext};

/// A native for `api` connectors that records what it hears.
#[derive(Default)]
struct Probe {
    heard: Mutex<Vec<(String, ConnectorChange)>>,
}

impl NativeIntegration for Probe {
    fn execute(&self, _: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        Ok(Answered::Now(Default::default()))
    }

    fn connector_created(&self, connector: &ConnectorKey) -> Vec<(String, String)> {
        vec![
            (
                "incoming_webhook_url".into(),
                format!("/hooks/{}", connector.connector),
            ),
            ("signing_secret".into(), "whsec_generated".into()),
        ]
    }

    fn connector_changed(&self, connector: &ConnectorKey, change: ConnectorChange) {
        self.heard
            .lock()
            .unwrap()
            .push((connector.connector.to_string(), change));
    }
}

struct ProbeComponent(Arc<Probe>);

/// The probe's one route.
#[utoipa::path(responses((status = 200, description = "Alive")))]
#[get("/v1/probe")]
async fn probe_route(probe: web::Data<Arc<Probe>>) -> HttpResponse {
    let heard = probe.heard.lock().unwrap().len();
    HttpResponse::Ok().body(format!("heard {heard}"))
}

impl Component for ProbeComponent {
    fn idn(&self) -> &'static str {
        "api"
    }

    fn build(self: Box<Self>, _cx: &NativeContext) -> Built {
        let state = web::Data::new(self.0.clone());
        Built::executor(self.0).with_routes(move |cfg| {
            cfg.app_data(state.clone());
            cfg.service(probe_route);
        })
    }
}

fn harness() -> (Harness, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let h = Harness::builder()
        .component(Box::new(ProbeComponent(probe.clone())))
        .start();
    (h, probe)
}

#[actix_rt::test]
async fn settings_the_daemon_writes_are_applied_and_secret_ones_revealed_once() {
    let (h, _) = harness();
    let view = h
        .engine
        .create_connector(&h.account, "api", "inbound", "Inbound", &[])
        .unwrap();
    assert!(
        view.settings
            .contains(&("incoming_webhook_url".into(), "/hooks/inbound".into())),
        "the read-only setting is the daemon's: {:?}",
        view.settings
    );
    assert_eq!(
        view.revealed,
        [("signing_secret".to_owned(), "whsec_generated".to_owned())],
        "the secret is revealed in the creation answer"
    );
    assert!(
        !view.settings.iter().any(|(k, _)| k == "signing_secret"),
        "and is not among the shown settings"
    );
    let again = h
        .engine
        .registry()
        .directory()
        .list(&h.account, Some("api"));
    let again = again.iter().find(|v| v.id == view.id).unwrap();
    assert!(again.revealed.is_empty(), "never revealed again");
    // The secret is there: the connector runs (signing_secret is required).
    h.engine.run_connector(view.id).unwrap();
}

#[actix_rt::test]
async fn a_native_hears_its_connectors_run_stop_and_go() {
    let (h, probe) = harness();
    let view = h
        .engine
        .create_connector(&h.account, "api", "inbound", "Inbound", &[])
        .unwrap();
    h.engine.run_connector(view.id).unwrap();
    h.engine.stop_connector(view.id).unwrap();
    h.engine.delete_connector(view.id).unwrap();
    // Another integration's connector is not its business.
    h.connector("telegram", "bot");
    let heard = probe.heard.lock().unwrap().clone();
    assert_eq!(
        heard,
        [
            ("inbound".to_owned(), ConnectorChange::Running),
            ("inbound".to_owned(), ConnectorChange::Stopped),
            ("inbound".to_owned(), ConnectorChange::Deleted),
        ]
    );
}

#[actix_rt::test]
async fn a_natives_routes_are_served_with_its_state() {
    let (h, probe) = harness();
    let routes = h.engine.native_routes().to_vec();
    assert_eq!(
        routes.len(),
        1,
        "the probe's routes, and no other native has any"
    );
    let app = web_test::init_service(App::new().configure(|cfg| {
        let mut cfg = utoipa_actix_web::service_config::ServiceConfig::new(cfg);
        for r in &routes {
            r.register(&mut cfg);
        }
    }))
    .await;
    probe
        .heard
        .lock()
        .unwrap()
        .push(("x".into(), ConnectorChange::Running));
    let body = web_test::call_and_read_body(
        &app,
        web_test::TestRequest::get().uri("/v1/probe").to_request(),
    )
    .await;
    assert_eq!(body, "heard 1");
    // And documented in the API's OpenAPI document.
    let document = switchboard::http::openapi::document(&routes);
    assert!(document.paths.paths.contains_key("/v1/probe"));
}
