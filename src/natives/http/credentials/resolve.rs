//! A credential named by an http connector's `credential` setting or a `send_request`'s
//! `credential` argument, resolved in the invocation's account only, into the [`Auth`] the
//! request carries out. A refusal names the credential, never a secret.

use super::kind::{CredentialType, Status};
use super::store::CredentialStore;
use super::CredentialError;
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
}

/// The [`Auth`] of credential `name` (or id) of `account`.
pub async fn auth(store: &CredentialStore, account: &str, name: &str) -> Result<Auth, Unusable> {
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
    let mut secrets = store
        .open(&c)
        .map_err(|_| Unusable::Broken(c.name.clone()))?;
    let mut take = |k: &str| secrets.remove(k).unwrap_or_default();
    Ok(match c.kind {
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
    })
}
