/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tollway BPF ABI: traffic counters.
 *
 * Rust mirror: tollway_abi::TwStats (crates/tollway-abi/src/lib.rs).
 */
#ifndef TOLLWAY_ABI_STATS_H
#define TOLLWAY_ABI_STATS_H

#include "abi/common.h"

/* Key of the single entry of a per-CPU `tw_stats` array map. */
#define TW_STATS_KEY_TOTAL 0

/*
 * One per-CPU counter value. User space sums the per-CPU copies; each copy is
 * only ever written by its own CPU, so the program updates it non-atomically.
 */
struct tw_stats {
	__u64 packets; /* offset 0: packets seen */
	__u64 bytes;   /* offset 8: sum of skb->len (L2 bytes) */
};

TW_ABI_ASSERT_SIZE(struct tw_stats, 16);
TW_ABI_ASSERT_OFFSET(struct tw_stats, packets, 0);
TW_ABI_ASSERT_OFFSET(struct tw_stats, bytes, 8);

#endif /* TOLLWAY_ABI_STATS_H */
