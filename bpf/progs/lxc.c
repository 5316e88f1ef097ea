// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tc programs of a pod's host-side veth (Cilium's bpf_lxc):
 *
 *  tw_from_lxc (tc ingress: packets from the pod) translates connections
 *  to service frontends into connections to a backend (DNAT, conntrack),
 *  rejects them if the service has no backend, tracks other traffic, and
 *  enforces the pod's egress policy on the connections it opens.
 *
 *  tw_to_lxc (tc egress: packets to the pod) restores the frontend as the
 *  source of replies (reverse NAT), tracks other traffic, and enforces the
 *  pod's ingress policy on the connections it receives.
 *
 * Conntrack directions (lib/ct.h): the pod's own connections have egress
 * entries (key flags 0), made here by tw_from_lxc; connections the pod
 * receives have ingress entries (TW_CT_F_INGRESS), made here by tw_to_lxc.
 * Each program first looks for the entry that makes the packet part of a
 * known connection in the pod's view, and only a packet that belongs to
 * none is a new connection, for the pod's policy to judge once:
 *
 *   tw_from_lxc                          tw_to_lxc
 *   0. service frontend: lib/lb.h        1. reverse of an egress entry:
 *      (egress entry of the backend         a reply to the pod, reverse
 *      tuple, egress policy if new)         NAT if it was a service
 *   1. forward egress entry: the pod's   2. forward ingress entry: more
 *      connection goes on                   of a connection to the pod
 *   2. reverse of an ingress entry:      3. new: ingress policy (peer =
 *      the pod answering as a server        ipcache(saddr)), then a new
 *   3. new: egress policy (peer =           ingress entry
 *      ipcache(daddr)), then a new
 *      egress entry
 *
 * Hairpin: a pod whose service connection got the pod itself as the
 * backend is SNATed to TW_LB_IPV4_LOOPBACK and sent straight back into
 * it; its answers to that address come back here and go back into it
 * too, as replies of the egress entry (lib/lb.h has the walk). Both
 * checks sit just before step 3 of each program: only packets that no
 * entry claimed pay for them.
 *
 * Two pods of one node talking: the client's veth makes and uses the
 * egress entry, the server's veth the ingress entry of the same tuple, so
 * each pod's policy sees the connection once and neither veth mistakes
 * the other's entry for its own (a server's reply never matches step 1 of
 * tw_from_lxc: the client's entry has the other orientation). A NodePort
 * flow to a local backend has the uplink's egress entry (lib/nodeport.h)
 * and, here, the pod's ingress entry, judged with the client's identity.
 *
 * IPv4 fragments: every fragment of a datagram takes its first
 * fragment's way (lib/frag.h, lib/parse.h): the same connection, the same
 * translation (later fragments get the address rewrite alone: the L4
 * header is in the first), the same verdict. A later fragment whose first
 * fragment was not seen here is dropped (TW_DROP_FRAG_NOT_FOUND), as
 * Cilium does with enable-ipv4-fragment-tracking.
 *
 * IPv4 only: everything else passes untouched. The logic lives in
 * bpf/lib (parse.h, frag.h, ct.h, lb.h, nat.h, policy.h, reject.h).
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/ct.h"
#include "lib/drop.h"
#include "lib/lb.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/events.h"

/* Drops a packet tw_parse() refused: malformed (counted), or a later
 * fragment of a datagram whose first fragment was not seen (counted and
 * reported: its IPv4 fields are known). */
static __always_inline int tw_parse_drop(struct __sk_buff *skb, struct tw_pkt *pkt, int ret,
					 __u8 dir)
{
	if (ret == -TW_DROP_FRAG_NOT_FOUND) {
		pkt->dir = dir;
		return tw_drop_pkt(skb, pkt, TW_DROP_FRAG_NOT_FOUND);
	}
	return tw_drop(-ret);
}

/* Passes a packet on, reporting it at `point` (flow events, aggregated). */
static __always_inline int tw_pass(struct __sk_buff *skb, struct tw_pkt *pkt, __u8 point,
				   __u8 reply)
{
	tw_ev_trace(skb, pkt, point, reply);
	return TC_ACT_OK;
}

SEC("classifier")
int tw_from_lxc(struct __sk_buff *skb)
{
	struct tw_pkt pkt;
	__u32 reason;
	__u64 now;
	int ret;

	ret = tw_parse(skb, &pkt);
	if (ret == TW_PARSE_PASS)
		return TC_ACT_OK;
	if (ret < 0)
		return tw_parse_drop(skb, &pkt, ret, TW_EV_F_EGRESS);
	pkt.dir = TW_EV_F_EGRESS;
	tw_ev_trace(skb, &pkt, TW_TRACE_FROM_LXC, 0);

	now = bpf_ktime_get_ns();
	if (pkt.flags & TW_PKT_F_PORTS) {
		ret = tw_lb4_xlate(skb, &pkt, now);
		if (ret == TC_ACT_OK)
			return tw_pass(skb, &pkt, TW_TRACE_TO_STACK, 0);
		if (ret != TW_LB_NOT_SERVICE)
			return ret;
	}

	if (!tw_ct_trackable(&pkt)) {
		pkt.monitor = TW_MON_NEW; /* no connection: each packet is news */
		reason = tw_policy_untracked(skb, &pkt, TW_POL_EGRESS);
		if (reason != TW_POLICY_ALLOW)
			return tw_drop_pkt(skb, &pkt, reason);
		return tw_pass(skb, &pkt, TW_TRACE_TO_STACK, 0);
	}
	/* 1. The pod's own connection. */
	if (tw_ct_track_tx(&pkt, 0, now))
		return tw_pass(skb, &pkt, TW_TRACE_TO_STACK, 0);
	/* 2. The pod answering a connection it received. */
	if (tw_ct_track_reply(&pkt, TW_CT_F_INGRESS, now))
		return tw_pass(skb, &pkt, TW_TRACE_TO_STACK, 1);
	/* The pod answering its own hairpin connection (lib/lb.h). */
	if (__builtin_expect(pkt.daddr == TW_LB_LOOPBACK, 0)) {
		ret = tw_lb4_hairpin_reply(skb, &pkt, now);
		if (ret != TW_LB_NOT_SERVICE)
			return ret;
	}
	/* 3. A new connection of the pod. */
	reason = tw_policy_check(skb, &pkt, pkt.daddr, pkt.proto, pkt.dport, TW_POL_EGRESS);
	if (reason != TW_POLICY_ALLOW)
		return tw_drop_pkt(skb, &pkt, reason);
	tw_ct_track_new(&pkt, 0, now);
	return tw_pass(skb, &pkt, TW_TRACE_TO_STACK, 0);
}

SEC("classifier")
int tw_to_lxc(struct __sk_buff *skb)
{
	struct tw_ct_entry *ct;
	struct tw_pkt pkt;
	__u16 rev_nat_index;
	__u32 reason;
	__u64 now;
	int ret;

	ret = tw_parse(skb, &pkt);
	if (ret == TW_PARSE_PASS)
		return TC_ACT_OK;
	if (ret < 0)
		return tw_parse_drop(skb, &pkt, ret, TW_EV_F_INGRESS);
	pkt.dir = TW_EV_F_INGRESS;
	if (!tw_ct_trackable(&pkt)) {
		pkt.monitor = TW_MON_NEW;
		reason = tw_policy_untracked(skb, &pkt, TW_POL_INGRESS);
		if (reason != TW_POLICY_ALLOW)
			return tw_drop_pkt(skb, &pkt, reason);
		return tw_pass(skb, &pkt, TW_TRACE_TO_LXC, 0);
	}

	now = bpf_ktime_get_ns();
	/* 1. A reply to a connection the pod opened, maybe to a service. */
	ct = tw_ct_track_reply(&pkt, 0, now);
	if (ct) {
		rev_nat_index = ct->rev_nat_index;
		if (rev_nat_index && (pkt.flags & TW_PKT_F_PORTS)) {
			ret = tw_lb4_rev_xlate(skb, &pkt, rev_nat_index, now);
			if (ret != TC_ACT_OK)
				return ret;
		}
		return tw_pass(skb, &pkt, TW_TRACE_TO_LXC, 1);
	}

	/* 2. More of a connection the pod received. */
	if (tw_ct_track_tx(&pkt, TW_CT_F_INGRESS, now))
		return tw_pass(skb, &pkt, TW_TRACE_TO_LXC, 0);
	/* The pod's own hairpin connection (lib/lb.h): the pod talking to
	 * itself, which its ingress policy does not judge (as Cilium). */
	if (__builtin_expect(pkt.saddr == TW_LB_LOOPBACK, 0) && tw_lb4_hairpin_known(&pkt, now))
		return tw_pass(skb, &pkt, TW_TRACE_TO_LXC, 0);
	/* 3. Someone opening a connection to the pod. */
	reason = tw_policy_check(skb, &pkt, pkt.saddr, pkt.proto, pkt.dport, TW_POL_INGRESS);
	if (reason != TW_POLICY_ALLOW)
		return tw_drop_pkt(skb, &pkt, reason);
	tw_ct_track_new(&pkt, TW_CT_F_INGRESS, now);
	return tw_pass(skb, &pkt, TW_TRACE_TO_LXC, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
