//! What a token may do. An account token holds some of these; `admin` holds all of them and
//! may also manage accounts and every account's tokens.

use std::fmt;

/// One permission. Its text is what the API and the CLI take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Accounts and tokens of every account; implies every other scope.
    Admin,
    /// Read everything of the account but secrets: integrations, connectors, flows,
    /// sessions, dead letters, timers, routes.
    Read,
    /// `POST /v1/events`, the sandbox socket, dead-letter replay.
    EventsWrite,
    /// `POST /v1/commands`.
    CommandsWrite,
    /// `POST /v1/invocations/{id}/result` for any invocation of the account (a runner's
    /// token; an invocation's own result token needs no scope).
    ResultsWrite,
    /// `PUT`/`DELETE /v1/flows/...`.
    FlowsWrite,
    /// Create, update, run, stop and delete connectors.
    ConnectorsWrite,
    /// Integration and connector settings, secrets included (write only: never read back).
    CredentialsWrite,
    /// `GET /metrics` when it needs a token.
    MetricsRead,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::Admin,
        Scope::Read,
        Scope::EventsWrite,
        Scope::CommandsWrite,
        Scope::ResultsWrite,
        Scope::FlowsWrite,
        Scope::ConnectorsWrite,
        Scope::CredentialsWrite,
        Scope::MetricsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Read => "read",
            Scope::EventsWrite => "events:write",
            Scope::CommandsWrite => "commands:write",
            Scope::ResultsWrite => "results:write",
            Scope::FlowsWrite => "flows:write",
            Scope::ConnectorsWrite => "connectors:write",
            Scope::CredentialsWrite => "credentials:write",
            Scope::MetricsRead => "metrics:read",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u16);

impl Scopes {
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether `scope` is held, directly or through `admin`.
    pub fn allows(self, scope: Scope) -> bool {
        self.contains(scope) || self.contains(Scope::Admin)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses a list of scope names; the error names the first unknown one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut out = Scopes::default();
        for n in names {
            let s = Scope::parse(n.trim()).ok_or_else(|| n.to_owned())?;
            out.0 |= s.bit();
        }
        Ok(out)
    }

    /// Names, comma-separated (the stored form).
    pub fn joined(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips_and_admin_implies_all() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        let admin = Scopes::of(&[Scope::Admin]);
        assert!(Scope::ALL.iter().all(|s| admin.allows(*s)));
        let read = Scopes::of(&[Scope::Read]);
        assert!(read.allows(Scope::Read) && !read.allows(Scope::EventsWrite));
        let parsed = Scopes::parse(read.joined().split(',')).unwrap();
        assert_eq!(parsed, read);
        assert_eq!(Scopes::parse(["read", "nope"]), Err("nope".to_owned()));
    }
}
