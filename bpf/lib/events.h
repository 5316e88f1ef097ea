/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow events (abi/events.h) into the tw_events ring buffer: traces at the
 * observation points, drops with their reason, policy verdicts and socket
 * translations. What the agent decodes into Hubble-like flows.
 *
 * Never in the way of a packet: an event the ring has no room for is
 * counted in tw_events_lost and forgotten; emitting returns nothing the
 * caller could act on.
 *
 * Aggregation (tw_events_config.level), as Cilium's monitor aggregation:
 *  - NONE: every packet at every observation point;
 *  - LOW: the receiving points (FROM_*) are left out;
 *  - MEDIUM (default): and a connection's packets are reported only when
 *    conntrack says so (tw_pkt.monitor, set by lib/ct.h): the packet that
 *    opened it, a TCP flag not seen before in its direction, and then at
 *    most once per TW_AGG_INTERVAL seconds per direction;
 *  - MAXIMUM: only the opening packet and the first SYN, FIN or RST of
 *    each direction.
 * Drops and policy verdicts are always reported (they are rare, or they
 * are what a user is looking for), and so are DNS messages (UDP port 53),
 * with up to TW_EVENTS_CAP_MAX bytes of the message.
 */
#ifndef TOLLWAY_LIB_EVENTS_H
#define TOLLWAY_LIB_EVENTS_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/identity.h"

#define TW_DNS_PORT 53

static __always_inline struct tw_events_config *tw_ev_config(void)
{
	__u32 zero = 0;
	struct tw_events_config *cfg = bpf_map_lookup_elem(&tw_events_cfg, &zero);

	return cfg && cfg->enabled ? cfg : NULL;
}

static __always_inline void tw_ev_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&tw_events_lost, &zero);

	/* Per-CPU value: only this CPU writes it. */
	if (lost)
		*lost += 1;
}

static __always_inline int tw_pkt_is_dns(struct tw_pkt *pkt)
{
	return pkt->proto == IPPROTO_UDP &&
	       (pkt->sport == bpf_htons(TW_DNS_PORT) || pkt->dport == bpf_htons(TW_DNS_PORT));
}

/* The header of an event about `pkt`, as the endpoint sees it: a DNATed
 * packet goes to its backend (the frontend is orig_addr), a reverse-NATed
 * one still comes from its backend (the frontend is orig_addr), as Hubble
 * shows them. */
static __always_inline void tw_ev_fill(struct tw_event *ev, struct __sk_buff *skb,
				       struct tw_pkt *pkt, __u8 type, __u8 subtype)
{
	ev->ts = bpf_ktime_get_ns();
	ev->ev_type = type;
	ev->subtype = subtype;
	ev->proto = pkt->proto;
	ev->tcp_flags = pkt->proto == IPPROTO_ICMP ? pkt->icmp_type : pkt->tcp_flags;
	ev->ifindex = skb->ifindex;
	ev->saddr = pkt->saddr;
	ev->daddr = pkt->daddr;
	ev->sport = pkt->sport;
	ev->dport = pkt->dport;
	ev->orig_addr = 0;
	ev->orig_port = 0;
	if (pkt->xlate == TW_XLATE_DNAT) {
		ev->daddr = pkt->xl_addr;
		ev->dport = pkt->xl_port;
		ev->orig_addr = pkt->daddr;
		ev->orig_port = pkt->dport;
	} else if (pkt->xlate == TW_XLATE_REV) {
		ev->orig_addr = pkt->xl_addr;
		ev->orig_port = pkt->xl_port;
	}
	ev->src_id = tw_ipcache_identity(ev->saddr);
	ev->dst_id = tw_ipcache_identity(ev->daddr);
	ev->flags = pkt->dir;
	if (pkt->monitor & TW_MON_NEW)
		ev->flags |= TW_EV_F_NEW;
	ev->match_type = 0;
	ev->len = skb->len;
	ev->cap_len = 0;
	ev->rev_nat = pkt->rev_nat;
	ev->rule_id = 0;
	ev->cgroup_id = 0;
}

/*
 * Reserves and fills an event (with the DNS message behind it for UDP
 * port 53), or returns NULL (events off, or the ring is full: counted).
 * The caller may set more fields, then submits with tw_ev_submit().
 */
static __always_inline struct tw_event *tw_ev_begin(struct __sk_buff *skb, struct tw_pkt *pkt,
						     __u8 type, __u8 subtype)
{
	struct tw_event *ev;
	__u32 off, cap;

	/* A later fragment of a DNS message has none of its header. */
	if (tw_pkt_is_dns(pkt) && !tw_pkt_later_frag(pkt)) {
		ev = bpf_ringbuf_reserve(&tw_events, sizeof(*ev) + TW_EVENTS_CAP_MAX, 0);
		if (!ev) {
			tw_ev_lost();
			return NULL;
		}
		tw_ev_fill(ev, skb, pkt, type, subtype);
		off = pkt->l4_off + sizeof(struct udphdr);
		cap = skb->len > off ? skb->len - off : 0;
		if (cap > TW_EVENTS_CAP_MAX)
			cap = TW_EVENTS_CAP_MAX;
		if (cap > 0) {
			/* The same number, in bounds the verifier can see:
			 * 1..TW_EVENTS_CAP_MAX (a power of two). */
			cap = ((cap - 1) & (TW_EVENTS_CAP_MAX - 1)) + 1;
			if (bpf_skb_load_bytes(skb, off, (void *)(ev + 1), cap) == 0)
				ev->cap_len = (__u16)cap;
		}
		return ev;
	}
	ev = bpf_ringbuf_reserve(&tw_events, sizeof(*ev), 0);
	if (!ev) {
		tw_ev_lost();
		return NULL;
	}
	tw_ev_fill(ev, skb, pkt, type, subtype);
	return ev;
}

/* Submits without waking the reader until TW_EVENTS_WAKEUP_BYTES are
 * waiting: the reader polls on a timeout anyway, and a wakeup per event
 * would cost every reported packet an interrupt. */
static __always_inline void tw_ev_submit(struct tw_event *ev)
{
	__u64 unread = bpf_ringbuf_query(&tw_events, BPF_RB_AVAIL_DATA);

	bpf_ringbuf_submit(ev, unread >= TW_EVENTS_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
								 : BPF_RB_NO_WAKEUP);
}

/* Whether the aggregation level reports a trace of `pkt` at `point`. */
static __always_inline int tw_ev_trace_wanted(struct tw_events_config *cfg, struct tw_pkt *pkt,
					      __u8 point)
{
	__u32 level = cfg->level;

	if (level == TW_AGG_NONE)
		return 1;
	if (point == TW_TRACE_FROM_LXC || point == TW_TRACE_FROM_NETWORK)
		return 0;
	if (level == TW_AGG_LOW || tw_pkt_is_dns(pkt))
		return 1;
	if (level == TW_AGG_MEDIUM)
		return pkt->monitor != 0;
	return pkt->monitor & (TW_MON_NEW | TW_MON_CTRL);
}

/* A trace of `pkt` at observation point `point` (TW_TRACE_*), if the
 * aggregation level wants it. */
static __always_inline void tw_ev_trace(struct __sk_buff *skb, struct tw_pkt *pkt, __u8 point,
					__u8 reply)
{
	struct tw_events_config *cfg = tw_ev_config();
	struct tw_event *ev;

	if (!cfg || !tw_ev_trace_wanted(cfg, pkt, point))
		return;
	ev = tw_ev_begin(skb, pkt, TW_EV_TRACE, point);
	if (!ev)
		return;
	if (reply)
		ev->flags |= TW_EV_F_REPLY;
	tw_ev_submit(ev);
}

/* A drop of `pkt` for `reason`. */
static __always_inline void tw_ev_drop(struct __sk_buff *skb, struct tw_pkt *pkt, __u32 reason)
{
	struct tw_event *ev;

	if (!tw_ev_config())
		return;
	ev = tw_ev_begin(skb, pkt, TW_EV_DROP, (__u8)reason);
	if (ev)
		tw_ev_submit(ev);
}

/* The policy verdict on the connection `pkt` opens: `reason` 0 (allowed)
 * or the drop reason, the identity of the peer the policy judged, the
 * match type (TW_MATCH_*) and the deciding entry's rule. */
static __always_inline void tw_ev_policy(struct __sk_buff *skb, struct tw_pkt *pkt, __u32 reason,
					 __u8 match, __u32 rule_id)
{
	struct tw_event *ev;

	if (!tw_ev_config())
		return;
	ev = tw_ev_begin(skb, pkt, TW_EV_POLICY_VERDICT, (__u8)reason);
	if (!ev)
		return;
	if (!reason)
		ev->flags |= TW_EV_F_ALLOWED;
	ev->flags |= TW_EV_F_NEW;
	ev->match_type = match;
	ev->rule_id = rule_id;
	tw_ev_submit(ev);
}

#endif /* TOLLWAY_LIB_EVENTS_H */
