//! Connections between requests. actix-web times a connection's first request head
//! (`http.request_head_timeout_ms`) and a connection that idles (`http.idle_timeout_ms`), but
//! not the head of a later request on a kept-alive connection: its first byte stops the idle
//! timer and nothing times the rest, so a client trickling it would hold the connection for
//! ever. Here every connection gets a [`Watch`] of its requests in progress (from the head to
//! the last byte of the answer: [`Watch::begin`], [`Tracked`]) and a task that shuts the socket
//! down once none has been in progress for [`limit`] (both timeouts together). A request in
//! progress is never cut: its body has its own deadline (`http.body_timeout_ms`), and an answer
//! being written or a WebSocket is the daemon's own doing.

use std::any::Any;
use std::cell::Cell;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Extensions;
use actix_web::web::Bytes;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::config::HttpConfig;

/// How long a connection may go without a request in progress: an idle wait for the next
/// request, then that request's head.
pub fn limit(cfg: &HttpConfig) -> Duration {
    cfg.idle_timeout() + cfg.request_head_timeout()
}

/// The requests in progress on one connection (its worker's thread only).
pub struct Watch {
    open: Cell<usize>,
    idle_since: Cell<Instant>,
    idle: Notify,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            open: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            idle: Notify::new(),
        }
    }

    /// A request's head is in: it is in progress until the [`InProgress`] answered is dropped.
    pub fn begin(watch: Option<&Rc<Watch>>) -> InProgress {
        if let Some(w) = watch {
            w.open.set(w.open.get() + 1);
        }
        InProgress(watch.cloned())
    }

    /// A request's answer is written (or dropped).
    fn end(&self) {
        self.open.set(self.open.get().saturating_sub(1));
        if self.open.get() == 0 {
            self.idle_since.set(Instant::now());
            self.idle.notify_one();
        }
    }
}

/// Kept in the connection's data: dropped with the connection, it ends its guard.
struct Gone(#[allow(dead_code)] oneshot::Sender<()>);

/// The `HttpServer::on_connect` hook: gives a TCP connection its [`Watch`] (in the
/// connection's data, where [`Watch::begin`] finds it) and its guard.
pub fn on_connect(limit: Duration) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |conn, data| {
        let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        // A second handle on the socket, to shut it down with; without one (out of file
        // descriptors) only actix-web's timers watch this connection.
        let Ok(fd) = tcp.as_fd().try_clone_to_owned() else {
            return;
        };
        let watch = Rc::new(Watch::new());
        let (gone, connection_gone) = oneshot::channel();
        data.insert(watch.clone());
        data.insert(Gone(gone));
        actix_web::rt::spawn(guard(
            std::net::TcpStream::from(fd),
            watch,
            connection_gone,
            limit,
        ));
    }
}

/// Shuts `socket` down once no request has been in progress on it for `limit`; ends with the
/// connection.
async fn guard(
    socket: std::net::TcpStream,
    watch: Rc<Watch>,
    mut connection_gone: oneshot::Receiver<()>,
    limit: Duration,
) {
    loop {
        if watch.open.get() > 0 {
            tokio::select! {
                _ = &mut connection_gone => return,
                _ = watch.idle.notified() => continue,
            }
        }
        let due = watch.idle_since.get() + limit;
        tokio::select! {
            _ = &mut connection_gone => return,
            _ = tokio::time::sleep_until(due) => {
                if watch.open.get() == 0 && watch.idle_since.get() + limit <= Instant::now() {
                    tracing::debug!(limit_ms = limit.as_millis() as u64, "connection closed: no request in progress");
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    }
}

/// A request in progress on a watched connection (or on none); dropped, it ends.
pub struct InProgress(Option<Rc<Watch>>);

impl Drop for InProgress {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.end();
        }
    }
}

/// An answer's body that keeps its request in progress until written (or dropped unwritten).
pub struct Tracked<B> {
    body: B,
    request: Option<InProgress>,
}

impl<B> Tracked<B> {
    pub fn new(body: B, request: InProgress) -> Tracked<B> {
        Tracked {
            body,
            request: Some(request),
        }
    }
}

impl<B: MessageBody + Unpin> MessageBody for Tracked<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.body).poll_next(cx);
        if matches!(next, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.request = None;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_shut_down_once_idle_past_the_limit_and_never_while_busy() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let watch = Rc::new(Watch::new());
        let (gone, connection_gone) = oneshot::channel::<()>();
        let limit = Duration::from_secs(10);
        tokio::task::LocalSet::new()
            .run_until(async {
                let request = Watch::begin(Some(&watch));
                let guarded =
                    tokio::task::spawn_local(guard(server, watch.clone(), connection_gone, limit));
                // Busy for three times the limit (on the paused clock): still open.
                tokio::time::sleep(limit * 3).await;
                assert!(
                    !guarded.is_finished(),
                    "shut down while a request was in progress"
                );
                drop(Tracked::new(actix_web::body::BoxBody::new("done"), request));
                assert_eq!(watch.open.get(), 0);
                let idle = Instant::now();
                tokio::time::timeout(limit * 2, guarded)
                    .await
                    .expect("shut down after the limit")
                    .unwrap();
                assert!(idle.elapsed() >= limit, "{:?}", idle.elapsed());
            })
            .await;
        use std::io::Read;
        let mut buf = [0u8; 1];
        assert_eq!(
            (&client).read(&mut buf).unwrap(),
            0,
            "the client sees the end"
        );
        drop(gone);
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_ends_with_its_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (gone, connection_gone) = oneshot::channel::<()>();
        tokio::task::LocalSet::new()
            .run_until(async {
                let guarded = tokio::task::spawn_local(guard(
                    server,
                    Rc::new(Watch::new()),
                    connection_gone,
                    Duration::from_secs(3600),
                ));
                drop(Gone(gone));
                tokio::time::timeout(Duration::from_secs(1), guarded)
                    .await
                    .expect("ended with the connection")
                    .unwrap();
            })
            .await;
    }
}
