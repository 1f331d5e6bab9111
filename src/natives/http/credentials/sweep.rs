//! The daily refresh: a background task of the `http` native that, once the daemon started
//! and until it stops, looks every [`EVERY`] at every account's connected OAuth credentials and
//! refreshes those last refreshed a day ago or expiring ([`due`]), so a credential no request
//! used keeps a live refresh token (providers expire idle ones) and a revoked one is found
//! (`needs_reauth`, `credential_revoked`) before a skill needs it. Each refresh goes through
//! the [`Refresher`], one at a time per credential with the requests' own.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::refresh::{due, Refresher};
use crate::domain::PersonaKey;
use crate::natives::component::Started;

/// How often the sweep looks: a credential is refreshed within a day and this.
pub const EVERY: Duration = Duration::from_secs(60 * 60);

/// Runs the sweep from the start gate until `shutdown`.
pub async fn run(
    refresher: Arc<Refresher>,
    persona_key: PersonaKey,
    started: Started,
    shutdown: CancellationToken,
) {
    if !started.wait().await || shutdown.is_cancelled() {
        return;
    }
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sweep(&refresher, persona_key) => {}
        }
    }
}

/// One look: refreshes every credential [`due`]; answers how many it refreshed or tried to.
pub async fn sweep(refresher: &Refresher, persona_key: PersonaKey) -> usize {
    let all = match refresher.store.oauth_connected().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "the credentials' daily refresh could not read them");
            return 0;
        }
    };
    let mut tried = 0;
    for c in all {
        if !due(&c, refresher.store.clock.now_ms()) {
            continue;
        }
        let Some(persona) = Refresher::own_persona(&persona_key, &c) else {
            continue;
        };
        tried += 1;
        // A failure is counted and logged by the refresher; the next look tries again.
        let _ = refresher.refresh_if_due(c, persona).await;
    }
    tried
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::dead_letter::memory::MemoryDeadLetters;
    use crate::ingress::InternalEvents;
    use crate::natives::component::StartGate;
    use crate::natives::http::credentials::clock::Clock;
    use crate::natives::http::credentials::refresh::{Granted, TokenEndpoint};
    use crate::natives::http::credentials::store::{Credential, Tokens};
    use crate::natives::http::credentials::{CredentialStore, CredentialType, MIGRATIONS};
    use crate::store::{SecretBox, Store};

    const HOUR: Duration = Duration::from_secs(3600);

    /// A token endpoint that counts its refreshes and grants 30-day tokens.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl TokenEndpoint for Counting {
        fn refresh<'a>(
            &'a self,
            clock: &'a Clock,
            _: &'a Credential,
            _: &'a BTreeMap<String, String>,
        ) -> Granted<'a> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                Ok(Tokens {
                    access: format!("at-{n}"),
                    refresh: None,
                    expires_at: Some(clock.after(30 * 24 * HOUR)),
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_credential_no_request_uses_is_refreshed_once_a_day_from_the_start_gate_to_the_shutdown(
    ) {
        let dir = std::env::temp_dir().join(format!("sb-sweep-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("test.db"), 64, 5000).unwrap();
        store.migrate_component("http", MIGRATIONS).await.unwrap();
        let ring = Arc::new(SecretBox::from_base64(&SecretBox::generate()).unwrap());
        let credentials = CredentialStore::new(store.clone(), ring, Clock::start());
        let oauth = |name: &'static str| {
            let fields = [
                ("client_id", "cid"),
                ("authorize_url", "https://p.example/authorize"),
                ("token_url", "https://p.example/token"),
            ];
            let changes = fields
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect();
            credentials.create("acme", name, CredentialType::OAuth2, changes)
        };
        let c = oauth("CRM").await.unwrap();
        // Connected now, with a token good for 30 days.
        let granted = Tokens {
            access: "at-0".into(),
            refresh: Some("rt".into()),
            expires_at: Some(credentials.clock.after(30 * 24 * HOUR)),
        };
        credentials.set_tokens(&c, granted).await.unwrap();
        // Never connected: nothing to refresh.
        oauth("Idle").await.unwrap();
        let endpoint = Arc::new(Counting::default());
        let (events, _queue) = InternalEvents::new(16, Arc::new(MemoryDeadLetters::new(16)));
        let refresher = Arc::new(Refresher::new(credentials, endpoint.clone(), events));
        let (gate, started) = StartGate::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            refresher.clone(),
            PersonaKey::Unkeyed,
            started,
            shutdown.clone(),
        ));
        let refreshes = || endpoint.0.load(Ordering::SeqCst);

        // Nothing before the gate opens; then within the day, nothing.
        tokio::time::sleep(HOUR / 2).await;
        gate.open_now();
        tokio::time::sleep(23 * HOUR).await; // 23 h 30 min
        assert_eq!(refreshes(), 0);
        // A day after its last refresh (at the next look), once.
        tokio::time::sleep(2 * HOUR).await; // 25 h 30 min
        assert_eq!(refreshes(), 1);
        store.flush().await.unwrap(); // (its write was queued with the refresh)
        let again = refresher.store.find("acme", "CRM").await.unwrap();
        assert_eq!(
            refresher.store.open(&again).unwrap()["access_token"],
            "at-1"
        );
        tokio::time::sleep(22 * HOUR).await; // 47 h 30 min
        assert_eq!(refreshes(), 1, "once a day");
        tokio::time::sleep(2 * HOUR).await; // 49 h 30 min
        assert_eq!(refreshes(), 2);

        // The shutdown ends it.
        shutdown.cancel();
        task.await.unwrap();
        tokio::time::sleep(48 * HOUR).await;
        assert_eq!(refreshes(), 2);
    }
}
