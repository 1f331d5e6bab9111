//! The Telegram Bot API as the adapter uses it: `getUpdates` (long polling), `sendMessage` and
//! `deleteMessage`, each a JSON POST to `<base>/bot<token>/<method>` answered
//! `{"ok": true, "result": …}` or `{"ok": false, "error_code", "description", "parameters"}`.
//! The token is part of every URL, so no URL is ever shown: errors name the method only.

use std::time::Duration;

use reqwest::{Client, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard::fault::{Blame, Fault};

/// One update (only messages are asked for).
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    pub message: Option<Message>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub message_id: i64,
    pub chat: Chat,
    #[serde(default)]
    pub from: Option<User>,
    /// Unix seconds.
    #[serde(default)]
    pub date: i64,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

/// Every answer's frame.
#[derive(Debug, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Debug, Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// Why a Bot API call failed, and whether trying again can succeed.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// No answer (connection refused, timed out): the peer's, retryable.
    #[error("{method}: Telegram did not answer: {reason}")]
    Unreachable {
        method: &'static str,
        reason: String,
    },
    /// Telegram refused the call (`ok: false`): retryable for 429 and 5xx, asking to wait
    /// `retry_after` when it says so.
    #[error("{method}: Telegram refused ({code}): {description}")]
    Refused {
        method: &'static str,
        code: u16,
        description: String,
        retry_after: Option<Duration>,
    },
    /// An answer that is not the Bot API's shape.
    #[error("{method}: Telegram's answer does not read: {reason}")]
    Malformed {
        method: &'static str,
        reason: String,
    },
}

impl BotError {
    /// How long Telegram asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BotError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl Blame for BotError {
    fn fault(&self) -> Fault {
        match self {
            BotError::Refused { code, .. } if *code < 500 && *code != 429 => Fault::Caller,
            _ => Fault::Peer,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            BotError::Unreachable { .. } => true,
            BotError::Refused { code, .. } => *code == 429 || *code >= 500,
            BotError::Malformed { .. } => false,
        }
    }
}

/// A Bot API client for one bot.
#[derive(Clone)]
pub struct BotApi {
    client: Client,
    /// `<base>/bot<token>/`: secret.
    root: Url,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BotApi(<redacted>)")
    }
}

/// Why the Bot API's base URL and token do not make a URL (neither is repeated).
#[derive(Debug, thiserror::Error)]
#[error("the Bot API URL and the bot token do not make a URL")]
pub struct BadRoot;

impl BotApi {
    pub fn new(client: Client, base: &Url, token: &str) -> Result<BotApi, BadRoot> {
        let base = base.as_str().trim_end_matches('/');
        let root = Url::parse(&format!("{base}/bot{token}/")).map_err(|_| BadRoot)?;
        Ok(BotApi { client, root })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        body: Value,
        timeout: Duration,
    ) -> Result<T, BotError> {
        let url = self.root.join(method).expect("a method name joins");
        let answer = self
            .client
            .post(url)
            .json(&body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| BotError::Unreachable {
                method,
                reason: e.without_url().to_string(),
            })?;
        let status = answer.status();
        let bytes = answer.bytes().await.map_err(|e| BotError::Unreachable {
            method,
            reason: e.without_url().to_string(),
        })?;
        let reply: Reply = serde_json::from_slice(&bytes).map_err(|e| {
            if status.is_success() {
                BotError::Malformed {
                    method,
                    reason: e.to_string(),
                }
            } else {
                // A proxy's error page, say: judged by its status.
                BotError::Refused {
                    method,
                    code: status.as_u16(),
                    description: status.canonical_reason().unwrap_or("error").to_owned(),
                    retry_after: None,
                }
            }
        })?;
        if !reply.ok {
            return Err(BotError::Refused {
                method,
                code: reply.error_code.unwrap_or(if status.is_success() {
                    400
                } else {
                    status.as_u16()
                }),
                description: reply.description.unwrap_or_default(),
                retry_after: reply
                    .parameters
                    .and_then(|p| p.retry_after)
                    .map(Duration::from_secs),
            });
        }
        serde_json::from_value(reply.result.unwrap_or(Value::Null)).map_err(|e| {
            BotError::Malformed {
                method,
                reason: e.to_string(),
            }
        })
    }

    /// The updates after `offset` (which confirms every update before it), waiting up to
    /// `wait` for one to arrive.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        wait: Duration,
    ) -> Result<Vec<Update>, BotError> {
        let mut body = json!({"timeout": wait.as_secs(), "allowed_updates": ["message"]});
        if let Some(offset) = offset {
            body["offset"] = json!(offset);
        }
        self.call("getUpdates", body, wait + REQUEST_TIMEOUT).await
    }

    /// Sends `text` to `chat`; answers the sent message.
    pub async fn send_message(
        &self,
        chat: &str,
        text: &str,
        parse_mode: Option<&str>,
    ) -> Result<Message, BotError> {
        let mut body = json!({"chat_id": chat, "text": text});
        if let Some(mode) = parse_mode {
            body["parse_mode"] = json!(mode);
        }
        self.call("sendMessage", body, REQUEST_TIMEOUT).await
    }

    /// Deletes message `message_id` of `chat`.
    pub async fn delete_message(&self, chat: i64, message_id: i64) -> Result<(), BotError> {
        let deleted: bool = self
            .call(
                "deleteMessage",
                json!({"chat_id": chat, "message_id": message_id}),
                REQUEST_TIMEOUT,
            )
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(BotError::Malformed {
                method: "deleteMessage",
                reason: "result is false".into(),
            })
        }
    }
}

/// How long a call other than the long poll may take (and what a long poll may take beyond
/// its wait). With the daemon's POST (`daemon_api.rs`), within the 30 s the daemon gives a
/// delivery by default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16) -> BotError {
        BotError::Refused {
            method: "sendMessage",
            code,
            description: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn telegram_s_refusals_are_retried_only_when_they_can_pass() {
        let check = |e: BotError, fault: Fault, retry: bool| {
            assert_eq!((e.fault(), e.retryable()), (fault, retry), "{e}");
        };
        check(refused(400), Fault::Caller, false);
        check(refused(403), Fault::Caller, false);
        check(refused(429), Fault::Peer, true);
        check(refused(502), Fault::Peer, true);
        check(
            BotError::Unreachable {
                method: "getUpdates",
                reason: String::new(),
            },
            Fault::Peer,
            true,
        );
    }

    #[test]
    fn the_token_shows_in_no_debug() {
        let api = BotApi::new(
            Client::new(),
            &Url::parse("https://api.telegram.org").unwrap(),
            "123:secret",
        )
        .unwrap();
        assert!(!format!("{api:?}").contains("secret"));
        assert_eq!(api.root.as_str(), "https://api.telegram.org/bot123:secret/");
    }
}
