//! Sandbox tickets: the page trades its token (sent in an `Authorization` header) for a ticket,
//! and its WebSocket URL carries the ticket instead of the token, so the URL a proxy logs opens
//! nothing: a ticket opens one socket, within [`TICKET_TTL`] of being issued. Tickets are kept
//! in memory by their SHA-256 (a restart forgets them), at most [`MAX_TICKETS`], the oldest
//! dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::domain::Idn;

/// How long a ticket opens a socket after it was issued.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Tickets kept at most; issuing one more drops the oldest.
pub const MAX_TICKETS: usize = 4096;

type Key = [u8; 32];

fn key_of(ticket: &str) -> Key {
    Sha256::digest(ticket.as_bytes()).into()
}

/// The tickets issued and not yet used or expired.
#[derive(Default)]
pub struct Tickets {
    inner: Mutex<Issued>,
}

#[derive(Default)]
struct Issued {
    /// The account each live ticket opens a socket for, and until when.
    live: HashMap<Key, (Idn, Instant)>,
    /// Every ticket issued within the last [`TICKET_TTL`], oldest first (used ones too).
    order: VecDeque<(Key, Instant)>,
}

impl Tickets {
    /// A new ticket for a socket of `account`: 256 random bits, hex.
    pub fn issue(&self, account: Idn) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let ticket = hex::encode(bytes);
        let now = Instant::now();
        let key = key_of(&ticket);
        let mut issued = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(old, until)) = issued.order.front() {
            if until > now && issued.order.len() < MAX_TICKETS {
                break;
            }
            issued.order.pop_front();
            issued.live.remove(&old);
        }
        issued.live.insert(key, (account, now + TICKET_TTL));
        issued.order.push_back((key, now + TICKET_TTL));
        ticket
    }

    /// The account `ticket` opens a socket for, once: `None` when it is unknown, used or
    /// expired.
    pub fn redeem(&self, ticket: &str) -> Option<Idn> {
        let now = Instant::now();
        let mut issued = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (account, until) = issued.live.remove(&key_of(ticket))?;
        (now < until).then_some(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Idn {
        Idn::known("acct_a")
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_opens_one_socket_of_its_account() {
        let tickets = Tickets::default();
        let t = tickets.issue(account());
        assert_eq!(t.len(), 64);
        assert_ne!(tickets.issue(account()), t, "each ticket is new");
        assert_eq!(tickets.redeem(&t), Some(account()));
        assert_eq!(tickets.redeem(&t), None, "used");
        assert_eq!(tickets.redeem("0".repeat(64).as_str()), None, "unknown");
        assert_eq!(tickets.redeem(""), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_expires_after_its_ttl() {
        let tickets = Tickets::default();
        let early = tickets.issue(account());
        let late = tickets.issue(account());
        tokio::time::advance(TICKET_TTL - Duration::from_millis(1)).await;
        assert_eq!(tickets.redeem(&early), Some(account()), "still valid");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(tickets.redeem(&late), None, "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn tickets_are_bounded_and_the_oldest_go_first() {
        let tickets = Tickets::default();
        let first = tickets.issue(account());
        let rest: Vec<String> = (0..MAX_TICKETS).map(|_| tickets.issue(account())).collect();
        assert_eq!(tickets.redeem(&first), None, "dropped for the newest");
        assert_eq!(tickets.redeem(&rest[0]), Some(account()));
        assert_eq!(tickets.redeem(&rest[MAX_TICKETS - 1]), Some(account()));
        {
            let issued = tickets.inner.lock().unwrap();
            assert!(issued.order.len() <= MAX_TICKETS && issued.live.len() <= MAX_TICKETS);
        }
        // Expired tickets leave with the next one issued.
        tokio::time::advance(TICKET_TTL).await;
        tickets.issue(account());
        assert_eq!(tickets.inner.lock().unwrap().order.len(), 1);
    }
}
