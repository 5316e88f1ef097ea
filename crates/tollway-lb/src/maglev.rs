//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4).
//!
//! The table maps a flow hash (`table[hash % M]`) to a backend id. Every node
//! must build the same table for the same backends, across restarts and Rust
//! versions, so the hashes are xxh64 with fixed seeds and the backends are
//! ordered by name before population.

use xxhash_rust::xxh64::xxh64;

use crate::LbError;

/// Default table size M: a prime (as Cilium's default); also
/// `TW_LB_MAGLEV_M_DEFAULT` in `bpf/abi/lb.h`.
pub const DEFAULT_M: u32 = 16381;

/// Seed of h1 (the offset). Changing it reshuffles every table.
const SEED_OFFSET: u64 = 0x746f_6c6c_7761_7931; // "tollway1"
/// Seed of h2 (the skip). Changing it reshuffles every table.
const SEED_SKIP: u64 = 0x746f_6c6c_7761_7932; // "tollway2"

/// Whether `n` is prime (trial division; M is at most a few hundred
/// thousand).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The Maglev lookup table of size `m` for `backends`, given as
/// `(backend id, stable name)` pairs, the name being e.g.
/// `10.244.1.2:8080/TCP`.
///
/// Each backend's preference list is the permutation
/// `(offset + j * skip) mod M` with `offset = h1(name) mod M` and
/// `skip = h2(name) mod (M - 1) + 1`; backends take turns claiming their next
/// free preferred entry until the table is full, so every backend gets
/// `floor(M/N)` or `ceil(M/N)` entries. The result does not depend on the
/// order of `backends` (they are sorted by name, then id). An empty backend
/// list gives an empty table.
///
/// # Errors
///
/// [`LbError::MaglevNotPrime`] when `m` is not prime, and
/// [`LbError::MaglevTooSmall`] when `m` is not larger than the number of
/// backends.
pub fn maglev_table(backends: &[(u32, &str)], m: u32) -> Result<Vec<u32>, LbError> {
    if !is_prime(m) {
        return Err(LbError::MaglevNotPrime { m });
    }
    if backends.is_empty() {
        return Ok(Vec::new());
    }
    if backends.len() >= m as usize {
        return Err(LbError::MaglevTooSmall {
            m,
            backends: backends.len(),
        });
    }
    let mut sorted = backends.to_vec();
    sorted.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));

    let m64 = u64::from(m);
    let mut next: Vec<u64> = Vec::with_capacity(sorted.len());
    let mut skip: Vec<u64> = Vec::with_capacity(sorted.len());
    for (_, name) in &sorted {
        next.push(xxh64(name.as_bytes(), SEED_OFFSET) % m64);
        skip.push(xxh64(name.as_bytes(), SEED_SKIP) % (m64 - 1) + 1);
    }

    let size = m as usize;
    let mut table = vec![0u32; size];
    let mut taken = vec![false; size];
    let mut filled = 0usize;
    // M is prime and 1 <= skip < M, so each preference list visits every
    // entry: the loop ends.
    loop {
        for (i, (id, _)) in sorted.iter().enumerate() {
            loop {
                let c = next[i] as usize;
                next[i] = (next[i] + skip[i]) % m64;
                if !taken[c] {
                    taken[c] = true;
                    table[c] = *id;
                    filled += 1;
                    break;
                }
            }
            if filled == size {
                return Ok(table);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn names(n: usize) -> Vec<(u32, String)> {
        (0..n)
            .map(|i| {
                let id = u32::try_from(i).unwrap() + 1;
                (id, format!("10.244.{}.{}:8080/TCP", i / 250, i % 250 + 1))
            })
            .collect()
    }

    fn table(backends: &[(u32, String)], m: u32) -> Vec<u32> {
        let refs: Vec<(u32, &str)> = backends.iter().map(|(i, n)| (*i, n.as_str())).collect();
        maglev_table(&refs, m).unwrap()
    }

    /// splitmix64: deterministic pseudo-random flow hashes.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..40).filter(|n| is_prime(*n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]);
        assert!(is_prime(DEFAULT_M));
        assert!(is_prime(65537));
        assert!(!is_prime(16383));
        assert!(!is_prime(65535));
        assert!(is_prime(4_294_967_291));
    }

    #[test]
    fn errors_name_m() {
        let e = maglev_table(&[(1, "a")], 16383).unwrap_err();
        assert_eq!(e, LbError::MaglevNotPrime { m: 16383 });
        assert!(e.to_string().contains("16383"), "{e}");
        let e = maglev_table(&[(1, "a"), (2, "b"), (3, "c")], 3).unwrap_err();
        assert_eq!(e, LbError::MaglevTooSmall { m: 3, backends: 3 });
        assert!(e.to_string().contains("M=3"), "{e}");
        assert_eq!(maglev_table(&[], 31), Ok(vec![]));
        assert!(maglev_table(&[], 32).is_err());
        assert_eq!(maglev_table(&[(7, "a")], 2), Ok(vec![7, 7]));
    }

    #[test]
    fn independent_of_input_order() {
        let b = names(20);
        let mut r = b.clone();
        r.reverse();
        r.swap(3, 11);
        assert_eq!(table(&b, 251), table(&r, 251));
    }

    /// The table is part of the cluster-wide contract: every node must build
    /// the same one. A change here means a hash, seed or algorithm change,
    /// which reshuffles established flows across an upgrade.
    #[test]
    fn golden_table() {
        let b: Vec<(u32, String)> = vec![
            (1, "10.244.1.2:8080/TCP".into()),
            (2, "10.244.2.2:8080/TCP".into()),
            (3, "10.244.3.2:8080/TCP".into()),
        ];
        assert_eq!(table(&b, 13), GOLDEN_13);
    }

    const GOLDEN_13: [u32; 13] = [1, 3, 3, 3, 1, 1, 3, 2, 1, 2, 1, 2, 2];

    #[test]
    fn balanced() {
        for n in [1usize, 3, 7, 100, 1000] {
            let t = table(&names(n), DEFAULT_M);
            assert_eq!(t.len(), DEFAULT_M as usize);
            let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
            for id in &t {
                *counts.entry(*id).or_default() += 1;
            }
            assert_eq!(counts.len(), n);
            let lo = DEFAULT_M as usize / n;
            let hi = lo + usize::from(!(DEFAULT_M as usize).is_multiple_of(n));
            for (id, c) in &counts {
                assert!(
                    (lo..=hi).contains(c),
                    "n={n}: backend {id} has {c} entries, expected {lo}..={hi}"
                );
                // Within 3% of M/N while M/N is large (>= 100 entries each).
                if n <= 100 {
                    let ideal = f64::from(DEFAULT_M) / n as f64;
                    assert!(
                        (*c as f64 - ideal).abs() / ideal < 0.03,
                        "n={n} id={id} c={c}"
                    );
                }
            }
        }
    }

    /// Removing one of 100 backends: the share of the entries (and of the
    /// flows) that did not belong to the removed backend and yet move.
    #[test]
    fn disruption_on_removal() {
        let all = names(100);
        let before = table(&all, DEFAULT_M);
        let mut worst = 0f64;
        let mut sum = 0f64;
        let mut flow_worst = 0f64;
        let mut flow_sum = 0f64;
        let mut flows = Vec::with_capacity(100_000);
        let mut seed = 0x5eed_u64;
        for _ in 0..100_000 {
            flows.push(splitmix(&mut seed));
        }
        for removed in 0..all.len() {
            let gone = all[removed].0;
            let mut rest = all.clone();
            rest.remove(removed);
            let after = table(&rest, DEFAULT_M);

            let kept: Vec<usize> = (0..before.len()).filter(|i| before[*i] != gone).collect();
            let moved = kept.iter().filter(|i| before[**i] != after[**i]).count();
            let share = moved as f64 / kept.len() as f64;
            worst = worst.max(share);
            sum += share;

            let m = u64::from(DEFAULT_M);
            let slot = |h: u64| usize::try_from(h % m).unwrap();
            let kept_flows: Vec<u64> = flows
                .iter()
                .copied()
                .filter(|h| before[slot(*h)] != gone)
                .collect();
            let moved_flows = kept_flows
                .iter()
                .filter(|h| before[slot(**h)] != after[slot(**h)])
                .count();
            let fshare = moved_flows as f64 / kept_flows.len() as f64;
            flow_worst = flow_worst.max(fshare);
            flow_sum += fshare;
        }
        let n = all.len() as f64;
        println!(
            "maglev M={DEFAULT_M}, 100 backends, remove 1 (each in turn): entries of other backends moved: mean {:.3}%, worst {:.3}%; of 100k flows: mean {:.3}%, worst {:.3}%",
            100.0 * sum / n,
            100.0 * worst,
            100.0 * flow_sum / n,
            100.0 * flow_worst
        );
        // Maglev is not minimally disruptive: besides the removed backend's
        // ~1/N of the table, about as many entries again shift between the
        // others (the paper's §5.3). Mean over every possible removal
        // <= 1.5%; the worst single one (1.51% measured) <= 1.6%.
        assert!(
            sum / n <= 0.015,
            "mean entry disruption {:.3}%",
            100.0 * sum / n
        );
        assert!(
            worst <= 0.016,
            "worst entry disruption {:.3}%",
            100.0 * worst
        );
        assert!(
            flow_sum / n <= 0.015,
            "mean flow disruption {:.3}%",
            100.0 * flow_sum / n
        );
        assert!(
            flow_worst <= 0.016,
            "worst flow disruption {:.3}%",
            100.0 * flow_worst
        );
    }
}
