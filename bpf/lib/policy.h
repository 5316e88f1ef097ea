/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Identity-based L3/L4 policy (abi/policy.h): the verdict of a pod's
 * policy for a connection it opens (egress) or receives (ingress).
 *
 * Only the first packet of a connection is judged: the callers (lxc.c,
 * lb.h) ask for a verdict only when conntrack knows no entry the packet
 * belongs to in that endpoint's direction, and create the entry right
 * after an allow, so replies and established packets are never checked
 * (see lxc.c for the lookup order). Packets of protocols conntrack does
 * not track have no connections: each one is judged.
 *
 * The verdict, as in abi/policy.h:
 *  - no tw_endpoints entry for the veth: the pod is not managed, allow;
 *  - ingress from TW_ID_HOST is always allowed (Cilium's allow-localhost:
 *    kubelet probes come from the node);
 *  - {peer identity, dir, proto, dport} and {TW_ID_ANY, dir, proto, dport}
 *    are looked up (full prefix length) in the endpoint's trie; a deny in
 *    either drops (TW_DROP_POLICY_DENY), else an allow in either passes;
 *  - else the direction's default: default-deny drops
 *    (TW_DROP_POLICY_DENIED), otherwise allow.
 * The entry that decided counts the packet (packets, bytes).
 */
#ifndef TOLLWAY_LIB_POLICY_H
#define TOLLWAY_LIB_POLICY_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/identity.h"
#include "lib/events.h"

/* tw_policy_check() result when the packet may pass. */
#define TW_POLICY_ALLOW 0

static __always_inline struct tw_policy_entry *tw_policy_lookup(void *policy, __u32 identity,
								__u8 egress, __u8 proto,
								__be16 dport)
{
	struct tw_policy_key key = {
		.prefixlen = 64,
		.identity = identity,
		.egress = egress,
		.proto = proto,
		.dport = dport,
	};

	return bpf_map_lookup_elem(policy, &key);
}

static __always_inline void tw_policy_hit(struct tw_policy_entry *entry, __u32 bytes)
{
	__sync_fetch_and_add(&entry->packets, 1);
	__sync_fetch_and_add(&entry->bytes, bytes);
}

/*
 * The verdict of the policy of the endpoint behind the packet's veth on
 * the new connection `pkt` opens with `peer` (egress: the destination,
 * after service translation; ingress: the source) to port `dport`
 * (egress: the backend port; ICMP echo and protocols without ports: 0)
 * over `proto`, in direction `egress`. The entry that decided counts the
 * packet. A verdict that a policy rule decided, or a default deny, is
 * reported as a policy-verdict event (a direction no policy isolates is
 * allowed by an entry of rule 0, which is not). Returns TW_POLICY_ALLOW
 * or the drop reason (the caller counts the drop).
 */
static __always_inline __u32 tw_policy_check(struct __sk_buff *skb, struct tw_pkt *pkt, __be32 peer,
					     __u8 proto, __be16 dport, __u8 egress)
{
	struct tw_policy_entry *by_peer = NULL, *by_any = NULL, *hit = NULL;
	__u32 flags, ep_id, identity, ifindex = skb->ifindex, bytes = pkt->len;
	__u32 reason = TW_POLICY_ALLOW;
	struct tw_endpoint *ep;
	__u8 match = TW_MATCH_NONE;
	void *policy;

	ep = bpf_map_lookup_elem(&tw_endpoints, &ifindex);
	if (!ep)
		return TW_POLICY_ALLOW; /* not a managed endpoint */
	flags = ep->flags;
	ep_id = ep->endpoint_id;

	identity = tw_ipcache_identity(peer);
	if (egress == TW_POL_INGRESS && identity == TW_ID_HOST)
		return TW_POLICY_ALLOW;

	if (flags & TW_EP_F_POLICY) {
		policy = bpf_map_lookup_elem(&tw_policy, &ep_id);
		if (policy) {
			by_peer = tw_policy_lookup(policy, identity, egress, proto, dport);
			if (identity != TW_ID_ANY)
				by_any = tw_policy_lookup(policy, TW_ID_ANY, egress, proto, dport);
		}
	}
	/* A deny anywhere wins over every allow. */
	if (by_peer && (by_peer->flags & TW_POL_F_DENY)) {
		hit = by_peer;
		reason = TW_DROP_POLICY_DENY;
	} else if (by_any && (by_any->flags & TW_POL_F_DENY)) {
		hit = by_any;
		reason = TW_DROP_POLICY_DENY;
	} else if (by_peer) {
		hit = by_peer;
	} else if (by_any) {
		hit = by_any;
	} else if (flags & (egress == TW_POL_EGRESS ? TW_EP_F_EGRESS_DEFAULT_DENY
						    : TW_EP_F_INGRESS_DEFAULT_DENY)) {
		reason = TW_DROP_POLICY_DENIED;
	}

	if (hit) {
		tw_policy_hit(hit, bytes);
		if (hit == by_peer)
			match = hit->l4 ? TW_MATCH_L3_L4 : TW_MATCH_L3_ONLY;
		else
			match = hit->l4 ? TW_MATCH_L4_ONLY : TW_MATCH_ALL;
		if (hit->rule_id || reason)
			tw_ev_policy(skb, pkt, reason, match, hit->rule_id);
	} else if (reason) {
		tw_ev_policy(skb, pkt, reason, TW_MATCH_NONE, 0);
	}
	return reason;
}

/*
 * Packets that conntrack does not track (tw_ct_trackable() is false), in
 * direction `egress` of the pod. ICMP other than echo (errors: unreachable,
 * fragmentation needed, time exceeded) passes: it is related to
 * connections whose policy was checked, and PMTU discovery needs it (its
 * quoted tuple is not matched against conntrack yet). Every other protocol
 * has no connections to remember: each packet is judged, with port 0.
 * Returns TW_POLICY_ALLOW or the drop reason.
 */
static __always_inline __u32 tw_policy_untracked(struct __sk_buff *skb,
						 struct tw_pkt *pkt, __u8 egress)
{
	if (pkt->proto == IPPROTO_ICMP)
		return TW_POLICY_ALLOW;
	return tw_policy_check(skb, pkt, egress == TW_POL_EGRESS ? pkt->daddr : pkt->saddr,
			       pkt->proto, 0, egress);
}

#endif /* TOLLWAY_LIB_POLICY_H */
