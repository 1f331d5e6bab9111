//! Request bodies: decoded by `Content-Type` (JSON by default, MessagePack, YAML for flows),
//! with errors that name the field.

use actix_web::HttpRequest;
use serde::de::DeserializeOwned;

use super::error::{ApiError, Kind};
use crate::wire::envelope::Encoding;

fn content_type(req: &HttpRequest) -> &str {
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

/// A flow document: YAML or JSON.
pub fn decode_flow<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    let ct = content_type(req).split(';').next().unwrap_or("").trim();
    match ct {
        "application/yaml" | "application/x-yaml" | "text/yaml" | "application/json" | "" => {
            let text =
                std::str::from_utf8(body).map_err(|_| ApiError::invalid("body", "not UTF-8"))?;
            serde_yaml_ng::from_str(text).map_err(|e| {
                ApiError::new(Kind::Invalid, "invalid_flow", e.to_string()).field("document")
            })
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

impl actix_web::FromRequest for RawBody {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        use futures_util::StreamExt;
        let limit = req.app_data::<BodyLimit>().map(|l| l.0).unwrap_or(1 << 20);
        let mut payload = payload.take();
        Box::pin(async move {
            let mut buf = actix_web::web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::invalid("body", e.to_string()))?;
                if buf.len() + chunk.len() > limit {
                    return Err(ApiError::new(
                        Kind::TooLarge,
                        "too_large",
                        format!("the body exceeds {limit} bytes"),
                    )
                    .field("body"));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(RawBody(buf.freeze()))
        })
    }
}
