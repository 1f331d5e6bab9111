//! Request bodies: decoded by `Content-Type` (JSON by default, MessagePack, YAML for flows),
//! with errors that name the field.

use actix_web::HttpRequest;
use serde::de::DeserializeOwned;

use super::error::{ApiError, Kind};
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
pub async fn decode_flow(req: &HttpRequest, body: RawBody) -> Result<FlowDoc, ApiError> {
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

/// The body size limit, set once on the app.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A request body read up to [`BodyLimit`]; past it, a 413 in the API's error shape.
pub struct RawBody(pub actix_web::web::Bytes);

impl std::ops::Deref for RawBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A body, or what was read of one that passed the limit (reading stops there).
pub enum Bounded {
    Whole(actix_web::web::Bytes),
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

/// Reads a body up to the app's [`BodyLimit`].
pub async fn read_bounded(
    req: &HttpRequest,
    mut payload: actix_web::dev::Payload,
) -> Result<Bounded, ApiError> {
    use futures_util::StreamExt;
    let limit = req.app_data::<BodyLimit>().map(|l| l.0).unwrap_or(1 << 20);
    let mut buf = actix_web::web::BytesMut::new();
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
}

impl actix_web::FromRequest for RawBody {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            match read_bounded(&req, payload).await? {
                Bounded::Whole(b) => Ok(RawBody(b)),
                Bounded::TooLarge { limit, .. } => Err(Bounded::too_large(limit)),
            }
        })
    }
}
