//! Signing of webhook invocations: `X-Switchboard-Signature: t=<unix seconds>,v1=<hex>`, an
//! HMAC-SHA256 over `"<t>.<body>"` ([`sign`]), checked in constant time ([`verify`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value for `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Checks a signature header against `body`: the timestamp must be within `tolerance_secs`
/// of `now` (unix seconds), and one of the `v1` signatures must match (compared in constant
/// time). Unknown fields of the header are ignored, so schemes can be added later.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return false;
        };
        match k {
            "t" => match v.parse::<i64>() {
                Ok(t) if timestamp.is_none() => timestamp = Some(t),
                _ => return false,
            },
            "v1" => signatures.push(v),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    if now.abs_diff(t) > tolerance_secs.max(0) as u64 {
        return false;
    }
    signatures
        .into_iter()
        .any(|s| hex::decode(s).is_ok_and(|tag| mac(secret, t, body).verify_slice(&tag).is_ok()))
}
