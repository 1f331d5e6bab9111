//! What the unit tests beside the code share (compiled for tests only): the one wait helper of
//! the unit tier. The integration tier's is `tests/common/wait.rs`.

/// Polls `probe` between turns of the other tasks on this thread (actors under test run here)
/// until it answers, giving up after 10,000 turns with a message naming `what`.
pub async fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    for _ in 0..10_000 {
        if let Some(v) = probe() {
            return v;
        }
        tokio::task::yield_now().await;
    }
    panic!("gave up waiting for {what}");
}
