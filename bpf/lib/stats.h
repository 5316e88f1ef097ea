/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Helpers for the per-CPU `struct tw_stats` counters.
 */
#ifndef TOLLWAY_LIB_STATS_H
#define TOLLWAY_LIB_STATS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "abi/stats.h"

/*
 * Adds one packet of `len` bytes to entry `key` of a per-CPU array of
 * struct tw_stats. Returns 0 on success and -1 if the entry does not exist;
 * the caller picks the verdict for that case (counting must never decide
 * the fate of a packet by accident).
 */
static __always_inline int tw_stats_account(void *map, __u32 key, __u64 len)
{
	struct tw_stats *stats;

	stats = bpf_map_lookup_elem(map, &key);
	if (!stats)
		return -1;

	/* Per-CPU value: only this CPU writes it, no atomics needed. */
	stats->packets += 1;
	stats->bytes += len;
	return 0;
}

#endif /* TOLLWAY_LIB_STATS_H */
