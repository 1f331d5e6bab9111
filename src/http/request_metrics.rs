//! HTTP request metrics (and, when `http.access_log` is on, one log line per request), recorded
//! by one middleware around every route:
//! `switchboard_http_requests_total{route, status_class}` and
//! `switchboard_http_request_duration_seconds{route}`. `route` is the matched route template
//! (`/v1/flows/{agent}/{flow}`), `unmatched` when no route matched, so label values stay bounded.

use std::time::Instant;

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;

use crate::telemetry::metrics::{HTTP_REQUESTS_TOTAL, HTTP_REQUEST_DURATION_SECONDS};

/// The `route` of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Counts an answered request and records its duration since `started`; with `access_log`,
/// writes one structured line for it (no query string, no body: nothing secret).
pub fn record<B>(
    res: &Result<ServiceResponse<B>, actix_web::Error>,
    started: Instant,
    access_log: bool,
) {
    let (route, status, method) = match res {
        Ok(r) => (
            r.request().match_pattern(),
            r.status(),
            Some(r.request().method().clone()),
        ),
        Err(e) => (None, e.as_response_error().status_code(), None),
    };
    let route = route.unwrap_or_else(|| UNMATCHED.to_owned());
    if access_log {
        tracing::info!(
            target: "access",
            method = method.as_ref().map_or("", |m| m.as_str()),
            route = %route,
            status = status.as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }
    metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route.clone(), "status_class" => status_class(status))
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
}

/// `2xx`, `4xx`, `5xx`, … of a status.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(StatusCode::ACCEPTED), "2xx");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
        assert_eq!(status_class(StatusCode::SWITCHING_PROTOCOLS), "1xx");
    }
}
