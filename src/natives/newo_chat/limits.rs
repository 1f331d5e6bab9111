//! The public API's rate limits (GCRA, `governor`): per client secret and per client IP
//! address, each request and each socket connection counted against both. The IP is the TCP
//! peer's, or behind a proxy listed in `newo_chat.trusted_proxies` the client's it forwarded
//! ([`super::client_ip`]). Keys not seen for a while are
//! forgotten by [`Limits::shrink`], run by the native's housekeeping task.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::config::NewoChatConfig;
use super::refusal::ChatRefusal;

/// Both limiters.
pub struct Limits {
    by_secret: DefaultKeyedRateLimiter<String>,
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

impl Limits {
    pub fn new(config: &NewoChatConfig) -> Self {
        Limits {
            by_secret: RateLimiter::keyed(quota(config.secret_per_second, config.secret_burst)),
            by_ip: RateLimiter::keyed(quota(config.ip_per_second, config.ip_burst)),
        }
    }

    /// A request from `ip`, before anything is read.
    pub fn ip(&self, ip: IpAddr) -> Result<(), ChatRefusal> {
        self.by_ip
            .check_key(&ip)
            .map_err(|_| ChatRefusal::RateLimited("ip"))
    }

    /// A request with the client secret whose hash is `hash`, before it is looked up.
    pub fn secret(&self, hash: &str) -> Result<(), ChatRefusal> {
        self.by_secret
            .check_key(&hash.to_owned())
            .map_err(|_| ChatRefusal::RateLimited("client_secret"))
    }

    /// Forgets keys whose limits have recovered.
    pub fn shrink(&self) {
        self.by_secret.retain_recent();
        self.by_ip.retain_recent();
        self.by_secret.shrink_to_fit();
        self.by_ip.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_limit_is_refused_per_key() {
        let config = NewoChatConfig {
            ip_per_second: 1,
            ip_burst: 2,
            secret_per_second: 1,
            secret_burst: 3,
            ..NewoChatConfig::default()
        };
        let l = Limits::new(&config);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.ip(a).is_ok() && l.ip(a).is_ok());
        assert_eq!(l.ip(a), Err(ChatRefusal::RateLimited("ip")));
        assert!(l.ip(b).is_ok(), "another address has its own budget");
        for _ in 0..3 {
            l.secret("h").unwrap();
        }
        assert_eq!(
            l.secret("h"),
            Err(ChatRefusal::RateLimited("client_secret"))
        );
    }
}
