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
