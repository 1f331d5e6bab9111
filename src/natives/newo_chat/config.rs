//! `[newo_chat]`: the web-chat native's own config section (its socket.io listener, the
//! per-actor buffer, the public API's rate limits and the proxies trusted for the client's
//! address), declared on its registration line (`natives::section`), read by config load under
//! that key, errors naming the key.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client_ip::TrustedProxies;
use crate::natives::section::{Invalid, NativeSection};

/// The web-chat native.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewoChatConfig {
    /// Where the socket.io listener binds (its own, beside the HTTP API); port 0 picks a free
    /// one. A daemon that cannot bind it does not start.
    pub listen: SocketAddr,
    /// Commands kept for an actor with no socket connected, at most; past it the oldest goes.
    pub buffer_per_actor: usize,
    /// How long a buffered command waits for its actor to connect, in milliseconds.
    pub buffer_ttl_ms: u64,
    /// Sockets (tabs) one actor may hold open at once; one more is refused.
    pub sockets_per_actor: usize,
    /// Requests (REST calls and socket connections) per second one client secret may make.
    pub secret_per_second: u32,
    /// Requests one client secret may make at once, above the rate.
    pub secret_burst: u32,
    /// Requests per second one client IP address may make.
    pub ip_per_second: u32,
    /// Requests one IP address may make at once, above the rate.
    pub ip_burst: u32,
    /// Largest body of the public API's requests, in bytes.
    pub max_body_bytes: usize,
    /// Reverse proxies in front of the daemon (CIDR blocks or addresses): a request from one
    /// counts against the rightmost `X-Forwarded-For` address that is not one of them
    /// ([`super::client_ip`]); from any other peer the header is ignored.
    pub trusted_proxies: Vec<String>,
}

impl NewoChatConfig {
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8081));
    pub const DEFAULT_BUFFER_PER_ACTOR: usize = 100;
    pub const DEFAULT_BUFFER_TTL_MS: u64 = 86_400_000;
    pub const DEFAULT_SOCKETS_PER_ACTOR: usize = 16;
    pub const DEFAULT_SECRET_PER_SECOND: u32 = 50;
    pub const DEFAULT_SECRET_BURST: u32 = 100;
    pub const DEFAULT_IP_PER_SECOND: u32 = 10;
    pub const DEFAULT_IP_BURST: u32 = 40;
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
    pub const DEFAULT_TRUSTED_PROXIES: &'static [&'static str] = &[];

    /// [`Self::buffer_ttl_ms`] as a duration.
    pub fn buffer_ttl(&self) -> Duration {
        Duration::from_millis(self.buffer_ttl_ms)
    }

    /// [`Self::trusted_proxies`], parsed.
    pub fn proxies(&self) -> Result<TrustedProxies, Invalid> {
        TrustedProxies::parse(self.trusted_proxies.iter().map(String::as_str)).map_err(|bad| {
            Invalid {
                key: "newo_chat.trusted_proxies",
                reason: format!(
                    "{bad:?} is not a CIDR block (like \"10.0.0.0/8\") or an IP address"
                ),
            }
        })
    }
}

impl NativeSection for NewoChatConfig {
    const KEY: &'static str = "newo_chat";

    fn validate(&self) -> Result<(), Invalid> {
        Invalid::between(
            "newo_chat.buffer_per_actor",
            self.buffer_per_actor as u64,
            1,
            10_000,
        )?;
        Invalid::between(
            "newo_chat.buffer_ttl_ms",
            self.buffer_ttl_ms,
            1_000,
            30 * 86_400_000,
        )?;
        Invalid::between(
            "newo_chat.sockets_per_actor",
            self.sockets_per_actor as u64,
            1,
            1_000,
        )?;
        Invalid::between(
            "newo_chat.secret_per_second",
            self.secret_per_second.into(),
            1,
            1_000_000,
        )?;
        Invalid::between(
            "newo_chat.secret_burst",
            self.secret_burst.into(),
            1,
            1_000_000,
        )?;
        Invalid::between(
            "newo_chat.ip_per_second",
            self.ip_per_second.into(),
            1,
            1_000_000,
        )?;
        Invalid::between("newo_chat.ip_burst", self.ip_burst.into(), 1, 1_000_000)?;
        Invalid::between(
            "newo_chat.max_body_bytes",
            self.max_body_bytes as u64,
            1024,
            1 << 20,
        )?;
        self.proxies().map(|_| ())
    }
}

impl Default for NewoChatConfig {
    fn default() -> Self {
        NewoChatConfig {
            listen: Self::DEFAULT_LISTEN,
            buffer_per_actor: Self::DEFAULT_BUFFER_PER_ACTOR,
            buffer_ttl_ms: Self::DEFAULT_BUFFER_TTL_MS,
            sockets_per_actor: Self::DEFAULT_SOCKETS_PER_ACTOR,
            secret_per_second: Self::DEFAULT_SECRET_PER_SECOND,
            secret_burst: Self::DEFAULT_SECRET_BURST,
            ip_per_second: Self::DEFAULT_IP_PER_SECOND,
            ip_burst: Self::DEFAULT_IP_BURST,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            trusted_proxies: Self::DEFAULT_TRUSTED_PROXIES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(change: impl FnOnce(&mut NewoChatConfig), key: Option<&str>) {
        let mut c = NewoChatConfig::default();
        change(&mut c);
        assert_eq!(c.validate().err().map(|e| e.key), key);
    }

    #[test]
    fn defaults_pass_and_a_value_out_of_range_is_named() {
        check(|_| {}, None);
        check(
            |c| c.buffer_per_actor = 0,
            Some("newo_chat.buffer_per_actor"),
        );
        check(
            |c| c.sockets_per_actor = 0,
            Some("newo_chat.sockets_per_actor"),
        );
        check(|c| c.ip_per_second = 0, Some("newo_chat.ip_per_second"));
        check(|c| c.max_body_bytes = 10, Some("newo_chat.max_body_bytes"));
        check(
            |c| c.trusted_proxies = vec!["10.0.0.0/8".into(), "::1".into()],
            None,
        );
        check(
            |c| c.trusted_proxies = vec!["proxy.example".into()],
            Some("newo_chat.trusted_proxies"),
        );
    }
}
