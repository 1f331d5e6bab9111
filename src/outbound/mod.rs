//! The outbound toolkit: HTTP under one egress policy ([`EgressPolicy`]). Every request the
//! daemon makes to an address it was given (webhook skill runners, `send_request`, API
//! webhooks, OAuth token endpoints) goes through an [`Egress`], whose client
//!
//! - resolves names with [`PolicyResolver`], which drops denied addresses at connect time;
//! - refuses a URL whose host is a denied IP literal before sending ([`Egress::request`]):
//!   literals skip name resolution;
//! - follows no redirect by itself and uses no proxy from the environment (either would reach
//!   an address nobody judged): [`Egress::send`] follows redirects hop by hop, each judged
//!   again, with per-use options ([`send`]);
//! - retries as [`retry`] says: capped exponential backoff, full jitter, `Retry-After`.
//!
//! [`signing`] signs Standard Webhooks messages with any secret (two during a rotation) and
//! verifies inbound ones.
//!
//! [`outbox`] delivers messages durably through destinations built on these (per destination
//! and key in order, replayed at start, dead-lettered when given up).
//!
//! Every refusal is an [`EgressDenied`] (`egress_denied: 169.254.169.254 is link-local`),
//! counted in `switchboard_egress_denied_total{reason}`. A URL carries no credentials and is
//! logged masked ([`url_text`]).

pub mod outbox;
pub mod policy;
pub mod resolver;
pub mod retry;
pub mod send;
pub mod signing;
pub mod url_text;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use policy::{denied_range, literal_host, DeniedRange, EgressDenied, EgressPolicy};
pub use resolver::{Lookup, PolicyResolver, SystemLookup};
pub use retry::{parse_retry_after, retryable_status, Backoff};
pub use send::{read_capped, OutboundRequest, SendError, SendOptions, Sent};
pub use signing::{Signer, SigningKey, Verifier, VerifyError};
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

/// How long a connection may take to open, whatever the request's own timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client under the egress policy. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
    client: reqwest::Client,
    /// The same without TLS verification, made when a use first asks for it.
    insecure: Arc<OnceLock<reqwest::Client>>,
}

/// A client under `policy` resolving with `lookup`: no redirects (the daemon follows them hop
/// by hop, see [`send`]), no proxy from the environment.
fn client(
    policy: &Arc<EgressPolicy>,
    lookup: &Arc<dyn Lookup>,
    verify_tls: bool,
) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .danger_accept_invalid_certs(!verify_tls)
        .dns_resolver(Arc::new(PolicyResolver::new(
            policy.clone(),
            lookup.clone(),
        )))
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
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
        Egress {
            client: client(&policy, &lookup, true),
            policy,
            lookup,
            insecure: Arc::default(),
        }
    }

    /// The client that does not verify TLS certificates.
    fn insecure_client(&self) -> &reqwest::Client {
        self.insecure
            .get_or_init(|| client(&self.policy, &self.lookup, false))
    }

    /// Refuses (and counts) a URL whose host is a denied IP literal.
    fn judge(&self, url: &str) -> Result<(), EgressDenied> {
        self.policy.judge_literal(url).inspect_err(refused)
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
        self.judge(url)?;
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
