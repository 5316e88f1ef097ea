/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tollway BPF ABI: drop reasons (from drop_reasons.def) and their counters.
 *
 * tw_drops: PERCPU_ARRAY[256] of __u64, indexed by reason; user space sums it.
 */
#ifndef TOLLWAY_ABI_DROP_H
#define TOLLWAY_ABI_DROP_H

#include "abi/common.h"

#define TW_DROP_REASON(name, num, hubble, desc) TW_DROP_##name = num,
enum tw_drop_reason {
#include "abi/drop_reasons.def"
};
#undef TW_DROP_REASON

#define TW_DROPS_MAX 256

#endif /* TOLLWAY_ABI_DROP_H */
