//! The way in: long-polls `getUpdates` and hands each text message to the daemon as a
//! `user_message`, in order. The offset moves past an update only once the daemon took its
//! event (202, or 200 for a repeat) or refused it for good (a 4xx: the daemon dead-lettered it,
//! replayable there); while the daemon is away, busy or refuses the adapter's token the same
//! update is sent again, backing off. The next `getUpdates` carries the offset, which is how
//! Telegram learns the updates before it were handled; updates handled but not yet confirmed
//! when the adapter stops come again at the next start, and the daemon drops them as
//! duplicates of their `external_event_id`.

use std::time::Duration;

use switchboard::fault::Blame;
use switchboard::outbound::retry::Backoff;
use switchboard::telemetry::throttle::Throttle;

use crate::bot_api::{BotApi, Update};
use crate::daemon_api::DaemonApi;
use crate::envelopes::{user_message, Target};

/// How the way in runs.
#[derive(Debug, Clone)]
pub struct Polling {
    /// How long one `getUpdates` waits for an update.
    pub wait: Duration,
    /// Whether messages in group chats are events too.
    pub groups: bool,
    pub backoff: Backoff,
}

/// Polls until the task is dropped.
pub async fn run(bot: BotApi, daemon: DaemonApi, target: Target, polling: Polling) {
    let mut offset: Option<i64> = None;
    let mut failures = polling.backoff.steps();
    loop {
        let updates = match bot.get_updates(offset, polling.wait).await {
            Ok(updates) => {
                failures = polling.backoff.steps();
                updates
            }
            Err(e) => {
                // (A 409: another getUpdates, or a webhook set for the bot.)
                static POLL: Throttle = Throttle::new();
                if let Some(suppressed) = POLL.allow(Throttle::EVERY) {
                    tracing::warn!(error = %e, suppressed, "getUpdates failed; polling again");
                }
                let step = failures.next().unwrap_or(polling.backoff.max);
                tokio::time::sleep(polling.backoff.delay(e.retry_after(), step)).await;
                continue;
            }
        };
        for update in updates {
            forward(&daemon, &target, &polling, &update).await;
            offset = Some(offset.map_or(update.update_id + 1, |o| o.max(update.update_id + 1)));
        }
    }
}

/// Hands one update's event to the daemon, trying until it is taken or refused for good.
async fn forward(daemon: &DaemonApi, target: &Target, polling: &Polling, update: &Update) {
    let Some(event) = user_message(target, update, polling.groups) else {
        tracing::debug!(update = update.update_id, "not a text message: skipped");
        return;
    };
    let mut steps = polling.backoff.steps();
    loop {
        match daemon.post_event(&event).await {
            Ok(taken) => {
                tracing::debug!(update = update.update_id, ?taken, "user_message taken");
                return;
            }
            Err(e) if e.holds() => {
                static HELD: Throttle = Throttle::new();
                if let Some(suppressed) = HELD.allow(Throttle::EVERY) {
                    tracing::warn!(update = update.update_id, error = %e, suppressed,
                        retryable = e.retryable(), "the daemon did not take a message; sending it again");
                }
                let step = steps.next().unwrap_or(polling.backoff.max);
                tokio::time::sleep(polling.backoff.delay(e.retry_after(), step)).await;
            }
            Err(e) => {
                static REFUSED: Throttle = Throttle::new();
                if let Some(suppressed) = REFUSED.allow(Throttle::EVERY) {
                    tracing::warn!(update = update.update_id, error = %e, suppressed,
                        "the daemon refused a message (kept as a dead letter there)");
                }
                return;
            }
        }
    }
}
