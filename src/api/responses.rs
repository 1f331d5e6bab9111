//! The error responses of the OpenAPI document, one per status, each answering the one error
//! body ([`ErrorBody`](super::error::ErrorBody)): operations name them in their
//! `#[utoipa::path(responses(...))]` (the daemon's in `http/`, the natives' in their folders),
//! and the document declares them once (`http/openapi.rs`).

use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToResponse};

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

/// Error responses, one per status, named in the operations' `responses(...)`.
macro_rules! error_responses {
    ($($name:ident => $description:literal,)*) => {$(
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), error_response($description).build().into())
            }
        }
    )*};
}

error_responses! {
    BadRequest => "The request is malformed or invalid; `field` names what",
    Forbidden => "The token lacks a scope (`missing_scope`, `field` names it), names another \
        account, or the thing may not be changed",
    NotFound => "No such thing in the token's account",
    Conflict => "The request conflicts with the current state (exists, running, stopped, …)",
    TooLarge => "The body exceeds `http.max_body_bytes`",
    RequestTimeout => "The body did not arrive within `http.body_timeout_ms` (`body_timeout`); \
        the connection is closed",
    UnsupportedMediaType => "A `Content-Type` the operation does not read",
    Unavailable => "Busy or the store is unavailable: retry after `Retry-After` seconds",
    TooManyRequests => "A flow instance the event reaches holds its maximum of events for this \
        persona (`flow_instance_full`): nothing was recorded; retry after `Retry-After` seconds",
}

/// 401, with `WWW-Authenticate: Bearer`.
pub struct Unauthorized;

impl<'s> ToResponse<'s> for Unauthorized {
    fn response() -> (&'s str, RefOr<Response>) {
        let response = error_response("No valid bearer token")
            .header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .description(Some("`Bearer`"))
                    .schema(String::schema())
                    .build(),
            )
            .build();
        ("Unauthorized", response.into())
    }
}
