//! The way out: the connector's delivery endpoint (`command_delivery_url`). The daemon POSTs
//! each command there as a signed Standard Webhook, `{"type": "<command idn>", "timestamp",
//! "data": {"command_act_id", "command_id", "persona_id", "connector_idn", "arguments": {…}}}`,
//! and sends it again (same `webhook-id`) until a 2xx. Here:
//!
//! - the signature is verified with the connector's `command_delivery_secret` (401 naming the
//!   header otherwise; nothing is done);
//! - `send_message` becomes `sendMessage` to the `chatId` argument, its message id kept per act
//!   (`ledger.rs`), reported as `result_success` (`result`: the message id) or, refused by
//!   Telegram, `result_error` (`error`, `fault`);
//! - `recall` (a barge-in: `data.command_act_id` names the command to take back) becomes
//!   `deleteMessage`, answered with the event `recalled` or `too_late` (with `error`) carrying
//!   the recalled command's act; a recall of a command not sent yet keeps it from being sent;
//! - any other command is reported `result_error`.
//!
//! The answer is 200 once the outcome's event was taken by the daemon; 503 (with
//! `Retry-After`) while Telegram or the daemon can take it later, so the daemon's outbox tries
//! again and its order per conversation holds; 400 for a body that does not read.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard::fault::{Blame, Fault};
use switchboard::outbound::{Verifier, VerifyError};
use uuid::Uuid;

use crate::bot_api::{BotApi, BotError};
use crate::daemon_api::{DaemonApi, DaemonError};
use crate::envelopes::{result, Outcome, Target};
use crate::ledger::{Entry, Ledger, State};

/// What the endpoint works with.
pub struct Endpoint {
    pub verifier: Verifier,
    pub bot: BotApi,
    pub daemon: DaemonApi,
    pub target: Target,
    pub ledger: Ledger,
    /// `sendMessage`'s `parse_mode`, if any.
    pub parse_mode: Option<String>,
}

/// A delivered command or recall.
#[derive(Debug, Deserialize)]
struct Delivery {
    #[serde(rename = "type")]
    kind: String,
    data: Data,
}

#[derive(Debug, Deserialize)]
struct Data {
    command_act_id: Uuid,
    #[serde(default)]
    connector_idn: Option<String>,
    #[serde(default)]
    arguments: BTreeMap<String, Value>,
}

/// Why a delivery is not answered 2xx.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the delivery is not signed with the connector's secret: {0}")]
    Unsigned(VerifyError),
    #[error("the delivery does not read: {reason}")]
    Malformed { field: &'static str, reason: String },
    /// Telegram or the daemon cannot take it now.
    #[error("{reason}")]
    Later {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Blame for CommandError {
    fn fault(&self) -> Fault {
        match self {
            CommandError::Unsigned(_) | CommandError::Malformed { .. } => Fault::Caller,
            CommandError::Later { .. } => Fault::Peer,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, CommandError::Later { .. })
    }
}

impl CommandError {
    fn of_bot(e: &BotError) -> CommandError {
        CommandError::Later {
            reason: e.to_string(),
            retry_after: e.retry_after(),
        }
    }

    fn of_daemon(e: &DaemonError) -> CommandError {
        CommandError::Later {
            reason: format!("the outcome was not reported: {e}"),
            retry_after: e.retry_after(),
        }
    }

    /// The one place a refusal becomes an HTTP answer.
    fn answer(&self) -> HttpResponse {
        let (status, code, field) = match self {
            CommandError::Unsigned(e) => {
                (StatusCode::UNAUTHORIZED, "invalid_signature", e.header())
            }
            CommandError::Malformed { field, .. } => {
                (StatusCode::BAD_REQUEST, "malformed", Some(*field))
            }
            CommandError::Later { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
        };
        let mut answer = HttpResponse::build(status);
        if let CommandError::Later { retry_after, .. } = self {
            let secs = retry_after
                .unwrap_or(Duration::from_secs(1))
                .as_secs()
                .max(1);
            answer.insert_header(("Retry-After", secs.to_string()));
        }
        answer.json(json!({"error": {"code": code, "message": self.to_string(), "field": field}}))
    }
}

/// The route: `POST /commands`.
pub async fn receive(req: HttpRequest, body: web::Bytes, ep: web::Data<Endpoint>) -> HttpResponse {
    match handle(&ep, &req, &body).await {
        Ok(status) => HttpResponse::Ok().json(json!({"status": status})),
        Err(e) => {
            tracing::debug!(error = %e, "a delivery is not taken yet");
            e.answer()
        }
    }
}

async fn handle(
    ep: &Endpoint,
    req: &HttpRequest,
    body: &[u8],
) -> Result<&'static str, CommandError> {
    ep.verifier
        .verify(req.headers(), body)
        .map_err(CommandError::Unsigned)?;
    let delivery: Delivery = serde_json::from_slice(body).map_err(|e| CommandError::Malformed {
        field: "body",
        reason: e.to_string(),
    })?;
    let act = delivery.data.command_act_id;
    if let Some(connector) = &delivery.data.connector_idn {
        if *connector != ep.target.connector {
            return Err(CommandError::Malformed {
                field: "data.connector_idn",
                reason: format!(
                    "this adapter serves connector {}, not {connector}",
                    ep.target.connector
                ),
            });
        }
    }
    match delivery.kind.as_str() {
        "send_message" => send(ep, act, &delivery.data.arguments).await,
        "recall" => recall(ep, act).await,
        other => {
            let outcome = Outcome::Failed {
                error: format!("the telegram adapter does not carry out {other}"),
                fault: "caller",
            };
            if ep
                .ledger
                .claim(
                    act,
                    Entry {
                        state: State::Failed,
                        unreported: Some(outcome),
                    },
                )
                .is_err()
            {
                tracing::debug!(%act, "a repeated command");
            }
            flush(ep, act).await?;
            Ok("failed")
        }
    }
}

/// Reports `act`'s outcome if the daemon has not taken it yet.
async fn flush(ep: &Endpoint, act: Uuid) -> Result<(), CommandError> {
    let Some(outcome) = ep.ledger.get(act).and_then(|e| e.unreported) else {
        return Ok(());
    };
    match ep
        .daemon
        .post_event(&result(&ep.target, act, &outcome))
        .await
    {
        Ok(_) => {}
        Err(e) if e.holds() => return Err(CommandError::of_daemon(&e)),
        // Refused for good: the daemon dead-lettered it; nothing better to do here.
        Err(e) => tracing::warn!(%act, error = %e, "the daemon refused a result event"),
    }
    ep.ledger.reported(act, &outcome);
    Ok(())
}

fn text<'a>(arguments: &'a BTreeMap<String, Value>, name: &str) -> Option<&'a str> {
    arguments
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

async fn send(
    ep: &Endpoint,
    act: Uuid,
    arguments: &BTreeMap<String, Value>,
) -> Result<&'static str, CommandError> {
    let in_flight = Entry {
        state: State::InFlight,
        unreported: None,
    };
    if let Err(held) = ep.ledger.claim(act, in_flight) {
        // Sent again by the daemon: not sent twice.
        if held.state == State::InFlight {
            return Err(CommandError::Later {
                reason: "this command is being sent".into(),
                retry_after: None,
            });
        }
        flush(ep, act).await?;
        return Ok("done");
    }
    let (Some(text), Some(chat)) = (text(arguments, "text"), text(arguments, "chatId")) else {
        let missing = if text(arguments, "text").is_none() {
            "text"
        } else {
            "chatId"
        };
        let error = format!(
            "send_message needs the argument {missing} (the user_message's chatId names the chat)"
        );
        ep.ledger.settle(
            act,
            State::Failed,
            Outcome::Failed {
                error,
                fault: "caller",
            },
        );
        flush(ep, act).await?;
        return Ok("failed");
    };
    match ep
        .bot
        .send_message(chat, text, ep.parse_mode.as_deref())
        .await
    {
        Ok(message) => {
            let state = State::Sent {
                chat: message.chat.id,
                message_id: message.message_id,
            };
            let outcome = Outcome::Sent {
                message_id: message.message_id,
            };
            ep.ledger.settle(act, state, outcome);
        }
        Err(e) if e.retryable() => {
            ep.ledger.forget(act);
            return Err(CommandError::of_bot(&e));
        }
        Err(e) => {
            let outcome = Outcome::Failed {
                error: e.to_string(),
                fault: e.fault().as_str(),
            };
            ep.ledger.settle(act, State::Failed, outcome);
        }
    }
    flush(ep, act).await?;
    Ok(match ep.ledger.get(act).map(|e| e.state) {
        Some(State::Sent { .. }) => "sent",
        _ => "failed",
    })
}

async fn recall(ep: &Endpoint, act: Uuid) -> Result<&'static str, CommandError> {
    // Nothing sent yet: recalled now, and never sent.
    let tombstone = Entry {
        state: State::Recalled,
        unreported: Some(Outcome::Recalled),
    };
    let held = match ep.ledger.claim(act, tombstone) {
        Ok(()) => {
            flush(ep, act).await?;
            return Ok("recalled");
        }
        Err(held) => held,
    };
    // What the send left unreported goes first.
    if !matches!(held.state, State::Recalled | State::Kept) {
        flush(ep, act).await?;
    }
    match held.state {
        State::InFlight => {
            return Err(CommandError::Later {
                reason: "the recalled command is being sent".into(),
                retry_after: None,
            })
        }
        State::Sent { chat, message_id } => match ep.bot.delete_message(chat, message_id).await {
            Ok(()) => ep.ledger.settle(act, State::Recalled, Outcome::Recalled),
            Err(e) if e.retryable() => return Err(CommandError::of_bot(&e)),
            Err(e) => {
                let outcome = Outcome::TooLate {
                    error: e.to_string(),
                };
                ep.ledger.settle(act, State::Kept, outcome);
            }
        },
        // Not shown to the user: as good as recalled.
        State::Failed => ep.ledger.settle(act, State::Recalled, Outcome::Recalled),
        // A repeated recall: its answer (if not taken yet) goes again.
        State::Recalled | State::Kept => {}
    }
    flush(ep, act).await?;
    Ok(match ep.ledger.get(act).map(|e| e.state) {
        Some(State::Kept) => "too_late",
        _ => "recalled",
    })
}
