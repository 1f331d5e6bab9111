//! Standard Webhooks signatures (<https://www.standardwebhooks.com>) with any secret. A
//! [`Signer`] signs a message (its id, Unix timestamp and body) with one secret, or with two
//! during a rotation: `webhook-signature` then carries both `v1,` signatures, space-separated,
//! so a receiver verifying with either secret accepts. A [`Verifier`] checks an inbound
//! request's `webhook-id`, `webhook-timestamp` and `webhook-signature` against one or two
//! secrets, the timestamp within a tolerance ([`DEFAULT_TOLERANCE`], five minutes, as the spec
//! says), and answers a [`VerifyError`] saying why not. The HMAC is the `standardwebhooks`
//! crate's; signatures are compared in constant time. No secret shows in a `Debug`, an error
//! or a log line.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use standardwebhooks::Webhook;
use subtle::ConstantTimeEq;

use crate::fault::{Blame, Fault};

pub use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP};

/// The prefix of a secret's text, `whsec_<base64 of the key>`.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a message's timestamp may be from the receiver's clock, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The signature scheme this module writes and reads (others in a header are skipped).
const VERSION: &str = "v1";

/// One signing secret. `Debug` does not show it.
#[derive(Clone)]
pub struct SigningKey(Arc<Webhook>);

/// Why a secret's text is unusable (the text is not repeated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a signing secret must be base64 (after an optional whsec_) of a non-empty key")]
pub struct InvalidKey;

impl SigningKey {
    /// A key from its text: `whsec_<base64>` or the bare base64, as Standard Webhooks writes it.
    pub fn parse(text: &str) -> Result<SigningKey, InvalidKey> {
        if text.strip_prefix(SECRET_PREFIX).unwrap_or(text).is_empty() {
            return Err(InvalidKey);
        }
        Webhook::new(text)
            .map(|w| SigningKey(Arc::new(w)))
            .map_err(|_| InvalidKey)
    }

    /// A key from its bytes.
    pub fn from_bytes(key: Vec<u8>) -> Result<SigningKey, InvalidKey> {
        if key.is_empty() {
            return Err(InvalidKey);
        }
        Webhook::from_bytes(key)
            .map(|w| SigningKey(Arc::new(w)))
            .map_err(|_| InvalidKey)
    }

    /// `v1,<base64>` over `"<id>.<timestamp>.<body>"`.
    fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
        self.0
            .sign(id, timestamp, body)
            .map_err(|_| SignError::BodyNotUtf8)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why a message could not be signed: the caller's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The `standardwebhooks` crate signs text only (JSON always is).
    #[error("a signed body must be UTF-8")]
    BodyNotUtf8,
    #[error("the message id is not a valid header value")]
    InvalidId,
}

impl Blame for SignError {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

/// Signs with the current secret and, during a rotation, the previous one too.
#[derive(Debug, Clone)]
pub struct Signer {
    current: SigningKey,
    previous: Option<SigningKey>,
}

impl Signer {
    pub fn new(current: SigningKey) -> Signer {
        Signer {
            current,
            previous: None,
        }
    }

    /// Signs with `previous` as well (the secret `current` replaces, while receivers move).
    pub fn with_previous(mut self, previous: SigningKey) -> Signer {
        self.previous = Some(previous);
        self
    }

    fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }

    /// The `webhook-signature` value of message `id` sent at `timestamp` (Unix seconds): the
    /// current secret's `v1,` signature, then the previous one's, space-separated.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
        let mut header = self.current.sign(id, timestamp, body)?;
        if let Some(previous) = &self.previous {
            header.push(' ');
            header.push_str(&previous.sign(id, timestamp, body)?);
        }
        Ok(header)
    }

    /// Sets `webhook-id`, `webhook-timestamp` and `webhook-signature` in `headers`.
    pub fn sign(
        &self,
        headers: &mut HeaderMap,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<(), SignError> {
        let signature = self.signature(id, timestamp, body)?;
        let id = HeaderValue::from_str(id).map_err(|_| SignError::InvalidId)?;
        headers.insert(HEADER_WEBHOOK_ID, id);
        headers.insert(HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(
            HEADER_WEBHOOK_SIGNATURE,
            HeaderValue::from_str(&signature).expect("base64 is a header value"),
        );
        Ok(())
    }
}

/// Where a [`Verifier`] reads the headers: an `http` 1 map (reqwest's) or actix-web's.
pub trait SignedHeaders {
    /// The value of header `name`, if present.
    fn value(&self, name: &str) -> Option<&[u8]>;
}

impl SignedHeaders for HeaderMap {
    fn value(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(HeaderValue::as_bytes)
    }
}

impl SignedHeaders for actix_web::http::header::HeaderMap {
    fn value(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|v| v.as_bytes())
    }
}

/// Why an inbound message does not verify. The caller's fault: the same request will not
/// verify later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is not text")]
    InvalidHeader(&'static str),
    #[error("header webhook-timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("the message is older than the tolerance ({} s)", .0.as_secs())]
    TooOld(Duration),
    #[error("the message's timestamp is ahead of the clock by more than the tolerance ({} s)", .0.as_secs())]
    TooNew(Duration),
    /// The `standardwebhooks` crate verifies text only.
    #[error("the body is not UTF-8")]
    BodyNotUtf8,
    #[error("no signature matched")]
    NoMatch,
}

impl VerifyError {
    /// The header at fault (a 4xx names it); `None` for the body.
    pub fn header(&self) -> Option<&'static str> {
        match self {
            VerifyError::MissingHeader(h) | VerifyError::InvalidHeader(h) => Some(h),
            VerifyError::BadTimestamp | VerifyError::TooOld(_) | VerifyError::TooNew(_) => {
                Some(HEADER_WEBHOOK_TIMESTAMP)
            }
            VerifyError::NoMatch => Some(HEADER_WEBHOOK_SIGNATURE),
            VerifyError::BodyNotUtf8 => None,
        }
    }
}

impl Blame for VerifyError {
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

/// Verifies inbound messages against one secret, or two during a rotation.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Signer,
    tolerance: Duration,
}

impl Verifier {
    /// With `key` and the default tolerance.
    pub fn new(key: SigningKey) -> Verifier {
        Verifier {
            keys: Signer::new(key),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Accepts signatures made with `previous` as well.
    pub fn with_previous(mut self, previous: SigningKey) -> Verifier {
        self.keys = self.keys.with_previous(previous);
        self
    }

    pub fn with_tolerance(mut self, tolerance: Duration) -> Verifier {
        self.tolerance = tolerance;
        self
    }

    /// Verifies `body` sent with `headers`, now.
    pub fn verify(&self, headers: &impl SignedHeaders, body: &[u8]) -> Result<(), VerifyError> {
        self.verify_at(headers, body, chrono::Utc::now().timestamp())
    }

    /// Verifies `body` sent with `headers` when it is `now` (Unix seconds): the three headers
    /// present, the timestamp within the tolerance of `now`, and one `v1,` signature made by
    /// one of the secrets.
    pub fn verify_at(
        &self,
        headers: &impl SignedHeaders,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let text = |name: &'static str| {
            let value = headers
                .value(name)
                .ok_or(VerifyError::MissingHeader(name))?;
            std::str::from_utf8(value).map_err(|_| VerifyError::InvalidHeader(name))
        };
        let id = text(HEADER_WEBHOOK_ID)?;
        let timestamp = text(HEADER_WEBHOOK_TIMESTAMP)?;
        let signatures = text(HEADER_WEBHOOK_SIGNATURE)?;
        let timestamp: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(timestamp) > tolerance {
            return Err(VerifyError::TooOld(self.tolerance));
        }
        if timestamp.saturating_sub(now) > tolerance {
            return Err(VerifyError::TooNew(self.tolerance));
        }
        for key in self.keys.keys() {
            let expected = key
                .sign(id, timestamp, body)
                .map_err(|_| VerifyError::BodyNotUtf8)?;
            let expected = expected
                .strip_prefix(VERSION)
                .and_then(|s| s.strip_prefix(','))
                .expect("the crate signs v1");
            let matched = signatures
                .split(' ')
                .filter_map(|s| s.split_once(','))
                .filter(|(version, _)| *version == VERSION)
                .any(|(_, given)| bool::from(given.as_bytes().ct_eq(expected.as_bytes())));
            if matched {
                return Ok(());
            }
        }
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's own test secret, and two more.
    const A: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const B: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const C: &str = "whsec_0yXbNgJcgmTeSRVv3wFU4x3HiSpKbvJZ";
    const NOW: i64 = 1_700_000_000;
    const ID: &str = "msg_2b7qRxQhYy";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;

    fn key(text: &str) -> SigningKey {
        SigningKey::parse(text).unwrap()
    }

    fn signer(secrets: &[&str]) -> Signer {
        let signer = Signer::new(key(secrets[0]));
        match secrets.get(1) {
            Some(previous) => signer.with_previous(key(previous)),
            None => signer,
        }
    }

    fn verifier(secrets: &[&str]) -> Verifier {
        let verifier = Verifier::new(key(secrets[0]));
        match secrets.get(1) {
            Some(previous) => verifier.with_previous(key(previous)),
            None => verifier,
        }
    }

    /// The headers of [`BODY`] as message [`ID`] at `timestamp`, signed with `secrets`.
    fn signed(secrets: &[&str], timestamp: i64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        signer(secrets)
            .sign(&mut headers, ID, timestamp, BODY)
            .unwrap();
        headers
    }

    fn with(mut headers: HeaderMap, name: &'static str, value: &str) -> HeaderMap {
        headers.insert(name, value.parse().unwrap());
        headers
    }

    fn without(mut headers: HeaderMap, name: &'static str) -> HeaderMap {
        headers.remove(name);
        headers
    }

    /// A row: what it shows, the verifier, the headers and body it is given, and its answer.
    type Case = (
        &'static str,
        Verifier,
        HeaderMap,
        &'static [u8],
        Result<(), VerifyError>,
    );

    fn check(
        case: &str,
        verifier: Verifier,
        headers: HeaderMap,
        body: &[u8],
        want: Result<(), VerifyError>,
    ) {
        assert_eq!(verifier.verify_at(&headers, body, NOW), want, "{case}");
        if let Err(e) = &want {
            assert_eq!(e.fault(), Fault::Caller, "{case}");
            assert!(!e.retryable(), "{case}");
        }
    }

    #[test]
    fn messages_verify_only_when_signed_by_a_held_secret_in_time() {
        use VerifyError::*;
        let crate_signed = Webhook::new(A).unwrap().sign(ID, NOW, BODY).unwrap();
        let old = Err(TooOld(DEFAULT_TOLERANCE));
        let cases: Vec<Case> = vec![
            (
                "one secret",
                verifier(&[A]),
                signed(&[A], NOW),
                BODY,
                Ok(()),
            ),
            (
                "both signed, the new verifies",
                verifier(&[A]),
                signed(&[A, B], NOW),
                BODY,
                Ok(()),
            ),
            (
                "both signed, the old verifies",
                verifier(&[B]),
                signed(&[A, B], NOW),
                BODY,
                Ok(()),
            ),
            (
                "the old signed, both held",
                verifier(&[A, B]),
                signed(&[B], NOW),
                BODY,
                Ok(()),
            ),
            (
                "the new signed, both held",
                verifier(&[A, B]),
                signed(&[A], NOW),
                BODY,
                Ok(()),
            ),
            (
                "a tampered body",
                verifier(&[A]),
                signed(&[A], NOW),
                br#"{"email":"x"}"#,
                Err(NoMatch),
            ),
            (
                "a wrong secret",
                verifier(&[C]),
                signed(&[A], NOW),
                BODY,
                Err(NoMatch),
            ),
            (
                "neither of two",
                verifier(&[C, B]),
                signed(&[A], NOW),
                BODY,
                Err(NoMatch),
            ),
            (
                "a replaced id",
                verifier(&[A]),
                with(signed(&[A], NOW), HEADER_WEBHOOK_ID, "msg_x"),
                BODY,
                Err(NoMatch),
            ),
            (
                "a replaced timestamp",
                verifier(&[A]),
                with(
                    signed(&[A], NOW),
                    HEADER_WEBHOOK_TIMESTAMP,
                    &(NOW - 1).to_string(),
                ),
                BODY,
                Err(NoMatch),
            ),
            (
                "another version only",
                verifier(&[A]),
                with(
                    signed(&[A], NOW),
                    HEADER_WEBHOOK_SIGNATURE,
                    &crate_signed.replace("v1,", "v2,"),
                ),
                BODY,
                Err(NoMatch),
            ),
            (
                "a truncated signature",
                verifier(&[A]),
                with(
                    signed(&[A], NOW),
                    HEADER_WEBHOOK_SIGNATURE,
                    &crate_signed[..10],
                ),
                BODY,
                Err(NoMatch),
            ),
            (
                "an old timestamp",
                verifier(&[A]),
                signed(&[A], NOW - 301),
                BODY,
                old.clone(),
            ),
            (
                "at the tolerance",
                verifier(&[A]),
                signed(&[A], NOW - 300),
                BODY,
                Ok(()),
            ),
            (
                "ahead of the clock",
                verifier(&[A]),
                signed(&[A], NOW + 301),
                BODY,
                Err(TooNew(DEFAULT_TOLERANCE)),
            ),
            (
                "old under a wider tolerance",
                verifier(&[A]).with_tolerance(Duration::from_secs(3600)),
                signed(&[A], NOW - 301),
                BODY,
                Ok(()),
            ),
            (
                "a timestamp of no number",
                verifier(&[A]),
                with(signed(&[A], NOW), HEADER_WEBHOOK_TIMESTAMP, "soon"),
                BODY,
                Err(BadTimestamp),
            ),
            (
                "the oldest timestamp",
                verifier(&[A]),
                with(
                    signed(&[A], NOW),
                    HEADER_WEBHOOK_TIMESTAMP,
                    &i64::MIN.to_string(),
                ),
                BODY,
                old,
            ),
            (
                "no id",
                verifier(&[A]),
                without(signed(&[A], NOW), HEADER_WEBHOOK_ID),
                BODY,
                Err(MissingHeader(HEADER_WEBHOOK_ID)),
            ),
            (
                "no timestamp",
                verifier(&[A]),
                without(signed(&[A], NOW), HEADER_WEBHOOK_TIMESTAMP),
                BODY,
                Err(MissingHeader(HEADER_WEBHOOK_TIMESTAMP)),
            ),
            (
                "no signature",
                verifier(&[A]),
                without(signed(&[A], NOW), HEADER_WEBHOOK_SIGNATURE),
                BODY,
                Err(MissingHeader(HEADER_WEBHOOK_SIGNATURE)),
            ),
            (
                "an id not text",
                verifier(&[A]),
                {
                    let mut h = signed(&[A], NOW);
                    h.insert(
                        HEADER_WEBHOOK_ID,
                        HeaderValue::from_bytes(b"m\xff").unwrap(),
                    );
                    h
                },
                BODY,
                Err(InvalidHeader(HEADER_WEBHOOK_ID)),
            ),
            (
                "a body not UTF-8",
                verifier(&[A]),
                signed(&[A], NOW),
                b"\xff",
                Err(BodyNotUtf8),
            ),
            (
                "signed by the crate (interop)",
                verifier(&[A]),
                with(signed(&[A], NOW), HEADER_WEBHOOK_SIGNATURE, &crate_signed),
                BODY,
                Ok(()),
            ),
            (
                "the crate's among others",
                verifier(&[A]),
                with(
                    signed(&[A], NOW),
                    HEADER_WEBHOOK_SIGNATURE,
                    &format!("v1,bm90IGl0 {crate_signed} v2,eA=="),
                ),
                BODY,
                Ok(()),
            ),
        ];
        for (case, verifier, headers, body, want) in cases {
            check(case, verifier, headers, body, want);
        }
    }

    #[test]
    fn a_rotation_signs_with_both_and_the_crate_verifies_either() {
        let now = chrono::Utc::now().timestamp();
        let mut headers = HeaderMap::new();
        signer(&[A, B]).sign(&mut headers, ID, now, BODY).unwrap();
        let signature = headers[HEADER_WEBHOOK_SIGNATURE].to_str().unwrap();
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
        assert!(signature.split(' ').all(|s| s.starts_with("v1,")));
        assert_eq!(headers[HEADER_WEBHOOK_ID], ID);
        assert_eq!(headers[HEADER_WEBHOOK_TIMESTAMP], now.to_string().as_str());
        for secret in [A, B] {
            Webhook::new(secret)
                .unwrap()
                .verify(BODY, &headers)
                .unwrap();
        }
        assert!(Webhook::new(C).unwrap().verify(BODY, &headers).is_err());
        // The crate's reference vector.
        assert_eq!(
            signer(&[A])
                .signature(
                    "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                    1649367553,
                    br#"{"email":"test@example.com","username":"test_user"}"#
                )
                .unwrap(),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        // Now, by the clock.
        assert_eq!(verifier(&[B]).verify(&headers, BODY), Ok(()));
    }

    #[test]
    fn actix_headers_verify_too() {
        let now = chrono::Utc::now().timestamp();
        let mut headers = actix_web::http::header::HeaderMap::new();
        for (name, value) in signed(&[A], now).iter() {
            headers.insert(
                actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        assert_eq!(verifier(&[A]).verify(&headers, BODY), Ok(()));
        assert_eq!(
            verifier(&[C]).verify(&headers, BODY),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn secrets_parse_from_text_or_bytes_and_show_nowhere() {
        assert!(SigningKey::parse(A).is_ok());
        assert!(
            SigningKey::parse(&A[SECRET_PREFIX.len()..]).is_ok(),
            "bare base64"
        );
        for bad in ["whsec_", "", "whsec_!!", "not base64"] {
            assert_eq!(SigningKey::parse(bad).err(), Some(InvalidKey), "{bad:?}");
        }
        assert_eq!(SigningKey::from_bytes(Vec::new()).err(), Some(InvalidKey));
        let raw = SigningKey::from_bytes(b"0123456789abcdef".to_vec()).unwrap();
        let mut headers = HeaderMap::new();
        let now = chrono::Utc::now().timestamp();
        Signer::new(raw).sign(&mut headers, ID, now, BODY).unwrap();
        Webhook::from_bytes(b"0123456789abcdef".to_vec())
            .unwrap()
            .verify(BODY, &headers)
            .unwrap();

        let key_text = &A[SECRET_PREFIX.len()..];
        let shown = format!("{:?} {:?} {:?}", key(A), signer(&[A, B]), verifier(&[A, B]));
        assert!(!shown.contains(key_text), "{shown}");
        assert!(!shown.contains(&B[SECRET_PREFIX.len()..]), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn signing_refuses_what_cannot_be_signed_as_the_callers_fault() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            signer(&[A]).sign(&mut headers, ID, NOW, b"\xff"),
            Err(SignError::BodyNotUtf8)
        );
        assert_eq!(
            signer(&[A]).sign(&mut headers, "id\nx", NOW, BODY),
            Err(SignError::InvalidId)
        );
        assert!(headers.is_empty());
        assert_eq!(SignError::InvalidId.fault(), Fault::Caller);
        assert!(!SignError::BodyNotUtf8.retryable());
    }
}
