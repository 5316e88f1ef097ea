//! Port sets and their encoding as LPM prefixes.

/// The minimal set of prefixes covering the inclusive port range
/// `[first, last]` exactly: `(port, prefix_len)` pairs, `prefix_len` the
/// number of leading port bits that must match (0 = every port, 16 = one
/// port), ascending by port. Empty if `first > last`.
///
/// Greedy: from the lowest uncovered port, take the largest aligned block
/// that stays inside the range. Every port of the range is covered by
/// exactly one prefix and nothing outside it is.
pub fn range_to_prefixes(first: u16, last: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let mut start = u32::from(first);
    let end = u32::from(last);
    while start <= end {
        let mut bits = if start == 0 {
            16
        } else {
            start.trailing_zeros().min(16)
        };
        while start + (1 << bits) - 1 > end {
            bits -= 1;
        }
        // start < 65536 and bits ≤ 16, so both casts are lossless.
        out.push((start as u16, (16 - bits) as u8));
        start += 1 << bits;
    }
    out
}

/// Whether the prefix `(value, prefix_len)` covers `port`.
pub fn prefix_covers(value: u16, prefix_len: u8, port: u16) -> bool {
    let shift = 16 - u32::from(prefix_len.min(16));
    (u32::from(value) >> shift) == (u32::from(port) >> shift)
}

/// A set of ports as sorted, disjoint inclusive ranges,
/// each tagged with the id of the first rule that put it there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PortMap {
    ranges: Vec<(u16, u16, u32)>,
}

impl PortMap {
    /// Whether no port is in the set.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Adds `[first, last]` for `rule`; ports already present keep their
    /// rule.
    pub(crate) fn insert(&mut self, first: u16, last: u16, rule: u32) {
        if first > last {
            return;
        }
        let (first, last) = (u32::from(first), u32::from(last));
        // The ranges overlapping [first, last] are a contiguous run i..j;
        // replace it by itself with the gaps filled.
        let i = self
            .ranges
            .partition_point(|&(_, b, _)| u32::from(b) < first);
        let j = self
            .ranges
            .partition_point(|&(a, _, _)| u32::from(a) <= last);
        let mut merged = Vec::with_capacity(2 * (j - i) + 1);
        let mut next = first;
        for &(a, b, r) in &self.ranges[i..j] {
            if u32::from(a) > next {
                // next ≤ a - 1 < 65535.
                merged.push((next as u16, a - 1, rule));
            }
            merged.push((a, b, r));
            next = u32::from(b) + 1;
        }
        if next <= last {
            merged.push((next as u16, last as u16, rule));
        }
        self.ranges.splice(i..j, merged);
    }

    /// The ports of `self` that are not in `other`.
    pub(crate) fn minus(&self, other: &PortMap) -> PortMap {
        let mut out = Vec::new();
        for &(a, b, rule) in &self.ranges {
            let mut next = u32::from(a);
            let b = u32::from(b);
            for &(oa, ob, _) in &other.ranges {
                let (oa, ob) = (u32::from(oa), u32::from(ob));
                if ob < next {
                    continue;
                }
                if oa > b {
                    break;
                }
                if oa > next {
                    out.push((next as u16, (oa - 1) as u16, rule));
                }
                next = ob + 1;
                if next > b {
                    break;
                }
            }
            if next <= b {
                out.push((next as u16, b as u16, rule));
            }
        }
        PortMap { ranges: out }
    }

    /// Whether `port` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|&(a, b, _)| (a..=b).contains(&port))
    }

    /// Maximal runs of consecutive ports with the same rule:
    /// `(first, last, rule)`.
    pub(crate) fn runs(&self) -> Vec<(u16, u16, u32)> {
        let mut out: Vec<(u16, u16, u32)> = Vec::new();
        for &(a, b, rule) in &self.ranges {
            match out.last_mut() {
                Some(last) if last.2 == rule && u32::from(last.1) + 1 == u32::from(a) => {
                    last.1 = b;
                }
                _ => out.push((a, b, rule)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `prefixes` are aligned and cover `[first, last]` exactly:
    /// every port inside once, and (the block sizes adding up to the range
    /// length) nothing outside.
    fn assert_exact(first: u16, last: u16, prefixes: &[(u16, u8)]) {
        let mut total = 0u32;
        for &(value, len) in prefixes {
            let size = 1u32 << (16 - u32::from(len));
            assert_eq!(u32::from(value) % size, 0, "unaligned prefix {value}/{len}");
            total += size;
        }
        assert_eq!(
            total,
            u32::from(last) - u32::from(first) + 1,
            "[{first},{last}]"
        );
        for p in first..=last {
            let n = prefixes
                .iter()
                .filter(|&&(v, l)| prefix_covers(v, l, p))
                .count();
            assert_eq!(n, 1, "[{first},{last}] port {p}");
        }
    }

    #[test]
    fn prefixes_cover_exactly_small_ranges() {
        for first in 0u16..=70 {
            for last in first..=first + 70 {
                assert_exact(first, last, &range_to_prefixes(first, last));
            }
        }
    }

    #[test]
    fn prefix_covers_bits() {
        assert!(prefix_covers(0, 0, 65535));
        assert!(prefix_covers(1024, 6, 2047));
        assert!(!prefix_covers(1024, 6, 2048));
        assert!(!prefix_covers(1024, 6, 1023));
        assert!(prefix_covers(80, 16, 80));
        assert!(!prefix_covers(80, 16, 81));
    }

    #[test]
    fn prefixes_cover_exactly_edge_ranges() {
        for (first, last) in [
            (0, 65535),
            (1, 65535),
            (0, 65534),
            (1024, 65535),
            (32768, 32768),
            (65535, 65535),
            (1, 65534),
            (8000, 8999),
        ] {
            assert_exact(first, last, &range_to_prefixes(first, last));
        }
        assert_eq!(range_to_prefixes(0, 65535), vec![(0, 0)]);
        assert_eq!(range_to_prefixes(80, 80), vec![(80, 16)]);
        assert_eq!(range_to_prefixes(1024, 2047), vec![(1024, 6)]);
        // The well-known worst case: 2·16 − 2 prefixes.
        assert_eq!(range_to_prefixes(1, 65534).len(), 30);
        assert!(range_to_prefixes(5, 4).is_empty());
    }

    #[test]
    fn prefixes_are_minimal_for_small_ranges() {
        // Brute force over aligned blocks: the greedy result is minimal.
        fn min_count(first: u32, last: u32) -> usize {
            // DP over ports first..=last+1.
            let n = (last - first + 1) as usize;
            let mut best = vec![usize::MAX; n + 1];
            best[0] = 0;
            for i in 0..n {
                if best[i] == usize::MAX {
                    continue;
                }
                let start = first + i as u32;
                for bits in 0..=16u32 {
                    let size = 1u32 << bits;
                    if !start.is_multiple_of(size) || start + size - 1 > last {
                        continue;
                    }
                    let j = i + size as usize;
                    best[j] = best[j].min(best[i] + 1);
                }
            }
            best[n]
        }
        for first in 0u16..=40 {
            for last in first..=first + 40 {
                assert_eq!(
                    range_to_prefixes(first, last).len(),
                    min_count(first.into(), last.into()),
                    "[{first},{last}]"
                );
            }
        }
    }

    #[test]
    fn port_map_insert_keeps_first_rule_and_subtracts() {
        let mut m = PortMap::default();
        m.insert(10, 20, 1);
        m.insert(15, 30, 2);
        m.insert(0, 5, 3);
        m.insert(21, 25, 4);
        assert_eq!(m.runs(), vec![(0, 5, 3), (10, 20, 1), (21, 30, 2)]);
        m.insert(65530, 65535, 5);
        assert!(m.contains(65535) && !m.contains(6) && m.contains(0));

        let mut d = PortMap::default();
        d.insert(12, 22, 9);
        d.insert(65535, 65535, 9);
        let left = m.minus(&d);
        assert_eq!(
            left.runs(),
            vec![(0, 5, 3), (10, 11, 1), (23, 30, 2), (65530, 65534, 5)]
        );
        let mut all = PortMap::default();
        all.insert(0, 65535, 1);
        assert!(m.minus(&all).is_empty());
        assert_eq!(all.minus(&PortMap::default()).runs(), vec![(0, 65535, 1)]);
    }
}
