/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection tracking on tw_ct4 (abi/ct.h).
 *
 * An entry is keyed by the tuple as its originator sent it; "tx" is the
 * originator -> responder direction, "rx" the reply direction. ICMP echo
 * keys hold the identifier in sport and 0 in dport in both directions (the
 * reply carries the same identifier), so reversing an ICMP key only swaps
 * the addresses.
 *
 * An expired entry counts as absent (the next packet that would create
 * one overwrites it), and so does a closing TCP entry (FIN both ways, or
 * RST) when a new SYN arrives on its tuple: the port was reused.
 *
 * Directions (the key's TW_CT_F_INGRESS flag): tw_ct4 is one map per
 * node, and each endpoint keeps its own view of a connection, so that its
 * policy judges each new connection exactly once:
 *  - an entry without the flag ("egress entry") is made on the
 *    originator's side: by tw_from_lxc when a pod opens a connection, by
 *    the uplink for a NodePort flow to a local backend;
 *  - an entry with TW_CT_F_INGRESS ("ingress entry") is made by tw_to_lxc
 *    when a connection arrives at a pod, after the pod's ingress policy
 *    allowed it.
 * A connection between two pods of the node thus has two entries with the
 * same tuple: the client's egress entry (accounted by the client's veth)
 * and the server's ingress entry (accounted by the server's veth).
 */
#ifndef TOLLWAY_LIB_CT_H
#define TOLLWAY_LIB_CT_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"

#define TW_CT_DIR_TX 0
#define TW_CT_DIR_RX 1

static __always_inline void tw_ct_key_fwd(struct tw_ct4_key *key, struct tw_pkt *pkt)
{
	key->saddr = pkt->saddr;
	key->daddr = pkt->daddr;
	key->sport = pkt->sport;
	key->dport = pkt->dport;
	key->proto = pkt->proto;
	key->flags = 0;
	key->pad = 0;
}

/* The key of the connection this packet is a reply of. */
static __always_inline void tw_ct_key_rev(struct tw_ct4_key *key, struct tw_pkt *pkt)
{
	key->saddr = pkt->daddr;
	key->daddr = pkt->saddr;
	if (pkt->flags & TW_PKT_F_PORTS) {
		key->sport = pkt->dport;
		key->dport = pkt->sport;
	} else {
		key->sport = pkt->sport; /* ICMP echo identifier */
		key->dport = 0;
	}
	key->proto = pkt->proto;
	key->flags = 0;
	key->pad = 0;
}

static __always_inline int tw_ct_closing(const struct tw_ct_entry *ct)
{
	const __u16 fin_both = TW_CT_S_FIN_TX | TW_CT_S_FIN_RX;

	return (ct->state & TW_CT_S_RST) || (ct->state & fin_both) == fin_both;
}

/* The live entry for `key`, or NULL (absent, expired, or a closing TCP
 * entry hit by a new SYN). */
static __always_inline struct tw_ct_entry *
tw_ct_lookup(const struct tw_ct4_key *key, struct tw_pkt *pkt, __u64 now)
{
	struct tw_ct_entry *ct;

	ct = bpf_map_lookup_elem(&tw_ct4, key);
	if (!ct)
		return NULL;
	if (ct->expires <= now)
		return NULL;
	if (tw_pkt_is_syn(pkt) && tw_ct_closing(ct))
		return NULL;
	return ct;
}

/* Whether this packet may open a connection that nobody tracks yet: a TCP
 * SYN, any UDP datagram, an ICMP echo request. Mid-stream TCP may not. */
static __always_inline int tw_ct_may_create(struct tw_pkt *pkt)
{
	switch (pkt->proto) {
	case IPPROTO_TCP:
		return tw_pkt_is_syn(pkt);
	case IPPROTO_UDP:
		return 1;
	case IPPROTO_ICMP:
		return (pkt->flags & TW_PKT_F_ICMP_ECHO) && pkt->icmp_type == TW_ICMP_ECHO;
	default:
		return 0;
	}
}

/* Lifetime in seconds of an entry in state `state`. */
static __always_inline __u64 tw_ct_lifetime(__u8 proto, __u16 state)
{
	const __u16 fin_both = TW_CT_S_FIN_TX | TW_CT_S_FIN_RX;

	if (proto != IPPROTO_TCP)
		return TW_CT_LIFETIME_NONTCP;
	if ((state & TW_CT_S_RST) || (state & fin_both) == fin_both)
		return TW_CT_LIFETIME_TCP_CLOSE;
	if (state & TW_CT_S_ESTABLISHED)
		return TW_CT_LIFETIME_TCP_ESTABLISHED;
	return TW_CT_LIFETIME_TCP_SYN;
}

/*
 * Accounts one packet in direction `dir` on `ct` (a map value or a new
 * entry on the stack): counters, TCP flags and state, expiry.
 *
 * Counters are added atomically (several CPUs may carry one flow); the
 * state and flag updates are plain read-modify-writes, and a lost bit
 * there only shortens or lengthens one entry's life (or repeats a flow
 * event).
 *
 * Also tells the flow events (lib/events.h) whether this packet is worth
 * a report: pkt->monitor gets TW_MON_FLAGS (and TW_MON_CTRL for SYN, FIN,
 * RST) for TCP flags its direction has not shown before, and
 * TW_MON_INTERVAL once TW_AGG_INTERVAL seconds passed since that
 * direction's last report.
 */
static __always_inline void tw_ct_account(struct tw_ct_entry *ct, struct tw_pkt *pkt,
					  int dir, __u64 now)
{
	__u8 flags = pkt->tcp_flags;
	__u16 state = ct->state;
	__u32 sec = (__u32)(now / TW_NSEC_PER_SEC);
	__u8 fresh;

	fresh = flags & ~(dir == TW_CT_DIR_TX ? ct->tx_flags_seen : ct->rx_flags_seen);
	if (fresh) {
		pkt->monitor |= TW_MON_FLAGS;
		if (fresh & (TW_TCP_SYN | TW_TCP_FIN | TW_TCP_RST))
			pkt->monitor |= TW_MON_CTRL;
	}
	if (dir == TW_CT_DIR_TX) {
		if (sec - ct->tx_reported >= TW_AGG_INTERVAL)
			pkt->monitor |= TW_MON_INTERVAL;
		if (pkt->monitor)
			ct->tx_reported = sec;
	} else {
		if (sec - ct->rx_reported >= TW_AGG_INTERVAL)
			pkt->monitor |= TW_MON_INTERVAL;
		if (pkt->monitor)
			ct->rx_reported = sec;
	}

	if (dir == TW_CT_DIR_TX) {
		__sync_fetch_and_add(&ct->tx_packets, 1);
		__sync_fetch_and_add(&ct->tx_bytes, pkt->len);
		if (flags)
			ct->tx_flags_seen |= flags;
	} else {
		__sync_fetch_and_add(&ct->rx_packets, 1);
		__sync_fetch_and_add(&ct->rx_bytes, pkt->len);
		if (flags)
			ct->rx_flags_seen |= flags;
		state |= TW_CT_S_SEEN_REPLY;
	}

	if (pkt->proto == IPPROTO_TCP) {
		if ((flags & (TW_TCP_SYN | TW_TCP_ACK)) == TW_TCP_SYN)
			state |= TW_CT_S_SYN_SEEN;
		if (flags & TW_TCP_FIN)
			state |= dir == TW_CT_DIR_TX ? TW_CT_S_FIN_TX : TW_CT_S_FIN_RX;
		if (flags & TW_TCP_RST)
			state |= TW_CT_S_RST;
		/* Established once each side has sent an ACK: the SYN-ACK
		 * and the handshake's final ACK. */
		if ((ct->tx_flags_seen & TW_TCP_ACK) && (ct->rx_flags_seen & TW_TCP_ACK))
			state |= TW_CT_S_ESTABLISHED;
	}

	if (state != ct->state)
		ct->state = state;
	ct->expires = now + tw_ct_lifetime(pkt->proto, state) * TW_NSEC_PER_SEC;
}

/*
 * Creates (or overwrites) the entry `key` for a connection this packet
 * opens, accounted as its first tx packet. Returns 0 or a negative error.
 */
static __always_inline int tw_ct_create(const struct tw_ct4_key *key, struct tw_pkt *pkt,
					__u32 backend_id, __u16 rev_nat_index, __u64 now)
{
	struct tw_ct_entry ct = {};

	ct.backend_id = backend_id;
	ct.rev_nat_index = rev_nat_index;
	ct.created = (__u32)(now / TW_NSEC_PER_SEC);
	pkt->monitor |= TW_MON_NEW;
	tw_ct_account(&ct, pkt, TW_CT_DIR_TX, now);
	return bpf_map_update_elem(&tw_ct4, key, &ct, BPF_ANY);
}

/*
 * Bookkeeping of packets no service translates, in three steps the
 * programs combine in their own order (see lxc.c), each on the entries of
 * one direction (`flags`: 0 or TW_CT_F_INGRESS):
 *  - tw_ct_track_tx: the packet's own tuple is tracked: account it (tx);
 *  - tw_ct_track_reply: the reversed tuple is tracked: the packet is a
 *    reply, account it (rx) and return the entry (it may ask for reverse
 *    NAT);
 *  - tw_ct_track_new: neither: open an entry if the packet may open one.
 * Failing to create an entry is no reason to drop an untranslated packet:
 * tracking is best effort there.
 */
/*
 * ICMP echo keys are the same both ways (see the top), so the message type
 * tells the directions apart: only a request goes the way of the entry's
 * originator, only a reply the other way. An echo request towards a pod
 * that once pinged its sender with the same identifier is no reply: it is
 * a new connection of the other side, for that pod's policy to judge.
 */
static __always_inline int tw_ct_icmp_fits(struct tw_pkt *pkt, int dir)
{
	if (pkt->proto != IPPROTO_ICMP)
		return 1;
	return pkt->icmp_type == (dir == TW_CT_DIR_TX ? TW_ICMP_ECHO : TW_ICMP_ECHOREPLY);
}

static __always_inline int tw_ct_track_tx(struct tw_pkt *pkt, __u8 flags, __u64 now)
{
	struct tw_ct4_key key;
	struct tw_ct_entry *ct;

	if (!tw_ct_icmp_fits(pkt, TW_CT_DIR_TX))
		return 0;
	tw_ct_key_fwd(&key, pkt);
	key.flags = flags;
	ct = tw_ct_lookup(&key, pkt, now);
	if (!ct)
		return 0;
	tw_ct_account(ct, pkt, TW_CT_DIR_TX, now);
	return 1;
}

static __always_inline struct tw_ct_entry *tw_ct_track_reply(struct tw_pkt *pkt, __u8 flags,
							     __u64 now)
{
	struct tw_ct4_key key;
	struct tw_ct_entry *ct;

	if (!tw_ct_icmp_fits(pkt, TW_CT_DIR_RX))
		return NULL;
	tw_ct_key_rev(&key, pkt);
	key.flags = flags;
	ct = tw_ct_lookup(&key, pkt, now);
	if (ct)
		tw_ct_account(ct, pkt, TW_CT_DIR_RX, now);
	return ct;
}

static __always_inline void tw_ct_track_new(struct tw_pkt *pkt, __u8 flags, __u64 now)
{
	struct tw_ct4_key key;

	if (!tw_ct_may_create(pkt))
		return;
	tw_ct_key_fwd(&key, pkt);
	key.flags = flags;
	tw_ct_create(&key, pkt, 0, 0, now);
}

/* Whether the packet belongs to tracked traffic at all (TCP, UDP, ICMP
 * echo); anything else passes without conntrack. */
static __always_inline int tw_ct_trackable(struct tw_pkt *pkt)
{
	return pkt->flags & (TW_PKT_F_PORTS | TW_PKT_F_ICMP_ECHO);
}

#endif /* TOLLWAY_LIB_CT_H */
