/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Parsing of Ethernet + IPv4 + TCP/UDP/ICMP into a struct tw_pkt.
 *
 * The result holds values, not pointers: every helper that writes to the
 * packet (bpf_skb_store_bytes, bpf_l*_csum_replace, bpf_skb_change_tail)
 * invalidates packet pointers, so later stages work from this copy.
 *
 * IPv4 fragments: the first fragment of a datagram is parsed as any packet
 * and records its L4 header in tw_frag4; a later fragment, which has none,
 * is given its first fragment's (lib/frag.h), so that every fragment goes
 * the first one's way through conntrack, translation and policy.
 */
#ifndef TOLLWAY_LIB_PARSE_H
#define TOLLWAY_LIB_PARSE_H

#include "lib/common.h"
#include "lib/frag.h"
#include "abi/drop.h"

/* tw_pkt.flags */
#define TW_PKT_F_PORTS 0x01     /* TCP or UDP: sport/dport are ports */
#define TW_PKT_F_ICMP_ECHO 0x02 /* ICMP echo request or reply: sport = id */
#define TW_PKT_F_FRAG 0x04      /* a later fragment: see tw_pkt_later_frag() */

/* tw_frag4_entry.flags keeps these bits of the first fragment as they are. */
_Static_assert(TW_FRAG_F_PORTS == TW_PKT_F_PORTS, "TW_FRAG_F_PORTS");
_Static_assert(TW_FRAG_F_ICMP_ECHO == TW_PKT_F_ICMP_ECHO, "TW_FRAG_F_ICMP_ECHO");
#define TW_PKT_F_L4 (TW_PKT_F_PORTS | TW_PKT_F_ICMP_ECHO)

struct tw_pkt {
	__u32 len;       /* skb->len: bytes accounted in conntrack */
	__u32 l3_off;    /* offset of the IPv4 header (ETH_HLEN) */
	__u32 l4_off;    /* offset of the L4 header (l3_off + IHL * 4) */
	__u32 ihl_len;   /* IPv4 header length in bytes, options included */
	__u32 l4_len;    /* TCP: doff * 4; UDP, ICMP: 8 */
	__u32 tot_len;   /* IPv4 total length, host order */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;    /* TCP/UDP source port; ICMP echo: identifier */
	__be16 dport;    /* TCP/UDP destination port; ICMP: 0 */
	__be32 seq;      /* TCP only */
	__be32 ack_seq;  /* TCP only */
	__u8 proto;
	__u8 tcp_flags;  /* TCP only: byte 13 of the header */
	__u8 icmp_type;  /* ICMP only */
	__u8 flags;      /* TW_PKT_F_* */
	/* Flow events (lib/events.h), filled on the way: */
	__u8 monitor;    /* TW_MON_*: why conntrack thinks this packet is worth a report */
	__u8 xlate;      /* TW_XLATE_*: service translation done to the packet */
	__u8 dir;        /* TW_EV_F_INGRESS / TW_EV_F_EGRESS of the endpoint, 0 = none */
	__u16 rev_nat;   /* the service's rev NAT index, 0 = none */
	__be16 xl_port;  /* DNAT: the backend port; reverse NAT: the frontend port */
	__be32 xl_addr;  /* DNAT: the backend address; reverse NAT: the frontend address */
};

/*
 * A later fragment (offset > 0, TW_PKT_F_FRAG): no L4 header in this
 * packet. sport, dport, the other flags and tcp_flags / icmp_type are its
 * first fragment's (lib/frag.h); whatever rewrites the packet leaves L4
 * alone (lib/nat.h), whatever would read L4 bytes must not (lib/events.h,
 * lib/reject.h), and it opens no connection (lib/lb.h, lib/nodeport.h).
 */
static __always_inline int tw_pkt_later_frag(const struct tw_pkt *pkt)
{
	return pkt->flags & TW_PKT_F_FRAG;
}

/* tw_pkt.monitor */
#define TW_MON_NEW 0x01      /* the packet opened a connection (or is untracked) */
#define TW_MON_FLAGS 0x02    /* TCP flags not seen before in its direction */
#define TW_MON_CTRL 0x04     /* among them SYN, FIN or RST */
#define TW_MON_INTERVAL 0x08 /* TW_AGG_INTERVAL since its direction's last report */

/* tw_pkt.xlate */
#define TW_XLATE_NONE 0
#define TW_XLATE_DNAT 1 /* to a frontend: xl_addr/xl_port is the backend */
#define TW_XLATE_REV 2  /* a reply from a backend: xl_addr/xl_port is the frontend */

/* tw_parse() results besides 0 (parsed, handle it). Negative values are
 * -reason of a drop. */
#define TW_PARSE_OK 0
#define TW_PARSE_PASS 1 /* not for us: let it through untouched */

/*
 * Makes sure the first `need` bytes are in the linear area (the only part
 * direct packet access can see), pulling them in if the skb is paged.
 * Returns -1 if the packet is shorter than `need`.
 */
static __always_inline int tw_pull(struct __sk_buff *skb, __u32 need)
{
	if (tw_data(skb) + need <= tw_data_end(skb))
		return 0;
	if (need > skb->len)
		return -1;
	return bpf_skb_pull_data(skb, need) < 0 ? -1 : 0;
}

static __always_inline int tw_parse_l4(struct __sk_buff *skb, struct tw_pkt *pkt)
{
	void *data, *data_end;
	__u32 off = pkt->l4_off;

	switch (pkt->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp;

		if (tw_pull(skb, off + sizeof(*tcp)) < 0)
			return -TW_DROP_CT_INVALID_HDR;
		data = tw_data(skb);
		data_end = tw_data_end(skb);
		/* off <= ETH_HLEN + 60: the verifier knows the bound from
		 * the 4-bit IHL, so this range check covers the header. */
		tcp = data + off;
		if ((void *)(tcp + 1) > data_end)
			return -TW_DROP_CT_INVALID_HDR;
		if (tcp->doff < 5)
			return -TW_DROP_CT_INVALID_HDR;
		pkt->sport = tcp->source;
		pkt->dport = tcp->dest;
		pkt->seq = tcp->seq;
		pkt->ack_seq = tcp->ack_seq;
		pkt->tcp_flags = ((__u8 *)tcp)[13];
		pkt->l4_len = tcp->doff * 4;
		pkt->flags |= TW_PKT_F_PORTS;
		return TW_PARSE_OK;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp;

		if (tw_pull(skb, off + sizeof(*udp)) < 0)
			return -TW_DROP_CT_INVALID_HDR;
		data = tw_data(skb);
		data_end = tw_data_end(skb);
		udp = data + off;
		if ((void *)(udp + 1) > data_end)
			return -TW_DROP_CT_INVALID_HDR;
		pkt->sport = udp->source;
		pkt->dport = udp->dest;
		pkt->l4_len = sizeof(*udp);
		pkt->flags |= TW_PKT_F_PORTS;
		return TW_PARSE_OK;
	}
	case IPPROTO_ICMP: {
		struct tw_icmphdr *icmp;

		if (tw_pull(skb, off + sizeof(*icmp)) < 0)
			return -TW_DROP_CT_INVALID_HDR;
		data = tw_data(skb);
		data_end = tw_data_end(skb);
		icmp = data + off;
		if ((void *)(icmp + 1) > data_end)
			return -TW_DROP_CT_INVALID_HDR;
		pkt->icmp_type = icmp->type;
		pkt->l4_len = sizeof(*icmp);
		if (icmp->type == TW_ICMP_ECHO || icmp->type == TW_ICMP_ECHOREPLY) {
			pkt->sport = icmp->un.echo.id;
			pkt->flags |= TW_PKT_F_ICMP_ECHO;
		}
		return TW_PARSE_OK;
	}
	default:
		/* Other protocols: tracked by nobody, translated by nobody. */
		return TW_PARSE_OK;
	}
}

/*
 * A fragment (MF set, or an offset), after the IPv4 header was read: the
 * first fragment is parsed as an unfragmented packet is and records its L4
 * header; a later one (`later`: the offset is not 0) gets its first
 * fragment's (lib/frag.h) and TW_PKT_F_FRAG. Returns TW_PARSE_OK, or
 * -reason: malformed (a first fragment too short for its L4 header), or
 * TW_DROP_FRAG_NOT_FOUND (a later fragment whose first was not seen).
 */
static __always_inline int tw_parse_frag4(struct __sk_buff *skb, struct tw_pkt *pkt, __be16 id,
					  int later)
{
	struct tw_frag4_entry entry = {};
	struct tw_frag4_key key;
	int ret;

	if (!later) {
		ret = tw_parse_l4(skb, pkt);
		if (ret != TW_PARSE_OK || !tw_frag4_tracked(pkt->proto))
			return ret;
		tw_frag4_key(&key, pkt->saddr, pkt->daddr, id, pkt->proto);
		entry.sport = pkt->sport;
		entry.dport = pkt->dport;
		entry.flags = pkt->flags & TW_PKT_F_L4;
		entry.l4_info = pkt->proto == IPPROTO_ICMP ? pkt->icmp_type : pkt->tcp_flags;
		tw_frag4_record(&key, &entry);
		return TW_PARSE_OK;
	}

	pkt->flags |= TW_PKT_F_FRAG;
	if (!tw_frag4_tracked(pkt->proto))
		return TW_PARSE_OK; /* nothing to learn from the first */
	tw_frag4_key(&key, pkt->saddr, pkt->daddr, id, pkt->proto);
	if (tw_frag4_lookup(&key, &entry) < 0)
		return -TW_DROP_FRAG_NOT_FOUND;
	pkt->sport = entry.sport;
	pkt->dport = entry.dport;
	/* The flags by protocol, as tw_parse_l4() sets them, not the
	 * entry's byte as it is: the verifier then walks the rest of the
	 * program once for each kind of first fragment (TCP, UDP, ICMP echo
	 * or not), never for flag combinations no first fragment has. */
	if (pkt->proto == IPPROTO_ICMP) {
		pkt->icmp_type = entry.l4_info;
		if (entry.flags & TW_FRAG_F_ICMP_ECHO)
			pkt->flags |= TW_PKT_F_ICMP_ECHO;
	} else {
		pkt->tcp_flags = entry.l4_info;
		pkt->flags |= TW_PKT_F_PORTS;
	}
	return TW_PARSE_OK;
}

/*
 * Parses the frame. Returns TW_PARSE_OK (a later fragment included, with
 * its first fragment's L4 fields: see tw_pkt_later_frag()), TW_PARSE_PASS
 * (not IPv4) or -reason (malformed, or TW_DROP_FRAG_NOT_FOUND: a later
 * fragment of a datagram whose first fragment was not seen; pkt has its
 * IPv4 fields then).
 */
static __always_inline int tw_parse(struct __sk_buff *skb, struct tw_pkt *pkt)
{
	void *data = tw_data(skb);
	void *data_end = tw_data_end(skb);
	struct ethhdr *eth = data;
	struct iphdr *ip;

	__builtin_memset(pkt, 0, sizeof(*pkt));
	if ((void *)(eth + 1) > data_end)
		return TW_PARSE_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TW_PARSE_PASS; /* IPv6, ARP, ...: not ours (yet) */

	if (tw_pull(skb, ETH_HLEN + sizeof(*ip)) < 0)
		return -TW_DROP_INVALID;
	data = tw_data(skb);
	data_end = tw_data_end(skb);
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return -TW_DROP_INVALID;
	if (ip->version != 4 || ip->ihl < 5)
		return -TW_DROP_INVALID;

	pkt->len = skb->len;
	pkt->l3_off = ETH_HLEN;
	pkt->ihl_len = ip->ihl * 4;
	pkt->l4_off = ETH_HLEN + pkt->ihl_len;
	pkt->tot_len = bpf_ntohs(ip->tot_len);
	pkt->saddr = ip->saddr;
	pkt->daddr = ip->daddr;
	pkt->proto = ip->protocol;

	/* Fragments take a path of their own, out of the way: unfragmented
	 * packets pay for this one test of bits already read, and no more.
	 * Written this way round, clang lays their path out straight (the
	 * fragments' is the jump), and the verifier walks less of the
	 * program twice (tests/cost.rs prints the counts). */
	if (__builtin_expect(!(ip->frag_off & bpf_htons(TW_IP_MF | TW_IP_OFFSET)), 1))
		return tw_parse_l4(skb, pkt);
	return tw_parse_frag4(skb, pkt, ip->id, !!(ip->frag_off & bpf_htons(TW_IP_OFFSET)));
}

/* TCP SYN without ACK: the only TCP packet that may open a connection. */
static __always_inline int tw_pkt_is_syn(struct tw_pkt *pkt)
{
	return pkt->proto == IPPROTO_TCP &&
	       (pkt->tcp_flags & (TW_TCP_SYN | TW_TCP_ACK)) == TW_TCP_SYN;
}

#endif /* TOLLWAY_LIB_PARSE_H */
