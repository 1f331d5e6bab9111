//! OAuth access tokens kept fresh: refreshed ahead of expiry (less than max(5 min, 10% of the
//! lifetime) left), after a 401 answered the token in hand, and at least daily (`sweep.rs`),
//! one refresh in flight per credential while the other requests wait for it and then use its
//! token. `invalid_grant`: the stored credential is read again (another refresh may have won),
//! else it is marked `needs_reauth` and a `credential_revoked` system event goes to the flows.
//! A failing provider: the old token is used until it expires.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use dashmap::DashMap;
use uuid::Uuid;

use super::clock::Clock;
use super::kind::Status;
use super::oauth::{self, OAuthError};
use super::resolve::Unusable;
use super::store::{Credential, CredentialStore, Tokens};
use crate::domain::{Event, Idn, PersonaId, PersonaKey};
use crate::ingress::InternalEvents;
use crate::outbound::Egress;

/// Refresh when less than this is left, or 10% of the lifetime if more (ms).
const AHEAD_MS: i64 = 5 * 60 * 1000;
/// A token is refreshed at least this often (ms), used or not.
pub const DAILY_MS: i64 = 24 * 60 * 60 * 1000;

/// Whether a token issued at `issued` and expiring at `expires` should be refreshed at `now`
/// (Unix ms): one that never expires never is.
pub fn expiring(expires: Option<i64>, issued: Option<i64>, now: i64) -> bool {
    let Some(expires) = expires else {
        return false;
    };
    let lifetime = issued.map_or(0, |r| expires - r);
    expires - now < AHEAD_MS.max(lifetime / 10)
}

/// Whether the daily sweep refreshes `c` at `now`: expiring, or last refreshed a day ago.
pub fn due(c: &Credential, now: i64) -> bool {
    expiring(c.expires_at, c.refreshed_at, now)
        || c.refreshed_at.is_none_or(|r| now - r >= DAILY_MS)
}

/// A future of the token endpoint's answer.
pub type Granted<'a> = Pin<Box<dyn Future<Output = Result<Tokens, OAuthError>> + Send + 'a>>;

/// Where refreshed tokens come from: the credential's token endpoint, through the egress
/// toolkit ([`oauth::refresh`]) in the daemon.
pub trait TokenEndpoint: Send + Sync {
    fn refresh<'a>(
        &'a self,
        clock: &'a Clock,
        c: &'a Credential,
        secrets: &'a BTreeMap<String, String>,
    ) -> Granted<'a>;
}

impl TokenEndpoint for Egress {
    fn refresh<'a>(
        &'a self,
        clock: &'a Clock,
        c: &'a Credential,
        secrets: &'a BTreeMap<String, String>,
    ) -> Granted<'a> {
        Box::pin(oauth::refresh(self, clock, c, secrets))
    }
}

/// The OAuth credentials' refreshes.
pub struct Refresher {
    pub store: CredentialStore,
    endpoint: Arc<dyn TokenEndpoint>,
    pub events: InternalEvents,
    /// One lock per credential: the refresh in flight.
    locks: DashMap<Uuid, Arc<tokio::sync::Mutex<()>>>,
}

impl Refresher {
    pub fn new(
        store: CredentialStore,
        endpoint: Arc<dyn TokenEndpoint>,
        events: InternalEvents,
    ) -> Refresher {
        Refresher {
            store,
            endpoint,
            events,
            locks: DashMap::new(),
        }
    }

    fn token_of(&self, c: &Credential) -> Result<Option<String>, Unusable> {
        let mut secrets = self
            .store
            .open(c)
            .map_err(|_| Unusable::Broken(c.name.clone()))?;
        Ok(secrets.remove("access_token"))
    }

    /// The access token of OAuth credential `c`, refreshed first when it is expiring or when
    /// `stale` (a token an API answered 401) is still the one stored. `persona` hears of a
    /// revocation.
    pub async fn access_token(
        &self,
        c: Credential,
        stale: Option<String>,
        persona: PersonaId,
    ) -> Result<String, Unusable> {
        let reason = if stale.is_some() {
            "unauthorized"
        } else {
            "expiring"
        };
        let clock = self.store.clock;
        let fresh = |c: &Credential, token: &Option<String>| {
            token.is_some()
                && !expiring(c.expires_at, c.refreshed_at, clock.now_ms())
                && *token != stale
        };
        self.renew(c, reason, &stale, persona, fresh).await
    }

    /// The daily sweep's: `c` refreshed if it is [`due`] (read again under its lock first).
    pub async fn refresh_if_due(
        &self,
        c: Credential,
        persona: PersonaId,
    ) -> Result<String, Unusable> {
        let clock = self.store.clock;
        let fresh =
            |c: &Credential, token: &Option<String>| token.is_some() && !due(c, clock.now_ms());
        self.renew(c, "daily", &None, persona, fresh).await
    }

    /// `c`'s token as it is if `fresh`, else refreshed: one refresh at a time per credential,
    /// the others wait and then find its token.
    async fn renew(
        &self,
        c: Credential,
        reason: &'static str,
        stale: &Option<String>,
        persona: PersonaId,
        fresh: impl Fn(&Credential, &Option<String>) -> bool,
    ) -> Result<String, Unusable> {
        let token = self.token_of(&c)?;
        if fresh(&c, &token) {
            return Ok(token.expect("checked"));
        }
        let lock = self.locks.entry(c.id).or_default().clone();
        let _held = lock.lock().await;
        let c = self
            .store
            .find(&c.account, &c.id.to_string())
            .await
            .map_err(|_| Unusable::Missing(c.name.clone()))?;
        let token = self.token_of(&c)?;
        if c.needs_reauth {
            return Err(Unusable::NotReady {
                name: c.name,
                status: Status::NeedsReauth,
            });
        }
        if fresh(&c, &token) {
            crate::natives::http::metrics::credential_refresh(reason, "raced");
            return Ok(token.expect("checked"));
        }
        let secrets = self
            .store
            .open(&c)
            .map_err(|_| Unusable::Broken(c.name.clone()))?;
        match self.endpoint.refresh(&self.store.clock, &c, &secrets).await {
            Ok(tokens) => {
                let access = tokens.access.clone();
                self.store
                    .set_tokens(&c, tokens)
                    .await
                    .map_err(|_| Unusable::Broken(c.name.clone()))?;
                crate::natives::http::metrics::credential_refresh(reason, "refreshed");
                Ok(access)
            }
            Err(OAuthError::InvalidGrant) => {
                // Another daemon may have refreshed (and so spent the refresh token) meanwhile.
                if let Ok(again) = self.store.find(&c.account, &c.id.to_string()).await {
                    match self.token_of(&again)? {
                        Some(now) if Some(&now) != token.as_ref() && !again.needs_reauth => {
                            crate::natives::http::metrics::credential_refresh(reason, "raced");
                            return Ok(now);
                        }
                        _ => {}
                    }
                }
                crate::natives::http::metrics::credential_refresh(reason, "revoked");
                let _ = self.store.mark_needs_reauth(&c).await;
                self.notify(&c, "credential_revoked", persona);
                Err(Unusable::NotReady {
                    name: c.name,
                    status: Status::NeedsReauth,
                })
            }
            Err(e) => {
                crate::natives::http::metrics::credential_refresh(reason, "failed");
                tracing::warn!(credential = %c.id, error = %e, "an OAuth refresh failed");
                // The old token while it lasts (not the one an API just refused).
                let now = self.store.clock.now_ms();
                let lasts = c.expires_at.is_none_or(|x| x > now);
                match token {
                    Some(t) if lasts && Some(&t) != stale.as_ref() => Ok(t),
                    _ => Err(Unusable::Refresh(c.name)),
                }
            }
        }
    }

    /// The persona a credential's own system events go to: `credential:<id>` on `system`.
    pub fn own_persona(key: &PersonaKey, c: &Credential) -> Option<PersonaId> {
        let account = Idn::parse("account", &c.account).ok()?;
        let own = format!("credential:{}", c.id);
        Some(key.derive(&account, &Idn::known("system"), &own))
    }

    /// Tells the flows of `c`'s account, as a system event to `persona`.
    pub fn notify(&self, c: &Credential, idn: &'static str, persona: PersonaId) {
        let Ok(account) = Idn::parse("account", &c.account) else {
            return;
        };
        let system = Idn::known("system");
        let mut e = Event::for_persona(account, system.clone(), system, Idn::known(idn), persona);
        e.arguments.push("credentialId", c.id.to_string());
        e.arguments.push("credentialName", c.name.as_str());
        self.events.emit(e);
    }
}

#[cfg(test)]
mod tests {
    use super::expiring;

    const MIN: i64 = 60_000;

    fn check(lifetime_min: Option<i64>, left_min: i64, want: bool) {
        let now = 1_000_000_000;
        let expires = lifetime_min.map(|_| now + left_min * MIN);
        let issued = lifetime_min.map(|l| now + left_min * MIN - l * MIN);
        assert_eq!(
            expiring(expires, issued, now),
            want,
            "{lifetime_min:?} {left_min}"
        );
    }

    #[test]
    fn refreshed_when_less_than_five_minutes_or_a_tenth_of_the_lifetime_is_left() {
        check(None, 0, false); // never expires
        check(Some(60), 10, false);
        check(Some(60), 4, true); // under 5 min
        check(Some(600), 70, false);
        check(Some(600), 50, true); // under a tenth of 10 h
        check(Some(60), -1, true); // expired
    }
}
