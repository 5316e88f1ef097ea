/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tollway BPF ABI: IPv4 fragment tracking (Cilium's
 * enable-ipv4-fragment-tracking).
 *
 * Rust mirror: crates/tollway-abi/src/frag.rs.
 *
 * Only the first fragment of a datagram (offset 0, MF set) carries the L4
 * header. tw_frag4 (LRU_HASH struct tw_frag4_key -> struct tw_frag4_entry)
 * remembers what that header said, keyed by the datagram's identity as a
 * program sees it (addresses, IP id, protocol, before any translation of
 * the packet), so that the later fragments of the datagram, which carry no
 * L4 header, get the same conntrack entry, service translation and policy
 * verdict as the first. A later fragment whose entry is missing (it came
 * before the first, or the first was dropped elsewhere) is dropped with
 * TW_DROP_FRAG_NOT_FOUND. The datapath writes the map; user space only
 * reads it (tollway status). Entries are never deleted: fragments may come
 * in any order, and the LRU recycles the oldest.
 */
#ifndef TOLLWAY_ABI_FRAG_H
#define TOLLWAY_ABI_FRAG_H

#include "abi/common.h"

/* tw_frag4  LRU_HASH  struct tw_frag4_key -> struct tw_frag4_entry */

/* Cilium's default (bpf-fragments-map-max). */
#define TW_FRAG4_MAX 8192

struct tw_frag4_key {
	__be32 saddr; /* offset 0 */
	__be32 daddr; /* offset 4 */
	__be16 id;    /* offset 8: the IPv4 identification of the datagram */
	__u8 proto;   /* offset 10: IPPROTO_TCP / IPPROTO_UDP / IPPROTO_ICMP */
	__u8 pad;     /* offset 11: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_frag4_key, 12);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_key, saddr, 0);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_key, daddr, 4);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_key, id, 8);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_key, proto, 10);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_key, pad, 11);

/* tw_frag4_entry.flags: what the first fragment's L4 header was. */
#define TW_FRAG_F_PORTS 0x01     /* TCP or UDP: sport/dport are ports */
#define TW_FRAG_F_ICMP_ECHO 0x02 /* ICMP echo request or reply: sport = id */

struct tw_frag4_entry {
	__be16 sport;  /* offset 0: TCP/UDP source port; ICMP echo: identifier */
	__be16 dport;  /* offset 2: TCP/UDP destination port; ICMP: 0 */
	__u8 flags;    /* offset 4: TW_FRAG_F_* */
	__u8 l4_info;  /* offset 5: TCP: the flags (byte 13 of the header); ICMP: the type */
	__u16 pad;     /* offset 6: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_frag4_entry, 8);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_entry, sport, 0);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_entry, dport, 2);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_entry, flags, 4);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_entry, l4_info, 5);
TW_ABI_ASSERT_OFFSET(struct tw_frag4_entry, pad, 6);

#endif /* TOLLWAY_ABI_FRAG_H */
