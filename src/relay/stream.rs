//! The command stream: an adapter holds one authenticated server-sent-events stream per
//! connector (`GET /v1/integrations/connectors/{id}/commands`, a token with `events:write`) and
//! acknowledges what it took (`POST …/commands/ack`). Commands stay in the outbox until
//! acknowledged: each is framed `id: <command_act_id>`, `event: command`, `data: <the webhook
//! body>` and waits for its acknowledgement ([`ACK_WAIT`]) before the next of its conversation
//! leaves; one not acknowledged (the stream closed, the wait ran out) is sent again, same id,
//! on the stream open then. So a stream resumes from the last acknowledged command of each
//! conversation, across reconnects and restarts. A new stream for a connector replaces the one
//! open (which ends). Comments (`: ping`) keep an idle stream alive ([`PING_EVERY`]).
//! Decision: server-sent events rather than WebSocket: one-way frames over plain HTTP
//! (proxies, `curl -N`), resume is the outbox's, acknowledgements are ordinary POSTs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{get, post, web, HttpResponse};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::body::{decode, Body};
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Kind};
use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, RequestTimeout, TooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::auth::Scope;
use crate::connectors::Directory;
use crate::domain::ConnectorKey;
use crate::outbound::outbox::{Attempt, Receipt};

/// How long a command sent on a stream waits for its acknowledgement before it is sent again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// The pause before a command is offered again when no stream is open.
pub const NO_STREAM_RETRY: Duration = Duration::from_secs(1);
/// Frames waiting to be written to one stream at most.
const FRAMES: usize = 256;
/// An idle stream's keep-alive comment.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// Ids one acknowledgement names at most.
const MAX_ACK_IDS: usize = 1024;

/// The streams open, one per connector, and the commands waiting for an acknowledgement.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<ConnectorKey, Open>>,
    waiting: Mutex<HashMap<Uuid, Waiter>>,
    generation: AtomicU64,
}

struct Open {
    generation: u64,
    tx: mpsc::Sender<Bytes>,
}

struct Waiter {
    key: ConnectorKey,
    generation: u64,
    acked: oneshot::Sender<()>,
}

/// One SSE frame.
pub fn frame(id: Option<Uuid>, event: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 64);
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(format!("event: {event}\ndata: ").as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Closes its stream's entry when the response body is dropped (the adapter went away).
struct Closing {
    streams: Arc<Streams>,
    key: ConnectorKey,
    generation: u64,
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.streams.close(&self.key, self.generation);
    }
}

impl Streams {
    pub fn is_open(&self, key: &ConnectorKey) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Opens `key`'s stream, replacing the one open (which ends; what waited on it is sent
    /// again on this one).
    fn open(self: &Arc<Self>, key: &ConnectorKey) -> (Closing, mpsc::Receiver<Bytes>) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(FRAMES);
        let before = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), Open { generation, tx });
        if let Some(before) = before {
            self.forget(key, before.generation);
        }
        let closing = Closing {
            streams: self.clone(),
            key: key.clone(),
            generation,
        };
        (closing, rx)
    }

    fn close(&self, key: &ConnectorKey, generation: u64) {
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            if open.get(key).is_some_and(|o| o.generation == generation) {
                open.remove(key);
            }
        }
        self.forget(key, generation);
    }

    /// Drops the waiters of a stream that ended: their attempts end, to be made again.
    fn forget(&self, key: &ConnectorKey, generation: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, w| !(w.key == *key && w.generation == generation));
    }

    /// Sends `frame` (command `id`) on `key`'s stream and waits for its acknowledgement: one
    /// outbox attempt.
    pub fn offer(
        self: &Arc<Self>,
        key: &ConnectorKey,
        id: Uuid,
        frame: Bytes,
    ) -> BoxFuture<'static, Attempt> {
        let retry = |reason: &str| Attempt::Retry {
            reason: reason.to_owned(),
            retry_after: Some(NO_STREAM_RETRY),
        };
        let (acked, wait) = oneshot::channel();
        {
            let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let Some(o) = open.get(key) else {
                let r = retry("no command stream is open");
                return async move { r }.boxed();
            };
            self.waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    id,
                    Waiter {
                        key: key.clone(),
                        generation: o.generation,
                        acked,
                    },
                );
            if o.tx.try_send(frame).is_err() {
                self.waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                let r = retry("the command stream is full");
                return async move { r }.boxed();
            }
        }
        let streams = self.clone();
        async move {
            match tokio::time::timeout(ACK_WAIT, wait).await {
                Ok(Ok(())) => Attempt::Delivered(Receipt::default()),
                Ok(Err(_)) => retry("the command stream closed before the acknowledgement"),
                Err(_) => {
                    streams
                        .waiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    retry("not acknowledged in time")
                }
            }
        }
        .boxed()
    }

    /// Writes a frame that waits for nothing (a notice) on `key`'s stream; whether one is open
    /// and took it.
    pub fn notify(&self, key: &ConnectorKey, frame: Bytes) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(key).is_some_and(|o| o.tx.try_send(frame).is_ok())
    }

    /// Acknowledges the commands `ids` of `key` waiting on its stream; how many were.
    pub fn ack(&self, key: &ConnectorKey, ids: &[Uuid]) -> usize {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for id in ids {
            if waiting.get(id).is_some_and(|w| w.key == *key) {
                let w = waiting.remove(id).expect("just found");
                n += usize::from(w.acked.send(()).is_ok());
            }
        }
        n
    }
}

/// What the stream routes hold.
pub struct StreamSurface {
    pub directory: Arc<Directory>,
    pub streams: Arc<Streams>,
}

impl StreamSurface {
    /// The connector `id` of the caller's account whose commands come over a stream.
    fn connector(&self, caller: &Caller, id: &str) -> Result<ConnectorKey, ApiError> {
        let account = caller.need(Scope::EventsWrite)?;
        let not_found = || ApiError::new(Kind::NotFound, "not_found", format!("no connector {id}"));
        let id = Uuid::parse_str(id).map_err(|_| not_found())?;
        let view = self.directory.get(id).map_err(|_| not_found())?;
        if view.key.account != *account {
            return Err(not_found());
        }
        if self
            .directory
            .setting(&view.key, super::delivery::STREAM)
            .as_deref()
            != Some("true")
        {
            return Err(ApiError::new(
                Kind::Conflict,
                "no_command_stream",
                format!(
                    "connector {} does not take its commands over a stream: set {} to true",
                    view.key.connector,
                    super::delivery::STREAM
                ),
            )
            .field(format!("settings.{}", super::delivery::STREAM)));
        }
        Ok(view.key)
    }
}

/// Registers the stream's routes.
pub fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(stream).service(ack);
}

/// The stream of a connector's commands.
#[utoipa::path(
    tag = "adapters",
    params(("id" = Uuid, Path, description = "The connector's id")),
    security(("bearer" = ["events:write"])),
    responses(
        (status = 200, description = "Server-sent events: `command` frames (`id:` the command act id, `data:` the command as an outgoing webhook's body) and `: ping` comments", content_type = "text/event-stream", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
#[get("/v1/integrations/connectors/{id}/commands")]
async fn stream(
    surface: web::Data<StreamSurface>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = surface.connector(&caller, &path)?;
    let (closing, rx) = surface.streams.open(&key);
    let ticks = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    // Ends when its frames do (a newer stream replaced it).
    let body =
        futures_util::stream::unfold((rx, ticks, true), |(mut rx, mut ticks, first)| async move {
            if first {
                return Some((Bytes::from_static(b": open\n\n"), (rx, ticks, false)));
            }
            tokio::select! {
                frame = rx.recv() => frame.map(|f| (f, (rx, ticks, false))),
                _ = ticks.tick() => Some((Bytes::from_static(b": ping\n\n"), (rx, ticks, false))),
            }
        })
        .map(move |b| {
            let _ = &closing;
            Ok::<_, Infallible>(b)
        });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Commands acknowledged: taken by the adapter, not sent again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// The command act ids (the frames' `id:`).
    ids: Vec<Uuid>,
}

#[derive(Serialize, ToSchema)]
struct Acked {
    /// How many of the ids were waiting for their acknowledgement (the others were
    /// acknowledged already, or are sent again).
    acknowledged: usize,
}

/// Acknowledges commands the connector's stream carried.
#[utoipa::path(
    tag = "adapters",
    params(("id" = Uuid, Path, description = "The connector's id")),
    request_body(content = AckBody, content_type = "application/json"),
    security(("bearer" = ["events:write"])),
    responses(
        (status = 200, description = "Acknowledged", body = Acked),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[post("/v1/integrations/connectors/{id}/commands/ack")]
async fn ack(
    surface: web::Data<StreamSurface>,
    caller: Caller,
    path: web::Path<String>,
    req: actix_web::HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    // The scope first, then the body (in time), then the connector.
    caller.need(Scope::EventsWrite)?;
    let body: AckBody = decode(&req, &body.read().await?)?;
    let key = surface.connector(&caller, &path)?;
    if body.ids.len() > MAX_ACK_IDS {
        return Err(ApiError::invalid(
            "ids",
            format!("at most {MAX_ACK_IDS} ids at once"),
        ));
    }
    let acknowledged = surface.streams.ack(&key, &body.ids);
    Ok(HttpResponse::Ok().json(Acked { acknowledged }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Idn;

    fn key(c: &str) -> ConnectorKey {
        ConnectorKey {
            account: Idn::known("acme"),
            integration: Idn::known("telegram"),
            connector: Idn::known(c),
        }
    }

    #[tokio::test]
    async fn a_command_is_delivered_once_acknowledged_and_offered_again_when_its_stream_ends() {
        let streams = Arc::new(Streams::default());
        let (bot, id) = (key("bot"), Uuid::now_v7());
        let none = streams
            .offer(&bot, id, frame(Some(id), "command", b"{}"))
            .await;
        assert!(matches!(none, Attempt::Retry { .. }), "{none:?}");

        let (closing, mut rx) = streams.open(&bot);
        let attempt = streams.offer(&bot, id, frame(Some(id), "command", b"{}"));
        let sent = rx.recv().await.unwrap();
        assert!(sent.starts_with(format!("id: {id}\nevent: command\n").as_bytes()));
        assert_eq!(
            streams.ack(&key("other"), &[id]),
            0,
            "another connector's ack"
        );
        assert_eq!(streams.ack(&bot, &[id]), 1);
        assert!(matches!(attempt.await, Attempt::Delivered(_)));

        let again = streams.offer(&bot, id, frame(Some(id), "command", b"{}"));
        drop(closing);
        assert!(matches!(again.await, Attempt::Retry { .. }));
        assert!(!streams.is_open(&bot));
    }

    #[tokio::test]
    async fn a_new_stream_replaces_the_open_one() {
        let streams = Arc::new(Streams::default());
        let bot = key("bot");
        let (first, _rx1) = streams.open(&bot);
        let id = Uuid::now_v7();
        let waiting = streams.offer(&bot, id, frame(Some(id), "command", b"{}"));
        let (_second, _rx2) = streams.open(&bot);
        assert!(matches!(waiting.await, Attempt::Retry { .. }));
        drop(first);
        assert!(
            streams.is_open(&bot),
            "the old stream's end closes not the new one"
        );
    }
}
