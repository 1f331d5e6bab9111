//! A local OAuth 2.0 provider for tests, on 127.0.0.1:0, speaking the real protocol:
//! `/authorize` redirects back with a code and the state, `/token` takes the code with its PKCE
//! verifier (S256 checked), client credentials, or a refresh token. Its client is `cid` with the
//! secret `<secret>-client`; its tokens are marked with `<secret>` (so a test can grep for them).

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use serde_json::json;

/// A local OAuth 2.0 provider on 127.0.0.1:0 speaking the protocol: `/authorize` redirects
/// back with a code and the state; `/token` takes the code with its PKCE verifier (S256
/// checked), client credentials, or a refresh token; anything else is `invalid_grant`.
/// Answers its base URL and how many token requests it answered by grant.
pub fn start(secret: &'static str) -> (String, Arc<Provider>) {
    use sha2::Digest;
    type Codes = Arc<Mutex<Vec<(String, String, String)>>>; // (code, challenge, redirect_uri)
    let codes: Codes = Arc::default();
    let state = Arc::new(Provider {
        grants: Mutex::default(),
        current: Mutex::default(),
        expires_in: std::sync::atomic::AtomicU64::new(3600),
        revoked: std::sync::atomic::AtomicBool::new(false),
    });
    let g = state.clone();
    let server = HttpServer::new(move || {
        let (codes, codes2, grants) = (codes.clone(), codes.clone(), g.clone());
        App::new()
            .route(
                "/authorize",
                web::get().to(move |q: web::Query<std::collections::HashMap<String, String>>| {
                    let codes = codes.clone();
                    async move {
                        let ok = q.get("response_type").map(String::as_str) == Some("code")
                            && q.get("client_id").map(String::as_str) == Some("cid")
                            && q.get("code_challenge_method").map(String::as_str) == Some("S256")
                            && q.get("scope").map(String::as_str) == Some("read write");
                        if !ok {
                            return HttpResponse::BadRequest().body(format!("{q:?}"));
                        }
                        let code = format!("code-{}", uuid::Uuid::new_v4());
                        let redirect = q["redirect_uri"].clone();
                        codes.lock().unwrap().push((code.clone(), q["code_challenge"].clone(), redirect.clone()));
                        let to = format!("{redirect}?code={code}&state={}", q["state"]);
                        HttpResponse::Found().insert_header(("location", to)).finish()
                    }
                }),
            )
            .route(
                "/token",
                web::post().to(move |req: HttpRequest, f: web::Form<std::collections::HashMap<String, String>>| {
                    let (codes, grants) = (codes2.clone(), grants.clone());
                    async move {
                        let basic = base64::engine::general_purpose::STANDARD
                            .encode(format!("cid:{secret}-client"));
                        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
                        if auth != Some(format!("Basic {basic}").as_str()) {
                            return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
                        }
                        let grant = f.get("grant_type").cloned().unwrap_or_default();
                        let invalid = || HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
                        let prov = grants.clone();
                        let n = {
                            let mut g = prov.grants.lock().unwrap();
                            g.push(grant.clone());
                            g.len()
                        };
                        let expires_in = prov.expires_in.load(std::sync::atomic::Ordering::SeqCst);
                        let issue = |token: String| {
                            *prov.current.lock().unwrap() = token.clone();
                            HttpResponse::Ok().json(json!({"access_token": token, "token_type": "bearer",
                                "expires_in": expires_in, "refresh_token": format!("{secret}-refresh")}))
                        };
                        match grant.as_str() {
                            "authorization_code" => {
                                let mut codes = codes.lock().unwrap();
                                let Some(i) = codes.iter().position(|c| Some(&c.0) == f.get("code")) else {
                                    return invalid();
                                };
                                let (_, challenge, redirect) = codes.remove(i);
                                let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                                let digest = sha2::Sha256::digest(verifier.as_bytes());
                                let derived = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
                                if derived != challenge || f.get("redirect_uri") != Some(&redirect) {
                                    return invalid();
                                }
                                issue(format!("{secret}-access-{n}"))
                            }
                            "refresh_token" => {
                                if prov.revoked.load(std::sync::atomic::Ordering::SeqCst)
                                    || f.get("refresh_token") != Some(&format!("{secret}-refresh"))
                                {
                                    return invalid();
                                }
                                // Slow enough that the requests refused meanwhile wait for it.
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                issue(format!("{secret}-access-{n}"))
                            }
                            "client_credentials" => HttpResponse::Ok().json(json!({
                                "access_token": format!("{secret}-machine-{n}"), "token_type": "bearer", "expires_in": expires_in})),
                            _ => invalid(),
                        }
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    (format!("http://{addr}"), state)
}

/// What the local OAuth provider did and will do.
pub struct Provider {
    /// The grant of each token request.
    pub grants: Mutex<Vec<String>>,
    /// The access token issued last (the guarded API takes only it).
    pub current: Mutex<String>,
    /// The lifetime of the tokens it issues, in seconds.
    pub expires_in: std::sync::atomic::AtomicU64,
    /// Refresh tokens are refused (`invalid_grant`).
    pub revoked: std::sync::atomic::AtomicBool,
}

impl Provider {
    pub fn refreshes(&self) -> usize {
        self.grants
            .lock()
            .unwrap()
            .iter()
            .filter(|g| *g == "refresh_token")
            .count()
    }
}
