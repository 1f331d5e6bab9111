//! Secret settings at rest: sealed with XChaCha20-Poly1305 under a 32-byte key from the
//! environment or a key file. The associated data binds a sealed value to its setting, so a
//! value copied to another setting or connector does not open.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const PREFIX: &str = "sealed:v1:";

/// Why a key or a sealed value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("a sealed value does not open with this key (wrong key, or tampered)")]
    Open,
}

/// The sealing key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    /// From base64 text (the key file's content or the environment variable).
    pub fn from_base64(text: &str) -> Result<SecretBox, SecretError> {
        let key = B64.decode(text.trim()).map_err(|_| SecretError::BadKey)?;
        if key.len() != 32 {
            return Err(SecretError::BadKey);
        }
        Ok(SecretBox {
            cipher: XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SecretError::BadKey)?,
        })
    }

    /// A fresh random key, base64.
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        B64.encode(key)
    }

    /// Seals `plain` for the setting named by `aad`.
    pub fn seal(&self, plain: &str, aad: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
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
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Opens a value sealed for `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, SecretError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SecretError::Open)?;
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

    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
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
            Err(SecretError::Open)
        );
        assert_eq!(
            SecretBox::from_base64("c2hvcnQ=").err(),
            Some(SecretError::BadKey)
        );
    }
}
