//! A skill runner for tests: an actix-web server on 127.0.0.1:0 that records every invocation
//! POSTed to it and answers with what the test's closure returns.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;
use tokio::sync::mpsc;

/// One POST the runner received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The request's headers (as `standardwebhooks` reads them).
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    pub json: Value,
}

impl Received {
    /// Whether the `standardwebhooks` crate verifies the request with `secret` (`whsec_…`).
    pub fn signed_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .expect("a whsec_ secret")
            .verify(&self.body, &self.headers)
            .is_ok()
    }

    /// The `webhook-signature` header.
    pub fn signature(&self) -> Option<&str> {
        self.headers
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok())
    }
}

type Answer = dyn Fn(&Received) -> (u16, String) + Send + Sync;

pub struct RunnerServer {
    pub base: String,
    pub rx: mpsc::UnboundedReceiver<Received>,
    answer: Arc<Mutex<Arc<Answer>>>,
    handle: actix_web::dev::ServerHandle,
    /// POSTs that arrived, answered or not yet.
    arrived: Arc<std::sync::atomic::AtomicUsize>,
}

impl RunnerServer {
    /// Starts the server; `answer` decides each response (status, JSON body).
    pub fn start(
        answer: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> RunnerServer {
        Self::start_slow(std::time::Duration::ZERO, answer)
    }

    /// [`RunnerServer::start`], each answer sent `delay` after its request arrived (requests
    /// are served concurrently, as a real runner's would be).
    pub fn start_slow(
        delay: std::time::Duration,
        answer: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> RunnerServer {
        let (tx, rx) = mpsc::unbounded_channel();
        let answer: Arc<Mutex<Arc<Answer>>> = Arc::new(Mutex::new(Arc::new(answer)));
        let a = answer.clone();
        let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = arrived.clone();
        let server = HttpServer::new(move || {
            let tx = tx.clone();
            let a = a.clone();
            let count = count.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let tx = tx.clone();
                let a = a.clone();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let r = Received {
                        path: req.path().to_owned(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (
                                    reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes())
                                        .unwrap(),
                                    reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                                )
                            })
                            .collect(),
                        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        body: body.to_vec(),
                    };
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let f = a.lock().unwrap().clone();
                    let (status, text) = f(&r);
                    let _ = tx.send(r);
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .content_type("application/json")
                        .body(text)
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        RunnerServer {
            base: format!("http://{addr}"),
            rx,
            answer,
            handle,
            arrived,
        }
    }

    /// How many POSTs arrived so far (a slow runner's before it answers them).
    pub fn arrived(&self) -> usize {
        self.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Changes how the runner answers from now on.
    pub fn answer_with(&self, answer: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static) {
        *self.answer.lock().unwrap() = Arc::new(answer);
    }

    /// The next POST, waiting up to 30 s.
    pub async fn next(&mut self) -> Received {
        super::wait::within(
            "a POST to the runner",
            std::time::Duration::from_secs(30),
            self.rx.recv(),
        )
        .await
        .expect("runner server open")
    }
}

impl Drop for RunnerServer {
    fn drop(&mut self) {
        let h = self.handle.clone();
        actix_rt::spawn(async move { h.stop(false).await });
    }
}

/// `{"v":1,"outcome":"completed","commands":[...]}`.
pub fn completed(commands: Value) -> String {
    serde_json::json!({"v": 1, "outcome": "completed", "commands": commands}).to_string()
}

/// The value of argument `name` of an invocation's `event`, in either wire form (a list of
/// `{name, value}` or a `{name: value}` map); `None` when it has none.
pub fn argument(event: &Value, name: &str) -> Option<String> {
    let args = &event["arguments"];
    args.as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .map(|x| &x["value"])
        .unwrap_or(&args[name])
        .as_str()
        .map(str::to_owned)
}
