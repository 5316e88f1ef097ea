/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Rejecting a connection to a service that has no backend, so that the
 * client fails at once instead of timing out (kube-proxy's REJECT rule):
 *  - TCP: the packet becomes a RST|ACK from the frontend to the client;
 *  - UDP: the packet becomes an ICMP port unreachable from the frontend,
 *    quoting the original IPv4 header and the first 8 bytes after it.
 * Either reply is sent back out of the interface the packet came in on.
 *
 * How the reply is built: the new IPv4 (+ TCP or ICMP) header is composed
 * on the stack (the ICMP quote is copied there first with
 * bpf_skb_load_bytes), its checksums computed over the stack copy, the
 * skb resized to the reply's length with bpf_skb_change_tail (which trims
 * the payload, or grows the frame for the ICMP quote), and the headers
 * written over the old ones with bpf_skb_store_bytes; the Ethernet
 * addresses are swapped in place. The IPv4 header is always 20 bytes (IP
 * options of the request are not reflected), so the L4 header is at a
 * fixed offset and the program needs no adjust_room.
 *
 * Checksums are complete (not CHECKSUM_PARTIAL seeds): the reply is for the
 * pod's own stack on the other end of the veth, which trusts a
 * CHECKSUM_PARTIAL skb without looking, and verifies anything else.
 */
#ifndef TOLLWAY_LIB_REJECT_H
#define TOLLWAY_LIB_REJECT_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/drop.h"
#include "lib/parse.h"

#define TW_REJECT_TTL 64
/* Original IPv4 header (at most 60 bytes) + 8 bytes, quoted by ICMP. */
#define TW_ICMP_QUOTE_MAX (60 + 8)

struct tw_rst4 {
	struct iphdr ip;
	/* The TCP pseudo-header is summed separately: the checksum of
	 * pseudo + tcp is the checksum of tcp seeded with the pseudo sum. */
	struct tcphdr tcp;
};

struct tw_tcp_pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct tw_icmp_unreach4 {
	struct iphdr ip;
	struct tw_icmphdr icmp;
	__u8 quote[TW_ICMP_QUOTE_MAX];
};

static __always_inline void tw_reject_ip(struct iphdr *ip, struct tw_pkt *pkt, __u8 proto,
					 __u16 tot_len)
{
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(tot_len);
	ip->id = 0;
	ip->frag_off = bpf_htons(TW_IP_DF);
	ip->ttl = TW_REJECT_TTL;
	ip->protocol = proto;
	ip->check = 0;
	/* From the frontend the client wanted, to the client. */
	ip->saddr = pkt->daddr;
	ip->daddr = pkt->saddr;
}

/* Swaps the Ethernet addresses: the reply goes back where it came from. */
static __always_inline int tw_reject_swap_macs(struct __sk_buff *skb)
{
	__u8 macs[2 * ETH_ALEN];
	__u8 swapped[2 * ETH_ALEN];
	int i;

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) < 0)
		return -1;
#pragma unroll
	for (i = 0; i < ETH_ALEN; i++) {
		swapped[i] = macs[ETH_ALEN + i];
		swapped[ETH_ALEN + i] = macs[i];
	}
	return bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) < 0 ? -1 : 0;
}

static __always_inline int tw_reject_tcp(struct __sk_buff *skb, struct tw_pkt *pkt)
{
	struct tw_tcp_pseudo4 pseudo = {};
	struct tw_rst4 rst = {};
	__u32 seg_len = 0, hdrs;
	__s64 sum;

	/* Never answer a RST with a RST. */
	if (pkt->tcp_flags & TW_TCP_RST)
		return TC_ACT_SHOT;

	/* RFC 793 "Reset Generation": seq = the segment's ack if it has one,
	 * else 0; ack = seq + segment length, SYN and FIN counting one. */
	hdrs = pkt->ihl_len + pkt->l4_len;
	if (pkt->tot_len > hdrs)
		seg_len = pkt->tot_len - hdrs;
	if (pkt->tcp_flags & TW_TCP_SYN)
		seg_len++;
	if (pkt->tcp_flags & TW_TCP_FIN)
		seg_len++;

	tw_reject_ip(&rst.ip, pkt, IPPROTO_TCP, sizeof(rst));
	rst.tcp.source = pkt->dport;
	rst.tcp.dest = pkt->sport;
	rst.tcp.seq = (pkt->tcp_flags & TW_TCP_ACK) ? pkt->ack_seq : 0;
	rst.tcp.ack_seq = bpf_htonl(bpf_ntohl(pkt->seq) + seg_len);
	rst.tcp.doff = sizeof(rst.tcp) / 4;
	rst.tcp.rst = 1;
	rst.tcp.ack = 1;

	pseudo.saddr = rst.ip.saddr;
	pseudo.daddr = rst.ip.daddr;
	pseudo.proto = IPPROTO_TCP;
	pseudo.len = bpf_htons(sizeof(rst.tcp));
	sum = bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
	if (sum < 0)
		return -1;
	sum = bpf_csum_diff(0, 0, (__be32 *)&rst.tcp, sizeof(rst.tcp), (__wsum)sum);
	if (sum < 0)
		return -1;
	rst.tcp.check = tw_csum_fold((__u64)sum);
	if (tw_csum_buf(&rst.ip, sizeof(rst.ip), &rst.ip.check) < 0)
		return -1;

	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(rst), 0) < 0)
		return -1;
	if (tw_reject_swap_macs(skb) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &rst, sizeof(rst), BPF_F_INVALIDATE_HASH) < 0)
		return -1;
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int tw_reject_udp(struct __sk_buff *skb, struct tw_pkt *pkt)
{
	struct tw_icmp_unreach4 msg = {};
	__u32 quote_len = pkt->ihl_len + 8;
	__u32 msg_len;

	/* ihl_len is 20..60, so this only restates the bound for the
	 * verifier (bpf_skb_load_bytes needs a bounded, non-zero size). */
	if (quote_len > TW_ICMP_QUOTE_MAX || quote_len < sizeof(struct iphdr) + 8)
		return -1;
	if (bpf_skb_load_bytes(skb, pkt->l3_off, msg.quote, quote_len) < 0)
		return -1;
	msg_len = sizeof(msg.ip) + sizeof(msg.icmp) + quote_len;

	msg.icmp.type = TW_ICMP_DEST_UNREACH;
	msg.icmp.code = TW_ICMP_PORT_UNREACH;
	/* The quote buffer is zero beyond quote_len, and zeros add nothing
	 * to a one's complement sum: summing the whole buffer (a constant
	 * size, as bpf_csum_diff wants multiples of 4) gives the checksum
	 * of the real message. */
	if (tw_csum_buf(&msg.icmp, sizeof(msg.icmp) + sizeof(msg.quote), &msg.icmp.checksum) < 0)
		return -1;
	tw_reject_ip(&msg.ip, pkt, IPPROTO_ICMP, msg_len);
	msg.ip.frag_off = 0; /* ICMP errors may be fragmented */
	if (tw_csum_buf(&msg.ip, sizeof(msg.ip), &msg.ip.check) < 0)
		return -1;

	if (bpf_skb_change_tail(skb, ETH_HLEN + msg_len, 0) < 0)
		return -1;
	if (tw_reject_swap_macs(skb) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &msg, msg_len, BPF_F_INVALIDATE_HASH) < 0)
		return -1;
	return bpf_redirect(skb->ifindex, 0);
}

/*
 * Rejects the packet (a TCP segment or UDP datagram to a frontend without
 * backends). Counts TW_DROP_NO_SERVICE whatever happens; returns
 * TC_ACT_REDIRECT with the reply in the skb, or TC_ACT_SHOT if no reply
 * can be made (a RST, or a helper failure). Never given a later IPv4
 * fragment (it has no L4 header to answer): lib/lb.h and lib/nodeport.h
 * drop those before they choose a backend.
 */
static __always_inline int tw_reject(struct __sk_buff *skb, struct tw_pkt *pkt)
{
	int ret = -1;

	tw_drop_count(TW_DROP_NO_SERVICE);
	if (pkt->proto == IPPROTO_TCP)
		ret = tw_reject_tcp(skb, pkt);
	else if (pkt->proto == IPPROTO_UDP)
		ret = tw_reject_udp(skb, pkt);
	return ret < 0 ? TC_ACT_SHOT : ret;
}

#endif /* TOLLWAY_LIB_REJECT_H */
