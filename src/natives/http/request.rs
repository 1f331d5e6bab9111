//! A `send_request` command read against its connector: the URL resolved against `base_url`
//! (an absolute URL only to the base URL's host, or a host `allowed_hosts` lists), the method,
//! `default_headers` under the skill's `headers`, the body, and the connector's credentials
//! injected last (a skill cannot override them, and nothing the skill sees carries them).
//! Pure: the settings are given; every refusal names its argument.

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::commands::CommandRefusal;
use crate::domain::Command;
use crate::outbound::{OutboundRequest, SendOptions};

/// Largest request body a skill may send, in bytes.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// The connector's settings that shape a request (secrets included: never shown).
#[derive(Debug, Clone, Default)]
pub struct ConnectorSettings {
    pub base_url: String,
    pub auth: Auth,
    /// JSON object of headers added to every request.
    pub default_headers: Option<String>,
    /// Hosts besides the base URL's that absolute URLs may name (JSON array or comma list).
    pub allowed_hosts: Vec<String>,
    pub options: SendOptions,
}

/// How the daemon authenticates a request on the skill's behalf.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    Bearer(String),
    Basic {
        username: String,
        password: String,
    },
    ApiKey {
        header: String,
        value: String,
    },
    /// An API key as a query parameter.
    ApiKeyQuery {
        param: String,
        value: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Bearer(_) => "Bearer(<redacted>)",
            Auth::Basic { .. } => "Basic(<redacted>)",
            Auth::ApiKey { .. } => "ApiKey(<redacted>)",
            Auth::ApiKeyQuery { .. } => "ApiKeyQuery(<redacted>)",
        })
    }
}

/// What a command asks, built: the request and the tag echoed back.
#[derive(Debug)]
pub struct Built {
    pub request: OutboundRequest,
    pub target_action: Option<String>,
}

fn invalid(argument: &str, reason: impl Into<String>) -> CommandRefusal {
    CommandRefusal::InvalidArgument {
        argument: argument.to_owned(),
        reason: reason.into(),
    }
}

/// Headers of a JSON object of strings; `argument` names where they came from.
fn headers_of(
    argument: &str,
    json: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, CommandRefusal> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
        .map_err(|_| invalid(argument, "must be a JSON object of header names to strings"))?;
    map.into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(argument, format!("{name:?} is not a header name")))?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                invalid(
                    argument,
                    format!("the value of {name} is not a header value"),
                )
            })?;
            Ok((name, value))
        })
        .collect()
}

/// The URL a command names: relative to `base_url`, or absolute to an allowed host.
fn url_of(text: &str, settings: &ConnectorSettings) -> Result<Url, CommandRefusal> {
    let base = Url::parse(&settings.base_url)
        .map_err(|_| invalid("url", "the connector's base_url is not a URL"))?;
    let url = match Url::parse(text) {
        Ok(absolute) => absolute,
        // (A query may hold an absolute URL: `login?next=https://…` is still relative.)
        Err(_) if !text.split(['?', '#']).next().unwrap_or("").contains("://") => {
            // `users/1` and `/users/1` both go under the base URL's path.
            let mut joined = base.clone();
            let path = format!(
                "{}/{}",
                base.path().trim_end_matches('/'),
                text.trim_start_matches('/')
            );
            let (path, query) = match path.split_once('?') {
                Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                None => (path, None),
            };
            joined.set_path(&path);
            joined.set_query(query.as_deref());
            joined
        }
        Err(e) => return Err(invalid("url", format!("not a URL: {e}"))),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("url", "must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "url",
            "must not carry credentials (the connector's are added)",
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let allowed = Some(host) == base.host_str()
        || settings
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host));
    if !allowed {
        return Err(invalid(
            "url",
            format!(
                "{host} is not this connector's host ({}); list it in allowed_hosts",
                base.host_str().unwrap_or_default()
            ),
        ));
    }
    Ok(url)
}

/// Builds the request `command` asks for under `settings`.
pub fn build(command: &Command, settings: &ConnectorSettings) -> Result<Built, CommandRefusal> {
    let args = &command.arguments;
    let method_text = args
        .get("method")
        .unwrap_or("GET")
        .trim()
        .to_ascii_uppercase();
    let method = Method::from_bytes(method_text.as_bytes())
        .map_err(|_| invalid("method", format!("{method_text:?} is not an HTTP method")))?;
    let url = url_of(args.get("url").unwrap_or_default(), settings)?;
    let mut request = OutboundRequest::new(method, url);
    if let Some(defaults) = settings
        .default_headers
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        for (name, value) in headers_of("default_headers", defaults)? {
            request.headers.insert(name, value);
        }
    }
    if let Some(own) = args.get("headers").filter(|h| !h.trim().is_empty()) {
        for (name, value) in headers_of("headers", own)? {
            request.headers.insert(name, value);
        }
    }
    if let Some(body) = args.get("body").filter(|b| !b.is_empty()) {
        if body.len() > MAX_REQUEST_BODY {
            return Err(invalid(
                "body",
                format!("{} bytes, more than {MAX_REQUEST_BODY}", body.len()),
            ));
        }
        request.body = bytes::Bytes::copy_from_slice(body.as_bytes());
    }
    inject(&mut request, &settings.auth)?;
    Ok(Built {
        request,
        target_action: args.get("targetAction").map(str::to_owned),
    })
}

/// Puts the connector's credentials on `request`, over anything the skill set there.
pub fn inject(request: &mut OutboundRequest, auth: &Auth) -> Result<(), CommandRefusal> {
    use base64::Engine as _;
    let sensitive = |v: String| {
        let mut v = HeaderValue::from_str(&v).map_err(|_| {
            invalid(
                "auth_token",
                "the connector's credential is not a header value",
            )
        })?;
        v.set_sensitive(true);
        Ok::<_, CommandRefusal>(v)
    };
    match auth {
        Auth::None => {}
        Auth::Bearer(token) => {
            request.headers.insert(
                reqwest::header::AUTHORIZATION,
                sensitive(format!("Bearer {token}"))?,
            );
        }
        Auth::Basic { username, password } => {
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            request.headers.insert(
                reqwest::header::AUTHORIZATION,
                sensitive(format!("Basic {pair}"))?,
            );
        }
        Auth::ApiKey { header, value } => {
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| invalid("api_key_header", "not a header name"))?;
            request
                .headers
                .insert(name.clone(), sensitive(value.clone())?);
            request.credential_headers.push(name);
        }
        Auth::ApiKeyQuery { param, value } => {
            // Over a parameter of the same name the skill set.
            let kept: Vec<(String, String)> = request
                .url
                .query_pairs()
                .filter(|(k, _)| k != param.as_str())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut pairs = request.url.query_pairs_mut();
            pairs.clear().extend_pairs(kept).append_pair(param, value);
            drop(pairs);
            request.credential_in_query = true;
        }
    }
    Ok(())
}

/// Methods a retry cannot repeat the effect of.
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Idn;

    fn command(args: &[(&str, &str)]) -> Command {
        let mut c = Command::new(
            Idn::known("default"),
            Idn::known("http"),
            Idn::known("api"),
            Idn::known("send_request"),
        );
        for (n, v) in args {
            c = c.with_argument(n, *v);
        }
        c
    }

    fn settings(auth: Auth) -> ConnectorSettings {
        ConnectorSettings {
            base_url: "https://api.example.com/v2/".into(),
            auth,
            default_headers: Some(
                r#"{"Content-Type": "application/json", "X-Client": "sb"}"#.into(),
            ),
            allowed_hosts: vec!["files.example.com".into()],
            options: SendOptions::default(),
        }
    }

    /// What one case comes to: the request line and some headers, or the argument refused.
    type Want<'a> = Result<(&'a str, &'a [(&'a str, &'a str)]), &'a str>;

    fn check(args: &[(&str, &str)], auth: Auth, want: Want<'_>) {
        let got = build(&command(args), &settings(auth));
        match (got, want) {
            (Ok(b), Ok((line, headers))) => {
                assert_eq!(
                    format!("{} {}", b.request.method, b.request.url),
                    line,
                    "{args:?}"
                );
                for (name, value) in headers {
                    assert_eq!(
                        b.request.headers.get(*name).map(|v| v.to_str().unwrap()),
                        Some(*value),
                        "{args:?}: header {name}"
                    );
                }
            }
            (Err(CommandRefusal::InvalidArgument { argument, .. }), Err(want)) => {
                assert_eq!(argument, want, "{args:?}")
            }
            (got, want) => panic!("{args:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn requests_are_built_from_the_command_and_the_connector() {
        let key = || Auth::ApiKey {
            header: "X-API-Key".into(),
            value: "k-123".into(),
        };
        check(
            &[("method", "get"), ("url", "users/1")],
            Auth::None,
            Ok((
                "GET https://api.example.com/v2/users/1",
                &[("x-client", "sb")],
            )),
        );
        check(
            &[
                ("method", "POST"),
                ("url", "/users?page=2"),
                ("headers", r#"{"X-Client": "mine"}"#),
            ],
            Auth::Bearer("t0k".into()),
            Ok((
                "POST https://api.example.com/v2/users?page=2",
                &[("x-client", "mine"), ("authorization", "Bearer t0k")],
            )),
        );
        // The skill cannot replace the connector's credential.
        check(
            &[
                ("method", "GET"),
                ("url", "me"),
                ("headers", r#"{"Authorization": "Bearer forged"}"#),
            ],
            Auth::Bearer("real".into()),
            Ok((
                "GET https://api.example.com/v2/me",
                &[("authorization", "Bearer real")],
            )),
        );
        check(
            &[("method", "GET"), ("url", "me")],
            Auth::Basic {
                username: "u".into(),
                password: "p".into(),
            },
            Ok((
                "GET https://api.example.com/v2/me",
                &[("authorization", "Basic dTpw")],
            )),
        );
        check(
            &[("method", "GET"), ("url", "me")],
            key(),
            Ok((
                "GET https://api.example.com/v2/me",
                &[("x-api-key", "k-123")],
            )),
        );
        // A relative URL whose query names an absolute one.
        check(
            &[
                ("method", "GET"),
                ("url", "login?next=https://evil.example.net/x"),
            ],
            Auth::None,
            Ok((
                "GET https://api.example.com/v2/login?next=https://evil.example.net/x",
                &[],
            )),
        );
        // A key in the query, over the skill's parameter of the same name.
        check(
            &[("method", "GET"), ("url", "me?key=forged&q=1")],
            Auth::ApiKeyQuery {
                param: "key".into(),
                value: "k 1".into(),
            },
            Ok(("GET https://api.example.com/v2/me?q=1&key=k+1", &[])),
        );
        check(
            &[("method", "GET"), ("url", "https://files.example.com/a")],
            Auth::None,
            Ok(("GET https://files.example.com/a", &[])),
        );
        // Refusals name their argument.
        check(
            &[("method", "GET"), ("url", "https://evil.example.net/x")],
            Auth::None,
            Err("url"),
        );
        check(
            &[("method", "GET"), ("url", "ftp://api.example.com/x")],
            Auth::None,
            Err("url"),
        );
        check(
            &[("method", "GET"), ("url", "https://u:p@api.example.com/x")],
            Auth::None,
            Err("url"),
        );
        check(
            &[("method", "GE T"), ("url", "x")],
            Auth::None,
            Err("method"),
        );
        check(
            &[("method", "GET"), ("url", "x"), ("headers", "[1]")],
            Auth::None,
            Err("headers"),
        );
        check(
            &[
                ("method", "GET"),
                ("url", "x"),
                ("headers", r#"{"bad name": "v"}"#),
            ],
            Auth::None,
            Err("headers"),
        );
    }

    #[test]
    fn credentials_are_sensitive_and_never_debug_printed() {
        let b = build(
            &command(&[("method", "GET"), ("url", "me")]),
            &settings(Auth::Bearer("planted-secret".into())),
        )
        .unwrap();
        assert!(b.request.headers[reqwest::header::AUTHORIZATION].is_sensitive());
        assert!(!format!("{b:?}").contains("planted-secret"), "{b:?}");
        assert!(!format!("{:?}", Auth::Bearer("planted-secret".into())).contains("planted"));
    }

    #[test]
    fn only_idempotent_methods_are_retried() {
        assert!(
            idempotent(&Method::GET) && idempotent(&Method::PUT) && idempotent(&Method::DELETE)
        );
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
    }
}
