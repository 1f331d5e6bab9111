//! The embeddable `newo_chat` widget in a real headless Chromium, over WebDriver (chromedriver
//! and fantoccini), against the real binary with the demo runner: a page of another origin (a
//! server of this test) includes `/newo_chat/widget.js`; the widget creates its actor, connects
//! socket.io (the official browser client the daemon serves), sends a `user_message`, and the
//! demo runner's `send_message` reply appears in the chat window.
//!
//! Needs `/usr/bin/chromium` and `chromedriver`; `bash .ci/install-test-deps` installs them.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use common::daemon::{temp_dir, DaemonProcess};
use common::wait::{eventually, eventually_explained, within, PATIENCE};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(30);
const WHOLE: Duration = Duration::from_secs(180);
const MESSAGE: &str = "hello from the widget 7";

/// `name` on the `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The chromedriver binary; fails the test (never skips it) when the browser is missing.
fn browser_tools() -> PathBuf {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "the widget test needs {CHROMIUM}; run `bash .ci/install-test-deps`"
    );
    on_path("chromedriver")
        .expect("the widget test needs chromedriver; run `bash .ci/install-test-deps`")
}

/// A chromedriver process of this test; killed (with its browser) on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    async fn start(binary: &Path, dir: &Path) -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("chromedriver starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        eventually(&format!("chromedriver on {port}"), WAIT, || {
            let up = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            std::future::ready(up.then_some(()))
        })
        .await;
        ChromeDriver { child, port }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &ChromeDriver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = ClientBuilder::rustls().expect("rustls initialization");
    within(
        "a WebDriver session",
        WAIT,
        builder
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port)),
    )
    .await
    .expect("a WebDriver session")
}

/// The socket.io listener's base URL, from the daemon's log.
async fn socket_base(d: &DaemonProcess) -> String {
    eventually("the socket.io listener's address", PATIENCE, || async {
        d.logs.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "socket.io listening")
                .then(|| format!("http://{}", v["fields"]["address"].as_str().unwrap()))
        })
    })
    .await
}

/// Waits until an element matching `xpath` is on the page.
async fn wait_xpath(c: &Client, what: &str, xpath: &str) -> fantoccini::elements::Element {
    eventually_explained(
        what,
        WAIT,
        || async {
            match c.find(Locator::XPath(xpath)).await {
                Ok(e) => Some(e),
                Err(err) if err.is_no_such_element() => None,
                Err(err) => panic!("{what}: {err}"),
            }
        },
        || async {
            match c.find(Locator::Id("newo-chat")).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        },
    )
    .await
}

async fn chat(c: &Client, page: &str) {
    within("the page", WAIT, c.goto(page))
        .await
        .expect("the page loads");
    wait_xpath(
        c,
        "the widget connected",
        "//div[@id='newo-chat-status' and normalize-space(.)='connected']",
    )
    .await;
    let input = wait_xpath(c, "the widget's input", "//input[@id='newo-chat-input']").await;
    input.send_keys(MESSAGE).await.expect("type");
    c.find(Locator::Id("newo-chat-send"))
        .await
        .expect("the send button")
        .click()
        .await
        .expect("send");
    wait_xpath(
        c,
        "the visitor's message",
        &format!("//p[@class='newo-chat-user' and normalize-space(.)='{MESSAGE}']"),
    )
    .await;
    wait_xpath(
        c,
        "the demo runner's reply",
        &format!("//p[@class='newo-chat-agent' and contains(., '(demo) You said: {MESSAGE}')]"),
    )
    .await;
}

#[actix_rt::test]
async fn the_widget_chats_with_the_demo_runner_in_a_real_browser() {
    let chromedriver = browser_tools();
    let dir = temp_dir("newo-chat-widget");
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let d = DaemonProcess::start(&dir, &[("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true")]);
    let flow = json!({"runner": {"kind": "demo"}, "events": [
        {"idn": "user_message", "skill_idn": "Echo", "integration_idn": "newo_chat"}]});
    d.put_flow("Widget", "Echo", &flow).await;
    let socket = socket_base(&d).await;

    // The site's origin is known only once it listens: the page is set after.
    let page = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let p = page.clone();
    let server = HttpServer::new(move || {
        let p = p.clone();
        App::new().default_service(web::to(move || {
            let body = p.lock().unwrap().clone();
            async move { HttpResponse::Ok().content_type("text/html").body(body) }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let origin = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let http = d.client();
    let r = http
        .post(d.url("/v1/integrations/newo_chat/connectors"))
        .json(&json!({"title": "Site", "connector_idn": "site",
                      "settings": [{"idn": "domain", "value": origin}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let secret = v["revealed"][0]["value"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap();
    let s = http
        .post(d.url(&format!("/v1/integrations/connectors/{id}/run")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    *page.lock().unwrap() = format!(
        r#"<!doctype html><html><head><title>Site</title></head><body><h1>A site</h1>
<script src="{}/newo_chat/widget.js" data-client-secret="{secret}" data-socket="{socket}"
 data-external-id="visitor-1" data-name="Vi"></script></body></html>"#,
        d.base
    );

    let driver = ChromeDriver::start(&chromedriver, &dir).await;
    let client = browser(&driver, &profile).await;
    let outcome = tokio::time::timeout(WHOLE, chat(&client, &origin)).await;
    let _ = within("closing the browser", WAIT, client.close()).await;
    outcome.unwrap_or_else(|_| panic!("the chat took longer than {WHOLE:?}"));
    handle.stop(false).await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}
