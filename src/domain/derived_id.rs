//! Stable ids derived from their parts with XXH3-128 (persona ids, invocation ids, event ids of
//! stream messages): the same parts give the same id on every run and every replica.
//!
//! Each part is written as its length (u64, little endian) and its bytes, so `("ab", "c")` and
//! `("a", "bc")` differ. The parts are gathered in a stack buffer and hashed in one call: the
//! streaming hasher copies every piece into its own buffer first, which cost more than the hash
//! itself on the event path. One-shot and streaming XXH3 agree on the same bytes, so ids stay
//! what they were.

use uuid::Uuid;

/// Parts up to this many bytes in all are hashed from a stack buffer.
const INLINE_BYTES: usize = 256;

/// The id of `prefix` followed by the length-prefixed `parts`.
pub fn derive(prefix: &[u8], parts: &[&[u8]]) -> Uuid {
    let total = prefix.len() + parts.iter().map(|p| 8 + p.len()).sum::<usize>();
    let digest = if total <= INLINE_BYTES {
        let mut buf = [0u8; INLINE_BYTES];
        let n = gather(&mut buf, prefix, parts);
        xxhash_rust::xxh3::xxh3_128(&buf[..n])
    } else {
        let mut buf = vec![0u8; total];
        let n = gather(&mut buf, prefix, parts);
        xxhash_rust::xxh3::xxh3_128(&buf[..n])
    };
    Uuid::new_v8(digest.to_le_bytes())
}

/// The length-prefixed encoding of `parts`, for ids derived many times with the same parts
/// after a changing prefix (see [`derive_encoded`]).
pub fn encode(parts: &[&[u8]]) -> Box<[u8]> {
    let mut buf = vec![0u8; parts.iter().map(|p| 8 + p.len()).sum()];
    let n = gather(&mut buf, b"", parts);
    debug_assert_eq!(n, buf.len());
    buf.into_boxed_slice()
}

/// `derive(prefix, parts)` with the parts given as [`encode`] made them: the same id, one copy.
pub fn derive_encoded(prefix: &[u8], encoded: &[u8]) -> Uuid {
    let total = prefix.len() + encoded.len();
    let digest = if total <= INLINE_BYTES {
        let mut buf = [0u8; INLINE_BYTES];
        buf[..prefix.len()].copy_from_slice(prefix);
        buf[prefix.len()..total].copy_from_slice(encoded);
        xxhash_rust::xxh3::xxh3_128(&buf[..total])
    } else {
        xxhash_rust::xxh3::xxh3_128(&[prefix, encoded].concat())
    };
    Uuid::new_v8(digest.to_le_bytes())
}

/// Writes `prefix` and the length-prefixed `parts` into `buf` (large enough); returns the
/// length written.
#[inline]
fn gather(buf: &mut [u8], prefix: &[u8], parts: &[&[u8]]) -> usize {
    let mut at = prefix.len();
    buf[..at].copy_from_slice(prefix);
    for part in parts {
        buf[at..at + 8].copy_from_slice(&(part.len() as u64).to_le_bytes());
        at += 8;
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::Xxh3;

    /// The streaming form the ids were first derived with.
    fn streaming(prefix: &[u8], parts: &[&[u8]]) -> Uuid {
        let mut h = Xxh3::new();
        h.update(prefix);
        for part in parts {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Uuid::new_v8(h.digest128().to_le_bytes())
    }

    #[test]
    fn agrees_with_the_streaming_hash() {
        let long = "x".repeat(1000);
        let cases: [(&[u8], Vec<&[u8]>); 4] = [
            (b"", vec![b"default", b"telegram", b"42"]),
            (&[7u8; 16], vec![b"default", b"Agent", b"Main"]),
            (b"", vec![long.as_bytes(), b""]),
            (b"", vec![]),
        ];
        for (prefix, parts) in cases {
            assert_eq!(derive(prefix, &parts), streaming(prefix, &parts));
        }
    }

    #[test]
    fn pre_encoded_parts_give_the_same_id() {
        let long = "y".repeat(300);
        let cases: [(&[u8], Vec<&[u8]>); 3] = [
            (&[7u8; 16], vec![b"default", b"Agent", b"Main"]),
            (&[1u8; 16], vec![long.as_bytes(), b"Main"]),
            (b"", vec![]),
        ];
        for (prefix, parts) in cases {
            assert_eq!(
                derive_encoded(prefix, &encode(&parts)),
                derive(prefix, &parts)
            );
        }
    }

    #[test]
    fn lengths_separate_parts() {
        assert_ne!(derive(b"", &[b"ab", b"c"]), derive(b"", &[b"a", b"bc"]));
    }
}
