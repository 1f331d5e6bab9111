//! The HTTP surface (actix-web): the control plane, flows, the data plane and operations, all
//! under the daemon, and the routes native integrations own. Errors map to statuses in [`error`] only; the OpenAPI
//! document of it all is generated from the handlers ([`openapi`]).

pub mod accounts;
pub mod connections;
pub mod control;
pub mod data;
pub mod error;
pub mod flows;
pub mod openapi;
pub mod operations;
pub mod request_metrics;
pub mod runner_secrets;
pub mod views;

use std::sync::Arc;

use actix_web::dev::Service;
use actix_web::{web, App, HttpServer};

use crate::api::error::{ApiError, Kind};
use crate::daemon::Daemon;
use crate::natives::component::Routes;

/// Every route of the API, each a handler documented with `#[utoipa::path]` (the
/// `ServiceConfig` of `utoipa_actix_web` takes no other): the OpenAPI document is collected from
/// this same list. The router tries routes in this order and matches dynamic segments with a
/// regex: the hot, static data-plane routes go first.
pub fn documented_routes(
    cfg: &mut utoipa_actix_web::service_config::ServiceConfig,
    natives: &[Routes],
) {
    data::routes(cfg);
    operations::routes(cfg);
    openapi::routes(cfg);
    data::dynamic_routes(cfg);
    flows::routes(cfg);
    accounts::routes(cfg);
    runner_secrets::routes(cfg);
    control::routes(cfg);
    for routes in natives {
        routes.register(cfg);
    }
}

/// [`documented_routes`] on actix's own `ServiceConfig`.
pub fn routes(cfg: &mut web::ServiceConfig, natives: &[Routes]) {
    documented_routes(
        &mut utoipa_actix_web::service_config::ServiceConfig::new(cfg),
        natives,
    );
}

/// Binds the server on `http.listen`; returns it (not yet awaited) and the bound addresses.
pub fn bind(
    daemon: Arc<Daemon>,
) -> std::io::Result<(actix_web::dev::Server, Vec<std::net::SocketAddr>)> {
    let cfg = daemon.config().http.clone();
    let tokens = web::Data::new(daemon.tokens().clone());
    let natives: Vec<Routes> = daemon.engine().native_routes().to_vec();
    let intake: web::Data<Arc<dyn crate::intake::Intake>> = web::Data::new(daemon.clone());
    let data = web::Data::new(daemon);
    let limits = crate::api::body::BodyLimits {
        max_bytes: cfg.max_body_bytes,
        timeout: cfg.body_timeout(),
    };
    let access_log = cfg.access_log;
    let document = web::Data::new(openapi::ApiDocument::build(&natives));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(tokens.clone())
            .app_data(intake.clone())
            .app_data(document.clone())
            .app_data(limits)
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                ApiError::new(Kind::Invalid, "invalid_query", e.to_string())
                    .field("query")
                    .into()
            }))
            .app_data(web::PathConfig::default().error_handler(|e, _| {
                ApiError::new(Kind::Invalid, "invalid_path", e.to_string()).into()
            }))
            .configure(|cfg| routes(cfg, &natives))
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(ApiError::new(
                    Kind::NotFound,
                    "no_route",
                    "no such route",
                ))
            }))
            .wrap_fn(move |req, srv| {
                let started = std::time::Instant::now();
                let request = connections::Watch::begin(req.conn_data());
                let answer = srv.call(req);
                async move {
                    let res = answer.await;
                    request_metrics::record(&res, started, access_log);
                    res.map(|r| r.map_body(|_, body| connections::Tracked::new(body, request)))
                }
            })
    })
    .on_connect(connections::on_connect(connections::limit(&cfg)))
    .disable_signals()
    // A connection waits this long for its first request's head, idles this long between
    // requests, and lingers this long after a response that left a body unread (the body
    // itself has `http.body_timeout_ms`: [`body::Body`]).
    .client_request_timeout(cfg.request_head_timeout())
    .keep_alive(cfg.idle_timeout())
    .client_disconnect_timeout(cfg.disconnect_timeout())
    .shutdown_timeout(cfg.shutdown_timeout().as_secs().max(1));
    if cfg.workers > 0 {
        server = server.workers(cfg.workers);
    }
    let server = server.bind(cfg.listen)?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}
