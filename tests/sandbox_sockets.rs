//! Sandbox sockets against the real binary: a connector stopped closes the sockets open on it
//! (its native hears it), and no other.

mod common;

use std::time::Duration;

use common::daemon::{temp_dir, DaemonProcess};
use common::wait::within;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A sandbox socket on `connector`, opened with the admin token in its `Authorization` header,
/// its `attached` frame read.
async fn open(d: &DaemonProcess, connector: &str) -> TcpStream {
    let mut ws = TcpStream::connect(d.base.trim_start_matches("http://"))
        .await
        .unwrap();
    ws.write_all(
        format!(
            "GET /sandbox/ws?connector_idn={connector}&external_id=u HTTP/1.1\r\nHost: s\r\n\
             Authorization: Bearer {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            d.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(8).any(|w| w == b"attached") {
        let n = within(
            "the socket's attached frame",
            Duration::from_secs(10),
            ws.read(&mut buf),
        )
        .await
        .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    ws
}

/// Reads `ws` until the server's close frame (`0x88`; the frames before are ASCII JSON) or the
/// end of the connection.
async fn closed(ws: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        let n = ws.read(&mut buf).await.unwrap_or(0);
        if n == 0 || buf[..n].contains(&0x88) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_connector_closes_its_sandbox_sockets_and_no_other() {
    let dir = temp_dir("sandbox-sockets");
    let d = DaemonProcess::start(&dir, &[]);
    let chat = d
        .run_connector("sandbox", json!({"title": "Chat", "connector_idn": "chat"}))
        .await;
    d.run_connector(
        "sandbox",
        json!({"title": "Other", "connector_idn": "other"}),
    )
    .await;
    let mut on_chat = open(&d, "chat").await;
    let mut on_other = open(&d, "other").await;

    let r = d
        .client()
        .post(d.url(&format!("/v1/integrations/connectors/{chat}/stop")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    within(
        "the stopped connector's socket closed",
        Duration::from_secs(10),
        closed(&mut on_chat),
    )
    .await;

    // The other connector's socket is open: a ping gets its pong.
    on_other.write_all(&[0x89, 0x80, 0, 0, 0, 0]).await.unwrap();
    within("the other socket's pong", Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while !seen.windows(2).any(|w| w == [0x8A, 0x00]) {
            let n = on_other.read(&mut buf).await.unwrap();
            assert!(n > 0, "the other socket was closed");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
}
