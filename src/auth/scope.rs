//! What a token may do. An account token holds some of these. `admin` (the operator's) holds
//! all of them and also manages accounts and every account's tokens; `account:admin` (a
//! tenant's) holds every scope but the operator's ([`Scope::is_operator`]: `admin`,
//! `metrics:read`) in its own account, and manages that account's tokens.

use std::fmt;

/// One permission. Its text is what the API and the CLI take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Accounts and tokens of every account; implies every other scope. The operator's.
    Admin,
    /// Its own account's tokens (never granting an operator's scope), and every scope but the
    /// operator's in that account. A tenant's administrator.
    AccountAdmin,
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
    /// `GET /metrics` when it needs a token: every account's agent and flow names (labels).
    /// The operator's.
    MetricsRead,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::Admin,
        Scope::AccountAdmin,
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
            Scope::AccountAdmin => "account:admin",
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

    /// Whether it is the operator's: it reaches past one account, so only `admin` grants it
    /// (and no `account:admin` implies it).
    pub fn is_operator(self) -> bool {
        matches!(self, Scope::Admin | Scope::MetricsRead)
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

    /// Whether `scope` is held, directly, through `admin`, or (not an operator's scope)
    /// through `account:admin`.
    pub fn allows(self, scope: Scope) -> bool {
        self.contains(scope)
            || self.contains(Scope::Admin)
            || (self.contains(Scope::AccountAdmin) && !scope.is_operator())
    }

    /// The first operator's scope held, if any.
    pub fn operator_scope(self) -> Option<Scope> {
        self.iter().find(|s| s.is_operator())
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

    #[test]
    fn an_account_admin_holds_every_scope_but_the_operators() {
        let tenant = Scopes::of(&[Scope::AccountAdmin]);
        for s in Scope::ALL {
            assert_eq!(tenant.allows(s), !s.is_operator(), "{s}");
        }
        assert!(!tenant.allows(Scope::Admin) && !tenant.allows(Scope::MetricsRead));
        assert_eq!(tenant.operator_scope(), None);
        assert_eq!(
            Scopes::of(&[Scope::Read, Scope::MetricsRead]).operator_scope(),
            Some(Scope::MetricsRead)
        );
        assert_eq!(Scope::parse("account:admin"), Some(Scope::AccountAdmin));
    }
}
