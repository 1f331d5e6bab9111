//! The text of an API token: `sbt_` + a 12-character public id + a 32-character secret + a
//! 6-character checksum, all base62 (54 characters in all). The prefix and the checksum (CRC32
//! of everything before it) let a secret scanner recognise a leaked token without asking the
//! daemon; the id finds the stored record; only a SHA-256 hash of the whole text is kept, and it
//! is compared in constant time.

use std::fmt;

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every token starts with.
pub const PREFIX: &str = "sbt_";
pub const ID_LEN: usize = 12;
pub const SECRET_LEN: usize = 32;
pub const CHECKSUM_LEN: usize = 6;
/// The whole text's length.
pub const LEN: usize = PREFIX.len() + ID_LEN + SECRET_LEN + CHECKSUM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A token's full text. Shown once, at creation; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenText(String);

impl fmt::Debug for TokenText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenText({PREFIX}{}…)", self.id())
    }
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

impl TokenText {
    /// A fresh token from the OS's random source.
    pub fn generate() -> TokenText {
        let mut rng = rand::rng();
        let body = format!(
            "{PREFIX}{}{}",
            Alphanumeric.sample_string(&mut rng, ID_LEN),
            Alphanumeric.sample_string(&mut rng, SECRET_LEN)
        );
        let sum = checksum(&body);
        TokenText(body + &sum)
    }

    /// Takes a presented token if its shape and checksum hold (a typo or a truncated paste
    /// fails here, before any lookup).
    pub fn parse(text: &str) -> Option<TokenText> {
        let rest = text.strip_prefix(PREFIX)?;
        if text.len() != LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (body, sum) = text.split_at(LEN - CHECKSUM_LEN);
        (checksum(body) == sum).then(|| TokenText(text.to_owned()))
    }

    /// The public id: safe to list, log and show.
    pub fn id(&self) -> &str {
        &self.0[PREFIX.len()..PREFIX.len() + ID_LEN]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored: SHA-256 of the whole text (the text is 190 bits of randomness, so a
    /// fast hash is enough; a slow one would only slow every request).
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// Whether this text hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        self.hash().ct_eq(stored).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_a_changed_one_does_not() {
        let t = TokenText::generate();
        assert_eq!(t.as_str().len(), LEN);
        assert!(t.as_str().starts_with("sbt_"));
        assert_eq!(TokenText::parse(t.as_str()), Some(t.clone()));
        assert!(t.matches(&t.hash()));
        // One character changed anywhere: the checksum catches it.
        let mut bytes = t.as_str().as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(TokenText::parse(std::str::from_utf8(&bytes).unwrap()), None);
        assert_eq!(TokenText::parse(&t.as_str()[..LEN - 1]), None);
        assert_eq!(TokenText::parse("Bearer x"), None);
        assert!(!format!("{t:?}").contains(&t.as_str()[20..]));
        let other = TokenText::generate();
        assert!(!other.matches(&t.hash()));
        assert_ne!(other.id(), t.id());
    }
}
