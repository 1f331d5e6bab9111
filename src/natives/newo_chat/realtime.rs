//! The socket.io listener of web clients (`newo_chat.listen`), as the Agent Creator snippet
//! connects: `io(BASE, {query: {client_secret, origin, external_id}})`, over WebSocket or
//! long-polling upgraded to it. socketioxide (a tower service, the official protocol) runs under
//! hyper's HTTP/1 server on a runtime of its own (two threads, `switchboard-chat`): the sockets'
//! work never competes with the engine's arbiters, and the operators' listener never serves
//! the public. A connection is admitted by a connect middleware (refused: `connect_error` with
//! `<code>: <reason>`, as the REST API's refusals): the per-IP rate (the `X-Forwarded-For`
//! client behind a trusted proxy), the client secret, the
//! origin (the `origin` query value and any `Origin` header among the connector's domains), a
//! running connector, an actor created for the `external_id`, room for one more of its sockets.
//! Admitted, the socket joins its actor's in the [`super::hub`]. Answers to an `Origin` some
//! connector lists carry CORS headers (long-polling from a page of another origin).

use std::net::{IpAddr, TcpListener};
use std::sync::Arc;

use dashmap::DashMap;
use hyper_util::rt::TokioIo;
use rustc_hash::FxBuildHasher;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Sid;
use socketioxide::SocketIo;
use tokio_util::sync::CancellationToken;

use super::hub::ActorKey;
use super::refusal::ChatRefusal;
use super::Chat;
use crate::domain::PersonaId;
use crate::telemetry::handles;
use crate::telemetry::throttle::Throttle;

/// Worker threads of the sockets' runtime.
const THREADS: usize = 2;
/// Blocking threads of the sockets' runtime, at most: their store reads (an actor at connect,
/// a buffer on reconnect) share the store's one read connection, so more would only wait on
/// its lock, each with a stack (tokio's default, 512, let 10k connects spawn a hundred).
const BLOCKING_THREADS: usize = 2;
/// Packets waiting for one socket, at most; past it the socket is closed (it reconnects and
/// reads its buffer).
const SOCKET_QUEUE: usize = 256;
/// Bytes of a socket's WebSocket read buffer (engineioxide's default: 4 KiB, all resident):
/// clients send only pings and socket.io's connect packet here; a larger frame grows it.
const WS_READ_BUFFER: usize = 1024;

/// The TCP peer of a request (hyper knows none of its own).
#[derive(Clone, Copy)]
struct PeerIp(IpAddr);

/// A refused connection, as its `connect_error` message says it.
struct Refused(ChatRefusal);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code(), self.0)
    }
}

/// Starts serving `listener` on the sockets' runtime, until `shutdown`.
pub fn start(
    listener: TcpListener,
    chat: Arc<Chat>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("switchboard-chat")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("switchboard-chat".into())
        .spawn(move || rt.block_on(serve(listener, chat, shutdown)))?;
    tracing::info!(%address, "socket.io listening");
    Ok(())
}

/// Who may connect, before the socket joins: an error is the socket's `connect_error`.
async fn admit(chat: &Chat, s: &SocketRef) -> Result<ActorKey, ChatRefusal> {
    let parts = s.req_parts();
    if let Some(PeerIp(ip)) = parts.extensions.get::<PeerIp>() {
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        chat.by_ip(*ip, forwarded)?;
    }
    let query = actix_web::web::Query::<Vec<(String, String)>>::from_query(
        parts.uri.query().unwrap_or_default(),
    )
    .map_err(|_| ChatRefusal::invalid("query", "unreadable"))?
    .into_inner();
    let get = |k: &str| {
        query
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let secret =
        get("client_secret").ok_or_else(|| ChatRefusal::invalid("client_secret", "missing"))?;
    let external_id = get("external_id")
        .filter(|e| e.len() <= 128)
        .ok_or_else(|| ChatRefusal::invalid("external_id", "missing or longer than 128 bytes"))?;
    let header = parts
        .headers
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let origin = get("origin").or(header).ok_or(ChatRefusal::NoOrigin)?;
    let key = chat.connector(secret).await?;
    for o in [Some(origin), header].into_iter().flatten() {
        if !chat.allows(&key, o) {
            return Err(ChatRefusal::Origin(o.to_owned()));
        }
    }
    if !chat.running(&key) {
        return Err(ChatRefusal::Stopped);
    }
    let actor = match chat.actor(&key, external_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(ChatRefusal::UnknownActor),
        Err(_) => return Err(ChatRefusal::NoStore),
    };
    let persona = uuid::Uuid::parse_str(&actor.persona)
        .map(PersonaId)
        .map_err(|_| ChatRefusal::UnknownActor)?;
    let actor = (key, persona);
    if chat.hub.sockets(&actor) >= chat.config.sockets_per_actor {
        return Err(ChatRefusal::TooManySockets);
    }
    Ok(actor)
}

/// The request with its URI and headers copied out of hyper's read buffer. Hyper parses them
/// as slices of that buffer (8 KiB); socketioxide keeps a session's first request's parts for
/// the socket's life, which kept the whole buffer resident per socket.
fn detached<B>(req: hyper::Request<B>) -> hyper::Request<B> {
    let (mut parts, body) = req.into_parts();
    let mut headers = hyper::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_str().as_bytes())
            .unwrap_or_else(|_| name.clone());
        let mut copy = hyper::header::HeaderValue::from_bytes(value.as_bytes())
            .unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name, copy);
    }
    parts.headers = headers;
    if let Ok(uri) = hyper::Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    hyper::Request::from_parts(parts, body)
}

async fn serve(listener: TcpListener, chat: Arc<Chat>, shutdown: CancellationToken) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the newo_chat socket.io listener did not start");
            return;
        }
    };
    let (svc, io) = SocketIo::builder()
        .max_buffer_size(SOCKET_QUEUE)
        .ws_read_buffer_size(WS_READ_BUFFER)
        .build_svc();
    // Admitted by the middleware, joined by the handler.
    let admitted: Arc<DashMap<Sid, ActorKey, FxBuildHasher>> = Arc::default();
    let (c, a) = (chat.clone(), admitted.clone());
    let middleware = move |s: SocketRef| {
        let (chat, admitted) = (c.clone(), a.clone());
        async move {
            match admit(&chat, &s).await {
                Ok(actor) => {
                    admitted.insert(s.id, actor);
                    Ok(())
                }
                Err(r) => {
                    handles::rejected(r.code());
                    Err(Refused(r))
                }
            }
        }
    };
    let (c, a) = (chat.clone(), admitted.clone());
    let handler = move |s: SocketRef| {
        let (chat, admitted) = (c.clone(), a.clone());
        async move {
            let Some((_, actor)) = admitted.remove(&s.id) else {
                return;
            };
            let left = chat.clone();
            s.on_disconnect(move |s: SocketRef| {
                let chat = left.clone();
                async move { chat.hub.leave(s.id) }
            });
            chat.hub.join(s, actor).await;
        }
    };
    io.ns("/", handler.with(middleware));
    static ACCEPT: Throttle = Throttle::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if let Some(suppressed) = ACCEPT.allow(Throttle::EVERY) {
                        tracing::warn!(error = %e, suppressed, "socket.io listener: accept failed");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (svc, chat) = (svc.clone(), chat.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = detached(req);
                    req.extensions_mut().insert(PeerIp(peer.ip()));
                    // Long-polling from a page of another origin reads its answers only with
                    // CORS (simple requests: no preflight): for an origin a connector lists.
                    let cors = req
                        .headers()
                        .get(hyper::header::ORIGIN)
                        .filter(|o| o.to_str().is_ok_and(|o| chat.any_allows(o)))
                        .cloned();
                    let answer = hyper::service::Service::call(&svc, req);
                    async move {
                        let mut res = answer.await?;
                        // (socketioxide's service never fails: `Infallible`.)
                        if let Some(origin) = cors {
                            let h = res.headers_mut();
                            h.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                            h.insert(
                                hyper::header::VARY,
                                hyper::header::HeaderValue::from_static("Origin"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
    io.close().await;
}
