/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Drop accounting: every packet the datapath drops (or rejects) bumps
 * tw_drops[reason], a per-CPU counter that user space sums.
 */
#ifndef TOLLWAY_LIB_DROP_H
#define TOLLWAY_LIB_DROP_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/events.h"

static __always_inline void tw_drop_count(__u32 reason)
{
	__u64 *count;

	count = bpf_map_lookup_elem(&tw_drops, &reason);
	/* Per-CPU value: only this CPU writes it, no atomics needed. A
	 * reason >= TW_DROPS_MAX has no entry; the verdict stands anyway. */
	if (count)
		*count += 1;
}

/* Counts a drop and returns the verdict that drops the packet. */
static __always_inline int tw_drop(__u32 reason)
{
	tw_drop_count(reason);
	return TC_ACT_SHOT;
}

/* Counts a drop of `pkt`, reports it as a flow event, and returns the
 * verdict that drops the packet. */
static __always_inline int tw_drop_pkt(struct __sk_buff *skb, struct tw_pkt *pkt, __u32 reason)
{
	tw_ev_drop(skb, pkt, reason);
	return tw_drop(reason);
}

#endif /* TOLLWAY_LIB_DROP_H */
