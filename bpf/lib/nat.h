/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Rewriting an IPv4 address and L4 port of a TCP/UDP packet in place, with
 * incremental checksum updates (RFC 1624).
 *
 * Checksum rules:
 *  - the IPv4 header checksum covers the address: bpf_l3_csum_replace;
 *  - the TCP/UDP checksum covers the address through the pseudo-header:
 *    bpf_l4_csum_replace with BPF_F_PSEUDO_HDR, which on a
 *    CHECKSUM_PARTIAL skb (the usual case for a pod's veth, whose stack
 *    leaves the sum to "hardware") updates only the pseudo-header seed in
 *    the field, and on CHECKSUM_COMPLETE also fixes skb->csum;
 *  - the port is covered by the L4 checksum proper: no BPF_F_PSEUDO_HDR
 *    (a CHECKSUM_PARTIAL field must then stay as it is);
 *  - UDP checksum 0 means "none" and must stay 0: BPF_F_MARK_MANGLED_0
 *    skips the update then, and writes 0xffff if a real sum becomes 0.
 *
 * IPv4 fragments: the L4 header, ports and checksum, is in the first
 * fragment only, and its checksum covers the whole datagram. The first
 * fragment is rewritten as any packet (the pseudo-header delta of the
 * address and the delta of the port are the datagram's deltas, whatever
 * its length); a later fragment (tw_pkt_later_frag()) only has its
 * address and the IPv4 header checksum rewritten.
 */
#ifndef TOLLWAY_LIB_NAT_H
#define TOLLWAY_LIB_NAT_H

#include <stddef.h>

#include "lib/common.h"
#include "lib/parse.h"

#define TW_NAT_SRC 0
#define TW_NAT_DST 1

/* A later fragment: the address and the IPv4 header checksum only. */
static __always_inline int tw_nat4_rewrite_l3(struct __sk_buff *skb, struct tw_pkt *pkt,
					      int which, __be32 new_addr)
{
	__u32 addr_off;
	__be32 old_addr;

	if (which == TW_NAT_SRC) {
		addr_off = pkt->l3_off + offsetof(struct iphdr, saddr);
		old_addr = pkt->saddr;
	} else {
		addr_off = pkt->l3_off + offsetof(struct iphdr, daddr);
		old_addr = pkt->daddr;
	}
	if (old_addr == new_addr)
		return 0;
	if (bpf_l3_csum_replace(skb, pkt->l3_off + offsetof(struct iphdr, check), old_addr,
				new_addr, sizeof(new_addr)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0) < 0 ? -1 : 0;
}

/*
 * Rewrites the source (TW_NAT_SRC) or destination (TW_NAT_DST) address and
 * port of a TCP/UDP packet (of a later fragment: the address). `pkt` keeps
 * the old values. Returns 0 or -1.
 */
static __always_inline int tw_nat4_rewrite(struct __sk_buff *skb, struct tw_pkt *pkt, int which,
					   __be32 new_addr, __be16 new_port)
{
	__u32 addr_off, port_off, csum_off;
	__be32 old_addr;
	__be16 old_port;
	__u64 mangled;

	if (__builtin_expect(tw_pkt_later_frag(pkt), 0))
		return tw_nat4_rewrite_l3(skb, pkt, which, new_addr);
	if (which == TW_NAT_SRC) {
		addr_off = pkt->l3_off + offsetof(struct iphdr, saddr);
		port_off = pkt->l4_off + offsetof(struct tcphdr, source);
		old_addr = pkt->saddr;
		old_port = pkt->sport;
	} else {
		addr_off = pkt->l3_off + offsetof(struct iphdr, daddr);
		port_off = pkt->l4_off + offsetof(struct tcphdr, dest);
		old_addr = pkt->daddr;
		old_port = pkt->dport;
	}
	/* TCP and UDP have their ports at the same offsets. */
	switch (pkt->proto) {
	case IPPROTO_TCP:
		csum_off = pkt->l4_off + offsetof(struct tcphdr, check);
		mangled = 0;
		break;
	case IPPROTO_UDP:
		csum_off = pkt->l4_off + offsetof(struct udphdr, check);
		mangled = BPF_F_MARK_MANGLED_0;
		break;
	default:
		return -1;
	}

	if (old_addr != new_addr) {
		if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr,
					BPF_F_PSEUDO_HDR | mangled | sizeof(new_addr)) < 0)
			return -1;
		if (bpf_l3_csum_replace(skb, pkt->l3_off + offsetof(struct iphdr, check), old_addr,
					new_addr, sizeof(new_addr)) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0) < 0)
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | sizeof(new_port)) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0) < 0)
			return -1;
	}
	return 0;
}

#endif /* TOLLWAY_LIB_NAT_H */
