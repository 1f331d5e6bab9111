//! Slow clients against the real binary, over raw TCP: a token without the scope a route needs
//! is answered 403 before its body is read, however slowly the body trickles in; a body that
//! does not arrive within `http.body_timeout_ms` is cut off (408, or the connection closed),
//! on every route that takes one, many connections at once; a request head that does not
//! arrive within `http.request_head_timeout_ms`, and a connection idle past
//! `http.idle_timeout_ms`, are closed; so is a kept-alive connection whose next head trickles
//! (actix-web times the first head only), but not a quiet WebSocket.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{temp_dir, DaemonProcess};
use common::routes::every_route;
use common::{call, within};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `Content-Length` every trickled body announces: at one byte per [`TICK`] it would take
/// minutes to arrive.
const ANNOUNCED: usize = 4000;
const TICK: Duration = Duration::from_millis(50);

/// How a trickled request ended.
#[derive(Debug)]
struct Trickled {
    /// The answer's status, or `None` when the connection closed without one.
    status: Option<u16>,
    /// Bytes of the body (or of the head, for a head trickled) sent by then.
    sent: usize,
    elapsed: Duration,
}

/// Opens a connection to `d`, sends `head` whole, then `rest` one byte per [`TICK`], until an
/// answer's status line comes back or the connection closes (or `rest` runs out: then it waits
/// for either).
async fn trickle(d: &DaemonProcess, head: &str, rest: &[u8]) -> Trickled {
    trickle_on(connect(d).await, head, rest).await
}

async fn connect(d: &DaemonProcess) -> TcpStream {
    TcpStream::connect(d.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// [`trickle`] on a connection already open.
async fn trickle_on(stream: TcpStream, head: &str, rest: &[u8]) -> Trickled {
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    wr.write_all(head.as_bytes()).await.unwrap();
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => {
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        answer.extend_from_slice(&buf[..n]);
                        if answer.windows(2).any(|w| w == b"\r\n") {
                            break;
                        }
                    }
                }
            }
            _ = tick.tick(), if sent < rest.len() => {
                // A write refused (the daemon closed its side) ends nothing: the read says why.
                if wr.write_all(&rest[sent..=sent]).await.is_ok() {
                    sent += 1;
                }
            }
        }
    }
    let status = std::str::from_utf8(&answer)
        .ok()
        .and_then(|t| t.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    Trickled {
        status,
        sent,
        elapsed: started.elapsed(),
    }
}

/// The head of `method path` with `token` and a JSON body of [`ANNOUNCED`] bytes to come.
fn head(method: &str, path: &str, token: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: switchboard\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {ANNOUNCED}\r\n\r\n"
    )
}

/// The routes that take a body, as `(method, path)`.
fn body_routes() -> Vec<(&'static str, String)> {
    let nil = uuid::Uuid::nil().to_string();
    every_route(&nil, &nil)
        .into_iter()
        .filter(|(_, _, body)| body.is_some())
        .map(|(m, p, _)| (m, p))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_scope_is_refused_before_the_body_is_read() {
    let dir = temp_dir("slow-scope");
    let d = DaemonProcess::start(&dir, &[]);
    let reader = d.account_token("reader", &["read"]).await;
    let routes = body_routes();
    assert!(routes.len() >= 10, "{routes:?}");
    let body = vec![b' '; ANNOUNCED];
    for (method, path) in routes {
        // The whole body would take minutes: the answer must not wait for it.
        let t = within(
            &format!("the answer to {method} {path} before its body"),
            Duration::from_secs(20),
            trickle(&d, &head(method, &path, &reader), &body),
        )
        .await;
        assert_eq!(t.status, Some(403), "{method} {path}: {t:?}");
        assert!(t.sent < ANNOUNCED, "{method} {path}: {t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_body_timeout_is_cut_off_on_every_route() {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let dir = temp_dir("slow-body");
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_HTTP__BODY_TIMEOUT_MS", "1500")]);
    let body = vec![b' '; ANNOUNCED];
    // Every route that takes a body, three connections each, all at once, with a token that
    // may do everything.
    let heads: Vec<(String, String)> = body_routes()
        .into_iter()
        .flat_map(|(m, p)| {
            let h = head(m, &p, &d.token);
            std::iter::repeat_n((format!("{m} {p}"), h), 3)
        })
        .collect();
    let ended = within(
        "every trickled body cut off",
        Duration::from_secs(30),
        futures_util::future::join_all(heads.iter().map(|(name, h)| {
            let (d, body) = (&d, &body);
            async move { (name, trickle(d, h, body).await) }
        })),
    )
    .await;
    for (name, t) in ended {
        assert!(
            matches!(t.status, Some(408) | None),
            "{name}: 408 or closed: {t:?}"
        );
        assert!(t.sent < ANNOUNCED, "{name}: {t:?}");
        assert!(
            t.elapsed >= TIMEOUT - TICK && t.elapsed < TIMEOUT + Duration::from_secs(5),
            "{name}: cut off after {:?}, the timeout is {TIMEOUT:?}",
            t.elapsed
        );
    }
    // The daemon serves on.
    let (s, _) = call(&d.client(), "GET", d.url("/v1/flows"), None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_and_an_idle_connection_are_closed() {
    let dir = temp_dir("slow-head");
    let d = DaemonProcess::start(
        &dir,
        &[
            ("SWITCHBOARD_HTTP__REQUEST_HEAD_TIMEOUT_MS", "1000"),
            ("SWITCHBOARD_HTTP__IDLE_TIMEOUT_MS", "1000"),
        ],
    );
    // A head trickled in, header by header byte: 408 or closed after about a second.
    let rest = "X-Slow: ".repeat(500);
    let t = within(
        "the slow head cut off",
        Duration::from_secs(20),
        trickle(&d, "GET /healthz HTTP/1.1\r\nHost: s\r\n", rest.as_bytes()),
    )
    .await;
    assert!(matches!(t.status, Some(408) | None), "{t:?}");
    assert!(t.sent < rest.len(), "{t:?}");
    // (actix-web's clock for these two timeouts ticks every half second.)
    assert!(
        t.elapsed < Duration::from_secs(3),
        "the default (5 s) or none: {t:?}"
    );

    // A connection that asked once and then says nothing is closed after the idle timeout.
    let mut stream = connect(&d).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: s\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let closed = within(
        "the idle connection closed",
        Duration::from_secs(20),
        async {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        },
    )
    .await;
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        closed >= Duration::from_millis(400) && closed < Duration::from_secs(3),
        "closed after {closed:?}, the idle timeout is 1 s"
    );
}

/// Sends `GET /healthz` on `stream` and reads its whole answer (a JSON object).
async fn healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: s\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"}") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_head_trickled_on_a_kept_alive_connection_is_cut_and_a_websocket_is_not() {
    let dir = temp_dir("slow-next-head");
    let d = DaemonProcess::start(
        &dir,
        &[
            ("SWITCHBOARD_HTTP__REQUEST_HEAD_TIMEOUT_MS", "1000"),
            ("SWITCHBOARD_HTTP__IDLE_TIMEOUT_MS", "1000"),
        ],
    );
    d.run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    // A sandbox socket, quiet from now on.
    let mut ws = connect(&d).await;
    ws.write_all(
        format!(
            "GET /sandbox/ws?connector_idn=chat&external_id=u HTTP/1.1\r\nHost: s\r\n\
             Authorization: Bearer {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            d.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = ws.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // One request answered, then the next one's head a byte at a time: the idle timer stopped
    // at its first byte and actix-web times no later head, yet the connection is cut once no
    // request was in progress for both timeouts (2 s).
    let mut slow = connect(&d).await;
    healthz(&mut slow).await;
    let rest = "X-Slow: ".repeat(500);
    let t = within(
        "the kept-alive connection with a trickled head cut",
        Duration::from_secs(20),
        trickle_on(slow, "GET /healthz HTTP/1.1\r\n", rest.as_bytes()),
    )
    .await;
    assert!(matches!(t.status, Some(408) | None), "{t:?}");
    assert!(
        t.elapsed >= Duration::from_millis(1000) && t.elapsed < Duration::from_secs(6),
        "{t:?}"
    );

    // The socket, quiet all that time, is still open: a ping gets its pong.
    ws.write_all(&[0x89, 0x80, 0, 0, 0, 0]).await.unwrap();
    within("the pong", Duration::from_secs(10), async {
        let mut seen = Vec::new();
        while !seen.windows(2).any(|w| w == [0x8A, 0x00]) {
            let n = ws.read(&mut buf).await.unwrap();
            assert!(n > 0, "the socket was closed");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;

    // And a kept-alive connection used at the pace of its client goes on.
    let mut steady = connect(&d).await;
    for _ in 0..3 {
        healthz(&mut steady).await;
    }
}
