/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPv4 fragment tracking on tw_frag4 (abi/frag.h), Cilium's
 * ipv4_handle_fragmentation: only the first fragment of a datagram
 * (offset 0, MF set) carries the L4 header, so it records what the header
 * said (ports, ICMP echo identifier, TCP flags or ICMP type) under the
 * datagram's identity {saddr, daddr, IP id, proto}; the later fragments
 * (offset > 0) read it back and take the same path as the first through
 * conntrack, service translation and policy. lib/parse.h calls these for
 * every fragment, so every program that parses a packet shares the work;
 * unfragmented packets never get here.
 *
 * The key is the datagram as the program sees it, before it translates
 * anything: every hook records and finds its own view (a ClusterIP
 * datagram is {client, VIP} at the client's veth and {client, backend} at
 * the backend's), and hooks that see the same addresses (a pod-to-pod
 * datagram at both veths) see it untranslated, with the same ports, so
 * they share entries harmlessly. Nothing is deleted: fragments
 * may come in any order (the last before a middle one), and the LRU
 * recycles the oldest datagrams. A datagram id reused before its entry is
 * recycled overwrites it: only its newest datagram matters.
 *
 * Only TCP, UDP and ICMP have headers worth recording; fragments of other
 * protocols need nothing from their first fragment (their policy is per
 * packet, on the protocol alone).
 */
#ifndef TOLLWAY_LIB_FRAG_H
#define TOLLWAY_LIB_FRAG_H

#include "lib/common.h"
#include "lib/maps.h"

/* Whether the later fragments of a `proto` datagram need their first one. */
static __always_inline int tw_frag4_tracked(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP;
}

static __always_inline void tw_frag4_key(struct tw_frag4_key *key, __be32 saddr, __be32 daddr,
					 __be16 id, __u8 proto)
{
	key->saddr = saddr;
	key->daddr = daddr;
	key->id = id;
	key->proto = proto;
	key->pad = 0;
}

/*
 * The first fragment of a datagram: remembers its L4 header for the rest.
 * Best effort: if the update fails, the later fragments are dropped as if
 * the first had been lost, which reassembly would make of them anyway.
 */
static __always_inline void tw_frag4_record(const struct tw_frag4_key *key,
					    const struct tw_frag4_entry *entry)
{
	bpf_map_update_elem(&tw_frag4, key, entry, BPF_ANY);
}

/*
 * A later fragment: copies out what its first fragment recorded (a copy,
 * not a pointer into the LRU map, whose element may be recycled under
 * us). Returns 0, or -1 if no first fragment of the datagram was seen.
 */
static __always_inline int tw_frag4_lookup(const struct tw_frag4_key *key,
					   struct tw_frag4_entry *out)
{
	struct tw_frag4_entry *entry;

	entry = bpf_map_lookup_elem(&tw_frag4, key);
	if (!entry)
		return -1;
	*out = *entry;
	return 0;
}

#endif /* TOLLWAY_LIB_FRAG_H */
