//! The credential types and their fields (pure): which fields each type has, which are secret
//! (sealed, write-only), which a use needs, and the status a credential shows. `intercom` is an
//! `oauth2` preset with Intercom's endpoints.

use std::collections::BTreeMap;

/// A credential's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialType {
    /// A key in a header (`header`, default `X-API-Key`) or a query parameter (`query_param`).
    ApiKey,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic` of `username` and `password`.
    Basic,
    /// OAuth 2.0: authorization code with PKCE, or client credentials.
    OAuth2,
    /// OAuth 2.0 against Intercom's endpoints.
    Intercom,
}

/// A field a type takes.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    /// Sealed at rest, never shown again.
    pub secret: bool,
    /// Needed before the credential can be used (or connected).
    pub required: bool,
    /// Must be an http(s) URL.
    pub url: bool,
}

const fn f(name: &'static str, secret: bool, required: bool, url: bool) -> Field {
    Field {
        name,
        secret,
        required,
        url,
    }
}

const API_KEY: &[Field] = &[
    f("header", false, false, false),
    f("query_param", false, false, false),
    f("value", true, true, false),
];
const BEARER: &[Field] = &[f("token", true, true, false)];
const BASIC: &[Field] = &[
    f("username", false, true, false),
    f("password", true, true, false),
];
const OAUTH2: &[Field] = &[
    f("grant", false, false, false),
    f("client_id", false, true, false),
    f("client_secret", true, false, false),
    f("authorize_url", false, false, true),
    f("token_url", false, true, true),
    f("scopes", false, false, false),
];
const INTERCOM: &[Field] = &[
    f("client_id", false, true, false),
    f("client_secret", true, true, false),
];

/// Intercom's OAuth endpoints.
pub const INTERCOM_AUTHORIZE_URL: &str = "https://app.intercom.com/oauth";
pub const INTERCOM_TOKEN_URL: &str = "https://api.intercom.io/auth/eagle/token";

/// Fields the daemon writes itself (the OAuth tokens): sealed, never set through the API.
pub const TOKEN_FIELDS: &[&str] = &["access_token", "refresh_token"];

/// The OAuth grants.
pub const GRANTS: &[&str] = &["authorization_code", "client_credentials"];

impl CredentialType {
    pub const ALL: [CredentialType; 5] = [
        CredentialType::ApiKey,
        CredentialType::Bearer,
        CredentialType::Basic,
        CredentialType::OAuth2,
        CredentialType::Intercom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialType::ApiKey => "api_key",
            CredentialType::Bearer => "bearer",
            CredentialType::Basic => "basic",
            CredentialType::OAuth2 => "oauth2",
            CredentialType::Intercom => "intercom",
        }
    }

    pub fn parse(text: &str) -> Option<CredentialType> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    pub fn fields(self) -> &'static [Field] {
        match self {
            CredentialType::ApiKey => API_KEY,
            CredentialType::Bearer => BEARER,
            CredentialType::Basic => BASIC,
            CredentialType::OAuth2 => OAUTH2,
            CredentialType::Intercom => INTERCOM,
        }
    }

    pub fn field(self, name: &str) -> Option<Field> {
        self.fields().iter().copied().find(|f| f.name == name)
    }

    /// Whether its token comes from an OAuth provider.
    pub fn is_oauth(self) -> bool {
        matches!(self, CredentialType::OAuth2 | CredentialType::Intercom)
    }
}

/// Why a field's value is refused: `(field, reason)`.
pub type FieldError = (String, String);

/// Checks one field's new value for `kind`.
pub fn check_field(kind: CredentialType, name: &str, value: &str) -> Result<Field, FieldError> {
    let at = |reason: String| (format!("settings.{name}"), reason);
    let field = kind.field(name).ok_or_else(|| {
        let known: Vec<_> = kind.fields().iter().map(|f| f.name).collect();
        at(format!(
            "{} credentials have no field {name:?} (fields: {})",
            kind.as_str(),
            known.join(", ")
        ))
    })?;
    if value.len() > 8192 {
        return Err(at("longer than 8192 bytes".into()));
    }
    if field.url {
        match reqwest::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(at("must be an http or https URL".into())),
        }
    }
    if name == "grant" && !GRANTS.contains(&value) {
        return Err(at(format!("must be one of {}", GRANTS.join(", "))));
    }
    if matches!(name, "header" | "query_param") && value.is_empty() {
        return Err(at("must not be empty (remove it with null)".into()));
    }
    if name == "header" && reqwest::header::HeaderName::from_bytes(value.as_bytes()).is_err() {
        return Err(at("is not a header name".into()));
    }
    Ok(field)
}

/// Checks the fields together, once changed: `api_key` takes a header or a query parameter,
/// not both.
pub fn check_together(
    kind: CredentialType,
    plain: &BTreeMap<String, String>,
) -> Result<(), FieldError> {
    if kind == CredentialType::ApiKey
        && plain.contains_key("header")
        && plain.contains_key("query_param")
    {
        return Err((
            "settings.query_param".into(),
            "an api_key goes in a header or a query parameter, not both".into(),
        ));
    }
    Ok(())
}

/// What a credential shows of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A field a use needs is not set.
    NotConfigured,
    /// OAuth: configured, not authorized yet.
    NotConnected,
    /// Usable.
    Connected,
    /// OAuth: the provider refused the refresh token; authorize again.
    NeedsReauth,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotConfigured => "not_configured",
            Status::NotConnected => "not_connected",
            Status::Connected => "connected",
            Status::NeedsReauth => "needs_reauth",
        }
    }
}

/// The status of a credential of `kind` whose set fields are `set` (plain and secret names).
pub fn status(kind: CredentialType, set: &[&str], needs_reauth: bool) -> Status {
    let has = |n: &str| set.contains(&n);
    if !kind
        .fields()
        .iter()
        .filter(|f| f.required)
        .all(|f| has(f.name))
    {
        return Status::NotConfigured;
    }
    if kind.is_oauth() {
        if needs_reauth {
            return Status::NeedsReauth;
        }
        if !has("access_token") {
            return Status::NotConnected;
        }
    }
    Status::Connected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, name: &str, value: &str, want: Result<(), &str>) {
        let kind = CredentialType::parse(kind).unwrap();
        let got = check_field(kind, name, value).map(|_| ());
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err((field, reason)), Err(part)) => {
                assert_eq!(field, format!("settings.{name}"));
                assert!(reason.contains(part), "{name}={value}: {reason}");
            }
            (got, want) => panic!("{name}={value}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn fields_are_checked_and_refusals_name_them() {
        check("api_key", "value", "k", Ok(()));
        check("api_key", "header", "X-Key", Ok(()));
        check("api_key", "header", "bad header", Err("not a header name"));
        check("api_key", "token", "k", Err("no field \"token\""));
        check("bearer", "token", "t", Ok(()));
        check("basic", "password", "p", Ok(()));
        check("oauth2", "token_url", "https://p.example/token", Ok(()));
        check(
            "oauth2",
            "token_url",
            "ftp://p.example/token",
            Err("http or https"),
        );
        check("oauth2", "grant", "implicit", Err("authorization_code"));
        check("oauth2", "access_token", "x", Err("no field"));
        check("intercom", "token_url", "https://x", Err("no field"));
    }

    #[test]
    fn status_follows_what_is_set() {
        use CredentialType::*;
        assert_eq!(status(Bearer, &[], false), Status::NotConfigured);
        assert_eq!(status(Bearer, &["token"], false), Status::Connected);
        assert_eq!(status(Basic, &["username"], false), Status::NotConfigured);
        let oauth = ["client_id", "token_url"];
        assert_eq!(status(OAuth2, &oauth, false), Status::NotConnected);
        let with = ["client_id", "token_url", "access_token"];
        assert_eq!(status(OAuth2, &with, false), Status::Connected);
        assert_eq!(status(OAuth2, &with, true), Status::NeedsReauth);
        assert_eq!(
            status(Intercom, &["client_id"], false),
            Status::NotConfigured
        );
    }

    #[test]
    fn an_api_key_goes_in_one_place() {
        let both: BTreeMap<_, _> = [("header", "X"), ("query_param", "k")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .into();
        assert!(check_together(CredentialType::ApiKey, &both).is_err());
    }
}
