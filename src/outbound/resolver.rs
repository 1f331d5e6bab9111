//! Name resolution under the egress policy: [`PolicyResolver`] is the HTTP client's resolver;
//! it looks a name up ([`Lookup`], the system's by default, injectable for tests) and keeps
//! only the addresses the policy allows, so the address connected to is the address judged
//! (a name that resolves to a public address when a URL is checked and to 169.254.169.254
//! when it is used, DNS rebinding, is refused all the same).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::policy::EgressPolicy;

/// Looks a host name up.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>>;
}

/// The system's resolver (`getaddrinfo` on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// The HTTP client's resolver: looks up, then drops the addresses the policy denies; a name
/// left with none is refused with the first denial ([`super::EgressDenied`], counted).
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<EgressPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        PolicyResolver { policy, lookup }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let lookup = self.lookup.lookup(name.as_str());
        Box::pin(async move {
            let mut first_denial = None;
            let allowed: Vec<SocketAddr> = lookup
                .await?
                .into_iter()
                .filter_map(|ip| match policy.judge(ip) {
                    Ok(()) => Some(SocketAddr::new(ip, 0)),
                    Err(denied) => {
                        first_denial.get_or_insert(denied);
                        None
                    }
                })
                .collect();
            match first_denial {
                Some(denied) if allowed.is_empty() => {
                    super::refused(&denied);
                    Err(denied.into())
                }
                _ if allowed.is_empty() => {
                    Err(io::Error::new(io::ErrorKind::NotFound, "the name has no address").into())
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}
