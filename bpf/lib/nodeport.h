/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * NodePort on the node's uplink (Cilium's bpf_host nodeport_lb4), used by
 * progs/nodeport.c only.
 *
 * A client outside the node sends to node IP:node port, or to a
 * LoadBalancer ingress IP or external IP:service port that reaches this
 * node (a MetalLB announcement, a router's route): the node need not own
 * that address, the packet is translated before the kernel routes it.
 * Below, "node IP:node port" stands for either frontend: both take the
 * same path, and replies carry the frontend the client sent to. The
 * frontend is looked up in the EXT scope (the client is external; an
 * ETP=Local service's EXT scope lists only local backends), then:
 *
 *  - local backend: DNAT only, the client's address is kept, the kernel
 *    routes the packet to the pod. On the pod's veth the flow is a
 *    connection the pod receives: tw_to_lxc judges it with the pod's
 *    ingress policy (peer: the client's identity) and tracks it in an
 *    ingress entry of its own (TW_CT_F_INGRESS, lib/ct.h), apart from our
 *    connection entry (an egress entry: the uplink acts for the
 *    originator). The reply comes back from the pod through tw_from_lxc
 *    (conntrack bookkeeping only: the reply of the pod's ingress entry)
 *    and leaves through the uplink's egress, where tw_to_netdev finds our
 *    connection entry (TW_CT_S_NODEPORT) and restores node IP:node port as
 *    the source (the frontend of the entry's rev_nat_index: each frontend
 *    has its own). tw_to_lxc never sees that reply, and tw_from_lxc never
 *    NATs non-service traffic, so the reply is translated exactly once;
 *
 *  - remote backend: DNAT and SNAT to node IP:nat port, so that the reply
 *    comes back to this node (the backend's node would otherwise answer
 *    the client directly, from the wrong address). The reply (backend ->
 *    node IP:nat port) is found in tw_np_nat4 at the uplink's ingress and
 *    turned back into node IP:node port -> client. Both directions leave
 *    with bpf_redirect_neigh(): the packet has a local source address now
 *    (node IP), which the kernel's forwarding path drops as a martian,
 *    and handing it to the local stack would be pointless; redirect_neigh
 *    does the FIB lookup (route via the backend's node, or the client on
 *    the fabric) and fills in both MAC addresses from the neighbour table,
 *    resolving it first if needed.
 *
 * Conntrack (tw_ct4, lib/ct.h):
 *  - the SERVICE entry {client, node IP, client port, node port} records
 *    the backend and, for SNATed flows, the nat port, so that every packet
 *    of a flow uses the same backend and the same nat port;
 *  - local backends also get the connection entry {client, backend,
 *    client port, backend port} (key flags 0) with rev_nat_index, which
 *    tw_to_netdev looks up reversed;
 *  - both carry TW_CT_S_NODEPORT (so that tw_to_netdev leaves every other
 *    entry alone: pods answering remote clients also leave by the uplink).
 * A tw_np_nat4 entry lives exactly as long as its SERVICE entry: its
 * `expires` is copied from the SERVICE entry whenever a packet of the flow
 * (either direction) has been accounted there.
 */
#ifndef TOLLWAY_LIB_NODEPORT_H
#define TOLLWAY_LIB_NODEPORT_H

#include "lib/common.h"
#include "lib/ct.h"
#include "lib/drop.h"
#include "lib/lb.h"
#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "lib/reject.h"

/* tw_np_rev_snat() result when the packet is no reply of a SNATed flow. */
#define TW_NP_NO_MATCH (-1)

/* Ports tried for a new SNAT mapping (Cilium's SNAT_COLLISION_RETRIES). */
#define TW_NP_NAT_PROBES 32

/* The settings of entry 0 of tw_config that NodePort uses. */
struct tw_np_cfg {
	__be32 node_ip;
	__u32 ifindex;     /* where redirect_neigh sends: the uplink */
	__u16 port_min;    /* host order */
	__u16 port_max;
};

/*
 * Reads tw_config. Returns 0 if NodePort is enabled and configured (a node
 * IP is set), -1 if the programs must let everything pass.
 */
static __always_inline int tw_np_config(const struct __sk_buff *skb, struct tw_np_cfg *out)
{
	struct tw_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&tw_config, &zero);
	if (!cfg || !(cfg->flags & TW_CFG_F_NODEPORT) || !cfg->node_ip)
		return -1;
	out->node_ip = cfg->node_ip;
	/* The programs run on the uplink itself: its own ifindex is the
	 * right answer if the agent left the field empty. */
	out->ifindex = cfg->uplink_ifindex ? cfg->uplink_ifindex : skb->ifindex;
	out->port_min = cfg->nat_port_min;
	out->port_max = cfg->nat_port_max;
	return 0;
}

/*
 * Creates (or overwrites) a tw_ct4 entry for a NodePort flow this packet
 * opens, like tw_ct_create() but with TW_CT_S_NODEPORT and a nat port.
 * Stores the entry's deadline in *expires. Returns 0 or a negative error.
 */
static __always_inline int tw_np_ct_create(const struct tw_ct4_key *key, struct tw_pkt *pkt,
					   __u32 backend_id, __u16 rev_nat_index, __be16 nat_port,
					   __u64 now, __u64 *expires)
{
	struct tw_ct_entry ct = {};

	ct.backend_id = backend_id;
	ct.rev_nat_index = rev_nat_index;
	ct.state = TW_CT_S_NODEPORT;
	ct.nat_port = nat_port;
	ct.created = (__u32)(now / TW_NSEC_PER_SEC);
	pkt->monitor |= TW_MON_NEW;
	tw_ct_account(&ct, pkt, TW_CT_DIR_TX, now);
	*expires = ct.expires;
	return bpf_map_update_elem(&tw_ct4, key, &ct, BPF_ANY);
}

/* The tw_np_nat4 key of a SNATed flow: its reply's tuple as it arrives
 * (backend -> node IP:nat port). */
static __always_inline void tw_np_nat_key(struct tw_ct4_key *key, const struct tw_lb4_backend *be,
					  __be32 node_ip, __be16 nat_port, __u8 proto)
{
	key->saddr = be->address;
	key->daddr = node_ip;
	key->sport = be->port;
	key->dport = nat_port;
	key->proto = proto;
	key->flags = 0;
	key->pad = 0;
}

/*
 * Port allocation state, on the stack of tw_np_alloc_port() and walked by
 * bpf_loop: probe i tries port min + (start + i) % size, start random.
 */
struct tw_np_alloc {
	struct tw_ct4_key key;     /* dport is the port being probed */
	struct tw_nat4_entry entry;
	__u64 now;
	__u32 start;
	__u32 size;
	__u16 port_min;
	__be16 port;               /* the result, 0 = none free */
	__u32 pad;
};

static long tw_np_alloc_cb(__u64 index, void *data)
{
	struct tw_np_alloc *a = data;
	struct tw_nat4_entry *old;
	__u32 off;

	if (a->size == 0)
		return 1;
	off = (__u32)((a->start + index) % a->size);
	a->key.dport = bpf_htons((__u16)(a->port_min + off));
	old = bpf_map_lookup_elem(&tw_np_nat4, &a->key);
	if (old) {
		if (old->expires > a->now)
			return 0; /* in use by a live flow: next port */
		/* Expired (its flow closed, or went quiet for a CT lifetime):
		 * reclaim it. Left alone, expired mappings would only go
		 * when the LRU needs room, and a busy backend could run out
		 * of ports that nobody uses. Another CPU reclaiming the same
		 * port at the same moment loses the NOEXIST insert below
		 * (or, in the narrow window between its insert and our
		 * delete, both flows share the port until one ends). */
		bpf_map_delete_elem(&tw_np_nat4, &a->key);
	}
	/* BPF_NOEXIST: of two CPUs choosing the same free port at once, one
	 * wins; the other probes on. */
	if (bpf_map_update_elem(&tw_np_nat4, &a->key, &a->entry, BPF_NOEXIST) == 0) {
		a->port = a->key.dport;
		return 1; /* stop */
	}
	return 0;
}

/*
 * Finds a free nat port in [port_min, port_max] for the flow from the
 * client to `be` and inserts its tw_np_nat4 entry (expiring at `expires`).
 * A mapping only needs to be unique per {backend, node IP, backend port,
 * nat port}, so a port is free when that tuple has no live entry. The
 * probes start at a random port (no pattern for an outsider to predict,
 * and concurrent allocations rarely meet) and go up, wrapping, at most
 * TW_NP_NAT_PROBES times: the search stays cheap when the range is
 * nearly full, at the price of a NAT_NO_MAPPING drop that the client's
 * retransmission gets another chance at. The loop is a bpf_loop: the
 * verifier checks its body once. Returns the port (network order) or 0.
 */
static __always_inline __be16 tw_np_alloc_port(const struct tw_np_cfg *cfg,
					       struct tw_pkt *pkt,
					       const struct tw_lb4_backend *be, __u64 expires,
					       __u64 now)
{
	struct tw_np_alloc a = {};
	__u32 probes;

	if (cfg->port_min == 0 || cfg->port_max < cfg->port_min)
		return 0; /* no usable range configured */
	a.size = (__u32)cfg->port_max - cfg->port_min + 1;
	a.port_min = cfg->port_min;
	a.start = bpf_get_prandom_u32() % a.size;
	a.now = now;
	tw_np_nat_key(&a.key, be, cfg->node_ip, 0, pkt->proto);
	a.entry.expires = expires;
	a.entry.client_addr = pkt->saddr;
	a.entry.client_port = pkt->sport;
	a.entry.frontend_addr = pkt->daddr;
	a.entry.frontend_port = pkt->dport;

	probes = a.size < TW_NP_NAT_PROBES ? a.size : TW_NP_NAT_PROBES;
	if (bpf_loop(probes, tw_np_alloc_cb, &a, 0) < 0)
		return 0;
	return a.port;
}

/*
 * Makes sure the flow's mapping on `nat_port` is in place and lives until
 * `expires`: refreshes it, or puts it back if the LRU evicted it or it
 * expired. Returns 0, or -1 if the port now belongs to another live flow
 * (the caller allocates a new one).
 */
static __always_inline int tw_np_nat_keep(const struct tw_np_cfg *cfg, struct tw_pkt *pkt,
					  const struct tw_lb4_backend *be, __be16 nat_port,
					  __u64 expires, __u64 now)
{
	struct tw_nat4_entry *nat, entry = {};
	struct tw_ct4_key key;

	tw_np_nat_key(&key, be, cfg->node_ip, nat_port, pkt->proto);
	nat = bpf_map_lookup_elem(&tw_np_nat4, &key);
	if (nat) {
		if (nat->client_addr == pkt->saddr && nat->client_port == pkt->sport &&
		    nat->frontend_addr == pkt->daddr && nat->frontend_port == pkt->dport) {
			nat->expires = expires;
			return 0;
		}
		if (nat->expires > now)
			return -1; /* someone else's */
	}
	entry.expires = expires;
	entry.client_addr = pkt->saddr;
	entry.client_port = pkt->sport;
	entry.frontend_addr = pkt->daddr;
	entry.frontend_port = pkt->dport;
	return bpf_map_update_elem(&tw_np_nat4, &key, &entry, BPF_ANY) < 0 ? -1 : 0;
}

/*
 * Step 1 of tw_from_netdev: the packet (to the node IP) is the backend's
 * reply of a SNATed flow. Restores client and frontend (the node IP, or
 * the LoadBalancer / external IP the client sent to) and sends it back
 * out. Returns TW_NP_NO_MATCH if there is no live mapping, else the
 * verdict.
 */
static __always_inline int tw_np_rev_snat(struct __sk_buff *skb, struct tw_pkt *pkt,
					  const struct tw_np_cfg *cfg, __u64 now)
{
	struct tw_nat4_entry *nat;
	struct tw_ct4_key key, skey;
	struct tw_ct_entry *sct;
	__be32 client, frontend;
	__be16 cport, fport;

	tw_ct_key_fwd(&key, pkt);
	nat = bpf_map_lookup_elem(&tw_np_nat4, &key);
	if (!nat || nat->expires <= now)
		return TW_NP_NO_MATCH;
	client = nat->client_addr;
	cport = nat->client_port;
	frontend = nat->frontend_addr;
	fport = nat->frontend_port;

	/* The flow's SERVICE entry sees the reply (TCP state, counters),
	 * and the mapping lives as long as it does. An entry of a newer flow
	 * on the same client tuple (another nat port) is left alone. */
	skey.saddr = client;
	skey.daddr = frontend;
	skey.sport = cport;
	skey.dport = fport;
	skey.proto = pkt->proto;
	skey.flags = TW_CT_F_SERVICE;
	skey.pad = 0;
	sct = tw_ct_lookup(&skey, pkt, now);
	if (sct && sct->nat_port == pkt->dport) {
		tw_ct_account(sct, pkt, TW_CT_DIR_RX, now);
		nat->expires = sct->expires;
	}

	if (tw_nat4_rewrite(skb, pkt, TW_NAT_DST, client, cport) < 0 ||
	    tw_nat4_rewrite(skb, pkt, TW_NAT_SRC, frontend, fport) < 0)
		return tw_drop_pkt(skb, pkt, TW_DROP_WRITE_ERROR);
	return (int)bpf_redirect_neigh(cfg->ifindex, NULL, 0, 0);
}

/* Local backend: DNAT only, conntrack for the reply path. */
static __always_inline int tw_np_local(struct __sk_buff *skb, struct tw_pkt *pkt,
				       const struct tw_ct4_key *skey, struct tw_ct_entry *sct,
				       const struct tw_lb4_service *svc, __u32 backend_id,
				       const struct tw_lb4_backend *backend, __u64 now)
{
	struct tw_ct_entry *cct;
	struct tw_ct4_key ckey;
	__u64 expires;

	if (sct) {
		sct->state |= TW_CT_S_NODEPORT;
		sct->nat_port = 0;
		tw_ct_account(sct, pkt, TW_CT_DIR_TX, now);
	} else if (tw_np_ct_create(skey, pkt, backend_id, svc->rev_nat_index, 0, now, &expires) < 0) {
		return tw_drop_pkt(skb, pkt, TW_DROP_CT_MAP_INSERTION_FAILED);
	}

	/* The connection entry, as the packet leaves: to the backend. Its
	 * reversed tuple is what the pod's reply carries, which tw_to_netdev
	 * reverse-NATs (the pod's veth keeps its own ingress entry). */
	tw_ct_key_fwd(&ckey, pkt);
	ckey.daddr = backend->address;
	ckey.dport = backend->port;
	cct = tw_ct_lookup(&ckey, pkt, now);
	if (cct) {
		cct->rev_nat_index = svc->rev_nat_index;
		cct->backend_id = backend_id;
		cct->state |= TW_CT_S_NODEPORT;
		tw_ct_account(cct, pkt, TW_CT_DIR_TX, now);
	} else if (tw_np_ct_create(&ckey, pkt, backend_id, svc->rev_nat_index, 0, now, &expires) <
		   0) {
		/* Without it the reply would leave with the pod's address. */
		return tw_drop_pkt(skb, pkt, TW_DROP_CT_MAP_INSERTION_FAILED);
	}

	if (tw_nat4_rewrite(skb, pkt, TW_NAT_DST, backend->address, backend->port) < 0)
		return tw_drop_pkt(skb, pkt, TW_DROP_WRITE_ERROR);
	/* The kernel routes it to the pod's veth (a /32 route). */
	return TC_ACT_OK;
}

/* Remote backend: DNAT + SNAT to node IP:nat port, out again at once. */
static __always_inline int tw_np_remote(struct __sk_buff *skb, struct tw_pkt *pkt,
					const struct tw_np_cfg *cfg, const struct tw_ct4_key *skey,
					struct tw_ct_entry *sct, const struct tw_lb4_service *svc,
					__u32 backend_id, const struct tw_lb4_backend *backend,
					__u64 now)
{
	__be16 nat_port = 0;

	if (sct) {
		/* An established flow: its port, kept alive as long as the
		 * SERVICE entry, unless it went to someone else meanwhile. */
		tw_ct_account(sct, pkt, TW_CT_DIR_TX, now);
		nat_port = sct->nat_port;
		if (nat_port && tw_np_nat_keep(cfg, pkt, backend, nat_port, sct->expires, now) < 0)
			nat_port = 0;
		if (!nat_port) {
			nat_port = tw_np_alloc_port(cfg, pkt, backend, sct->expires, now);
			if (!nat_port)
				return tw_drop_pkt(skb, pkt, TW_DROP_NAT_NO_MAPPING);
			sct->nat_port = nat_port;
		}
		sct->state |= TW_CT_S_NODEPORT;
	} else {
		struct tw_ct_entry ct = {};

		/* A new flow: its entry is accounted first, so that the
		 * mapping gets the same deadline, then written with the
		 * port. */
		ct.backend_id = backend_id;
		ct.rev_nat_index = svc->rev_nat_index;
		ct.state = TW_CT_S_NODEPORT;
		ct.created = (__u32)(now / TW_NSEC_PER_SEC);
		tw_ct_account(&ct, pkt, TW_CT_DIR_TX, now);
		nat_port = tw_np_alloc_port(cfg, pkt, backend, ct.expires, now);
		if (!nat_port)
			return tw_drop_pkt(skb, pkt, TW_DROP_NAT_NO_MAPPING);
		ct.nat_port = nat_port;
		if (bpf_map_update_elem(&tw_ct4, skey, &ct, BPF_ANY) < 0) {
			struct tw_ct4_key nkey;

			tw_np_nat_key(&nkey, backend, cfg->node_ip, nat_port, pkt->proto);
			bpf_map_delete_elem(&tw_np_nat4, &nkey);
			return tw_drop_pkt(skb, pkt, TW_DROP_CT_MAP_INSERTION_FAILED);
		}
	}

	/* Two rewrites, each updating the IPv4 and L4 checksums
	 * incrementally from the fields it replaces (lib/nat.h). */
	if (tw_nat4_rewrite(skb, pkt, TW_NAT_DST, backend->address, backend->port) < 0 ||
	    tw_nat4_rewrite(skb, pkt, TW_NAT_SRC, cfg->node_ip, nat_port) < 0)
		return tw_drop_pkt(skb, pkt, TW_DROP_WRITE_ERROR);
	return (int)bpf_redirect_neigh(cfg->ifindex, NULL, 0, 0);
}

/* The frontend kinds tw_from_netdev translates: on the node IP, node ports
 * (and LoadBalancer or external IPs that are the node's own address, as
 * kube-proxy takes them too); on any other destination, only
 * LoadBalancer ingress IPs and external IPs (a ClusterIP routed to the
 * node from outside is not served: Cilium's default, without
 * bpf-lb-external-clusterip). */
#define TW_NP_KINDS_NODE_IP (TW_SVC_F_NODEPORT | TW_SVC_F_LOADBALANCER | TW_SVC_F_EXTERNAL_IP)
#define TW_NP_KINDS_OTHER (TW_SVC_F_LOADBALANCER | TW_SVC_F_EXTERNAL_IP)

/*
 * Step 2 of tw_from_netdev: the frontend of a TCP/UDP packet, in the EXT
 * scope, always: the client is outside the node (pods of this node reach
 * these frontends through tw_from_lxc, in the INT scope). Returns the
 * master entry if its flags have one of `kinds`, else NULL; `key` is left
 * as the master's key. One map lookup: the whole cost for traffic
 * through the node (to its pods, to other hosts).
 */
static __always_inline struct tw_lb4_service *tw_np_frontend(struct tw_lb4_key *key,
							     const struct tw_pkt *pkt,
							     __u16 kinds)
{
	struct tw_lb4_service *svc_entry;

	key->address = pkt->daddr;
	key->dport = pkt->dport;
	key->backend_slot = 0;
	key->proto = pkt->proto;
	key->scope = TW_LB_SCOPE_EXT;
	key->pad[0] = 0;
	key->pad[1] = 0;
	svc_entry = bpf_map_lookup_elem(&tw_lb4_services, key);
	if (!svc_entry || !(svc_entry->flags & kinds))
		return NULL;
	return svc_entry;
}

/*
 * Step 2b of tw_from_netdev, for a frontend with TW_SVC_F_SRC_RANGE (the
 * caller tests the flag: a frontend without it admits everyone): whether
 * (1) or not (0) the client `saddr` is inside one of the frontend's
 * prefixes in tw_lb4_srcrange, keyed by its rev_nat_index (each frontend
 * has its own). One LPM lookup. Every packet is checked, not only new
 * flows (as Cilium does): a range removed from the Service stops its
 * established flows too.
 *
 * A BPF-to-BPF call, not inlined: the key then lives in the callee's
 * frame, and the caller's state after the call is the same whether the
 * check ran or not, so the verifier walks the translation that follows
 * once (inlined, it walked it for both paths: +54% instructions).
 */
static __attribute__((noinline)) int tw_np_src_range_ok(__u32 rev_nat_index, __be32 saddr)
{
	struct tw_lb4_src_range_key key = {};

	key.prefixlen = TW_LB_SRC_RANGE_FIXED_BITS + 32;
	key.rev_nat_index = (__u16)rev_nat_index;
	key.address = saddr;
	return bpf_map_lookup_elem(&tw_lb4_srcrange, &key) != NULL;
}

/*
 * Step 3 of tw_from_netdev: translation of a TCP/UDP packet to the
 * frontend `svc_entry` (from tw_np_frontend, with its key): a node port
 * of the node IP, or a LoadBalancer / external IP. Both are served the
 * same way; the frontend's own address is what the flow's SERVICE entry,
 * its tw_np_nat4 mapping (remote backends) and its reverse-NAT entry
 * (local backends) restore on the replies. Returns the verdict.
 */
static __always_inline int tw_np_xlate(struct __sk_buff *skb, struct tw_pkt *pkt,
				       const struct tw_np_cfg *cfg, struct tw_lb4_key *key,
				       const struct tw_lb4_service *svc_entry, __u64 now)
{
	struct tw_lb4_backend backend = {};
	struct tw_lb4_service svc;
	struct tw_ct_entry *sct;
	struct tw_ct4_key skey;
	__u32 backend_id = 0;

	svc = *svc_entry;

	/* The flow's SERVICE entry keeps its backend while both live (as
	 * in lib/lb.h: graceful termination). */
	tw_ct_key_fwd(&skey, pkt);
	skey.flags = TW_CT_F_SERVICE;
	sct = tw_ct_lookup(&skey, pkt, now);
	if (sct) {
		struct tw_lb4_backend *be;
		__u32 id = sct->backend_id;

		be = bpf_map_lookup_elem(&tw_lb4_backends, &id);
		if (be) {
			backend = *be;
			backend_id = id;
		} else {
			sct = NULL; /* backend gone: choose again, new entry */
		}
	}

	if (!backend_id) {
		/* A later IPv4 fragment opens nothing: its first fragment
		 * made the SERVICE entry, or never passed here. */
		if (tw_pkt_later_frag(pkt))
			return tw_drop_pkt(skb, pkt, TW_DROP_FRAG_NOT_FOUND);
		backend_id = tw_lb4_select(key, &svc, pkt, now, &backend);
		if (!backend_id) {
			/* kube-proxy drops ETP=Local traffic on a node without
			 * a local endpoint (the client's load balancer health
			 * checks steer it away), and rejects the rest. */
			if (svc.flags & TW_SVC_F_ETP_LOCAL)
				return tw_drop_pkt(skb, pkt, TW_DROP_NO_SERVICE);
			return tw_reject(skb, pkt);
		}
	}
	if (svc.flags & TW_SVC_F_AFFINITY)
		tw_lb4_record_affinity(pkt, svc.rev_nat_index, backend_id, now);

	if (backend.flags & TW_BE_F_LOCAL)
		return tw_np_local(skb, pkt, &skey, sct, &svc, backend_id, &backend, now);
	return tw_np_remote(skb, pkt, cfg, &skey, sct, &svc, backend_id, &backend, now);
}

/*
 * tw_to_netdev: a reply of a local-backend NodePort (or LoadBalancer /
 * external IP) flow, routed by the kernel from the pod to the client:
 * restores the frontend as its source. Returns the verdict (TC_ACT_OK,
 * untouched, for anything else).
 */
static __always_inline int tw_np_rev_dnat(struct __sk_buff *skb, struct tw_pkt *pkt,
					  __u64 now)
{
	struct tw_ct_entry *ct;
	struct tw_ct4_key key;
	__u16 rev_nat_index;

	tw_ct_key_rev(&key, pkt);
	ct = tw_ct_lookup(&key, pkt, now);
	/* Only NodePort entries: a pod answering a remote pod or host also
	 * leaves here and must pass as is (tw_to_lxc tracked that connection
	 * in an ingress entry, which this key, flags 0, does not find). */
	if (!ct || !(ct->state & TW_CT_S_NODEPORT) || !ct->rev_nat_index)
		return TC_ACT_OK;
	rev_nat_index = ct->rev_nat_index;
	tw_ct_account(ct, pkt, TW_CT_DIR_RX, now);
	/* Accounts the SERVICE entry too and rewrites the source. */
	return tw_lb4_rev_xlate(skb, pkt, rev_nat_index, now);
}

#endif /* TOLLWAY_LIB_NODEPORT_H */
