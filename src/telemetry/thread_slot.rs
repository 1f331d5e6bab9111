//! Which shard of a sharded metric a thread writes: the first threads to record own one each and
//! write it with plain loads and stores; later threads share the last one with atomic adds.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per metric: one for each of the first `SHARDS - 1` threads that record (the engine's
/// workers and the router are among them), and one that every later thread shares.
pub const SHARDS: usize = 8;

/// The shard later threads share.
pub const SHARED: usize = SHARDS - 1;

/// This thread's shard, assigned on its first record and kept for the thread's life (the same
/// in every metric): its own for the first [`SHARED`] threads, [`SHARED`] for the rest.
pub fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SLOT.with(|slot| match slot.get() {
        Some(s) => s,
        None => {
            let s = NEXT.fetch_add(1, Ordering::Relaxed).min(SHARED);
            slot.set(Some(s));
            s
        }
    })
}

/// Takes this thread's shard now. The engine's workers call it when they start, so that
/// threads that record once in a while and come and go (a blocking pool's) do not take the
/// owned shards before the threads that record per event.
pub fn claim() {
    thread_slot();
}

/// Adds `n` to `cell` of shard `slot`. A shard's owner is its only writer, so it needs no
/// read-modify-write, and readers' loads never see a torn value.
#[inline]
pub fn add(cell: &AtomicU64, slot: usize, n: u64) {
    if slot == SHARED {
        cell.fetch_add(n, Ordering::Relaxed);
    } else {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// Adds `x` to the `f64` whose bits `cell` holds, as [`add`] does.
#[inline]
pub fn add_f64(cell: &AtomicU64, slot: usize, x: f64) {
    let plus = |bits: u64| (f64::from_bits(bits) + x).to_bits();
    if slot == SHARED {
        let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(plus(b)));
    } else {
        cell.store(plus(cell.load(Ordering::Relaxed)), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_slot_and_late_threads_share_the_last() {
        let mine = thread_slot();
        assert_eq!(thread_slot(), mine);
        let others: Vec<usize> = (0..SHARDS * 2)
            .map(|_| std::thread::spawn(thread_slot).join().unwrap())
            .collect();
        // Slots are handed out once each, so at most SHARED threads own one.
        let owned: Vec<_> = others.iter().filter(|s| **s != SHARED).collect();
        let mut unique = owned.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            owned.len(),
            "no owned slot given twice: {others:?}"
        );
        assert!(others.iter().filter(|s| **s == SHARED).count() >= SHARDS);
    }
}
