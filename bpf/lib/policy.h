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

/* tw_policy_check() result when the packet may pass. */
#define TW_POLICY_ALLOW 0

/* The identity of an address: its longest ipcache prefix, else WORLD. */
static __always_inline __u32 tw_ipcache_identity(__be32 addr)
{
	struct tw_ipcache_key key = {
		.prefixlen = 32,
		.address = addr,
	};
	struct tw_ipcache_entry *entry;

	entry = bpf_map_lookup_elem(&tw_ipcache4, &key);
	return entry ? entry->identity : TW_ID_WORLD;
}

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
 * The verdict of the policy of the endpoint behind veth `ifindex` on a new
 * connection with `peer` (egress: the destination, after service
 * translation; ingress: the source) to port `dport` (egress: the backend
 * port; ICMP echo and protocols without ports: 0) over `proto`. `bytes`
 * is what the hit counters add. Returns TW_POLICY_ALLOW or the drop
 * reason (the caller counts the drop).
 */
static __always_inline __u32 tw_policy_check(__u32 ifindex, __be32 peer, __u8 proto,
					     __be16 dport, __u32 bytes, __u8 egress)
{
	struct tw_policy_entry *by_peer = NULL, *by_any = NULL;
	struct tw_endpoint *ep;
	__u32 flags, ep_id, identity;
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
		tw_policy_hit(by_peer, bytes);
		return TW_DROP_POLICY_DENY;
	}
	if (by_any && (by_any->flags & TW_POL_F_DENY)) {
		tw_policy_hit(by_any, bytes);
		return TW_DROP_POLICY_DENY;
	}
	if (by_peer) {
		tw_policy_hit(by_peer, bytes);
		return TW_POLICY_ALLOW;
	}
	if (by_any) {
		tw_policy_hit(by_any, bytes);
		return TW_POLICY_ALLOW;
	}

	if (flags & (egress == TW_POL_EGRESS ? TW_EP_F_EGRESS_DEFAULT_DENY
					     : TW_EP_F_INGRESS_DEFAULT_DENY))
		return TW_DROP_POLICY_DENIED;
	return TW_POLICY_ALLOW;
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
static __always_inline __u32 tw_policy_untracked(const struct __sk_buff *skb,
						 const struct tw_pkt *pkt, __u8 egress)
{
	if (pkt->proto == IPPROTO_ICMP)
		return TW_POLICY_ALLOW;
	return tw_policy_check(skb->ifindex, egress == TW_POL_EGRESS ? pkt->daddr : pkt->saddr,
			       pkt->proto, 0, pkt->len, egress);
}

#endif /* TOLLWAY_LIB_POLICY_H */
