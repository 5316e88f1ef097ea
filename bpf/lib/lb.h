/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Service load balancing on the tc path (abi/lb.h): frontend lookup,
 * backend selection (conntrack, ClientIP affinity, random or Maglev),
 * DNAT, and the conntrack entries that let replies be reverse-NATed;
 * hairpin (a pod that is its own backend).
 */
#ifndef TOLLWAY_LIB_LB_H
#define TOLLWAY_LIB_LB_H

#include "lib/common.h"
#include "lib/ct.h"
#include "lib/drop.h"
#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/reject.h"

/* tw_lb4_xlate() result when the destination is no service. */
#define TW_LB_NOT_SERVICE (-1)

static __always_inline __u32 tw_rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

/*
 * Flow hash of Maglev: Linux's jhash_3words(a, b, c, initval) with
 *   a = saddr, b = daddr (the frontend), c = sport << 16 | dport (the
 *   frontend port), initval = proto,
 * where addresses and ports are the raw network-order fields read as
 * host-order integers (on x86: u32::from_ne_bytes(ip.octets()), and
 * u16::from_ne_bytes(port.to_be_bytes())). User space that predicts
 * Maglev choices (tests/lxc.rs does) must compute exactly this.
 */
static __always_inline __u32 tw_hash_flow4(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport,
					   __u8 proto)
{
	__u32 a = saddr, b = daddr, c = ((__u32)sport << 16) | dport;
	__u32 init = (__u32)proto + 0xdeadbeef + (3 << 2);

	a += init;
	b += init;
	c += init;
	/* __jhash_final */
	c ^= b; c -= tw_rol32(b, 14);
	a ^= c; a -= tw_rol32(c, 11);
	b ^= a; b -= tw_rol32(a, 25);
	c ^= b; c -= tw_rol32(b, 16);
	a ^= c; a -= tw_rol32(c, 4);
	b ^= a; b -= tw_rol32(a, 14);
	c ^= b; c -= tw_rol32(b, 24);
	return c;
}

/*
 * The service (slot 0) of the packet's destination, or NULL. `key` is
 * left as the key of the entry found, so that its slots are `key` with
 * backend_slot 1..count. A frontend with TW_SVC_F_TWO_SCOPES is looked up
 * in scope INT: pods are in-cluster clients, which may use every backend
 * even of an externalTrafficPolicy=Local service.
 */
static __always_inline struct tw_lb4_service *tw_lb4_lookup_service(struct tw_lb4_key *key,
								    struct tw_pkt *pkt)
{
	struct tw_lb4_service *svc, *internal;

	key->address = pkt->daddr;
	key->dport = pkt->dport;
	key->backend_slot = 0;
	key->proto = pkt->proto;
	key->scope = TW_LB_SCOPE_EXT;
	key->pad[0] = 0;
	key->pad[1] = 0;
	svc = bpf_map_lookup_elem(&tw_lb4_services, key);
	if (!svc || !(svc->flags & TW_SVC_F_TWO_SCOPES))
		return svc;
	key->scope = TW_LB_SCOPE_INT;
	internal = bpf_map_lookup_elem(&tw_lb4_services, key);
	if (internal)
		return internal;
	/* Half-written service (the INT entry comes after the flag): use
	 * the external scope meanwhile. */
	key->scope = TW_LB_SCOPE_EXT;
	return svc;
}

/* The backend in slot `slot` (1..count) of `key`'s service, or 0. */
static __always_inline __u32 tw_lb4_slot_backend(struct tw_lb4_key *key, __u16 slot)
{
	struct tw_lb4_service *entry;

	key->backend_slot = slot;
	entry = bpf_map_lookup_elem(&tw_lb4_services, key);
	key->backend_slot = 0;
	return entry ? entry->backend_id : 0;
}

struct tw_slot_search {
	struct tw_lb4_key key;
	__u32 backend_id;
	__u32 found;
};

static long tw_lb4_slot_search_cb(__u64 index, void *data)
{
	struct tw_slot_search *search = data;

	if (tw_lb4_slot_backend(&search->key, (__u16)(index + 1)) == search->backend_id) {
		search->found = 1;
		return 1; /* stop */
	}
	return 0;
}

/*
 * Whether `backend_id` is in one of the `count` slots of `key`'s service.
 * The slots are scanned with bpf_loop: a service may have up to 65535
 * slots, far beyond what the verifier would unroll or walk in a plain
 * loop. Only new connections of ClientIP-affinity services pay for it.
 */
static __always_inline int tw_lb4_in_slots(const struct tw_lb4_key *key, __u16 count,
					   __u32 backend_id)
{
	struct tw_slot_search search = {
		.key = *key,
		.backend_id = backend_id,
	};

	if (bpf_loop(count, tw_lb4_slot_search_cb, &search, 0) < 0)
		return 0;
	return search.found;
}

static __always_inline __u32 tw_lb4_select_random(struct tw_lb4_key *key, __u16 count)
{
	return tw_lb4_slot_backend(key, (__u16)(bpf_get_prandom_u32() % count + 1));
}

/* The Maglev table's choice for the flow, or 0 (no table, no entry). */
static __always_inline __u32 tw_lb4_select_maglev(struct tw_pkt *pkt, __u16 rev_nat_index)
{
	__u32 outer_key = rev_nat_index, zero = 0, m = 0, idx;
	struct tw_config *cfg;
	__u32 *backend_id;
	void *table;

	cfg = bpf_map_lookup_elem(&tw_config, &zero);
	if (cfg)
		m = cfg->maglev_m;
	if (m == 0)
		m = TW_LB_MAGLEV_M_DEFAULT;
	table = bpf_map_lookup_elem(&tw_lb4_maglev, &outer_key);
	if (!table)
		return 0;
	idx = tw_hash_flow4(pkt->saddr, pkt->daddr, pkt->sport, pkt->dport, pkt->proto) % m;
	/* An index beyond a smaller inner array finds nothing. */
	backend_id = bpf_map_lookup_elem(table, &idx);
	return backend_id ? *backend_id : 0;
}

/*
 * A backend for a new connection to the service: the ClientIP affinity's,
 * if it is recent and still in a slot, else the algorithm's (Maglev falls
 * back to random without a usable table entry). Returns the backend id and
 * fills *backend, or returns 0 if there is none.
 */
static __always_inline __u32 tw_lb4_select(struct tw_lb4_key *key, const struct tw_lb4_service *svc,
					   struct tw_pkt *pkt, __u64 now,
					   struct tw_lb4_backend *backend)
{
	struct tw_lb4_backend *be;
	__u16 count = svc->count;
	__u32 id = 0;

	if (count == 0)
		return 0;

	if (svc->flags & TW_SVC_F_AFFINITY) {
		struct tw_lb4_affinity_key akey = {
			.client = pkt->saddr,
			.rev_nat_index = svc->rev_nat_index,
		};
		struct tw_lb_affinity *aff;

		aff = bpf_map_lookup_elem(&tw_lb4_affinity, &akey);
		if (aff && now - aff->last_used < (__u64)svc->affinity_timeout * TW_NSEC_PER_SEC &&
		    tw_lb4_in_slots(key, count, aff->backend_id))
			id = aff->backend_id;
	}
	if (id) {
		be = bpf_map_lookup_elem(&tw_lb4_backends, &id);
		if (be) {
			*backend = *be;
			return id;
		}
	}

	if (svc->algorithm == TW_LB_ALG_MAGLEV) {
		id = tw_lb4_select_maglev(pkt, svc->rev_nat_index);
		if (id) {
			be = bpf_map_lookup_elem(&tw_lb4_backends, &id);
			if (be) {
				*backend = *be;
				return id;
			}
		}
	}

	id = tw_lb4_select_random(key, count);
	if (!id)
		return 0;
	be = bpf_map_lookup_elem(&tw_lb4_backends, &id);
	if (!be)
		return 0;
	*backend = *be;
	return id;
}

static __always_inline void tw_lb4_record_affinity(struct tw_pkt *pkt, __u16 rev_nat_index,
						   __u32 backend_id, __u64 now)
{
	struct tw_lb4_affinity_key akey = {
		.client = pkt->saddr,
		.rev_nat_index = rev_nat_index,
	};
	struct tw_lb_affinity aff = {
		.last_used = now,
		.backend_id = backend_id,
	};

	/* Best effort: losing affinity only costs stickiness. */
	bpf_map_update_elem(&tw_lb4_affinity, &akey, &aff, BPF_ANY);
}

/*
 * Hairpin (Cilium's loopback LB): a pod's connection to a service whose
 * chosen backend is the pod itself. DNATed alone, the packet would come
 * back to the pod from its own address, which its stack takes for a
 * martian of its own and never answers through the veth. So (tc path
 * only; the socket path connects such a socket to the pod's own address
 * and never leaves the pod):
 *
 *   pod P:sp -> frontend F:fp   tw_from_lxc: DNAT to P:bp as any service
 *                               connection (SERVICE entry, egress entry
 *                               {P, P, sp, bp}, egress policy to P), then
 *                               SNAT to TW_LB_IPV4_LOOPBACK (L):sp and
 *                               back into the pod (tw_lb4_hairpin);
 *                               tw_to_lxc: L:sp -> P:bp, the egress entry
 *                               makes it the pod talking to itself: no
 *                               ingress policy, no ingress entry
 *                               (tw_lb4_hairpin_known)
 *   pod P:bp -> L:sp (reply,    tw_from_lxc: the egress entry {P, P, sp,
 *   via its default route)      bp} exists: the destination becomes P
 *                               again, back into the pod
 *                               (tw_lb4_hairpin_reply); tw_to_lxc: P:bp ->
 *                               P:sp is a reply of that entry, reverse
 *                               NATed to F:fp -> P:sp as any reply
 *
 * The pod's egress policy judges the connection once (to itself, with
 * its own identity), its ingress policy never: Cilium's bpf_lxc skips
 * ingress policy enforcement for a loopback connection (a new packet from
 * IPV4_LOOPBACK with a loopback egress entry), the source being the
 * endpoint itself. Nothing else uses L: a packet to or from it without
 * such an entry takes the usual way.
 */
#define TW_LB_LOOPBACK ((__be32)bpf_htonl(TW_LB_IPV4_LOOPBACK))

/*
 * Rewrites one address of the IPv4 packet in the skb (the source, or with
 * `dst` the destination) to `new_addr`, ports untouched, swaps the
 * Ethernet addresses and sends the packet back into the pod it came from
 * (tc ingress of the pod's host-side veth -> its egress), as the pod's
 * gateway would have sent it. Returns TC_ACT_REDIRECT, or TC_ACT_SHOT if
 * a helper fails (counted as TW_DROP_WRITE_ERROR).
 *
 * A global function (not static, not inlined): the verifier checks it
 * once, on its own, instead of once more for every state in which the
 * callers reach it, which would more than double what tw_from_lxc costs
 * it. So it takes no struct tw_pkt: it reads what it needs (header
 * length, protocol, fragment offset, the old address) from the packet,
 * which tw_parse() already checked.
 */
__noinline int tw_lb4_hairpin_out(struct __sk_buff *skb, __u32 dst, __be32 new_addr)
{
	__u32 addr_off = ETH_HLEN + (dst ? offsetof(struct iphdr, daddr)
					: offsetof(struct iphdr, saddr));
	__u64 l4_flags = BPF_F_PSEUDO_HDR | sizeof(new_addr);
	__u32 csum_off = 0;
	__be32 old_addr;
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		goto fail;
	/* A later fragment has no L4 header: the address alone (lib/nat.h). */
	if (!(bpf_ntohs(ip.frag_off) & TW_IP_OFFSET)) {
		csum_off = ETH_HLEN + ip.ihl * 4;
		if (ip.protocol == IPPROTO_TCP) {
			csum_off += offsetof(struct tcphdr, check);
		} else if (ip.protocol == IPPROTO_UDP) {
			csum_off += offsetof(struct udphdr, check);
			l4_flags |= BPF_F_MARK_MANGLED_0;
		} else {
			goto fail;
		}
	}
	old_addr = dst ? ip.daddr : ip.saddr;

	if (csum_off && bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, l4_flags) < 0)
		goto fail;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old_addr, new_addr,
				sizeof(new_addr)) < 0)
		goto fail;
	if (bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0) < 0)
		goto fail;
	if (tw_reject_swap_macs(skb) < 0)
		goto fail;
	return bpf_redirect(skb->ifindex, 0);
fail:
	return tw_drop(TW_DROP_WRITE_ERROR);
}

/* The verdict of tw_lb4_hairpin_out() as a constant, so that the
 * verifier, for which a global function returns any number, does not
 * walk the callers' other ways (TC_ACT_OK, TW_LB_NOT_SERVICE) after it. */
static __always_inline int tw_lb4_hairpin_verdict(int ret)
{
	return ret == TC_ACT_REDIRECT ? TC_ACT_REDIRECT : TC_ACT_SHOT;
}

/* A packet tw_lb4_xlate() DNATed to the pod that sent it: the source
 * becomes TW_LB_IPV4_LOOPBACK (the port stays), back into the pod.
 * Returns the verdict (TC_ACT_REDIRECT). */
static __always_inline int tw_lb4_hairpin(struct __sk_buff *skb)
{
	return tw_lb4_hairpin_verdict(tw_lb4_hairpin_out(skb, 0, TW_LB_LOOPBACK));
}

/* The live egress entry of pod `pod`'s hairpin connection from
 * `client_port` to its own `backend_port` (a service connection: it has a
 * rev NAT index), or NULL. */
static __always_inline struct tw_ct_entry *tw_lb4_hairpin_ct(struct tw_pkt *pkt, __be32 pod,
							     __be16 client_port,
							     __be16 backend_port, __u64 now)
{
	struct tw_ct4_key key = {
		.saddr = pod,
		.daddr = pod,
		.sport = client_port,
		.dport = backend_port,
		.proto = pkt->proto,
	};
	struct tw_ct_entry *ct;

	ct = tw_ct_lookup(&key, pkt, now);
	if (ct && !ct->rev_nat_index)
		return NULL;
	return ct;
}

/* tc egress to the pod: whether this TCP/UDP packet from
 * TW_LB_IPV4_LOOPBACK is the pod's own hairpin connection (its first
 * direction, which tw_from_lxc accounted already). */
static __always_inline int tw_lb4_hairpin_known(struct tw_pkt *pkt, __u64 now)
{
	return (pkt->flags & TW_PKT_F_PORTS) &&
	       tw_lb4_hairpin_ct(pkt, pkt->daddr, pkt->sport, pkt->dport, now);
}

/* tc ingress from the pod, a TCP/UDP packet to TW_LB_IPV4_LOOPBACK: the
 * pod answering its own hairpin connection? Then the destination becomes
 * the pod again and the packet goes back into it, where tw_to_lxc
 * accounts it and restores the frontend as its source. Returns
 * TW_LB_NOT_SERVICE if the pod has no such connection, else the verdict. */
static __always_inline int tw_lb4_hairpin_reply(struct __sk_buff *skb, struct tw_pkt *pkt,
						__u64 now)
{
	if (!(pkt->flags & TW_PKT_F_PORTS) ||
	    !tw_lb4_hairpin_ct(pkt, pkt->saddr, pkt->dport, pkt->sport, now))
		return TW_LB_NOT_SERVICE;
	return tw_lb4_hairpin_verdict(tw_lb4_hairpin_out(skb, 1, pkt->saddr));
}

/*
 * Service translation of a TCP/UDP packet from a pod (tc ingress of its
 * veth). Returns TW_LB_NOT_SERVICE if the destination is no frontend,
 * else the verdict: TC_ACT_OK once DNATed, TC_ACT_REDIRECT for a reject
 * (no backend) or a hairpin (the backend is the pod itself: back into
 * it), TC_ACT_SHOT on a failure or a policy drop (counted).
 *
 * The pod's egress policy judges the connection as it will leave, to the
 * chosen backend (address, identity and port of the backend, as in
 * Cilium), when there is no live connection entry for it yet; a denied
 * packet leaves no state behind (no conntrack entry, no affinity).
 */
static __always_inline int tw_lb4_xlate(struct __sk_buff *skb, struct tw_pkt *pkt, __u64 now)
{
	struct tw_lb4_backend backend = {};
	struct tw_lb4_service *svc_entry;
	struct tw_lb4_service svc;
	struct tw_ct4_key skey, ckey;
	struct tw_ct_entry *sct, *cct;
	struct tw_lb4_key key;
	__u32 backend_id = 0;
	__u32 reason;

	svc_entry = tw_lb4_lookup_service(&key, pkt);
	if (!svc_entry)
		return TW_LB_NOT_SERVICE;
	svc = *svc_entry;

	/* 1. The connection's service entry names its backend: keep it while
	 * the backend exists, even out of every slot (graceful termination:
	 * established flows go on, new ones never pick it). */
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
			sct = NULL; /* backend gone: choose again */
		}
	}

	/* 2. A new connection (or its backend vanished): choose. */
	if (!backend_id) {
		/* A later IPv4 fragment opens nothing: its first fragment
		 * wrote the service entry once the policy allowed the flow,
		 * or never passed here, or was dropped (a backend chosen now
		 * might not even be the first fragment's). */
		if (tw_pkt_later_frag(pkt))
			return tw_drop_pkt(skb, pkt, TW_DROP_FRAG_NOT_FOUND);
		backend_id = tw_lb4_select(&key, &svc, pkt, now, &backend);
		if (!backend_id) {
			pkt->rev_nat = svc.rev_nat_index;
			tw_ev_drop(skb, pkt, TW_DROP_NO_SERVICE);
			return tw_reject(skb, pkt);
		}
	}
	/* From here on, flow events show the packet as it will leave. */
	pkt->xlate = TW_XLATE_DNAT;
	pkt->xl_addr = backend.address;
	pkt->xl_port = backend.port;
	pkt->rev_nat = svc.rev_nat_index;

	/* 3. The connection entry (the pod's egress entry), as the packet
	 * will leave: to the backend. None live: a new connection of the pod,
	 * for its egress policy to judge before anything is written. */
	tw_ct_key_fwd(&ckey, pkt);
	ckey.daddr = backend.address;
	ckey.dport = backend.port;
	cct = tw_ct_lookup(&ckey, pkt, now);
	if (!cct) {
		reason = tw_policy_check(skb, pkt, backend.address, pkt->proto, backend.port,
					 TW_POL_EGRESS);
		if (reason != TW_POLICY_ALLOW)
			return tw_drop_pkt(skb, pkt, reason);
	}

	if (svc.flags & TW_SVC_F_AFFINITY)
		tw_lb4_record_affinity(pkt, svc.rev_nat_index, backend_id, now);

	if (sct) {
		tw_ct_account(sct, pkt, TW_CT_DIR_TX, now);
	} else {
		if (tw_ct_create(&skey, pkt, backend_id, svc.rev_nat_index, now) < 0)
			/* Without conntrack the replies could not be
			 * reverse-NATed. */
			return tw_drop_pkt(skb, pkt, TW_DROP_CT_MAP_INSERTION_FAILED);
		/* Inserting into the LRU map may have recycled the element
		 * cct points to: look it up again. */
		if (cct)
			cct = tw_ct_lookup(&ckey, pkt, now);
	}

	/* 4. Account or create the connection entry. */
	if (cct) {
		cct->rev_nat_index = svc.rev_nat_index;
		cct->backend_id = backend_id;
		tw_ct_account(cct, pkt, TW_CT_DIR_TX, now);
	} else if (tw_ct_create(&ckey, pkt, backend_id, svc.rev_nat_index, now) < 0) {
		return tw_drop_pkt(skb, pkt, TW_DROP_CT_MAP_INSERTION_FAILED);
	}

	/* 5. DNAT. */
	if (tw_nat4_rewrite(skb, pkt, TW_NAT_DST, backend.address, backend.port) < 0)
		return tw_drop_pkt(skb, pkt, TW_DROP_WRITE_ERROR);
	/* 6. The pod is its own backend: hairpin. */
	if (__builtin_expect(backend.address == pkt->saddr, 0))
		return tw_lb4_hairpin(skb);
	return TC_ACT_OK;
}

/*
 * Reverse NAT of a reply to a service connection (tc egress to the client
 * pod): the source becomes the frontend again. The caller found the
 * connection entry the reply matches (and accounted it there); its
 * rev_nat_index names the frontend. The service entry sees the reply too,
 * so that its TCP state knows when the connection closes.
 * Returns the verdict.
 */
static __always_inline int tw_lb4_rev_xlate(struct __sk_buff *skb, struct tw_pkt *pkt,
					    __u16 rev_nat_index, __u64 now)
{
	__u32 rev_key = rev_nat_index;
	struct tw_lb4_revnat *revnat;
	struct tw_ct_entry *sct;
	struct tw_ct4_key skey;
	__be32 addr;
	__be16 port;

	revnat = bpf_map_lookup_elem(&tw_lb4_revnat, &rev_key);
	if (!revnat)
		return TC_ACT_OK; /* service deleted: nothing to restore */
	addr = revnat->address;
	port = revnat->port;
	pkt->xlate = TW_XLATE_REV;
	pkt->xl_addr = addr;
	pkt->xl_port = port;
	pkt->rev_nat = rev_nat_index;

	tw_ct_key_rev(&skey, pkt);
	skey.daddr = addr;
	skey.dport = port;
	skey.flags = TW_CT_F_SERVICE;
	sct = tw_ct_lookup(&skey, pkt, now);
	if (sct)
		tw_ct_account(sct, pkt, TW_CT_DIR_RX, now);

	if (tw_nat4_rewrite(skb, pkt, TW_NAT_SRC, addr, port) < 0)
		return tw_drop_pkt(skb, pkt, TW_DROP_WRITE_ERROR);
	return TC_ACT_OK;
}

#endif /* TOLLWAY_LIB_LB_H */
