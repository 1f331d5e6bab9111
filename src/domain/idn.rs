//! Validated identifiers: snake_case idns (integrations, connectors, events, accounts) and
//! CamelCase-style names (agents, flows, skills). Cheap to clone: `SmolStr` inside, so an
//! identifier of up to 23 bytes is stored inline and a clone touches no shared reference
//! count (clones happen per event on several threads; see ARCHITECTURE.md, "Performance").

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;
use std::borrow::Borrow;
use std::fmt;

/// Longest identifier accepted anywhere.
pub const MAX_IDN_LEN: usize = 64;

/// Why an identifier was refused. `field` names the input field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason} (got {value:?})")]
pub struct IdnError {
    pub field: String,
    pub value: String,
    pub reason: &'static str,
}

fn check_snake(value: &str) -> Result<(), &'static str> {
    let mut chars = value.chars();
    match chars.next() {
        None => return Err("must not be empty"),
        Some(c) if !c.is_ascii_lowercase() => return Err("must start with a lowercase letter"),
        _ => {}
    }
    if value.len() > MAX_IDN_LEN {
        return Err("must be at most 64 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("may contain only lowercase letters, digits and '_'");
    }
    Ok(())
}

fn check_name(value: &str) -> Result<(), &'static str> {
    let mut chars = value.chars();
    match chars.next() {
        None => return Err("must not be empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err("must start with a letter or '_'")
        }
        _ => {}
    }
    if value.len() > MAX_IDN_LEN {
        return Err("must be at most 64 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err("may contain only letters, digits and '_'");
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(SmolStr);

        impl $name {
            /// Validates `value`; `field` names the input it came from in the error.
            pub fn parse(field: &str, value: &str) -> Result<Self, IdnError> {
                $check(value).map_err(|reason| IdnError {
                    field: field.to_owned(),
                    value: value.to_owned(),
                    reason,
                })?;
                Ok(Self(SmolStr::new(value)))
            }

            /// For identifiers that are valid by construction (the catalog, constants).
            ///
            /// # Panics
            /// When `value` is not valid: a bug in the caller, never input.
            pub fn known(value: &str) -> Self {
                Self::parse("identifier", value).expect("a known-valid identifier")
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.0.as_str(), f)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0.as_str() == other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(stringify!($name), &s).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A snake_case identifier: lowercase letters, digits and `_`, starting with a letter,
    /// at most 64 characters. Integrations, connectors, events, commands, accounts, settings.
    Idn,
    check_snake
);

identifier!(
    /// A CamelCase-style name: letters, digits and `_`, starting with a letter or `_`
    /// (`HandleUserMessage`, `_helperSkill`), at most 64 characters. Agents, flows, skills.
    Name,
    check_name
);

/// The account used for single-tenant deployments.
pub const DEFAULT_ACCOUNT: &str = "default";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_idns() {
        assert!(Idn::parse("f", "sales_line").is_ok());
        assert!(Idn::parse("f", "a1_b2").is_ok());
        let e = Idn::parse("connector_idn", "Sales").unwrap_err();
        assert_eq!(e.field, "connector_idn");
        assert_eq!(e.reason, "must start with a lowercase letter");
        assert_eq!(
            Idn::parse("f", "1abc").unwrap_err().reason,
            "must start with a lowercase letter"
        );
        assert_eq!(
            Idn::parse("f", "sales-line").unwrap_err().reason,
            "may contain only lowercase letters, digits and '_'"
        );
        assert_eq!(Idn::parse("f", "").unwrap_err().reason, "must not be empty");
        assert!(Idn::parse("f", &"a".repeat(64)).is_ok());
        assert_eq!(
            Idn::parse("f", &"a".repeat(65)).unwrap_err().reason,
            "must be at most 64 characters"
        );
    }

    #[test]
    fn camel_names() {
        assert!(Name::parse("f", "HandleUserMessage").is_ok());
        assert!(Name::parse("f", "_helperSkill").is_ok());
        assert!(Name::parse("f", "Skill2").is_ok());
        assert!(Name::parse("f", "2Skill").is_err());
        assert!(Name::parse("f", "Handle-It").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: Idn = serde_json::from_str("\"webhook\"").unwrap();
        assert_eq!(ok.as_str(), "webhook");
        assert!(serde_json::from_str::<Idn>("\"Web Hook\"").is_err());
    }
}
