//! The OpenAPI 3.1 document of the whole API, generated from the code: every handler carries
//! its `#[utoipa::path]` (responses, scopes, parameters) beside its actix route macro, which
//! gives the method and path, and [`super::routes`] registers handlers through
//! `utoipa_actix_web`, which takes only documented ones: a route served is a route documented.
//! Built once at start-up ([`ApiDocument::build`]) and served, without a token, at
//! `GET /v1/openapi.json`. Errors are [`ErrorBody`]; the responses of `api/responses.rs` (declared
//! here) name each status.

use crate::natives::component::Routes;
use actix_web::{get, web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::api::error::ErrorBody;
pub use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, RequestTimeout, TooLarge, TooManyRequests,
    Unauthorized, Unavailable, UnsupportedMediaType,
};

/// The name of the bearer security scheme operations refer to.
pub const BEARER: &str = "bearer";

/// The document, serialized once.
#[derive(Clone)]
pub struct ApiDocument(web::Bytes);

impl ApiDocument {
    /// The document of the daemon's routes and the natives' (`natives`).
    pub fn build(natives: &[Routes]) -> Self {
        let json = document(natives)
            .to_json()
            .expect("the OpenAPI document serializes");
        ApiDocument(json.into())
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "The HTTP API of the Switchboard daemon. Every operation but the probes, \
            this document and the sandbox page needs `Authorization: Bearer sbt_…`; the scopes an \
            operation needs are its security requirement's (a token with `admin` has them all; \
            one with `account:admin` all but `metrics:read` and `admin`). \
            Errors answer `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            TooLarge,
            RequestTimeout,
            UnsupportedMediaType,
            TooManyRequests,
            Unavailable
        )
    ),
    modifiers(&Bearer)
)]
struct Api;

/// The bearer security scheme.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut Document) {
        let components = api.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("sbt_…")
            .description(Some(
                "An API token (`sbt_…`, made by `switchboard token` or `POST /v1/tokens`; the \
                 first start writes one with `admin` to `admin.token`). Scopes: `read`, \
                 `events:write`, `commands:write`, `results:write`, `flows:write`, \
                 `connectors:write`, `credentials:write`, `account:admin` (all of these in its \
                 account, and its tokens), and the operator's `metrics:read` and `admin` (all, \
                 every account).",
            ))
            .build();
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The whole document: what [`Api`] declares plus every route of [`super::routes`].
pub fn document(natives: &[Routes]) -> Document {
    let (_, api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(Api::openapi())
        .configure(|cfg| super::documented_routes(cfg, natives))
        .split_for_parts();
    api
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(openapi_json);
}

/// This document.
#[utoipa::path(
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
#[get("/v1/openapi.json")]
async fn openapi_json(doc: web::Data<ApiDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::RefOr;

    /// Every operation with the path and method it is served at.
    fn operations(api: &Document) -> Vec<(String, &'static str, &Operation)> {
        let mut all = Vec::new();
        for (path, item) in &api.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
            ] {
                if let Some(op) = op {
                    all.push((path.clone(), method, op));
                }
            }
        }
        all
    }

    /// What may be asked without a token.
    const PUBLIC: &[&str] = &["/healthz", "/readyz", "/v1/openapi.json", "/sandbox"];

    #[test]
    fn every_operation_names_its_scopes_and_its_401_unless_public() {
        let api = document(&[]);
        let mut wrong = Vec::new();
        for (path, method, op) in operations(&api) {
            let public = PUBLIC.contains(&path.as_str());
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_401 = op.responses.responses.contains_key("401");
            if public == secured || public == has_401 {
                wrong.push(format!(
                    "{method} {path}: public {public}, security {secured}, 401 {has_401}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn every_response_named_and_every_path_parameter_is_declared_once() {
        let api = document(&[]);
        let json = serde_json::to_value(&api).unwrap();
        let declared = &json["components"]["responses"];
        let mut wrong = Vec::new();
        for (path, method, op) in operations(&api) {
            for (status, r) in &op.responses.responses {
                if let RefOr::Ref(r) = r {
                    let name = r.ref_location.rsplit('/').next().unwrap();
                    if declared.get(name).is_none() {
                        wrong.push(format!("{method} {path} {status}: no response {name}"));
                    }
                }
            }
            let params: Vec<&str> = op
                .parameters
                .iter()
                .flatten()
                .filter(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Path)
                .map(|p| p.name.as_str())
                .collect();
            let mut names: Vec<_> = op.parameters.iter().flatten().map(|p| &p.name).collect();
            names.sort();
            names.dedup();
            if names.len() != op.parameters.iter().flatten().count() {
                wrong.push(format!("{method} {path}: a parameter declared twice"));
            }
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if !params.contains(&name) {
                        wrong.push(format!("{method} {path}: path parameter {name} undeclared"));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Operation ids are the handlers' names: CI's fuzzer excludes one by its id.
    #[test]
    fn operation_ids_are_unique() {
        let api = document(&[]);
        let mut seen = std::collections::BTreeSet::new();
        for (path, method, op) in operations(&api) {
            let id = op.operation_id.clone().unwrap_or_default();
            assert!(
                seen.insert(id.clone()),
                "{method} {path}: operation id {id:?} twice"
            );
        }
        assert!(seen.contains("revoke_token"), "{seen:?}");
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_error_body_and_the_bearer_scheme() {
        let json: serde_json::Value = serde_json::from_slice(&ApiDocument::build(&[]).0).unwrap();
        assert!(
            json["openapi"].as_str().unwrap().starts_with("3.1."),
            "{json}"
        );
        assert_eq!(
            json["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        let detail = &json["components"]["schemas"]["ErrorDetail"]["required"];
        assert_eq!(detail, &serde_json::json!(["code", "message"]));
    }
}
