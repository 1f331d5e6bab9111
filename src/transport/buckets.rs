//! Opening the daemons' key-value buckets (members, control plane, flow state): one that
//! exists is used as it is (its settings are the first daemon's), else it is created.

use async_nats::jetstream::{self, kv};

use super::NatsError;

/// Opens the bucket `config` names, or creates it with `config`; `what` names it in errors.
pub async fn open(
    js: &jetstream::Context,
    config: kv::Config,
    what: &str,
) -> Result<kv::Store, NatsError> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let name = config.bucket.clone();
    js.create_key_value(config)
        .await
        .map_err(|e| NatsError::JetStream {
            what: format!("{what} {name}"),
            detail: e.to_string(),
        })
}
