//! Under systemd (`Type=notify`) the daemon says `READY=1` once it listens and `STOPPING=1`
//! when it drains: here the notify socket is a datagram socket of the test's.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::daemon::{temp_dir, DaemonProcess};

#[actix_rt::test]
async fn the_daemon_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = temp_dir("sd-notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let d = DaemonProcess::builder(&dir)
        .env("NOTIFY_SOCKET", path.to_string_lossy())
        .start();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // It listened before it said so.
    let r = reqwest::get(d.url("/healthz")).await.unwrap();
    assert!(r.status().is_success());
    let status = d.terminate().await;
    assert!(status.success());
    let n = socket.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    let stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
}
