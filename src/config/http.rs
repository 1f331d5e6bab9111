//! `[http]`: the HTTP API server (actix-web).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize};

use super::error::{check, ConfigError};

/// The HTTP API server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address and port to listen on; port 0 picks a free one.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// actix-web worker threads; 0: one per CPU core.
    pub workers: usize,
    /// How long a graceful shutdown waits for open requests, in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// One structured log line per request (method, route, status, duration), at INFO.
    pub access_log: bool,
    /// How long a new connection may take to send its first request's head, in ms (then 408
    /// and closed).
    pub request_head_timeout_ms: u64,
    /// How long a connection may idle between requests, in ms (then closed).
    pub idle_timeout_ms: u64,
    /// How long a request's body may take to arrive, from its head, in ms (then 408 and
    /// closed). A token without the route's scope is refused before any of it is read.
    pub body_timeout_ms: u64,
    /// How long a connection lingers after its response, in ms, for a client that sent a
    /// body nobody read (then closed); 0: closed at once.
    pub disconnect_timeout_ms: u64,
}

impl HttpConfig {
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
    pub const MIN_MAX_BODY_BYTES: usize = 1024;
    pub const DEFAULT_WORKERS: usize = 0;
    pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 10_000;
    pub const DEFAULT_ACCESS_LOG: bool = false;
    pub const DEFAULT_REQUEST_HEAD_TIMEOUT_MS: u64 = 5_000;
    pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 5_000;
    pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_DISCONNECT_TIMEOUT_MS: u64 = 1_000;

    /// [`Self::shutdown_timeout_ms`] as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// [`Self::request_head_timeout_ms`] as a duration.
    pub fn request_head_timeout(&self) -> Duration {
        Duration::from_millis(self.request_head_timeout_ms)
    }

    /// [`Self::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// [`Self::body_timeout_ms`] as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// [`Self::disconnect_timeout_ms`] as a duration.
    pub fn disconnect_timeout(&self) -> Duration {
        Duration::from_millis(self.disconnect_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check::at_least(
            "http.max_body_bytes",
            self.max_body_bytes as u64,
            Self::MIN_MAX_BODY_BYTES as u64,
        )?;
        check::positive_ms("http.shutdown_timeout_ms", self.shutdown_timeout_ms)?;
        // 0 would turn the head and idle timeouts off, and no body would ever time out.
        check::positive_ms("http.request_head_timeout_ms", self.request_head_timeout_ms)?;
        check::positive_ms("http.idle_timeout_ms", self.idle_timeout_ms)?;
        check::positive_ms("http.body_timeout_ms", self.body_timeout_ms)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Self::DEFAULT_LISTEN,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            workers: Self::DEFAULT_WORKERS,
            shutdown_timeout_ms: Self::DEFAULT_SHUTDOWN_TIMEOUT_MS,
            access_log: Self::DEFAULT_ACCESS_LOG,
            request_head_timeout_ms: Self::DEFAULT_REQUEST_HEAD_TIMEOUT_MS,
            idle_timeout_ms: Self::DEFAULT_IDLE_TIMEOUT_MS,
            body_timeout_ms: Self::DEFAULT_BODY_TIMEOUT_MS,
            disconnect_timeout_ms: Self::DEFAULT_DISCONNECT_TIMEOUT_MS,
        }
    }
}

/// A socket address from a string, refused with the value in the message
/// (`invalid socket address "x"`).
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a socket address such as \"127.0.0.1:8080\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<SocketAddr, E> {
            s.parse().map_err(|_| {
                E::custom(format!(
                    "invalid socket address {s:?} (expected IP:PORT, such as \"127.0.0.1:8080\" or \"[::1]:8080\")"
                ))
            })
        }
    }
    d.deserialize_str(Visitor)
}
