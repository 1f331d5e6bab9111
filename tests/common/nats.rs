//! A real `nats-server` with JetStream for one test: a free loopback port, a storage directory
//! of its own, stopped (and restartable) by the test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

fn binary() -> PathBuf {
    for p in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("nats-server is not installed: run `bash .ci/install-test-deps`");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    pub fn start(dir: &Path) -> NatsServer {
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            dir: dir.join("nats"),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let child = Command::new(binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// The daemon's environment for this server.
    pub fn daemon_env(&self) -> Vec<(String, String)> {
        vec![
            ("SWITCHBOARD_TRANSPORT__KIND".into(), "nats".into()),
            (
                "SWITCHBOARD_TRANSPORT__NATS__URLS".into(),
                format!("[\"{}\"]", self.url()),
            ),
        ]
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A message of invocations that holds exactly one (a test that sends one event at a time).
pub struct OneInvocation {
    pub value: switchboard::wire::invocation::InvocationWire,
    pub batch: switchboard::transport::client::Delivered<
        switchboard::wire::invocation::InvocationBatchWire,
    >,
}

impl OneInvocation {
    pub async fn ack(&self) -> Result<(), switchboard::transport::client::ClientError> {
        self.batch.ack().await
    }
}

/// The next message of `consumer` within `wait`, checked to hold one invocation.
pub async fn next_invocation(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    wait: Duration,
) -> Result<Option<OneInvocation>, switchboard::transport::client::ClientError> {
    let Some(batch) =
        switchboard::transport::client::Client::next_invocations(consumer, wait).await?
    else {
        return Ok(None);
    };
    assert_eq!(
        batch.value.invocations.len(),
        1,
        "one event at a time makes one invocation per message"
    );
    Ok(Some(OneInvocation {
        value: batch.value.invocations[0].clone(),
        batch,
    }))
}

/// A runner's answer: `invocation_id` completed, with no commands.
pub fn completed(invocation_id: uuid::Uuid) -> switchboard::wire::invocation::ResultWire {
    switchboard::wire::invocation::ResultWire {
        v: 1,
        invocation_id: Some(invocation_id),
        outcome: switchboard::wire::invocation::ResultOutcome::Completed,
        reason: None,
        commands: vec![],
    }
}
