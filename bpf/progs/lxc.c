// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tc programs of a pod's host-side veth (Cilium's bpf_lxc):
 *
 *  tw_from_lxc (tc ingress: packets from the pod) translates connections
 *  to service frontends into connections to a backend (DNAT, conntrack),
 *  rejects them if the service has no backend, and tracks other traffic.
 *
 *  tw_to_lxc (tc egress: packets to the pod) restores the frontend as the
 *  source of replies (reverse NAT) and tracks other traffic.
 *
 * IPv4 only: everything else passes untouched. The logic lives in
 * bpf/lib (parse.h, ct.h, lb.h, nat.h, reject.h).
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/ct.h"
#include "lib/drop.h"
#include "lib/lb.h"
#include "lib/parse.h"

SEC("classifier")
int tw_from_lxc(struct __sk_buff *skb)
{
	struct tw_pkt pkt;
	__u64 now;
	int ret;

	ret = tw_parse(skb, &pkt);
	if (ret == TW_PARSE_PASS)
		return TC_ACT_OK;
	if (ret < 0)
		return tw_drop(-ret);

	now = bpf_ktime_get_ns();
	if (pkt.flags & TW_PKT_F_PORTS) {
		ret = tw_lb4_xlate(skb, &pkt, now);
		if (ret != TW_LB_NOT_SERVICE)
			return ret;
	}

	/* Not a service: the pod is usually the originator, else a server
	 * replying. */
	if (tw_ct_trackable(&pkt) && !tw_ct_track_tx(&pkt, now) && !tw_ct_track_reply(&pkt, now))
		tw_ct_track_new(&pkt, now);
	return TC_ACT_OK;
}

SEC("classifier")
int tw_to_lxc(struct __sk_buff *skb)
{
	struct tw_ct_entry *ct;
	struct tw_pkt pkt;
	__u16 rev_nat_index;
	__u64 now;
	int ret;

	ret = tw_parse(skb, &pkt);
	if (ret == TW_PARSE_PASS)
		return TC_ACT_OK;
	if (ret < 0)
		return tw_drop(-ret);
	if (!tw_ct_trackable(&pkt))
		return TC_ACT_OK;

	now = bpf_ktime_get_ns();
	/* A reply to a connection the pod opened, maybe to a service. */
	ct = tw_ct_track_reply(&pkt, now);
	if (ct) {
		rev_nat_index = ct->rev_nat_index;
		if (rev_nat_index && (pkt.flags & TW_PKT_F_PORTS))
			return tw_lb4_rev_xlate(skb, &pkt, rev_nat_index, now);
		return TC_ACT_OK;
	}

	/* Someone talking to the pod as a server. */
	if (!tw_ct_track_tx(&pkt, now))
		tw_ct_track_new(&pkt, now);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
