//! One outbound request with per-use options ([`SendOptions`]): a total timeout, TLS
//! verification, a cap on the response body read (the rest is not read: `truncated`), and
//! redirects followed by the daemon itself, each hop judged by the egress policy again, at most
//! `max_redirects`, and never to another host while the request carries credentials (the 3xx
//! is answered as it is). [`SendError`] says what failed, whose fault it is and whether a retry
//! can succeed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{Method, StatusCode, Url};

use super::policy::EgressDenied;
use super::Egress;
use crate::fault::{Blame, Fault};

/// How one request is sent.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The whole exchange (every hop, the body read) at most.
    pub timeout: Duration,
    /// Verify the peer's TLS certificate (off only where a connector says so).
    pub verify_tls: bool,
    /// Redirects followed at most; 0 answers a 3xx as it is.
    pub max_redirects: u8,
    /// Response body bytes read at most.
    pub max_response_bytes: usize,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            timeout: Duration::from_secs(30),
            verify_tls: true,
            max_redirects: 0,
            max_response_bytes: 1024 * 1024,
        }
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Headers that carry credentials (`Authorization`, an API key's header), and whether the
    /// URL's query does (an API key as a query parameter): such a request is not redirected to
    /// another host.
    pub credential_headers: Vec<HeaderName>,
    pub credential_in_query: bool,
}

impl OutboundRequest {
    pub fn new(method: Method, url: Url) -> Self {
        OutboundRequest {
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            credential_headers: Vec::new(),
            credential_in_query: false,
        }
    }

    fn carries_credentials(&self) -> bool {
        self.credential_in_query
            || self.headers.contains_key(reqwest::header::AUTHORIZATION)
            || self
                .credential_headers
                .iter()
                .any(|h| self.headers.contains_key(h))
    }
}

/// The answer: the last hop's status, headers and body (cut at the cap).
#[derive(Debug, Clone)]
pub struct Sent {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The body was longer than the cap: the rest was not read.
    pub truncated: bool,
    /// Where the answer came from (after redirects).
    pub url: Url,
    pub redirects: u8,
    /// A redirect to another host was not followed: the request carried credentials.
    pub redirect_withheld: bool,
    pub duration: Duration,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The egress policy refused an address (the caller's: it named it).
    #[error(transparent)]
    Denied(#[from] EgressDenied),
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("connection failed")]
    Connect,
    /// A redirect that cannot be followed (a bad `Location`, too many hops).
    #[error("redirect not followed: {0}")]
    Redirect(String),
    #[error("request failed")]
    Failed,
}

impl Blame for SendError {
    fn fault(&self) -> Fault {
        match self {
            SendError::Denied(_) => Fault::Caller,
            _ => Fault::Peer,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, SendError::Timeout(_) | SendError::Connect)
    }
}

impl SendError {
    /// A machine-readable kind, for metrics and result events.
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::Denied(_) => "egress_denied",
            SendError::Timeout(_) => "timeout",
            SendError::Connect => "connect_error",
            SendError::Redirect(_) => "redirect",
            SendError::Failed => "failed",
        }
    }

    /// What `e` was; its whole chain goes to the debug log (the URL in it masked), never to
    /// the error's text.
    fn of(e: reqwest::Error, timeout: Duration) -> SendError {
        tracing::debug!(error = %error_chain(&e), "outbound request failed");
        if let Some(denied) = Egress::denial(&e) {
            return SendError::Denied(denied.clone());
        }
        if e.is_timeout() {
            SendError::Timeout(timeout)
        } else if e.is_connect() {
            SendError::Connect
        } else {
            SendError::Failed
        }
    }
}

/// The whole error chain, for the debug log; the URL in it masked (its query may hold a key).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = super::url_text::mask_in(&text, url.as_str());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads at most `cap` bytes of `response`'s body; whether there was more.
pub async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The method and body of the hop after a `status` redirect: 303 (and 301/302 after a POST, as
/// browsers do) turn into a body-less GET; 307 and 308 keep both.
fn next_hop(method: &Method, status: StatusCode) -> (Method, bool) {
    match status {
        StatusCode::SEE_OTHER if *method != Method::HEAD => (Method::GET, false),
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND if *method == Method::POST => {
            (Method::GET, false)
        }
        _ => (method.clone(), true),
    }
}

impl Egress {
    /// Sends `request` under the policy with `options` (see the module's documentation).
    pub async fn send(
        &self,
        mut request: OutboundRequest,
        options: &SendOptions,
    ) -> Result<Sent, SendError> {
        let started = Instant::now();
        let deadline = started + options.timeout;
        let credentials = request.carries_credentials();
        let mut redirects = 0u8;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(SendError::Timeout(options.timeout));
            }
            let client = if options.verify_tls {
                &self.client
            } else {
                self.insecure_client()
            };
            self.judge(request.url.as_str())?;
            let mut response = client
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone())
                .body(request.body.clone())
                .timeout(remaining)
                .send()
                .await
                .map_err(|e| SendError::of(e, options.timeout))?;
            let status = response.status();
            let location = status
                .is_redirection()
                .then(|| response.headers().get(reqwest::header::LOCATION))
                .flatten()
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            if let (Some(location), true) = (location, redirects < options.max_redirects) {
                let next = request
                    .url
                    .join(&location)
                    .map_err(|e| SendError::Redirect(format!("Location is not a URL: {e}")))?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(SendError::Redirect(format!("to a {} URL", next.scheme())));
                }
                let same_origin = next.host_str() == request.url.host_str()
                    && next.port_or_known_default() == request.url.port_or_known_default()
                    && next.scheme() == request.url.scheme();
                if credentials && !same_origin {
                    let (body, truncated) = read_capped(&mut response, options.max_response_bytes)
                        .await
                        .map_err(|e| SendError::of(e, options.timeout))?;
                    return Ok(Sent {
                        status,
                        headers: response.headers().clone(),
                        body,
                        truncated,
                        url: request.url,
                        redirects,
                        redirect_withheld: true,
                        duration: started.elapsed(),
                    });
                }
                let (method, keep_body) = next_hop(&request.method, status);
                request.method = method;
                if !keep_body {
                    request.body = Bytes::new();
                    request.headers.remove(reqwest::header::CONTENT_TYPE);
                    request.headers.remove(reqwest::header::CONTENT_LENGTH);
                }
                request.url = next;
                redirects += 1;
                continue;
            }
            let headers = response.headers().clone();
            let (body, truncated) = read_capped(&mut response, options.max_response_bytes)
                .await
                .map_err(|e| SendError::of(e, options.timeout))?;
            return Ok(Sent {
                status,
                headers,
                body,
                truncated,
                url: request.url,
                redirects,
                redirect_withheld: false,
                duration: started.elapsed(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_or_drop_the_method_and_body_as_browsers_do() {
        let cases = [
            (Method::POST, StatusCode::SEE_OTHER, Method::GET, false),
            (Method::POST, StatusCode::FOUND, Method::GET, false),
            (
                Method::POST,
                StatusCode::MOVED_PERMANENTLY,
                Method::GET,
                false,
            ),
            (Method::PUT, StatusCode::FOUND, Method::PUT, true),
            (
                Method::POST,
                StatusCode::TEMPORARY_REDIRECT,
                Method::POST,
                true,
            ),
            (
                Method::POST,
                StatusCode::PERMANENT_REDIRECT,
                Method::POST,
                true,
            ),
            (Method::HEAD, StatusCode::SEE_OTHER, Method::HEAD, true),
        ];
        for (method, status, want, body) in cases {
            assert_eq!(next_hop(&method, status), (want, body), "{method} {status}");
        }
    }

    #[test]
    fn a_request_carries_credentials_in_authorization_a_named_header_or_its_query() {
        let url = Url::parse("https://api.example.com/x").unwrap();
        let mut r = OutboundRequest::new(Method::GET, url);
        assert!(!r.carries_credentials());
        r.headers.insert("x-api-key", "k".parse().unwrap());
        assert!(!r.carries_credentials(), "not named as a credential");
        r.credential_headers
            .push(HeaderName::from_static("x-api-key"));
        assert!(r.carries_credentials());
        let mut q =
            OutboundRequest::new(Method::GET, Url::parse("https://a.example/?key=1").unwrap());
        q.credential_in_query = true;
        assert!(q.carries_credentials());
        let mut a = OutboundRequest::new(Method::GET, Url::parse("https://a.example/").unwrap());
        a.headers
            .insert(reqwest::header::AUTHORIZATION, "Bearer t".parse().unwrap());
        assert!(a.carries_credentials());
    }

    #[test]
    fn failures_say_whose_fault_and_whether_to_retry() {
        assert!(SendError::Timeout(Duration::from_secs(1)).retryable());
        assert!(SendError::Connect.retryable());
        assert!(!SendError::Redirect("x".into()).retryable());
        assert_eq!(SendError::Connect.fault(), Fault::Peer);
        assert_eq!(
            SendError::Timeout(Duration::from_millis(1500)).to_string(),
            "no answer within 1500 ms"
        );
    }
}
