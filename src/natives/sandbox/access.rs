//! Who a sandbox socket acts for: a ticket's account, a token's, or, without either, the home
//! account, only where `sandbox.without_token` allows it and only for the daemon's own loopback
//! page (its `Host` loopback, its `Origin` the listener's own scheme, host and port).

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};

use super::routes::Surface;
use crate::api::caller::{bearer, Caller};
use crate::api::error::{ApiError, Kind};
use crate::auth::{AuthError, Scope};
use crate::domain::{Idn, DEFAULT_ACCOUNT};

/// Whether `host` (a `Host` header, or an `Origin`'s host) names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `origin` (an `Origin` header) is the daemon's own: the scheme, a loopback host and
/// the port of `listener`, the listener the request came in on (the listener's own address, or
/// `localhost` when it is a loopback one; any loopback address when it listens on all).
fn own_origin(origin: &str, listener: SocketAddr, secure: bool) -> bool {
    let scheme = if secure { "https" } else { "http" };
    let Some(authority) = origin
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
    else {
        return false;
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok(),
        None => Some(if secure { 443 } else { 80 }),
    };
    if port != Some(listener.port()) {
        return false;
    }
    let on = listener.ip();
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() && (ip == on || on.is_unspecified()),
        Err(_) => {
            host.eq_ignore_ascii_case("localhost") && (on.is_loopback() || on.is_unspecified())
        }
    }
}

/// The account a socket or the connector list acts for: a ticket's; a token's (the
/// `Authorization` header, read as `api::caller` does); or, with neither, the home account when
/// the config opens the sandbox without a token on the listener the request came in on (its
/// bound address: `http.listen`), the `Host` is loopback (not a DNS-rebound name) and the
/// `Origin`, when there is one, is the daemon's own (not another local server's page: 403).
pub async fn socket_account(
    s: &Surface,
    req: &HttpRequest,
    ticket: Option<&str>,
) -> Result<Idn, ApiError> {
    if let Some(t) = ticket {
        return s.tickets.redeem(t).ok_or_else(|| {
            ApiError::new(
                Kind::Unauthorized,
                "invalid_ticket",
                "the ticket is unknown, used or expired: POST /sandbox/ticket for a new one",
            )
            .field("ticket")
        });
    }
    if bearer(req).is_some() {
        let caller = Caller::extract(req).await?;
        return Ok(caller.need(Scope::EventsWrite)?.clone());
    }
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host_ok = header(header::HOST).is_some_and(loopback_host);
    let listener = req.app_config().local_addr();
    if !(s.config.open_without_token(listener) && host_ok) {
        return Err(AuthError::Missing.into());
    }
    let secure = req.app_config().secure();
    match header(header::ORIGIN) {
        Some(origin) if !own_origin(origin, listener, secure) => Err(ApiError::new(
            Kind::Forbidden,
            "foreign_origin",
            format!(
                "without a token the sandbox takes only its own page (port {}), not a page of {origin}",
                listener.port()
            ),
        )
        .field("Origin")),
        _ => Ok(Idn::known(DEFAULT_ACCOUNT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `origin` is the daemon's own on a plain-HTTP listener at `listener`.
    fn check(listener: &str, origin: &str) -> bool {
        own_origin(origin, listener.parse().unwrap(), false)
    }

    #[test]
    fn only_the_listeners_own_origin_is_the_daemons() {
        let cases = [
            ("127.0.0.1:8080", "http://127.0.0.1:8080", true),
            ("127.0.0.1:8080", "http://localhost:8080", true),
            ("127.0.0.1:8080", "http://LOCALHOST:8080", true),
            ("[::1]:8080", "http://[::1]:8080", true),
            ("[::1]:8080", "http://localhost:8080", true),
            ("127.0.0.1:80", "http://127.0.0.1", true),
            ("0.0.0.0:8080", "http://127.0.0.1:8080", true),
            ("0.0.0.0:8080", "http://[::1]:8080", true),
            // Another local server's page: another port, another loopback address.
            ("127.0.0.1:8080", "http://127.0.0.1:3000", false),
            ("127.0.0.1:8080", "http://localhost:3000", false),
            ("127.0.0.1:8080", "http://127.0.0.1", false),
            ("127.0.0.1:8080", "http://127.0.0.2:8080", false),
            ("127.0.0.1:8080", "http://[::1]:8080", false),
            // Another scheme, another site, nothing parsable.
            ("127.0.0.1:8080", "https://127.0.0.1:8080", false),
            ("127.0.0.1:8080", "http://attacker.example:8080", false),
            (
                "127.0.0.1:8080",
                "http://localhost.attacker.example:8080",
                false,
            ),
            (
                "127.0.0.1:8080",
                "http://127.0.0.1:8080.attacker.example",
                false,
            ),
            ("127.0.0.1:8080", "null", false),
            ("127.0.0.1:8080", "http://[::1:8080", false),
            ("127.0.0.1:8080", "", false),
            ("10.0.0.5:8080", "http://10.0.0.5:8080", false),
            ("10.0.0.5:8080", "http://localhost:8080", false),
        ];
        for (listener, origin, own) in cases {
            assert_eq!(check(listener, origin), own, "{origin} on {listener}");
        }
        assert!(own_origin(
            "https://localhost:8443",
            "127.0.0.1:8443".parse().unwrap(),
            true
        ));
    }
}
