//! Starts the real `switchboard` binary on 127.0.0.1:0 in a directory of its own, reads the
//! bound address from its JSON logs, and stops it (SIGKILL for crash tests; SIGTERM with
//! `DaemonProcess::terminate`, in `common/mod.rs`). Built by [`DaemonProcess::builder`]; sets
//! up connectors and flows over its API. The benches include this file alone: it uses nothing
//! else of `common`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

pub struct DaemonProcess {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The admin token the first start wrote beside the database.
    pub token: String,
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    dir
}

/// How to start a daemon: its directory and environment overrides. Starting leaves the builder
/// as it was, so a test restarts the daemon (after `kill9`) with the same settings.
#[derive(Clone)]
pub struct DaemonBuilder {
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// Another build of the binary (the benches compare with an earlier commit's).
    binary: Option<PathBuf>,
}

impl DaemonBuilder {
    /// Runs `binary` instead of the one this crate built.
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// One more environment variable, over the defaults and what came before.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// More environment variables, in order.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// `switchboard serve` with its store, key and flows under the directory, JSON logs,
    /// egress to 127.0.0.1 allowed (the tests' runners listen there; the default denies it),
    /// and the environment overrides.
    fn command(&self) -> Command {
        let dir = &self.dir;
        let mut cmd = Command::new(
            self.binary
                .clone()
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_switchboard").into()),
        );
        cmd.arg("serve")
            .current_dir(dir)
            .env("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD_STORE__PATH", dir.join("switchboard.db"))
            .env(
                "SWITCHBOARD_STORE__SECRET_KEY_FILE",
                dir.join("switchboard.key"),
            )
            .env("SWITCHBOARD_FLOWS__DIR", dir.join("flows"))
            .env("SWITCHBOARD_LOG__FORMAT", "json")
            .env("SWITCHBOARD_LOG__LEVEL", "info")
            .env("SWITCHBOARD_HTTP__SHUTDOWN_TIMEOUT_MS", "2000");
        if self.binary.is_none() {
            // (An earlier build may not know the key.)
            cmd.env("SWITCHBOARD_EGRESS__ALLOW", r#"["127.0.0.1/32"]"#);
            // The web chat's socket.io listener on a free port too (its default is fixed).
            cmd.env("SWITCHBOARD_NEWO_CHAT__LISTEN", "127.0.0.1:0");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a daemon that is expected to stop by itself (refusing to start) and returns its
    /// exit status and output.
    pub fn run_to_exit(&self) -> Output {
        self.command()
            .stdin(Stdio::null())
            .output()
            .expect("the switchboard binary runs")
    }

    /// Starts the daemon and waits until it listens.
    pub fn start(&self) -> DaemonProcess {
        let mut cmd = self.command();
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the switchboard binary starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["fields"]["message"] == "listening" {
                        let _ = tx.send(
                            v["fields"]["address"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        );
                    }
                }
                l.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("the daemon did not start: {:#?}", logs.lock().unwrap());
            }
        };
        // (A binary from before tokens existed writes none.)
        let token = match std::fs::read_to_string(self.dir.join("admin.token")) {
            Ok(t) => t.trim().to_owned(),
            Err(_) if self.binary.is_some() => String::new(),
            Err(e) => panic!("the first start wrote no admin.token beside the database: {e}"),
        };
        DaemonProcess {
            child,
            base: format!("http://{addr}"),
            dir: self.dir.clone(),
            logs,
            token,
        }
    }
}

impl DaemonProcess {
    /// A daemon with its store, key and flows under `dir`.
    pub fn builder(dir: &Path) -> DaemonBuilder {
        DaemonBuilder {
            dir: dir.to_owned(),
            env: Vec::new(),
            binary: None,
        }
    }

    /// Starts the daemon with its store, key and flows under `dir`, plus `env` overrides.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> DaemonProcess {
        DaemonProcess::builder(dir)
            .envs(env.iter().copied())
            .start()
    }

    /// An HTTP client that sends the admin token with every request.
    pub fn client(&self) -> reqwest::Client {
        bearer_client(&self.token)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The Prometheus exposition from `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics body")
    }

    /// The value of the unlabelled series `name` in `/metrics`: `None` while the daemon does
    /// not answer or does not export it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let m = reqwest::get(self.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let prefix = format!("{name} ");
        m.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn hup(&self) {
        signal(&self.child, "HUP");
    }

    /// Whether any log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for DaemonProcess {
    /// Stops the daemon; a failing test keeps its log beside its store (`daemon.log`).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let path = self.dir.join("daemon.log");
            let lines = self.logs.lock().map(|l| l.join("\n")).unwrap_or_default();
            if std::fs::write(&path, lines).is_ok() {
                eprintln!("the daemon's log: {}", path.display());
            }
        }
    }
}

/// An HTTP client that sends `token` as `Authorization: Bearer` with every request.
pub fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a token is a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("the client builds")
}

/// Sends `SIG{sig}` to `child`.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

impl DaemonProcess {
    /// Creates a connector of `integration` over the API (`body`: title, connector_idn,
    /// settings) and runs it; returns its id.
    pub async fn run_connector(&self, integration: &str, body: Value) -> String {
        let http = self.client();
        let r = http
            .post(self.url(&format!("/v1/integrations/{integration}/connectors")))
            .json(&body)
            .send()
            .await
            .expect("POST a connector");
        let s = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let s = http
            .post(self.url(&format!("/v1/integrations/connectors/{id}/run")))
            .send()
            .await
            .expect("run the connector")
            .status();
        assert_eq!(s, StatusCode::OK);
        id
    }

    /// Creates account `idn` (unless it exists) and a token of it with `scopes`; answers the
    /// token's text.
    pub async fn account_token(&self, idn: &str, scopes: &[&str]) -> String {
        let admin = self.client();
        let s = admin
            .post(self.url("/v1/accounts"))
            .json(&serde_json::json!({"idn": idn}))
            .send()
            .await
            .expect("POST an account")
            .status();
        assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT, "{s}");
        let r = admin
            .post(self.url("/v1/tokens"))
            .json(&serde_json::json!({"account": idn, "name": format!("{idn} test"), "scopes": scopes}))
            .send()
            .await
            .expect("POST a token");
        let s = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// Puts the flow `agent`/`flow` over the API; answers the runner secret the answer
    /// shows (a webhook-run flow's first PUT).
    pub async fn put_flow(&self, agent: &str, flow: &str, body: &Value) -> Option<String> {
        let r = self
            .client()
            .put(self.url(&format!("/v1/flows/{agent}/{flow}")))
            .json(body)
            .send()
            .await
            .expect("PUT a flow");
        let s = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(s, StatusCode::OK, "{v}");
        v["runner_secret"].as_str().map(str::to_owned)
    }
}

/// Runs `switchboard check` on a config naming `dir/flows`, with `extra` config lines; answers
/// whether it passed and what it wrote to stderr.
pub fn check_with(dir: &Path, extra: &str) -> (bool, String) {
    let config = dir.join("check.toml");
    std::fs::write(
        &config,
        format!(
            "[flows]\ndir = {:?}\n{extra}",
            dir.join("flows").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Resident memory of process `pid` (`VmRSS` of its `/proc/<pid>/status`), in bytes; panics
/// naming the process when it cannot be read (a gone process has no figure, not 0).
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("the status of process {pid}: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for process {pid}"));
    kib * 1024
}
