//! `bpf/abi/stats.h`: packet counters.

abi_consts!(STATS_CONSTS in "stats.h" {
    /// Key of the single entry of a per-CPU `tw_stats` array map.
    TW_STATS_KEY_TOTAL: u32 = 0,
});

abi_struct! {
    /// Packet and byte counters: one per-CPU value of a `tw_stats` map. Each
    /// CPU has its own copy; user space sums them (see [`TwStats::merged`]).
    pub struct TwStats = "tw_stats" in "stats.h" {
        /// Packets seen.
        pub packets: u64,
        /// Sum of `skb->len`, i.e. bytes including the L2 header.
        pub bytes: u64,
    }
}

impl TwStats {
    /// All counters zero.
    pub const ZERO: Self = Self {
        packets: 0,
        bytes: 0,
    };

    /// The field-wise sum of `self` and `other` (wrapping, like the kernel's).
    #[must_use]
    pub const fn merged(self, other: Self) -> Self {
        Self {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_adds_fieldwise_and_wraps() {
        let a = TwStats {
            packets: 1,
            bytes: u64::MAX,
        };
        let b = TwStats {
            packets: 2,
            bytes: 2,
        };
        assert_eq!(
            a.merged(b),
            TwStats {
                packets: 3,
                bytes: 1
            }
        );
        assert_eq!(TwStats::ZERO.merged(b), b);
    }
}
