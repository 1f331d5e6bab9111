//! User personas: the identity events are routed on behalf of.
//!
//! An actor is one endpoint of a person on one connector (`external_id`). Unless linked
//! otherwise, the persona id is *derived* from `(account, integration, external_id)` with
//! XXH3-128: stable across restarts and across daemon replicas, and free of any per-actor
//! memory on the hot path. The connector is left out on purpose: a caller's lifecycle events
//! arrive on `<integration>/system` and their words on the line's connector, and both belong to
//! the same person.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::idn::Idn;

/// The id of a user persona.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonaId(pub Uuid);

impl PersonaId {
    /// Stands for a persona not resolved yet, between admission and the connector actor
    /// (see [`super::RoutedEvent::named`]); never routed.
    pub const UNRESOLVED: PersonaId = PersonaId(Uuid::nil());

    /// The persona of the actor `external_id` on any connector of `integration`.
    pub fn derive(account: &Idn, integration: &Idn, external_id: &str) -> Self {
        PersonaId(super::derived_id::derive(
            b"",
            &[
                account.as_str().as_bytes(),
                integration.as_str().as_bytes(),
                external_id.as_bytes(),
            ],
        ))
    }
}

/// How the daemon derives persona ids from `(account, integration, external_id)`. Keyed (a
/// daemon secret, SipHash-2-4 with 128-bit output, a PRF) so that nobody who knows a user's
/// external id can compute their persona id; unkeyed (XXH3-128, [`PersonaId::derive`]) for
/// stores whose ids were derived so before keys existed, and for engines embedded in tests.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub enum PersonaKey {
    #[default]
    Unkeyed,
    Keyed([u8; 16]),
}

impl fmt::Debug for PersonaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersonaKey::Unkeyed => f.write_str("PersonaKey::Unkeyed"),
            PersonaKey::Keyed(_) => f.write_str("PersonaKey::Keyed(<redacted>)"),
        }
    }
}

impl PersonaKey {
    /// The persona of the actor `external_id` on any connector of `integration`.
    pub fn derive(&self, account: &Idn, integration: &Idn, external_id: &str) -> PersonaId {
        let PersonaKey::Keyed(key) = self else {
            return PersonaId::derive(account, integration, external_id);
        };
        use siphasher::sip128::{Hasher128, SipHasher24};
        use std::hash::Hasher;
        let mut h = SipHasher24::new_with_key(key);
        for part in [
            account.as_str().as_bytes(),
            integration.as_str().as_bytes(),
            external_id.as_bytes(),
        ] {
            h.write(&(part.len() as u64).to_le_bytes());
            h.write(part);
        }
        PersonaId(Uuid::new_v8(h.finish128().as_bytes()))
    }
}

impl fmt::Display for PersonaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for PersonaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "persona:{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_and_separates_parts() {
        let a = Idn::known("default");
        let i = Idn::known("telegram");
        let key = PersonaKey::Keyed([7; 16]);
        let keyed = key.derive(&a, &i, "42");
        assert_eq!(keyed, key.derive(&a, &i, "42"), "stable");
        assert_ne!(keyed, PersonaId::derive(&a, &i, "42"), "not the unkeyed id");
        assert_ne!(keyed, PersonaKey::Keyed([8; 16]).derive(&a, &i, "42"));
        assert_ne!(
            key.derive(&a, &Idn::known("ab"), "c"),
            key.derive(&a, &Idn::known("a"), "bc")
        );
        assert_eq!(
            PersonaKey::Unkeyed.derive(&a, &i, "42"),
            PersonaId::derive(&a, &i, "42")
        );
        assert!(!format!("{key:?}").contains('7'));
        let p1 = PersonaId::derive(&a, &i, "42");
        assert_eq!(p1, PersonaId::derive(&a, &i, "42"));
        assert_ne!(p1, PersonaId::derive(&a, &i, "43"));
        assert_ne!(p1, PersonaId::derive(&a, &Idn::known("sandbox"), "42"));
        let x = PersonaId::derive(&a, &Idn::known("ab"), "c");
        let y = PersonaId::derive(&a, &Idn::known("a"), "bc");
        assert_ne!(x, y);
        assert_eq!(p1.0.get_version_num(), 8);
    }
}
