// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tw_pass: a tc classifier that counts every packet and lets it through.
 *
 * This is the pipeline's smoke program: it proves the build (clang -> object
 * embedded in tollway-datapath), the loader (aya), classic clsact attachment,
 * BPF_PROG_TEST_RUN and map pinning, before the real datapath exists.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "abi/stats.h"
#include "lib/stats.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_stats);
} tw_stats SEC(".maps");

SEC("classifier")
int tw_pass(struct __sk_buff *skb)
{
	if (tw_stats_account(&tw_stats, TW_STATS_KEY_TOTAL, skb->len) < 0) {
		/*
		 * Entry 0 of a 1-entry array always exists, so this cannot
		 * happen; if it ever does, fail open: losing a count must
		 * not drop traffic.
		 */
		return TC_ACT_OK;
	}

	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
