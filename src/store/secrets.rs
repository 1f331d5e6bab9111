//! Secret settings at rest: sealed with XChaCha20-Poly1305 under a keyring of 32-byte keys
//! from the environment or a key file. The associated data binds a sealed value to its
//! setting, so a value copied to another setting or connector does not open.
//!
//! A sealed value names the key that sealed it: `sealed:v2:<key id>:<base64 nonce+ciphertext>`,
//! the key id being the first 8 hex digits of a SHA-256 of the key. The keyring's text is one
//! base64 key per line: the first seals (the current key), the others only open, so a key can
//! be rotated (`switchboard rekey` re-seals everything under a new first key). Values of the
//! first format (`sealed:v1:`, no key id) still open with whichever key of the ring fits.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX_V1: &str = "sealed:v1:";
const PREFIX_V2: &str = "sealed:v2:";

/// Why a key or a sealed value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret key must be 32 bytes, base64-encoded (one key per line)")]
    BadKey,
    #[error("a sealed value does not open with this key (wrong key, or tampered)")]
    Open,
    #[error("a sealed value names key {0}, which is not in the keyring")]
    UnknownKey(String),
}

struct Key {
    id: String,
    text: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn from_base64(text: &str) -> Result<Key, SecretError> {
        let text = text.trim();
        let key = B64.decode(text).map_err(|_| SecretError::BadKey)?;
        if key.len() != 32 {
            return Err(SecretError::BadKey);
        }
        let digest = Sha256::new()
            .chain_update(b"switchboard key id\0")
            .chain_update(&key)
            .finalize();
        Ok(Key {
            id: hex::encode(&digest[..4]),
            text: text.to_owned(),
            cipher: XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SecretError::BadKey)?,
        })
    }

    fn open(&self, body: &str, aad: &str) -> Result<String, SecretError> {
        let bytes = B64.decode(body).map_err(|_| SecretError::Open)?;
        if bytes.len() < 24 {
            return Err(SecretError::Open);
        }
        let (nonce, ct) = bytes.split_at(24);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain).map_err(|_| SecretError::Open)
    }
}

/// 32 bytes derived from `key` for `label`: SHA-256 of the label and the key.
fn derive(key: &Key, label: &str) -> [u8; 32] {
    let key = B64.decode(&key.text).expect("a key of the ring decodes");
    Sha256::new()
        .chain_update(b"switchboard derived key\0")
        .chain_update(label.as_bytes())
        .chain_update(b"\0")
        .chain_update(&key)
        .finalize()
        .into()
}

/// The keyring: the current key (seals and opens) and older keys (open only).
pub struct SecretBox {
    keys: Vec<Key>,
}

impl SecretBox {
    /// From the keyring's text: one base64 key per line (or comma-separated), the current
    /// first. Blank lines and `#` comments are skipped.
    pub fn from_base64(text: &str) -> Result<SecretBox, SecretError> {
        let keys = text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Key::from_base64)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SecretError::BadKey);
        }
        Ok(SecretBox { keys })
    }

    /// A fresh random key, base64.
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        B64.encode(key)
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every key's id, the current first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The keyring's text with `new` (base64) as the current key and every key of this ring
    /// after it (they keep opening what they sealed until everything is re-sealed).
    pub fn text_with_new_current(&self, new: &str) -> String {
        let mut out = format!("{}\n", new.trim());
        for k in &self.keys {
            out.push_str(&k.text);
            out.push('\n');
        }
        out
    }

    /// 32 bytes derived from the current key for `label` (SHA-256 of the label and the key):
    /// replicas sharing a key derive the same bytes.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        derive(&self.keys[0], label)
    }

    /// What [`SecretBox::derive`] gives for `label` under each key of the ring, the current
    /// first: what a replica still on an older key derived (a key rotation in progress).
    pub fn derive_each(&self, label: &str) -> Vec<[u8; 32]> {
        self.keys.iter().map(|k| derive(k, label)).collect()
    }

    /// Seals `plain` for the setting named by `aad`, under the current key.
    pub fn seal(&self, plain: &str, aad: &str) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 sealing does not fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX_V2}{}:{}", key.id, B64.encode(out))
    }

    /// Opens a value sealed for `aad` by any key of the ring.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, SecretError> {
        if let Some(rest) = sealed.strip_prefix(PREFIX_V2) {
            let (id, body) = rest.split_once(':').ok_or(SecretError::Open)?;
            let key = self
                .keys
                .iter()
                .find(|k| k.id == id)
                .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
            return key.open(body, aad);
        }
        let body = sealed.strip_prefix(PREFIX_V1).ok_or(SecretError::Open)?;
        self.keys
            .iter()
            .find_map(|k| k.open(body, aad).ok())
            .ok_or(SecretError::Open)
    }

    /// Whether the value was sealed by another key than the current one (or has no key id).
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        match sealed.strip_prefix(PREFIX_V2) {
            Some(rest) => !rest.starts_with(&format!("{}:", self.current_id())),
            None => Self::is_sealed(sealed),
        }
    }

    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX_V2) || value.starts_with(PREFIX_V1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let k = SecretBox::from_base64(&SecretBox::generate()).unwrap();
        let s = k.seal("hunter2", "default/twilio/sms/auth_token");
        assert!(SecretBox::is_sealed(&s));
        assert!(!s.contains("hunter2"));
        assert_eq!(
            k.open(&s, "default/twilio/sms/auth_token").unwrap(),
            "hunter2"
        );
        assert_eq!(
            k.open(&s, "default/twilio/other/auth_token"),
            Err(SecretError::Open)
        );
        let other = SecretBox::from_base64(&SecretBox::generate()).unwrap();
        assert_eq!(
            other.open(&s, "default/twilio/sms/auth_token"),
            Err(SecretError::UnknownKey(k.current_id().to_owned())),
            "another ring does not hold the key the value names"
        );
        assert_eq!(
            SecretBox::from_base64("c2hvcnQ=").err(),
            Some(SecretError::BadKey)
        );
    }

    #[test]
    fn a_rotated_ring_opens_old_values_and_seals_under_the_new_key() {
        let old = SecretBox::from_base64(&SecretBox::generate()).unwrap();
        let sealed = old.seal("hunter2", "a");
        assert!(sealed.starts_with(&format!("sealed:v2:{}:", old.current_id())));
        let ring =
            SecretBox::from_base64(&old.text_with_new_current(&SecretBox::generate())).unwrap();
        assert_eq!(ring.key_ids().len(), 2);
        assert_ne!(ring.current_id(), old.current_id());
        assert_eq!(ring.open(&sealed, "a").unwrap(), "hunter2");
        assert!(ring.needs_reseal(&sealed));
        let resealed = ring.seal(&ring.open(&sealed, "a").unwrap(), "a");
        assert!(!ring.needs_reseal(&resealed));
        // Without the old key, what it sealed names the missing key.
        let only_new = SecretBox::from_base64(ring.keys[0].text.as_str()).unwrap();
        assert_eq!(
            only_new.open(&sealed, "a"),
            Err(SecretError::UnknownKey(old.current_id().to_owned()))
        );
        assert_eq!(only_new.open(&resealed, "a").unwrap(), "hunter2");
        // The first format (no key id) opens with whichever key fits.
        let body = sealed.rsplit(':').next().unwrap();
        assert_eq!(
            ring.open(&format!("sealed:v1:{body}"), "a").unwrap(),
            "hunter2"
        );
    }
}
