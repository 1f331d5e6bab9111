//! What a route may know of the listener it is served on: a [`Switch`] setting is on, off, or
//! `auto`, decided by whether the listener is a loopback one (`metrics.require_token`,
//! `sandbox.without_token`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `true`, `false`, or `"auto"`: on for a loopback listener only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Switch {
    Set(bool),
    Auto(AutoWord),
}

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Switch;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Switch, E> {
                Ok(Switch::Set(b))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Switch, E> {
                match s {
                    "auto" => Ok(Switch::AUTO),
                    "true" => Ok(Switch::Set(true)),
                    "false" => Ok(Switch::Set(false)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The word `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoWord {
    Auto,
}

impl Switch {
    pub const AUTO: Switch = Switch::Auto(AutoWord::Auto);

    /// The value for a listener on `listen`: `auto` is `loopback`.
    pub fn resolve(self, listen: SocketAddr, when_loopback: bool) -> bool {
        match self {
            Switch::Set(b) => b,
            Switch::Auto(_) => {
                if listen.ip().is_loopback() {
                    when_loopback
                } else {
                    !when_loopback
                }
            }
        }
    }
}
