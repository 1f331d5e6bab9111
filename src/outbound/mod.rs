//! Outbound HTTP under one egress policy ([`EgressPolicy`]): every request the daemon makes to
//! an address it was given (webhook skill runners today; later `send_request`, API webhooks,
//! OAuth token endpoints) goes through an [`Egress`], whose client
//!
//! - resolves names with [`PolicyResolver`], which drops denied addresses at connect time;
//! - refuses a URL whose host is a denied IP literal before sending ([`Egress::request`]):
//!   literals skip name resolution;
//! - follows no redirect and uses no proxy from the environment (either would reach an
//!   address nobody judged).
//!
//! Every refusal is an [`EgressDenied`] (`egress_denied: 169.254.169.254 is link-local`),
//! counted in `switchboard_egress_denied_total{reason}`. A URL carries no credentials and is
//! logged masked ([`url_text`]).

pub mod policy;
pub mod resolver;
pub mod url_text;

use std::sync::Arc;

pub use policy::{denied_range, literal_host, DeniedRange, EgressDenied, EgressPolicy};
pub use resolver::{Lookup, PolicyResolver, SystemLookup};
pub use url_text::{has_userinfo, masked_url};

use crate::telemetry::metrics::EGRESS_DENIED_TOTAL;
use crate::telemetry::throttle::Throttle;

/// Counts a refusal (and logs it, at most once per [`Throttle::EVERY`]).
fn refused(denied: &EgressDenied) {
    metrics::counter!(EGRESS_DENIED_TOTAL, "reason" => denied.range.as_str()).increment(1);
    static LOG: Throttle = Throttle::new();
    if let Some(suppressed) = LOG.allow(Throttle::EVERY) {
        tracing::warn!(address = %denied.address, reason = denied.range.as_str(), suppressed, "outbound request refused by the egress policy");
    }
}

/// An HTTP client under the egress policy. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<EgressPolicy>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Under `policy`, resolving names with the system's resolver.
    pub fn new(policy: EgressPolicy) -> Self {
        Self::with_lookup(policy, Arc::new(SystemLookup))
    }

    /// Under `policy`, resolving names with `lookup` (tests make a name resolve anywhere).
    pub fn with_lookup(policy: EgressPolicy, lookup: Arc<dyn Lookup>) -> Self {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver::new(policy.clone(), lookup)))
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Egress { policy, client }
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// A request to `url`, refused (and counted) when its host is a denied IP literal; a host
    /// name is judged when it resolves.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, EgressDenied> {
        self.policy.judge_literal(url).inspect_err(refused)?;
        Ok(self.client.request(method, url))
    }

    /// The policy's refusal inside a failed request's error chain, if that is why it failed.
    pub fn denial<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressDenied> {
        let mut source = Some(error);
        while let Some(e) = source {
            if let Some(denied) = e.downcast_ref::<EgressDenied>() {
                return Some(denied);
            }
            source = e.source();
        }
        None
    }
}
