//! The native `api` integration: third-party systems talk to agents over webhooks. Creating an
//! `api` connector assigns its `incoming_webhook_url`, an unguessable path this native owns
//! (`/hooks/api/<account>/<connector>/<token>`, 256 random bits), and a `signing_secret`
//! (`whsec_…`, shown once in the creation answer). A POST there ([`incoming`]) is checked per
//! Standard Webhooks (or, with `verify_signature=false` set explicitly, by the connector's
//! token), read by the documented rule ([`mapping`]), held to the `incoming_events` allow-list
//! and enters through the durable intake, its `webhook-id` deduplicating retries; a refusal is
//! a 4xx naming the reason ([`refusal`]).

pub mod incoming;
pub mod mapping;
pub mod refusal;

use std::sync::Arc;

use actix_web::web;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use rand::RngCore;

use crate::commands::{Answered, CommandRefusal, NativeCommand, NativeIntegration};
use crate::domain::ConnectorKey;
use crate::natives::component::{Built, Component, NativeContext};
use crate::outbound::signing::SECRET_PREFIX;

/// The integration's idn.
pub const IDN: &str = "api";
/// Random bytes of an incoming webhook URL's token.
const TOKEN_BYTES: usize = 32;
/// Random bytes of a generated signing secret.
const SECRET_BYTES: usize = 32;

/// The `api` component, for the registration list.
pub struct ApiComponent;

impl ApiComponent {
    pub fn component() -> Box<dyn Component> {
        Box::new(ApiComponent)
    }
}

impl Component for ApiComponent {
    fn idn(&self) -> &'static str {
        IDN
    }

    fn build(self: Box<Self>, cx: &NativeContext) -> Built {
        let surface = web::Data::new(incoming::Surface {
            directory: cx.directory.clone(),
            dead_letters: cx.dead_letters.clone(),
        });
        Built::executor(Arc::new(ApiNative)).with_routes(move |cfg| {
            cfg.app_data(surface.clone());
            incoming::register(cfg);
        })
    }
}

/// The `api` native integration's executor.
pub struct ApiNative;

/// The incoming webhook path of `connector` with `token`.
pub fn incoming_path(connector: &ConnectorKey, token: &str) -> String {
    format!(
        "{}/{}/{}/{token}",
        incoming::PREFIX,
        connector.account,
        connector.connector
    )
}

/// `n` random bytes.
fn random(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

impl NativeIntegration for ApiNative {
    fn execute(&self, c: NativeCommand<'_>) -> Result<Answered, CommandRefusal> {
        Err(CommandRefusal::Unavailable {
            integration: IDN.into(),
            reason: format!(
                "outgoing webhooks do not carry {} yet",
                c.command.command.as_str()
            ),
        })
    }

    /// A new connector's incoming URL and signing secret (secret: shown once).
    fn connector_created(&self, connector: &ConnectorKey) -> Vec<(String, String)> {
        let token = B64URL.encode(random(TOKEN_BYTES));
        let secret = format!("{SECRET_PREFIX}{}", B64.encode(random(SECRET_BYTES)));
        vec![
            (
                "incoming_webhook_url".into(),
                incoming_path(connector, &token),
            ),
            ("signing_secret".into(), secret),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Idn;
    use crate::outbound::signing::SigningKey;

    #[test]
    fn a_new_connector_gets_an_unguessable_url_and_a_usable_secret() {
        let key = ConnectorKey {
            account: Idn::known("acme"),
            integration: Idn::known("api"),
            connector: Idn::known("hooks"),
        };
        let a = ApiNative.connector_created(&key);
        let b = ApiNative.connector_created(&key);
        let url = &a[0].1;
        assert!(url.starts_with("/hooks/api/acme/hooks/"), "{url}");
        assert!(url.rsplit('/').next().unwrap().len() >= 43, "{url}");
        assert_ne!(a, b, "each creation draws anew");
        assert_eq!(a[1].0, "signing_secret");
        assert!(SigningKey::parse(&a[1].1).is_ok());
    }
}
