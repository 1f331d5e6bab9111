//! The sandbox page in a real headless Chromium, driven over WebDriver (chromedriver +
//! fantoccini), against the real binary with the demo runner: the page connects to the `demo`
//! connector, the demo runner greets on `session_started`, a typed message comes back echoed in
//! an agent bubble, and the daemon lists one live session on `sandbox/demo`.
//!
//! Needs `/usr/bin/chromium` and `chromedriver`; `bash .ci/install-test-deps` installs them.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::daemon::{temp_dir, DaemonProcess};
use common::{eventually_explained, within};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound of every single wait on the browser, chromedriver or the daemon.
const WAIT: Duration = Duration::from_secs(30);
/// Bound of the whole browser part of the test.
const WHOLE: Duration = Duration::from_secs(180);
const MESSAGE: &str = "hello from headless chromium 42";
const GREETING: &str = "Hello! This is Switchboard's demo runner.";
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// `name` on the `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The chromedriver binary; fails the test (never skips it) when the browser is missing.
fn browser_tools() -> PathBuf {
    let chromedriver = on_path("chromedriver");
    let missing: Vec<&str> = [
        (!Path::new(CHROMIUM).is_file()).then_some(CHROMIUM),
        chromedriver.is_none().then_some("chromedriver"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        missing.is_empty(),
        "the sandbox browser test needs chromium and chromedriver, missing: {missing:?}; \
         run `bash .ci/install-test-deps` (as root) to install them"
    );
    chromedriver.unwrap()
}

/// A chromedriver process of this test; killed (with the browser it started) on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port and waits until it accepts connections.
    async fn start(binary: &Path, dir: &Path) -> ChromeDriver {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
            l.local_addr().unwrap().port()
        };
        let log = dir.join("chromedriver.log");
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A process group of its own, so that dropping the guard also ends the browser.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("chromedriver starts");
        let mut driver = ChromeDriver { child, port, log };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (child, log) = (&mut driver.child, &driver.log);
        eventually_explained(
            &format!("chromedriver to listen on {port}"),
            WAIT,
            || {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "chromedriver exited ({status}) before listening on {port}: {}",
                        log_text(log)
                    );
                }
                let up = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
                std::future::ready(up.then_some(()))
            },
            || std::future::ready(log_text(log)),
        )
        .await;
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        log_text(&self.log)
    }
}

/// The text of chromedriver's log at `path`, or nothing (for failure messages).
fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any browser it left behind.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until an element matching the XPath `xpath` is on the page.
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
            format!(
                "status {:?}, chat log {:?}",
                text_of(c, "status").await,
                text_of(c, "log").await
            )
        },
    )
    .await
}

/// The text of the element with id `id`, or nothing (for failure messages).
async fn text_of(c: &Client, id: &str) -> String {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// An XPath test that an element has the CSS class `class`.
fn has_class(class: &str) -> String {
    format!("contains(concat(' ', normalize-space(@class), ' '), ' {class} ')")
}

async fn connect(driver: &ChromeDriver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    // fantoccini's hyper-rustls enables rustls' aws-lc-rs and reqwest enables its ring: with
    // both, rustls cannot pick a default provider by itself. An error means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = ClientBuilder::rustls().expect("rustls initialization");
    within(
        "a WebDriver session",
        WAIT,
        builder.capabilities(caps).connect(&driver.url()),
    )
    .await
    .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", driver.log_text()))
}

/// The chat in the browser; returns the screenshot's path.
/// Chats on the page at `page` (the sandbox URL, with a `#token=` fragment where one is needed).
async fn chat(c: &Client, page: &str, dir: &Path) -> PathBuf {
    within("the sandbox page", WAIT, c.goto(page))
        .await
        .expect("the sandbox page loads");

    // The page lists the running `demo` connector and opened its socket.
    wait_xpath(
        c,
        "the demo connector in the select",
        "//select[@id='connector']/option[@value='demo']",
    )
    .await;
    wait_xpath(
        c,
        "the status `connected to demo`",
        "//span[@id='status' and normalize-space(.)='connected to demo']",
    )
    .await;
    let input = wait_xpath(
        c,
        "the enabled message input",
        "//input[@id='text' and not(@disabled)]",
    )
    .await;

    within("typing", WAIT, input.send_keys(MESSAGE))
        .await
        .expect("type the message");
    let send = c
        .find(Locator::Css("#send:enabled"))
        .await
        .expect("the enabled send button");
    within("sending", WAIT, send.click())
        .await
        .expect("submit the message");

    let user = wait_xpath(
        c,
        "the user's bubble",
        &format!(
            "//div[{}][normalize-space(.)='{MESSAGE}']",
            has_class("user")
        ),
    )
    .await;
    let echo = wait_xpath(
        c,
        "the demo runner's echo",
        &format!(
            "//div[{}][contains(., '(demo) You said: {MESSAGE}')]",
            has_class("agent")
        ),
    )
    .await;
    wait_xpath(
        c,
        "the demo runner's greeting on session_started",
        &format!("//div[{}][contains(., \"{GREETING}\")]", has_class("agent")),
    )
    .await;

    // The user's bubble is on the right of the chat, the agent's on the left.
    let (ux, _, uw, _) = user.rectangle().await.expect("the user's bubble's box");
    let (ax, _, aw, _) = echo.rectangle().await.expect("the agent's bubble's box");
    assert!(
        ux > ax && ux + uw > ax + aw,
        "user bubble at x={ux} w={uw}, agent bubble at x={ax} w={aw}"
    );

    let png = within("a screenshot", WAIT, c.screenshot())
        .await
        .expect("a screenshot");
    assert!(
        png.len() > PNG_MAGIC.len() && png.starts_with(PNG_MAGIC),
        "the screenshot is not a PNG ({} bytes)",
        png.len()
    );
    let path = dir.join("sandbox.png");
    std::fs::write(&path, &png).expect("save the screenshot");
    eprintln!("sandbox screenshot: {}", path.display());
    path
}

#[actix_rt::test]
async fn the_sandbox_page_chats_with_the_demo_runner_in_a_real_browser() {
    let chromedriver = browser_tools();
    let dir = temp_dir("sandbox");
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let daemon = DaemonProcess::start(&dir, &[("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true")]);
    let driver = ChromeDriver::start(&chromedriver, &dir).await;

    let client = connect(&driver, &profile).await;
    let outcome = tokio::time::timeout(WHOLE, chat(&client, &daemon.url("/sandbox"), &dir)).await;
    // Closed whatever happened, so that the browser does not outlive a failure.
    let closed = within("closing the browser", WAIT, client.close()).await;
    let screenshot = outcome.unwrap_or_else(|_| panic!("the chat took longer than {WHOLE:?}"));
    closed.expect("the browser session closes");
    assert!(screenshot.is_file());

    // The daemon holds one live session, of the tab's persona on sandbox/demo.
    let sessions: Vec<Value> = within("the sessions list", WAIT, async {
        let r = daemon
            .client()
            .get(daemon.url("/v1/sessions?connectors=sandbox/*"))
            .send()
            .await
            .expect("GET /v1/sessions");
        assert!(r.status().is_success(), "GET /v1/sessions: {}", r.status());
        r.json().await.expect("a JSON list of sessions")
    })
    .await;
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let s = &sessions[0];
    assert_eq!(s["integration_idn"], "sandbox", "{s}");
    assert_eq!(s["connector_idn"], "demo", "{s}");
    assert_eq!(s["is_active"], true, "{s}");

    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}

/// The page switched to another connector: connected there, and what the API sends to the
/// page's persona on that connector appears in the chat.
async fn switch_and_receive(c: &Client, daemon: &DaemonProcess) {
    within(
        "the sandbox page",
        WAIT,
        c.goto(&format!("{}/sandbox", daemon.base)),
    )
    .await
    .expect("the sandbox page loads");
    wait_xpath(
        c,
        "the status `connected to demo`",
        "//span[@id='status' and normalize-space(.)='connected to demo']",
    )
    .await;
    let select = wait_xpath(
        c,
        "the second connector in the select",
        "//select[@id='connector']/option[@value='second']/..",
    )
    .await;
    within(
        "choosing the second connector",
        WAIT,
        select.select_by_value("second"),
    )
    .await
    .expect("select the second connector");
    // Connected there, input enabled: the old socket's close no longer disconnects the page.
    wait_xpath(
        c,
        "the status `connected to second`",
        "//span[@id='status' and normalize-space(.)='connected to second']",
    )
    .await;
    wait_xpath(
        c,
        "the enabled message input",
        "//input[@id='text' and not(@disabled)]",
    )
    .await;
    // The page shows the conversation it is attached to.
    let who = wait_xpath(
        c,
        "the persona the page is attached to",
        "//span[@id='who' and @data-persona]",
    )
    .await;
    let persona = who
        .attr("data-persona")
        .await
        .expect("the attribute")
        .expect("a persona id");
    // A message sent to that persona on that connector through the API appears.
    let r = daemon
        .client()
        .post(daemon.url("/v1/commands"))
        .json(
            &json!({"v": 1, "integration_idn": "sandbox", "connector_idn": "second",
                      "command_idn": "send_message", "persona_id": persona,
                      "arguments": {"text": "sent through the API"}}),
        )
        .send()
        .await
        .expect("POST /v1/commands");
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    wait_xpath(
        c,
        "the API's message in an agent bubble",
        &format!(
            "//div[{}][normalize-space(.)='sent through the API']",
            has_class("agent")
        ),
    )
    .await;
}

#[actix_rt::test]
async fn the_sandbox_page_switches_connectors_and_shows_what_the_api_sends_its_persona() {
    let chromedriver = browser_tools();
    let dir = temp_dir("sandbox-switch");
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let daemon = DaemonProcess::start(&dir, &[("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true")]);
    daemon
        .run_connector(
            "sandbox",
            json!({"title": "Second chat", "connector_idn": "second"}),
        )
        .await;
    let driver = ChromeDriver::start(&chromedriver, &dir).await;
    let client = connect(&driver, &profile).await;
    let outcome = tokio::time::timeout(WHOLE, switch_and_receive(&client, &daemon)).await;
    let closed = within("closing the browser", WAIT, client.close()).await;
    outcome.unwrap_or_else(|_| panic!("the switch took longer than {WHOLE:?}"));
    closed.expect("the browser session closes");
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}

/// Where the sandbox is not open without a token, the page says it needs one, and works with a
/// token with `events:write` in its URL fragment (which no request carries): its socket opens
/// with a ticket the token bought in a header (the daemon refuses a token in the socket's URL).
#[actix_rt::test]
async fn the_sandbox_page_asks_for_a_token_and_works_with_one_in_its_fragment() {
    let chromedriver = browser_tools();
    let dir = temp_dir("sandbox-token");
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let daemon = DaemonProcess::start(
        &dir,
        &[
            ("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true"),
            ("SWITCHBOARD_SANDBOX__WITHOUT_TOKEN", "false"),
            ("SWITCHBOARD_HTTP__ACCESS_LOG", "true"),
        ],
    );
    let r = daemon
        .client()
        .post(daemon.url("/v1/tokens"))
        .json(&json!({"name": "sandbox page", "scopes": ["events:write"]}))
        .send()
        .await
        .expect("POST /v1/tokens");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let token: Value = r.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let driver = ChromeDriver::start(&chromedriver, &dir).await;
    let client = connect(&driver, &profile).await;
    let outcome = tokio::time::timeout(WHOLE, async {
        within(
            "the sandbox page",
            WAIT,
            client.goto(&daemon.url("/sandbox")),
        )
        .await
        .expect("the sandbox page loads");
        wait_xpath(
            &client,
            "the status asking for a token",
            "//span[@id='status' and contains(., 'needs a token')]",
        )
        .await;
        // A fresh load (not a fragment change of the same document) with the token.
        within("a blank page", WAIT, client.goto("about:blank"))
            .await
            .expect("about:blank");
        chat(
            &client,
            &daemon.url(&format!("/sandbox#token={token}")),
            &dir,
        )
        .await
    })
    .await;
    let closed = within("closing the browser", WAIT, client.close()).await;
    let screenshot = outcome.unwrap_or_else(|_| panic!("the chat took longer than {WHOLE:?}"));
    closed.expect("the browser session closes");
    assert!(screenshot.is_file());
    assert!(
        !daemon.logged(&token[16..]),
        "the token never reaches a log line"
    );
    // The page bought a ticket and its socket opened with it.
    let answered = |route: &str, status: u16| {
        daemon.logs.lock().unwrap().iter().any(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| {
                v["target"] == "access"
                    && v["fields"]["route"] == route
                    && v["fields"]["status"] == status
            })
        })
    };
    assert!(answered("/sandbox/ticket", 200), "a ticket was bought");
    assert!(answered("/sandbox/ws", 101), "the socket opened");
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}

/// An OAuth credential connected from the sandbox page: its Connect button asks the daemon to
/// start the authorization and opens the provider's page (the local OAuth provider of the http
/// tests), which sends that window back to the daemon's callback; the page's row then shows
/// the credential `connected`.
#[actix_rt::test]
async fn the_sandbox_page_connects_an_oauth_credential_with_its_connect_button() {
    const SECRET: &str = "planted-sandbox-oauth-31c9";
    let chromedriver = browser_tools();
    let (prov, provider) = common::oauth_provider::start(SECRET);
    let dir = temp_dir("sandbox-oauth");
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let daemon = DaemonProcess::start(&dir, &[("SWITCHBOARD_SANDBOX__DEMO_RUNNER", "true")]);
    let admin = daemon.client();
    let r = admin
        .post(daemon.url("/v1/credentials"))
        .json(&json!({"name": "CRM", "type": "oauth2", "settings": {
            "client_id": "cid", "client_secret": format!("{SECRET}-client"),
            "authorize_url": format!("{prov}/authorize"), "token_url": format!("{prov}/token"),
            "scopes": "read write"}}))
        .send()
        .await
        .expect("POST /v1/credentials");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin
        .post(daemon.url("/v1/tokens"))
        .json(&json!({"name": "sandbox page",
                      "scopes": ["events:write", "read", "credentials:write"]}))
        .send()
        .await
        .expect("POST /v1/tokens");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let driver = ChromeDriver::start(&chromedriver, &dir).await;
    let client = connect(&driver, &profile).await;
    let row = format!("//li[@id='credential-{id}']");
    let outcome = tokio::time::timeout(WHOLE, async {
        within(
            "the sandbox page",
            WAIT,
            client.goto(&daemon.url(&format!("/sandbox#token={token}"))),
        )
        .await
        .expect("the sandbox page loads");
        wait_xpath(
            &client,
            "the credential's row, not connected",
            &format!("{row}/span[@class='credential-status' and .='not_connected']"),
        )
        .await;
        let connect = wait_xpath(
            &client,
            "the credential's Connect button",
            &format!("{row}/button[@class='connect']"),
        )
        .await;
        within("clicking Connect", WAIT, connect.click())
            .await
            .expect("click Connect");
        wait_xpath(
            &client,
            "the credential's row, connected",
            &format!("{row}/span[@class='credential-status' and .='connected']"),
        )
        .await;
    })
    .await;
    let closed = within("closing the browser", WAIT, client.close()).await;
    outcome.unwrap_or_else(|_| panic!("connecting took longer than {WHOLE:?}"));
    closed.expect("the browser session closes");
    // Through the provider's authorization-code grant, as the API says too.
    assert_eq!(*provider.grants.lock().unwrap(), ["authorization_code"]);
    let r = admin
        .get(daemon.url(&format!("/v1/credentials/{id}")))
        .send()
        .await
        .expect("GET /v1/credentials/{id}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "connected", "{v}");
    assert!(!daemon.logged(SECRET) && !daemon.logged(&token[16..]));
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}
