//! The outbound toolkit against a real HTTP server on loopback: per-use options (timeout,
//! response cap, redirects followed hop by hop and never to another host with credentials) and
//! the egress policy judging every hop.

mod common;

use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::{Method, StatusCode, Url};
use switchboard::outbound::{Egress, EgressPolicy, OutboundRequest, SendError, SendOptions};

/// A server on 127.0.0.1:0 with the routes the cases need; answers its base URL.
fn server() -> String {
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/echo",
                web::to(|req: HttpRequest, body: web::Bytes| async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned();
                    HttpResponse::Ok().body(format!(
                        "{} {} body={} auth={auth}",
                        req.method(),
                        req.uri(),
                        body.len()
                    ))
                }),
            )
            .route(
                "/to",
                web::to(|req: HttpRequest| async move {
                    let q = req.query_string();
                    let (status, location) = q.split_once('&').unwrap_or(("302", q));
                    let status = status.trim_start_matches("s=").parse::<u16>().unwrap();
                    let location = location.trim_start_matches("l=").replace("%3A", ":");
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .insert_header(("location", location))
                        .finish()
                }),
            )
            .route(
                "/loop",
                web::to(|| async {
                    HttpResponse::Found()
                        .insert_header(("location", "/loop"))
                        .finish()
                }),
            )
            .route(
                "/big",
                web::to(|| async { HttpResponse::Ok().body(vec![b'x'; 100_000]) }),
            )
            .route(
                "/slow",
                web::to(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    HttpResponse::Ok().finish()
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    format!("http://{addr}")
}

fn egress() -> Egress {
    Egress::new(EgressPolicy::new(
        EgressPolicy::parse_allow(["127.0.0.1/32", "::1/128"]).unwrap(),
    ))
}

fn request(method: Method, url: &str) -> OutboundRequest {
    OutboundRequest::new(method, Url::parse(url).unwrap())
}

fn follow(n: u8) -> SendOptions {
    SendOptions {
        max_redirects: n,
        ..SendOptions::default()
    }
}

fn text(sent: &switchboard::outbound::Sent) -> String {
    String::from_utf8_lossy(&sent.body).into_owned()
}

#[actix_rt::test]
async fn redirects_are_followed_hop_by_hop_as_asked() {
    let base = server();
    let e = egress();
    // 0 redirects: the 3xx is the answer.
    let r = e
        .send(
            request(Method::GET, &format!("{base}/to?s=302&l=/echo")),
            &follow(0),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.redirects), (StatusCode::FOUND, 0));
    // 303 after a POST: a body-less GET.
    let mut post = request(Method::POST, &format!("{base}/to?s=303&l=/echo"));
    post.body = "hello".into();
    let r = e.send(post, &follow(5)).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(text(&r), "GET /echo body=0 auth=-");
    assert_eq!(r.redirects, 1);
    // 307 keeps the method and the body.
    let mut post = request(Method::POST, &format!("{base}/to?s=307&l=/echo"));
    post.body = "hello".into();
    let r = e.send(post, &follow(5)).await.unwrap();
    assert_eq!(text(&r), "POST /echo body=5 auth=-");
    // A loop stops at the limit, answered as the last 3xx.
    let r = e
        .send(request(Method::GET, &format!("{base}/loop")), &follow(3))
        .await
        .unwrap();
    assert_eq!((r.status, r.redirects), (StatusCode::FOUND, 3));
}

#[actix_rt::test]
async fn credentials_never_follow_a_redirect_to_another_host() {
    let base = server();
    let port = base.rsplit(':').next().unwrap();
    let e = egress();
    let other = format!("http://localhost:{port}/echo");
    let same = format!("{base}/to?s=302&l=/echo");
    let to_other = format!("{base}/to?s=302&l={}", other.replace(':', "%3A"));
    let with_auth = |url: &str| {
        let mut r = request(Method::GET, url);
        r.headers.insert(
            reqwest::header::AUTHORIZATION,
            "Bearer planted-secret".parse().unwrap(),
        );
        r
    };
    // Same host: followed, credentials kept.
    let r = e.send(with_auth(&same), &follow(5)).await.unwrap();
    assert_eq!(text(&r), "GET /echo body=0 auth=Bearer planted-secret");
    // Another host (localhost is not 127.0.0.1 by name): withheld, the 3xx answered.
    let r = e.send(with_auth(&to_other), &follow(5)).await.unwrap();
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.redirect_withheld);
    // Without credentials the same redirect is followed (localhost resolves to an allowed
    // loopback address).
    let r = e
        .send(request(Method::GET, &to_other), &follow(5))
        .await
        .unwrap();
    assert_eq!((r.status, r.redirects), (StatusCode::OK, 1), "{}", text(&r));
    assert!(!r.redirect_withheld);
}

#[actix_rt::test]
async fn every_hop_is_judged_by_the_egress_policy() {
    let base = server();
    let e = egress();
    let to_metadata = format!("{base}/to?s=302&l=http%3A//169.254.169.254/latest");
    let err = e
        .send(request(Method::GET, &to_metadata), &follow(5))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Denied(_)), "{err:?}");
    assert_eq!(err.kind(), "egress_denied");
    // The first hop too.
    let err = egress()
        .send(request(Method::GET, "http://10.0.0.1/x"), &follow(0))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Denied(_)), "{err:?}");
}

#[actix_rt::test]
async fn the_response_is_read_up_to_its_cap_and_a_slow_peer_times_out() {
    let base = server();
    let e = egress();
    let capped = SendOptions {
        max_response_bytes: 1000,
        ..SendOptions::default()
    };
    let r = e
        .send(request(Method::GET, &format!("{base}/big")), &capped)
        .await
        .unwrap();
    assert_eq!(r.body.len(), 1000);
    assert!(r.truncated);
    let whole = e
        .send(
            request(Method::GET, &format!("{base}/big")),
            &SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((whole.body.len(), whole.truncated), (100_000, false));
    let quick = SendOptions {
        timeout: Duration::from_millis(200),
        ..SendOptions::default()
    };
    let err = e
        .send(request(Method::GET, &format!("{base}/slow")), &quick)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
    assert!(switchboard::fault::Blame::retryable(&err));
}
