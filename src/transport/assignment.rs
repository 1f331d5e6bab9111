//! Which daemon owns which partition: bounded-load rendezvous hashing over the live members.
//! Every daemon computes it from the same member set and gets the same answer; each member
//! owns at most ⌈P/N⌉ partitions, and a member joining or leaving moves few of them.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The owner of each partition (an index into `members`, sorted and deduplicated by the
/// caller), or an empty list when there are no members.
pub fn assign(partitions: u32, members: &[String]) -> Vec<usize> {
    if members.is_empty() {
        return Vec::new();
    }
    let cap = (partitions as usize).div_ceil(members.len());
    let mut load = vec![0usize; members.len()];
    let mut ranked: Vec<usize> = (0..members.len()).collect();
    (0..partitions)
        .map(|p| {
            // Highest score first; ties (not expected) by member order.
            ranked.sort_by_key(|&m| {
                std::cmp::Reverse(xxh3_64_with_seed(members[m].as_bytes(), u64::from(p)))
            });
            let owner = ranked
                .iter()
                .copied()
                .find(|&m| load[m] < cap)
                .expect("N members of cap ⌈P/N⌉ hold P partitions");
            load[owner] += 1;
            owner
        })
        .collect()
}

/// The partitions `me` owns among `members` (sorted and deduplicated).
pub fn owned(partitions: u32, members: &[String], me: &str) -> Vec<u32> {
    let Some(i) = members.iter().position(|m| m == me) else {
        return Vec::new();
    };
    assign(partitions, members)
        .into_iter()
        .zip(0u32..)
        .filter(|(owner, _)| *owner == i)
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        let mut m: Vec<String> = (0..n).map(|i| format!("member-{i}")).collect();
        m.sort();
        m
    }

    #[test]
    fn every_member_gets_at_most_its_share_and_every_partition_an_owner() {
        let check = |p: u32, n: usize| {
            let a = assign(p, &members(n));
            assert_eq!(a.len(), p as usize);
            let cap = (p as usize).div_ceil(n);
            for m in 0..n {
                let load = a.iter().filter(|&&o| o == m).count();
                assert!(load <= cap, "P={p} N={n}: member {m} owns {load} > {cap}");
            }
        };
        for (p, n) in [
            (24, 1),
            (24, 2),
            (24, 3),
            (24, 4),
            (24, 5),
            (24, 8),
            (7, 3),
            (1, 4),
        ] {
            check(p, n);
        }
        // 24 over 3 is exactly 8 each.
        let a = assign(24, &members(3));
        for m in 0..3 {
            assert_eq!(a.iter().filter(|&&o| o == m).count(), 8);
        }
        assert!(assign(24, &[]).is_empty());
    }

    #[test]
    fn a_member_joining_moves_little_and_everyone_agrees() {
        let three = members(3);
        let four = members(4);
        let (a3, a4) = (assign(24, &three), assign(24, &four));
        let moved = (0..24).filter(|&p| three[a3[p]] != four[a4[p]]).count();
        // The newcomer takes its 6; bounded loads may shift a few more.
        assert!((6..=12).contains(&moved), "moved {moved}");
        assert_eq!(assign(24, &four), a4, "deterministic");
        let mine: usize = four.iter().map(|m| owned(24, &four, m).len()).sum();
        assert_eq!(mine, 24);
        assert!(owned(24, &four, "stranger").is_empty());
    }
}
