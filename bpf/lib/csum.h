/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Internet checksum helpers (RFC 1071) for headers built from scratch.
 *
 * bpf_csum_diff(NULL, 0, buf, n, seed) returns the 32-bit one's complement
 * sum of buf (n a multiple of 4) plus seed, unfolded. Folding it to 16 bits
 * and complementing gives the checksum *as it sits in memory*: the sum is
 * byte-order independent (RFC 1071 section 2(B)), so summing the
 * network-order bytes as little-endian words and storing the result back
 * as a little-endian __u16 yields the right bytes without any swapping.
 * Incremental updates of existing packets use bpf_l3/l4_csum_replace
 * instead (lib/nat.h), which also keep skb->csum and CHECKSUM_PARTIAL
 * packets right.
 */
#ifndef TOLLWAY_LIB_CSUM_H
#define TOLLWAY_LIB_CSUM_H

#include "lib/common.h"

static __always_inline __sum16 tw_csum_fold(__u64 sum)
{
	/* bpf_csum_diff's sums fit in 32 bits: the first fold leaves at
	 * most 0x1fffe, the second at most 0xffff. */
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__sum16)~sum;
}

/*
 * Checksum of `size` bytes at `buf` (stack memory, size a multiple of 4).
 * Returns a negative value if the helper fails, else the checksum in the
 * low 16 bits.
 */
static __always_inline int tw_csum_buf(void *buf, __u32 size, __sum16 *out)
{
	__s64 sum;

	sum = bpf_csum_diff(0, 0, buf, size, 0);
	if (sum < 0)
		return -1;
	*out = tw_csum_fold((__u64)sum);
	return 0;
}

#endif /* TOLLWAY_LIB_CSUM_H */
