//! The OAuth 2.0 exchanges of `oauth2` and `intercom` credentials, with the `oauth2` crate:
//! the authorization-code flow with PKCE (the daemon keeps each flow's state and verifier:
//! `pending.rs`) and client credentials. Every request to a provider goes
//! through the egress toolkit ([`Egress::send`]: the policy at every hop, no redirects).

use std::collections::BTreeMap;
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use uuid::Uuid;

use super::clock::Clock;
use super::kind::{CredentialType, INTERCOM_AUTHORIZE_URL, INTERCOM_TOKEN_URL};
use super::store::{Credential, Tokens};
use crate::outbound::{Egress, OutboundRequest, SendOptions};

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The credential lacks what the exchange needs (the caller's to set).
    #[error("{0}")]
    Incomplete(String),
    /// The provider refused the grant (`invalid_grant`): authorize again.
    #[error("the provider refused the grant (invalid_grant)")]
    InvalidGrant,
    /// The provider answered something else, or nothing.
    #[error("the token endpoint failed: {0}")]
    Provider(String),
}

/// The provider's refusal or failure, for the `oauth2` crate.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transport(String);

/// A flow waiting for its callback: whose credential, and how to finish.
pub struct Callback {
    pub account: String,
    pub id: Uuid,
    pub(super) verifier: String,
    pub(super) redirect: String,
}

/// The endpoints and client of a credential.
struct Endpoints {
    authorize: Option<String>,
    token: String,
    client_id: String,
    client_secret: Option<String>,
    scopes: Vec<String>,
}

fn endpoints(c: &Credential, secrets: &BTreeMap<String, String>) -> Result<Endpoints, OAuthError> {
    let need = |k: &str| {
        c.plain
            .get(k)
            .cloned()
            .ok_or_else(|| OAuthError::Incomplete(format!("settings.{k} is not set")))
    };
    let (authorize, token) = match c.kind {
        CredentialType::Intercom => (
            Some(INTERCOM_AUTHORIZE_URL.to_owned()),
            INTERCOM_TOKEN_URL.to_owned(),
        ),
        CredentialType::OAuth2 => (c.plain.get("authorize_url").cloned(), need("token_url")?),
        _ => {
            return Err(OAuthError::Incomplete(format!(
                "a {} credential has no OAuth flow",
                c.kind.as_str()
            )))
        }
    };
    Ok(Endpoints {
        authorize,
        token,
        client_id: need("client_id")?,
        client_secret: secrets.get("client_secret").cloned(),
        scopes: c
            .plain
            .get("scopes")
            .map(|s| {
                s.split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Whether `c` takes the client-credentials grant (no browser).
pub fn is_client_credentials(c: &Credential) -> bool {
    c.kind == CredentialType::OAuth2
        && c.plain.get("grant").map(String::as_str) == Some("client_credentials")
}

fn url<T>(
    make: impl Fn(String) -> Result<T, oauth2::url::ParseError>,
    field: &str,
    v: &str,
) -> Result<T, OAuthError> {
    make(v.to_owned()).map_err(|_| OAuthError::Incomplete(format!("settings.{field} is not a URL")))
}

/// The `oauth2` crate's HTTP client: the egress toolkit.
struct Client(Egress);

impl<'c> oauth2::AsyncHttpClient<'c> for Client {
    type Error = Transport;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, Transport>> + Send + 'c>,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// Sends one request of the `oauth2` crate through the egress toolkit.
async fn send(
    egress: &Egress,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, Transport> {
    let (parts, body) = req.into_parts();
    let url = reqwest::Url::parse(&parts.uri.to_string()).map_err(|e| Transport(e.to_string()))?;
    let mut out = OutboundRequest::new(parts.method, url);
    out.headers = parts.headers;
    out.body = body.into();
    let options = SendOptions {
        timeout: Duration::from_secs(30),
        verify_tls: true,
        max_redirects: 0,
        max_response_bytes: 256 * 1024,
    };
    let sent = egress
        .send(out, &options)
        .await
        .map_err(|e| Transport(e.to_string()))?;
    let mut response = oauth2::HttpResponse::new(sent.body);
    *response.status_mut() = sent.status;
    *response.headers_mut() = sent.headers;
    Ok(response)
}

/// What a token endpoint's answer means.
fn tokens_of(
    clock: &Clock,
    answer: Result<
        oauth2::basic::BasicTokenResponse,
        RequestTokenError<Transport, oauth2::basic::BasicErrorResponse>,
    >,
) -> Result<Tokens, OAuthError> {
    match answer {
        Ok(t) => Ok(Tokens {
            access: t.access_token().secret().clone(),
            refresh: t.refresh_token().map(|r| r.secret().clone()),
            expires_at: t.expires_in().map(|d| clock.after(d)),
        }),
        Err(RequestTokenError::ServerResponse(e))
            if *e.error() == oauth2::basic::BasicErrorResponseType::InvalidGrant =>
        {
            Err(OAuthError::InvalidGrant)
        }
        Err(RequestTokenError::ServerResponse(e)) => {
            Err(OAuthError::Provider(e.error().as_ref().to_owned()))
        }
        Err(RequestTokenError::Request(e)) => Err(OAuthError::Provider(e.0)),
        Err(RequestTokenError::Parse(_, _)) => Err(OAuthError::Provider(
            "the answer is not a token response".into(),
        )),
        Err(RequestTokenError::Other(e)) => Err(OAuthError::Provider(e)),
    }
}

/// Starts an authorization-code flow: the provider's URL the user opens, the state, and the
/// flow to keep until the callback names that state.
pub fn start(
    c: &Credential,
    secrets: &BTreeMap<String, String>,
    redirect: &str,
) -> Result<(String, String, Callback), OAuthError> {
    let e = endpoints(c, secrets)?;
    let authorize = e
        .authorize
        .ok_or_else(|| OAuthError::Incomplete("settings.authorize_url is not set".into()))?;
    let mut client = BasicClient::new(ClientId::new(e.client_id))
        .set_auth_uri(url(AuthUrl::new, "authorize_url", &authorize)?)
        .set_redirect_uri(url(RedirectUrl::new, "redirect", redirect)?);
    if let Some(s) = e.client_secret {
        client = client.set_client_secret(ClientSecret::new(s));
    }
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(e.scopes.into_iter().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    let flow = Callback {
        account: c.account.clone(),
        id: c.id,
        verifier: verifier.secret().clone(),
        redirect: redirect.to_owned(),
    };
    Ok((auth_url.to_string(), state.secret().clone(), flow))
}

/// Finishes a flow: the code exchanged, with the verifier, for tokens.
pub async fn finish(
    egress: &Egress,
    clock: &Clock,
    c: &Credential,
    secrets: &BTreeMap<String, String>,
    callback: Callback,
    code: String,
) -> Result<Tokens, OAuthError> {
    let e = endpoints(c, secrets)?;
    let mut client = BasicClient::new(ClientId::new(e.client_id))
        .set_token_uri(url(TokenUrl::new, "token_url", &e.token)?)
        .set_redirect_uri(url(RedirectUrl::new, "redirect", &callback.redirect)?);
    if let Some(s) = e.client_secret {
        client = client.set_client_secret(ClientSecret::new(s));
    }
    let http = Client(egress.clone());
    tokens_of(
        clock,
        client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(callback.verifier))
            .request_async(&http)
            .await,
    )
}

/// The client-credentials grant.
pub async fn client_credentials(
    egress: &Egress,
    clock: &Clock,
    c: &Credential,
    secrets: &BTreeMap<String, String>,
) -> Result<Tokens, OAuthError> {
    let e = endpoints(c, secrets)?;
    let mut client = BasicClient::new(ClientId::new(e.client_id)).set_token_uri(url(
        TokenUrl::new,
        "token_url",
        &e.token,
    )?);
    if let Some(s) = e.client_secret {
        client = client.set_client_secret(ClientSecret::new(s));
    }
    let http = Client(egress.clone());
    tokens_of(
        clock,
        client
            .exchange_client_credentials()
            .add_scopes(e.scopes.into_iter().map(Scope::new))
            .request_async(&http)
            .await,
    )
}

/// The refresh-token grant (the provider may send a new refresh token, else the old stays);
/// for a client-credentials credential, that grant again.
pub async fn refresh(
    egress: &Egress,
    clock: &Clock,
    c: &Credential,
    secrets: &BTreeMap<String, String>,
) -> Result<Tokens, OAuthError> {
    // A client-credentials token is renewed as it was got: there is no refresh token.
    if is_client_credentials(c) {
        return client_credentials(egress, clock, c, secrets).await;
    }
    let e = endpoints(c, secrets)?;
    let token = secrets
        .get("refresh_token")
        .cloned()
        .ok_or(OAuthError::InvalidGrant)?;
    let mut client = BasicClient::new(ClientId::new(e.client_id)).set_token_uri(url(
        TokenUrl::new,
        "token_url",
        &e.token,
    )?);
    if let Some(s) = e.client_secret {
        client = client.set_client_secret(ClientSecret::new(s));
    }
    let http = Client(egress.clone());
    tokens_of(
        clock,
        client
            .exchange_refresh_token(&RefreshToken::new(token))
            .request_async(&http)
            .await,
    )
}
