//! Attempts: the head of a lane is handed to its kind's [`super::Destination`] on a task of its
//! own (at most `attempt_timeout`); its answer settles it (delivered, refused for good, gone)
//! or schedules its retry (backoff with full jitter, or the receiver's `Retry-After`, clamped
//! to the backoff's cap) while the budget lasts. Settling deletes the row in the next batch,
//! dead-letters what was not delivered (never a secret: reasons come from the destination,
//! which names statuses, not bodies) and tells the destination, which answers the owner.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::lanes::{Head, LaneId};
use super::worker::{now_ms, warn, Worker};
use super::{Attempt, OutboxItem, Settled};
use crate::dead_letter::{self, DeadLetterReason};

/// An attempt that ended (or whose task failed).
pub(super) struct Done {
    lane: LaneId,
    item: Arc<OutboxItem>,
    result: Result<(Attempt, Duration), String>,
}

impl Worker {
    /// Starts an attempt of lane `id`'s head on its own task.
    pub(super) fn attempt(&mut self, id: LaneId) {
        let lane = self.lanes.get_mut(id).expect("a lane to attempt is held");
        let kind = self
            .kinds
            .get(&*lane.kind)
            .expect("lanes are of served kinds");
        let head = lane
            .window
            .front_mut()
            .expect("a lane to attempt has a head");
        if head.policy.is_none() {
            head.policy = Some(kind.destination.retry_policy(&head.item));
        }
        head.attempts += 1;
        head.first_attempt
            .get_or_insert_with(|| (Instant::now(), now_ms()));
        lane.head = Head::InFlight;
        self.in_flight += 1;
        let (destination, item, attempt, limit) = (
            kind.destination.clone(),
            head.item.clone(),
            head.attempts,
            self.settings.attempt_timeout,
        );
        tracing::debug!(id = %item.id, destination = %item.destination, attempt, "outbox attempt");
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let delivery = destination.deliver(&item, attempt);
            let result = tokio::time::timeout(limit, delivery)
                .await
                .unwrap_or_else(|_| Attempt::Retry {
                    reason: format!("no answer within {} ms", limit.as_millis()),
                    retry_after: None,
                });
            (result, started.elapsed())
        });
        let item = head.item.clone();
        self.attempts.push(
            async move {
                Done {
                    lane: id,
                    item,
                    result: task.await.map_err(|e| e.to_string()),
                }
            }
            .boxed(),
        );
    }

    pub(super) async fn attempted(&mut self, done: Done) {
        self.in_flight -= 1;
        let Done { lane, item, result } = done;
        let (attempt, took) = result.unwrap_or_else(|e| {
            warn("a delivery attempt failed", &e);
            (
                Attempt::Retry {
                    reason: "the attempt failed inside the daemon".into(),
                    retry_after: None,
                },
                Duration::ZERO,
            )
        });
        let Some(kind) = self.kinds.get(item.kind()) else {
            return;
        };
        kind.seconds.record(took.as_secs_f64());
        tracing::debug!(id = %item.id, result = attempt.code(), "outbox attempt ended");
        let held = self.lanes.get(lane).is_some_and(|l| {
            l.head == Head::InFlight && l.window.front().is_some_and(|h| h.item.id == item.id)
        });
        if !held {
            // Its lane went while it was in flight: its destination is gone.
            let outcome = match attempt {
                Attempt::Delivered(receipt) => Settled::Delivered(receipt),
                Attempt::Gone(reason) => Settled::Gone { reason },
                _ => Settled::Gone {
                    reason: "its destination is disabled: it answered Gone".into(),
                },
            };
            self.count(item.kind(), outcome.code());
            self.settle(&item, outcome, true);
            return;
        }
        if !matches!(attempt, Attempt::Retry { .. }) {
            self.count(item.kind(), attempt.code());
        }
        match attempt {
            Attempt::Delivered(receipt) => self.settle_head(lane, Settled::Delivered(receipt)),
            Attempt::Failed(reason) => self.settle_head(lane, Settled::Failed { reason }),
            Attempt::Gone(reason) => {
                self.disabled
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(item.destination.clone());
                self.settle_head(lane, Settled::Gone { reason });
                self.purge(&item.destination).await;
            }
            Attempt::Retry {
                reason,
                retry_after,
            } => self.retry(lane, reason, retry_after),
        }
    }

    /// Counts `outcome` of `switchboard_outbox_deliveries_total` for `kind`.
    pub fn count(&self, kind: &str, outcome: &str) {
        if let Some(k) = self.kinds.get(kind) {
            k.count(outcome);
        }
    }

    /// The head of `id` failed and may succeed later: it waits its delay, unless its budget
    /// ends first (then it is exhausted now: a retry that would start too late is not waited
    /// for).
    fn retry(&mut self, id: LaneId, reason: String, retry_after: Option<Duration>) {
        let lane = self.lanes.get_mut(id).expect("a lane retrying is held");
        let head = lane.window.front().expect("a lane retrying has a head");
        let policy = head.policy.unwrap_or_default();
        let step = policy
            .backoff
            .steps()
            .nth(head.attempts.saturating_sub(1) as usize)
            .unwrap_or(policy.backoff.max);
        let delay = policy.backoff.delay(retry_after, step);
        let (first, first_ms) = head.first_attempt.unwrap_or((Instant::now(), now_ms()));
        let out_of_attempts = policy.max_attempts.is_some_and(|max| head.attempts >= max);
        let out_of_time = Instant::now() + delay >= first + policy.retry_for;
        let kind = self
            .kinds
            .get(&*lane.kind)
            .expect("lanes are of served kinds");
        if out_of_attempts || out_of_time {
            let attempts = head.attempts;
            kind.count("exhausted");
            self.settle_head(
                id,
                Settled::Exhausted {
                    attempts,
                    last: reason,
                },
            );
            return;
        }
        kind.count("retry");
        self.store
            .outbox_attempted(head.item.id, head.attempts, first_ms);
        lane.head = Head::Waiting(self.timers.insert(id, delay));
    }

    /// A retry's (or a failed read's) pause is over.
    pub(super) fn woken(&mut self, id: LaneId) {
        if let Some(lane) = self.lanes.get_mut(id) {
            if matches!(lane.head, Head::Waiting(_)) {
                lane.head = Head::Idle;
            }
            self.lanes.poke(id);
        }
    }

    /// The head of `id` leaves its lane as `outcome`.
    fn settle_head(&mut self, id: LaneId, outcome: Settled) {
        let lane = self.lanes.get_mut(id).expect("a lane settling is held");
        let head = lane.window.pop_front().expect("a lane settling has a head");
        lane.head = Head::Idle;
        self.lanes.poke(id);
        self.settle(&head.item, outcome, true);
    }

    /// `item` leaves the outbox: no longer pending, dead-lettered unless delivered or
    /// withdrawn, its owner told; its row deleted (in the next batch) when `delete`.
    pub fn settle(&mut self, item: &OutboxItem, outcome: Settled, delete: bool) {
        if delete {
            self.deleting.insert(item.id);
            self.to_delete.push(item.id);
        }
        let Some(kind) = self.kinds.get_mut(item.kind()) else {
            return;
        };
        kind.pending(-1);
        let detail = match &outcome {
            Settled::Failed { reason } => {
                Some(format!("delivery to {} failed: {reason}", item.destination))
            }
            Settled::Exhausted { attempts, last } => Some(format!(
                "delivery to {} gave up after {attempts} attempt{}; last: {last}",
                item.destination,
                if *attempts == 1 { "" } else { "s" }
            )),
            Settled::Gone { reason } => Some(format!(
                "delivery to {} stopped: {reason}",
                item.destination
            )),
            Settled::Delivered(_) | Settled::Withdrawn => None,
        };
        if let Some(detail) = detail {
            let letter =
                kind.destination
                    .dead_letter(item, DeadLetterReason::DeliveryFailed, detail);
            dead_letter::record(&*self.dead_letters, letter);
        }
        kind.destination.settled(item, &outcome);
    }
}
