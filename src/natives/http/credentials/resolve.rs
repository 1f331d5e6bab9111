//! A credential named by an http connector's `credential` setting or a `send_request`'s
//! `credential` argument, resolved in the invocation's account only, into the [`Auth`] the
//! request carries out. A refusal names the credential, never a secret.

use super::kind::{CredentialType, Status};
use super::refresh::Refresher;
use super::CredentialError;
use crate::domain::PersonaId;
use crate::natives::http::request::Auth;

/// Why a named credential cannot authenticate a request.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("credential {0:?} not found in this account")]
    Missing(String),
    #[error("credential {name:?} is {}", status.as_str())]
    NotReady { name: String, status: Status },
    #[error("credential {0:?} could not be read")]
    Broken(String),
    #[error("credential {0:?} expired and its provider did not refresh it")]
    Refresh(String),
}

/// The [`Auth`] of credential `name` (or id) of `account`, and for an OAuth one the access
/// token it carries (refreshed first if expiring, or if it is `stale`: a 401 answered it).
pub async fn auth(
    refresher: &Refresher,
    account: &str,
    name: &str,
    stale: Option<String>,
    persona: PersonaId,
) -> Result<(Auth, Option<String>), Unusable> {
    let store = &refresher.store;
    let c = match store.find(account, name).await {
        Ok(c) => c,
        Err(CredentialError::NotFound(_)) => return Err(Unusable::Missing(name.to_owned())),
        Err(_) => return Err(Unusable::Broken(name.to_owned())),
    };
    let status = c.status();
    if status != Status::Connected {
        return Err(Unusable::NotReady {
            name: c.name,
            status,
        });
    }
    if c.kind.is_oauth() {
        let token = refresher.access_token(c, stale, persona).await?;
        return Ok((Auth::Bearer(token.clone()), Some(token)));
    }
    let mut secrets = store
        .open(&c)
        .map_err(|_| Unusable::Broken(c.name.clone()))?;
    let mut take = |k: &str| secrets.remove(k).unwrap_or_default();
    let auth = match c.kind {
        CredentialType::ApiKey => match c.plain.get("query_param") {
            Some(param) => Auth::ApiKeyQuery {
                param: param.clone(),
                value: take("value"),
            },
            None => Auth::ApiKey {
                header: c
                    .plain
                    .get("header")
                    .cloned()
                    .unwrap_or_else(|| "X-API-Key".into()),
                value: take("value"),
            },
        },
        CredentialType::Bearer => Auth::Bearer(take("token")),
        CredentialType::Basic => Auth::Basic {
            username: c.plain.get("username").cloned().unwrap_or_default(),
            password: take("password"),
        },
        CredentialType::OAuth2 | CredentialType::Intercom => Auth::Bearer(take("access_token")),
    };
    Ok((auth, None))
}
