//! Delivery tickets: what brought an event in (an HTTP request, a JetStream message) learns
//! when the event has been dispatched or durably recorded, and only then.
//!
//! A ticket is shared by every place that still holds the event (one per receiving flow, plus
//! the session_started routed before it). When the last holder lets go, the ticket settles:
//! `Done`, or `Redeliver` if any holder gave the event up without handing it on (a flow
//! instance stopped with the event still pending). The ticket also carries the in-flight
//! permit that bounds how many admitted events the engine holds at once.
//!
//! A ticket may carry followers ([`Delivery::follow`]): deliveries that settle with it, the way
//! a queue runner's result message is acknowledged only once the event it answers is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Dispatched to every receiving flow, dropped as an outcome, or durably recorded.
    Done,
    /// Not handed on: the source should deliver it again.
    Redeliver,
}

/// Implemented by whatever brought the event in.
pub trait Settle: Send + Sync + 'static {
    fn settle(&self, settlement: Settlement);

    /// The source no longer holds the right to have the event handled here (a partition of
    /// the events stream this daemon lost, or whose lease it could not renew in time): a flow
    /// instance gives such an event up instead of invoking it, and the partition's new owner
    /// gets it again.
    fn revoked(&self) -> bool {
        false
    }
}

impl<F: Fn(Settlement) + Send + Sync + 'static> Settle for F {
    fn settle(&self, settlement: Settlement) {
        self(settlement)
    }
}

struct Ticket {
    source: Option<Box<dyn Settle>>,
    redeliver: AtomicBool,
    /// Deliveries that settle with this one (see [`Delivery::follow`]).
    followers: Mutex<Vec<Delivery>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let redeliver = self.redeliver.load(Ordering::Acquire);
        if let Some(source) = &self.source {
            source.settle(if redeliver {
                Settlement::Redeliver
            } else {
                Settlement::Done
            });
        }
        let followers = std::mem::take(self.followers.get_mut().unwrap_or_else(|p| p.into_inner()));
        for f in followers {
            if redeliver {
                f.give_up();
            }
        }
    }
}

/// A shared delivery ticket. Clone it for each holder; drop it when that holder is done.
#[derive(Clone)]
pub struct Delivery(Arc<Ticket>);

impl Delivery {
    pub fn new(source: Option<Box<dyn Settle>>, permit: Option<OwnedSemaphorePermit>) -> Self {
        Delivery(Arc::new(Ticket {
            source,
            redeliver: AtomicBool::new(false),
            followers: Mutex::new(Vec::new()),
            _permit: permit,
        }))
    }

    /// A ticket nobody waits on (internal events, tests).
    pub fn none() -> Self {
        Delivery::new(None, None)
    }

    /// Whether the source revoked the event (see [`Settle::revoked`]).
    pub fn revoked(&self) -> bool {
        self.0.source.as_ref().is_some_and(|s| s.revoked())
    }

    /// This holder gives the event up without handing it on: ask the source to redeliver.
    pub fn give_up(self) {
        self.0.redeliver.store(true, Ordering::Release);
    }

    /// `other` settles with this delivery: it is held until this one settles, and given up
    /// too when this one is redelivered.
    pub fn follow(&self, other: Delivery) {
        self.0
            .followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(other);
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("holders", &Arc::strong_count(&self.0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn recorder() -> (Arc<Mutex<Vec<Settlement>>>, Box<dyn Settle>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (
            log,
            Box::new(move |s: Settlement| l.lock().unwrap().push(s)),
        )
    }

    #[test]
    fn settles_once_when_the_last_holder_is_done() {
        let (log, source) = recorder();
        let d = Delivery::new(Some(source), None);
        let d2 = d.clone();
        drop(d);
        assert!(log.lock().unwrap().is_empty());
        drop(d2);
        assert_eq!(*log.lock().unwrap(), vec![Settlement::Done]);
    }

    /// A source that revokes its events (a lost partition's, with NATS).
    struct Revoking(Arc<Mutex<Vec<Settlement>>>, Arc<AtomicBool>);

    impl Settle for Revoking {
        fn settle(&self, s: Settlement) {
            self.0.lock().unwrap().push(s);
        }

        fn revoked(&self) -> bool {
            self.1.load(Ordering::Acquire)
        }
    }

    #[test]
    fn a_revoked_event_is_seen_revoked_by_every_holder_and_given_up_for_redelivery() {
        let (log, lost) = (Arc::default(), Arc::new(AtomicBool::new(false)));
        let d = Delivery::new(
            Some(Box::new(Revoking(Arc::clone(&log), lost.clone()))),
            None,
        );
        let other = d.clone();
        assert!(!d.revoked() && !other.revoked());
        lost.store(true, Ordering::Release);
        assert!(d.revoked() && other.revoked());
        d.give_up();
        drop(other);
        assert_eq!(*log.lock().unwrap(), vec![Settlement::Redeliver]);
        // Sources that know of no lease (HTTP, timers, closures) never revoke.
        assert!(!Delivery::new(recorder().1.into(), None).revoked());
        assert!(!Delivery::none().revoked());
    }

    #[test]
    fn one_holder_giving_up_asks_for_redelivery() {
        let (log, source) = recorder();
        let d = Delivery::new(Some(source), None);
        let d2 = d.clone();
        d.give_up();
        drop(d2);
        assert_eq!(*log.lock().unwrap(), vec![Settlement::Redeliver]);
    }

    #[test]
    fn a_follower_settles_with_what_it_follows_and_is_redelivered_with_it() {
        for give_up in [false, true] {
            let (event_log, event) = recorder();
            let (result_log, result) = recorder();
            let d = Delivery::new(Some(event), None);
            let r = Delivery::new(Some(result), None);
            d.follow(r.clone());
            drop(r);
            assert!(result_log.lock().unwrap().is_empty(), "held by the event");
            let expected = if give_up {
                d.give_up();
                Settlement::Redeliver
            } else {
                drop(d);
                Settlement::Done
            };
            assert_eq!(*event_log.lock().unwrap(), vec![expected]);
            assert_eq!(*result_log.lock().unwrap(), vec![expected]);
        }
    }

    #[test]
    fn releases_the_permit() {
        let sem = Arc::new(tokio::sync::Semaphore::new(1));
        let d = Delivery::new(None, Some(sem.clone().try_acquire_owned().unwrap()));
        assert_eq!(sem.available_permits(), 0);
        drop(d);
        assert_eq!(sem.available_permits(), 1);
    }
}
