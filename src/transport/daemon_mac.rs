//! The daemon's signature on events it puts on the events stream itself (a timer firing):
//! HMAC-SHA256 over the message's payload, in the `Switchboard-Daemon-Mac` header (lowercase
//! hex). Adapters publish on the same subjects, so what only the daemon may say (a persona as
//! the target, the event's own id) is taken from a message only when this verifies. The key is
//! derived from the sealing key (`SecretBox::derive`), which every daemon sharing a stream
//! shares (`SWITCHBOARD_SECRET_KEY`); during a key rotation a MAC under any key of the ring
//! verifies, and the current key signs.

use ring::hmac;

use crate::store::SecretBox;

/// What the key is derived for.
const LABEL: &str = "daemon events mac";

/// Signs with the current key; verifies under any key of the ring.
pub struct DaemonMac {
    keys: Vec<hmac::Key>,
}

impl DaemonMac {
    pub fn new(secrets: &SecretBox) -> DaemonMac {
        DaemonMac {
            keys: secrets
                .derive_each(LABEL)
                .iter()
                .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k))
                .collect(),
        }
    }

    /// The header value for `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        hex::encode(hmac::sign(&self.keys[0], payload).as_ref())
    }

    /// Whether `mac` (the header value) is the daemon's for `payload` (compared in constant
    /// time).
    pub fn verify(&self, payload: &[u8], mac: &str) -> bool {
        let Ok(tag) = hex::decode(mac.trim()) else {
            return false;
        };
        self.keys
            .iter()
            .any(|k| hmac::verify(k, payload, &tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(text: &str) -> DaemonMac {
        DaemonMac::new(&SecretBox::from_base64(text).unwrap())
    }

    #[test]
    fn a_signature_verifies_for_its_payload_only_and_under_the_same_key() {
        let key = SecretBox::generate();
        let mac = ring(&key);
        let payload = br#"{"v":1,"persona_id":"00000000-0000-0000-0000-000000000007"}"#;
        let signed = mac.sign(payload);
        assert_eq!(signed.len(), 64, "hex of 32 bytes");
        assert!(mac.verify(payload, &signed));
        assert!(
            ring(&key).verify(payload, &signed),
            "another daemon, same key"
        );
        // Tampered: one byte of the payload, one digit of the MAC, a cut MAC, not hex.
        let mut changed = payload.to_vec();
        changed[10] ^= 1;
        assert!(!mac.verify(&changed, &signed));
        let flipped = format!(
            "{}{}",
            if signed.starts_with('0') { '1' } else { '0' },
            &signed[1..]
        );
        assert!(!mac.verify(payload, &flipped));
        assert!(!mac.verify(payload, &signed[..62]));
        assert!(!mac.verify(payload, "not hex"));
        assert!(!mac.verify(payload, ""));
        // Another sealing key: refused.
        assert!(!ring(&SecretBox::generate()).verify(payload, &signed));
    }

    #[test]
    fn during_a_rotation_the_old_keys_signature_verifies_and_the_new_key_signs() {
        let (old, new) = (SecretBox::generate(), SecretBox::generate());
        let payload = b"event";
        let rotated = ring(&format!("{new}\n{old}"));
        assert!(rotated.verify(payload, &ring(&old).sign(payload)));
        assert_eq!(rotated.sign(payload), ring(&new).sign(payload));
        assert!(!ring(&old).verify(payload, &rotated.sign(payload)));
    }
}
