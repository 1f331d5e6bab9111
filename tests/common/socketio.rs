//! The official Node `socket.io-client` (4.8.x, from npm) driven from a test: `driver.js`
//! opens tabs and reports what each receives. Needs `node` and the client installed in
//! `tests/fixtures/socketio/node_modules` (`bash .ci/install-test-deps`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::wait::within;

/// How long a report may take.
const WAIT: Duration = Duration::from_secs(30);

/// The socket.io fixture's directory; fails the test (never skips it) when it is not installed.
pub fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/socketio");
    assert!(
        dir.join("node_modules/socket.io-client/package.json").is_file(),
        "the newo_chat tests need node and socket.io-client in {}; run `bash .ci/install-test-deps`",
        dir.display()
    );
    dir
}

/// The Node process driving official socket.io clients (`driver.js`), one per test.
pub struct Node {
    child: Child,
    stdin: ChildStdin,
    reports: mpsc::UnboundedReceiver<Value>,
    /// Reports read but not asked for yet.
    seen: Vec<Value>,
}

/// Runs `node <node_args> <script>` in the fixture with `env`: its stdin, and each JSON line
/// it prints as a report (the driver here, the webchat bench's load and baseline scripts).
pub fn spawn(
    script: &str,
    node_args: &[&str],
    env: &[(&str, &str)],
) -> (Child, ChildStdin, mpsc::UnboundedReceiver<Value>) {
    let mut child = Command::new("node")
        .args(node_args)
        .arg(script)
        .current_dir(fixture())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (bash .ci/install-test-deps)");
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let (tx, reports) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (child, stdin, reports)
}

impl Node {
    pub fn start() -> Node {
        let (child, stdin, reports) = spawn("driver.js", &[], &[]);
        Node {
            child,
            stdin,
            reports,
            seen: Vec::new(),
        }
    }

    pub fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Opens socket `tab` at `base` with the client's `options`.
    pub fn connect(&mut self, tab: &str, base: &str, options: Value) {
        self.send(json!({"op": "connect", "tab": tab, "url": base, "options": options}));
    }

    pub fn close(&mut self, tab: &str) {
        self.send(json!({"op": "close", "tab": tab}));
    }

    /// The next report of `tab` that `pick` takes, in arrival order.
    pub async fn next_where(
        &mut self,
        tab: &str,
        what: &str,
        pick: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.seen.iter().position(|r| r["tab"] == tab && pick(r)) {
            return self.seen.remove(i);
        }
        loop {
            let r = within(what, WAIT, self.reports.recv())
                .await
                .expect("the node driver runs");
            if r["tab"] == tab && pick(&r) {
                return r;
            }
            self.seen.push(r);
        }
    }

    /// The next report of `tab` but upgrades (`connect`, `connect_error`, `event`, …).
    pub async fn next(&mut self, tab: &str) -> Value {
        self.next_where(tab, &format!("a report of socket {tab}"), |r| {
            r["type"] != "upgrade"
        })
        .await
    }

    /// The next `count` events `tab` received.
    pub async fn events(&mut self, tab: &str, count: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < count {
            let r = self
                .next_where(
                    tab,
                    &format!("event {} of socket {tab}", out.len() + 1),
                    |r| r["type"] == "event",
                )
                .await;
            out.push(r);
        }
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
