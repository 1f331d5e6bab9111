//! Settings at rest: secret ones sealed with the daemon's key, bound to where they belong
//! (account, integration, connector, setting), opened when read back.

use super::*;

pub(crate) fn aad(account: &str, integration: &str, connector: &str, setting: &str) -> String {
    format!("{account}/{integration}/{connector}/{setting}")
}

impl Daemon {
    pub(super) fn seal(
        &self,
        presets: &[crate::catalog::SettingSpec],
        settings: &Settings,
        scope: (&str, &str, &str),
    ) -> BTreeMap<String, String> {
        settings
            .0
            .iter()
            .map(|(k, v)| {
                let secret = presets.iter().any(|p| &p.idn == k && p.is_secret);
                let value = if secret {
                    self.secrets.seal(v, &aad(scope.0, scope.1, scope.2, k))
                } else {
                    v.clone()
                };
                (k.clone(), value)
            })
            .collect()
    }

    pub(crate) fn open(
        &self,
        stored: BTreeMap<String, String>,
        scope: (&str, &str, &str),
    ) -> Result<Settings, StoreError> {
        let mut out = BTreeMap::new();
        for (k, v) in stored {
            let v = if SecretBox::is_sealed(&v) {
                self.secrets
                    .open(&v, &aad(scope.0, scope.1, scope.2, &k))
                    .map_err(|e| StoreError::Corrupt(format!("setting {k}: {e}")))?
            } else {
                v
            };
            out.insert(k, v);
        }
        Ok(Settings(out))
    }
}
