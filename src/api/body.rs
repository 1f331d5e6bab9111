//! Request bodies: read only once the caller's scope allows the request, within a size limit
//! and a deadline ([`Body`]), then decoded by `Content-Type` (JSON by default, MessagePack,
//! YAML for flows), with errors that name the field.

use std::time::Duration;

use actix_web::web::{Bytes, BytesMut};
use actix_web::HttpRequest;
use serde::de::DeserializeOwned;

use crate::api::error::{ApiError, Kind};
use crate::wire::envelope::Encoding;
use crate::wire::FlowDoc;

/// The request's `Content-Type`; JSON when it names none (what the body is read as).
pub fn content_type(req: &HttpRequest) -> &str {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

/// The encoding of an envelope body.
pub fn encoding(req: &HttpRequest) -> Result<Encoding, ApiError> {
    let ct = content_type(req);
    Encoding::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            Kind::UnsupportedMediaType,
            "unsupported_media_type",
            format!("{ct:?}: send application/json or application/msgpack"),
        )
    })
}

/// A JSON (or MessagePack) body.
pub fn decode<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    Ok(encoding(req)?.decode(body)?)
}

/// A flow document (YAML or JSON), parsed on a blocking thread: its bounds are checked in
/// linear time first, and even a document at the bounds never holds an HTTP worker.
pub async fn decode_flow(req: &HttpRequest, body: Bytes) -> Result<FlowDoc, ApiError> {
    let ct = content_type(req).split(';').next().unwrap_or("").trim();
    match ct {
        "application/yaml" | "application/x-yaml" | "text/yaml" | "application/json" | "" => {
            let doc = actix_web::web::block(move || {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| ApiError::invalid("body", "not UTF-8"))?;
                FlowDoc::from_yaml(text).map_err(|e| {
                    ApiError::new(Kind::Invalid, "invalid_flow", e.reason).field(e.field)
                })
            })
            .await??;
            Ok(doc)
        }
        other => Err(ApiError::new(
            Kind::UnsupportedMediaType,
            "unsupported_media_type",
            format!("{other:?}: send application/json or application/yaml"),
        )),
    }
}

/// How bodies are read, set once on the app: at most `max_bytes`, and whole within `timeout`
/// of the request's head (`http.max_body_bytes`, `http.body_timeout_ms`).
#[derive(Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// A request body, not read yet. A handler reads it ([`Body::read`]) only once the caller's
/// token allows the request: a token without the scope is answered 403 at once, whatever is
/// still on the way. Reading stops at [`BodyLimits::max_bytes`] (413) and at the deadline, set
/// when the request's head is in (408): a body trickling in never holds a worker's connection
/// longer than that.
pub struct Body {
    payload: actix_web::dev::Payload,
    limits: BodyLimits,
    deadline: tokio::time::Instant,
}

/// A body, or what was read of one that passed the limit (reading stops there).
pub enum Bounded {
    Whole(Bytes),
    TooLarge { head: Vec<u8>, limit: usize },
}

impl Bounded {
    /// The 413 a body past the limit gets.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            Kind::TooLarge,
            "too_large",
            format!("the body exceeds {limit} bytes"),
        )
        .field("body")
    }
}

impl Body {
    /// The whole body; past the limit a 413, past the deadline a 408.
    pub async fn read(self) -> Result<Bytes, ApiError> {
        match self.read_bounded().await? {
            Bounded::Whole(b) => Ok(b),
            Bounded::TooLarge { limit, .. } => Err(Bounded::too_large(limit)),
        }
    }

    /// The whole body, or its first [`BodyLimits::max_bytes`] when it is larger; past the
    /// deadline a 408.
    pub async fn read_bounded(self) -> Result<Bounded, ApiError> {
        use futures_util::StreamExt;
        let Body {
            mut payload,
            limits,
            deadline,
        } = self;
        let limit = limits.max_bytes;
        let read = async move {
            let mut buf = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::invalid("body", e.to_string()))?;
                if buf.len() + chunk.len() > limit {
                    buf.extend_from_slice(&chunk[..limit - buf.len()]);
                    return Ok(Bounded::TooLarge {
                        head: buf.to_vec(),
                        limit,
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Bounded::Whole(buf.freeze()))
        };
        tokio::time::timeout_at(deadline, read)
            .await
            .unwrap_or_else(|_| Err(Body::timed_out(limits.timeout)))
    }

    /// The 408 of a body that did not arrive in time.
    fn timed_out(timeout: Duration) -> ApiError {
        ApiError::new(
            Kind::RequestTimeout,
            "body_timeout",
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )
        .field("body")
    }
}

impl actix_web::FromRequest for Body {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let limits = req
            .app_data::<BodyLimits>()
            .copied()
            .expect("the body limits are app data");
        std::future::ready(Ok(Body {
            payload: payload.take(),
            limits,
            deadline: tokio::time::Instant::now() + limits.timeout,
        }))
    }
}
