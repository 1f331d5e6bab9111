//! The one way tests wait for a condition: [`eventually`] polls a probe until it yields a
//! value, within a bound, and fails the test naming what it waited for. Every wait on a state
//! the test cannot be told about by a channel goes through it; the named waits of the harness
//! (`Harness::wait_instance`, `Harness::wait_recorded`, ...) are thin wrappers. A wait on
//! something that does tell (a channel, a browser command) needs no polling: [`within`] bounds
//! it.
//!
//! Between two probes it sleeps [`STEP`] on tokio's clock, never blocking the thread, so the
//! work the probe waits for runs meanwhile (in-process tests run the engine on the test's own
//! thread). A test on tokio's paused clock keeps working: when the runtime has nothing left to
//! do, the paused clock jumps to the next timer, so a wait on an idle timeout (a session's 30
//! minutes) passes in a few thousand quick probes, and a wait on work already queued is
//! answered before the clock moves more than a step.
//!
//! The bound is on the wall clock, not on tokio's: on the paused clock, virtual time can run
//! far ahead of work done off the runtime (a blocking thread, another process), and such a wait
//! must not time out early; a wait that never ends still fails after `limit` of real time.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// The bound of a wait whose caller has no reason to choose another one.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The pause between two probes, on tokio's clock (paused or not).
pub const STEP: Duration = Duration::from_millis(10);

/// Polls `probe` until it returns `Some`, for at most `limit` of wall-clock time; panics with
/// "timed out after {limit} waiting for {what}" otherwise.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_explained(what, limit, probe, || async { String::new() }).await
}

/// [`eventually`], whose failure message adds what `explain` reports at the moment it gives up
/// (the state of a pipeline, the text on a page).
pub async fn eventually_explained<T, F, Fut, E, EFut>(
    what: &str,
    limit: Duration,
    mut probe: F,
    explain: E,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    E: FnOnce() -> EFut,
    EFut: Future<Output = String>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            let detail = explain().await;
            if detail.is_empty() {
                panic!("timed out after {limit:?} waiting for {what}");
            }
            panic!("timed out after {limit:?} waiting for {what}: {detail}");
        }
        tokio::time::sleep(STEP).await;
    }
}

/// Awaits `f` for at most `limit` on tokio's clock; panics naming `what` otherwise. On the paused
/// clock the bound is virtual time: for a future driven by this runtime only.
pub async fn within<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}
