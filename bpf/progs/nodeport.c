// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tc programs of the node's uplink (Cilium's bpf_host, NodePort part):
 *
 *  tw_from_netdev (tc ingress: packets from the fabric) translates
 *  connections to node IP:node port, and to a LoadBalancer ingress IP or
 *  external IP:service port that reaches the node (the node need not own
 *  the address), into connections to a backend: DNAT to a local backend
 *  (the kernel routes it to the pod), DNAT + SNAT to a remote one
 *  (redirected straight back out); restores replies of SNATed flows and
 *  sends them back to the client; drops (ETP=Local) or rejects frontends
 *  without a backend; drops clients outside a LoadBalancer frontend's
 *  source ranges (spec.loadBalancerSourceRanges, TW_SVC_F_SRC_RANGE).
 *
 *  tw_to_netdev (tc egress: packets to the fabric) restores the frontend
 *  (node IP:node port, LoadBalancer or external IP:port) as the source of
 *  local backends' replies.
 *
 * IPv4 fragments: every fragment of a datagram takes its first
 * fragment's way (lib/frag.h, lib/parse.h). A later fragment whose first
 * fragment was not seen (it came first, or the first was lost) passes:
 * the node's own traffic may arrive out of order, and its stack
 * reassembles or times out; through the node, the pod's veth judges it.
 * Service traffic cannot be served that way: its later fragments open no
 * flow (nodeport.h drops them with TW_DROP_FRAG_NOT_FOUND).
 *
 * IPv4 TCP/UDP only: everything else passes untouched, and so does
 * everything while tw_config lacks TW_CFG_F_NODEPORT or a node IP. Traffic
 * to other addresses than the node IP (through the node, to its pods)
 * costs one lookup in tw_lb4_services and passes unless it is addressed to
 * a LoadBalancer or external IP frontend.
 * The logic lives in bpf/lib (nodeport.h, and lb.h, ct.h, nat.h,
 * reject.h, shared with lxc.c).
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/drop.h"
#include "lib/nodeport.h"
#include "lib/parse.h"

SEC("classifier")
int tw_from_netdev(struct __sk_buff *skb)
{
	struct tw_lb4_service *svc;
	struct tw_lb4_key key;
	struct tw_np_cfg cfg;
	struct tw_pkt pkt;
	__u16 kinds;
	int ret;

	if (tw_np_config(skb, &cfg) < 0)
		return TC_ACT_OK;

	ret = tw_parse(skb, &pkt);
	if (ret == TW_PARSE_PASS)
		return TC_ACT_OK;
	if (ret < 0) {
		/* A malformed L4 header to the node IP (the stack would
		 * discard it too) is dropped and counted. A later fragment
		 * whose first fragment was not seen passes: it may be the
		 * node's own traffic arriving out of order. Traffic through
		 * the node (to pods) is not ours to judge. A broken IPv4
		 * header leaves daddr unknown (0): it passes. */
		if (pkt.daddr != cfg.node_ip || ret == -TW_DROP_FRAG_NOT_FOUND)
			return TC_ACT_OK;
		return tw_drop(-ret);
	}
	if (!(pkt.flags & TW_PKT_F_PORTS))
		return TC_ACT_OK;

	if (pkt.daddr == cfg.node_ip) {
		/* 1. The backend's reply of a flow we SNATed (replies come
		 * back to node IP:nat port, whatever the frontend was). */
		ret = tw_np_rev_snat(skb, &pkt, &cfg, bpf_ktime_get_ns());
		if (ret != TW_NP_NO_MATCH)
			return ret;
		kinds = TW_NP_KINDS_NODE_IP;
	} else {
		/* Through the node (to its pods, to other hosts), or to a
		 * LoadBalancer / external IP: one lookup tells. */
		kinds = TW_NP_KINDS_OTHER;
	}
	/* 2. A frontend of ours; else the node's own traffic, or traffic
	 * through the node, untouched. */
	svc = tw_np_frontend(&key, &pkt, kinds);
	if (!svc)
		return TC_ACT_OK;
	/* 2b. A LoadBalancer frontend with source ranges drops the clients
	 * outside them, before any translation or conntrack entry. */
	if ((svc->flags & TW_SVC_F_SRC_RANGE) &&
	    !tw_np_src_range_ok(svc->rev_nat_index, pkt.saddr))
		return tw_drop_pkt(skb, &pkt, TW_DROP_NOT_IN_SRC_RANGE);
	/* 3. Translated, as a node port is. */
	return tw_np_xlate(skb, &pkt, &cfg, &key, svc, bpf_ktime_get_ns());
}

SEC("classifier")
int tw_to_netdev(struct __sk_buff *skb)
{
	struct tw_np_cfg cfg;
	struct tw_pkt pkt;

	if (tw_np_config(skb, &cfg) < 0)
		return TC_ACT_OK;
	/* What the node sends is never dropped here: malformed or not
	 * IPv4, it leaves as the stack made it. */
	if (tw_parse(skb, &pkt) != TW_PARSE_OK || !(pkt.flags & TW_PKT_F_PORTS))
		return TC_ACT_OK;
	/* The node's own traffic, our SNATed packets and restored replies
	 * of node ports (redirected here from ingress) already have the
	 * node IP as source: no lookup needed. Restored replies of
	 * LoadBalancer / external IP flows carry that IP: their lookup
	 * below finds no entry (the key is the client's flow to the
	 * frontend, flags 0, which no program writes) and they pass. */
	if (pkt.saddr == cfg.node_ip)
		return TC_ACT_OK;
	return tw_np_rev_dnat(skb, &pkt, bpf_ktime_get_ns());
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
