//! Signing keys of webhook runners, per Standard Webhooks (<https://www.standardwebhooks.com>):
//! each flow with a webhook runner has its own secret `whsec_<base64>` ([`RunnerSecret`]); after
//! a rotation the secret it replaced signs too until the overlap ends, so `webhook-signature`
//! carries two space-separated `v1,` signatures and a runner still verifying with the old
//! secret keeps accepting. [`RunnerKeys`] is the live table, filled by the daemon (from the
//! store at start, then at every flow put and rotation); the signing is the outbound toolkit's
//! ([`crate::outbound::signing`]).

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use dashmap::DashMap;
use rand::RngCore;
use rustc_hash::FxBuildHasher;

use crate::domain::{Idn, Name};
use crate::outbound::signing::{Signer, SigningKey};

/// The prefix of a secret's text.
pub use crate::outbound::signing::SECRET_PREFIX;
/// Random bytes in a generated secret (Standard Webhooks asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// A signing secret, `whsec_<base64 of the key>`, and its key. `Debug` does not show it.
#[derive(Clone)]
pub struct RunnerSecret {
    text: String,
    key: SigningKey,
}

/// Why a stored secret is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a runner secret must be whsec_ followed by base64")]
pub struct InvalidSecret;

impl RunnerSecret {
    /// A fresh random secret.
    pub fn generate() -> RunnerSecret {
        let mut key = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut key);
        RunnerSecret {
            text: format!("{SECRET_PREFIX}{}", B64.encode(key)),
            key: SigningKey::from_bytes(key.to_vec()).expect("the key is not empty"),
        }
    }

    /// A secret's text, as [`RunnerSecret::expose`] gave it.
    pub fn parse(text: &str) -> Result<RunnerSecret, InvalidSecret> {
        if !text.starts_with(SECRET_PREFIX) {
            return Err(InvalidSecret);
        }
        let key = SigningKey::parse(text).map_err(|_| InvalidSecret)?;
        Ok(RunnerSecret {
            text: text.to_owned(),
            key,
        })
    }

    /// The text, to seal it or to show it once to whoever created or rotated it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,<base64>` over `"<id>.<timestamp>.<body>"` (what the tests verify with).
    #[cfg(test)]
    fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        Signer::new(self.key.clone())
            .signature(id, timestamp, body)
            .ok()
    }
}

impl PartialEq for RunnerSecret {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for RunnerSecret {}

impl fmt::Debug for RunnerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunnerSecret(<redacted>)")
    }
}

/// A flow's keys: the current secret, and the previous one until `previous_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKeys {
    pub current: RunnerSecret,
    pub previous: Option<(RunnerSecret, i64)>,
}

impl FlowKeys {
    pub fn new(current: RunnerSecret) -> FlowKeys {
        FlowKeys {
            current,
            previous: None,
        }
    }

    /// The signer when it is `now_ms`: the current secret, and the previous one while the
    /// overlap lasts.
    pub fn signer(&self, now_ms: i64) -> Signer {
        let signer = Signer::new(self.current.key.clone());
        match &self.previous {
            Some((previous, until_ms)) if now_ms < *until_ms => {
                signer.with_previous(previous.key.clone())
            }
            _ => signer,
        }
    }

    /// The `webhook-signature` value for message `id` sent at `timestamp` (Unix seconds),
    /// when it is `now_ms` (see [`FlowKeys::signer`]). `None` only for a body that is not
    /// UTF-8 (JSON always is).
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8], now_ms: i64) -> Option<String> {
        self.signer(now_ms).signature(id, timestamp, body).ok()
    }
}

type FlowKey = (Idn, Name, Name);

/// The live keys of every flow with a webhook runner, by `(account, agent, flow)`.
#[derive(Debug, Default)]
pub struct RunnerKeys {
    keys: DashMap<FlowKey, Arc<FlowKeys>, FxBuildHasher>,
}

impl RunnerKeys {
    pub fn get(&self, account: &Idn, agent: &Name, flow: &Name) -> Option<Arc<FlowKeys>> {
        self.keys
            .get(&(account.clone(), agent.clone(), flow.clone()))
            .map(|k| k.clone())
    }

    pub fn set(&self, account: &Idn, agent: &Name, flow: &Name, keys: FlowKeys) {
        self.keys.insert(
            (account.clone(), agent.clone(), flow.clone()),
            Arc::new(keys),
        );
    }

    pub fn remove(&self, account: &Idn, agent: &Name, flow: &Name) {
        self.keys
            .remove(&(account.clone(), agent.clone(), flow.clone()));
    }

    /// Generates the flow's first secret when it has none; answers the new keys, or `None`
    /// when the flow had keys already.
    pub fn generate_if_absent(&self, account: &Idn, agent: &Name, flow: &Name) -> Option<FlowKeys> {
        use dashmap::mapref::entry::Entry;
        match self
            .keys
            .entry((account.clone(), agent.clone(), flow.clone()))
        {
            Entry::Occupied(_) => None,
            Entry::Vacant(v) => {
                let keys = FlowKeys::new(RunnerSecret::generate());
                v.insert(Arc::new(keys.clone()));
                Some(keys)
            }
        }
    }

    /// Replaces the flow's secret with a fresh one; the one replaced keeps signing until
    /// `now_ms + overlap_ms` (not at all with no overlap). Answers the new keys.
    pub fn rotate(
        &self,
        account: &Idn,
        agent: &Name,
        flow: &Name,
        now_ms: i64,
        overlap_ms: u64,
    ) -> FlowKeys {
        let key = (account.clone(), agent.clone(), flow.clone());
        let mut entry = self
            .keys
            .entry(key)
            .or_insert_with(|| Arc::new(FlowKeys::new(RunnerSecret::generate())));
        let until = now_ms.saturating_add(i64::try_from(overlap_ms).unwrap_or(i64::MAX));
        let keys = FlowKeys {
            current: RunnerSecret::generate(),
            previous: (overlap_ms > 0).then(|| (entry.current.clone(), until)),
        };
        *entry = Arc::new(keys.clone());
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifies(secret: &RunnerSecret, id: &str, ts: i64, body: &[u8], header: &str) -> bool {
        let expected = secret.sign(id, ts, body).unwrap();
        header.split(' ').any(|s| s == expected)
    }

    #[test]
    fn secrets_are_whsec_base64_and_hidden_from_debug() {
        let s = RunnerSecret::generate();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(B64.decode(&s.expose()[6..]).unwrap().len(), SECRET_BYTES);
        assert_eq!(RunnerSecret::parse(s.expose()), Ok(s.clone()));
        assert_eq!(format!("{s:?}"), "RunnerSecret(<redacted>)");
        assert!(!format!("{:?}", FlowKeys::new(s.clone())).contains(&s.expose()[6..]));
        assert_eq!(RunnerSecret::parse("whsec_"), Err(InvalidSecret));
        assert_eq!(RunnerSecret::parse("abc"), Err(InvalidSecret));
        assert_eq!(RunnerSecret::parse("whsec_!!"), Err(InvalidSecret));
    }

    #[test]
    fn the_previous_secret_signs_until_the_overlap_ends() {
        let table = RunnerKeys::default();
        let (a, g, f) = (
            Idn::known("default"),
            Name::parse("agent", "A").unwrap(),
            Name::parse("flow", "F").unwrap(),
        );
        let first = table.generate_if_absent(&a, &g, &f).unwrap();
        assert!(table.generate_if_absent(&a, &g, &f).is_none());
        let rotated = table.rotate(&a, &g, &f, 1_000_000, 60_000);
        assert_eq!(
            rotated.previous.as_ref().map(|(s, until)| (s, *until)),
            Some((&first.current, 1_060_000))
        );
        let live = table.get(&a, &g, &f).unwrap();
        let body = br#"{"v":1}"#;
        let during = live.signature("inv-1", 1_000, body, 1_059_999).unwrap();
        assert_eq!(during.split(' ').count(), 2);
        assert!(verifies(&rotated.current, "inv-1", 1_000, body, &during));
        assert!(verifies(&first.current, "inv-1", 1_000, body, &during));
        let after = live.signature("inv-1", 1_000, body, 1_060_000).unwrap();
        assert_eq!(after.split(' ').count(), 1);
        assert!(verifies(&rotated.current, "inv-1", 1_000, body, &after));
        assert!(!verifies(&first.current, "inv-1", 1_000, body, &after));

        let no_overlap = table.rotate(&a, &g, &f, 2_000_000, 0);
        assert_eq!(no_overlap.previous, None);
        table.remove(&a, &g, &f);
        assert!(table.get(&a, &g, &f).is_none());
    }
}
