// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket LB: service translation at the socket layer, on the cgroup of a
 * node's pods (cgroup/connect4, sendmsg4, recvmsg4, getpeername4).
 *
 *  - TCP connect() to a frontend is translated once, to a backend: the
 *    connection then has no per-packet NAT at all. getpeername() shows the
 *    frontend again (tw_lb4_rev_sk, keyed by the socket cookie).
 *  - Unconnected UDP is translated per datagram at sendmsg() and restored at
 *    recvmsg(), the same way.
 *  - Connected UDP is deliberately left to the tc path: it is translated per
 *    packet there, with conntrack, so that when its backend goes the flow
 *    moves to a live backend instead of sending into the void (the problem
 *    of cilium#12859, where the socket stays bound to a deleted backend).
 *  - Frontends without a backend are not translated: the tc path rejects
 *    them at once (TCP RST, ICMP port unreachable), which connect() reports
 *    as ECONNREFUSED.
 *  - ClientIP affinity needs the client's address, which connect() does not
 *    know yet: those services are left to the tc path as well.
 *  - A pod's cgroup in tw_sock_skip (annotation tollway.io/socket-lb:
 *    "false") always uses the tc path.
 *
 * Every hook returns 1 (proceed): the socket layer never refuses a call.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/events.h"

#define SOCK_PROCEED 1

static __always_inline int sock_lb_active(void)
{
	__u32 zero = 0;
	struct tw_config *cfg = bpf_map_lookup_elem(&tw_config, &zero);
	__u64 cgroup;

	if (!cfg || !(cfg->flags & TW_CFG_F_SOCK_LB))
		return 0;
	cgroup = bpf_get_current_cgroup_id();
	return bpf_map_lookup_elem(&tw_sock_skip, &cgroup) == NULL;
}

/* The service of a frontend, in scope INT for two-scope (ETP=Local)
 * frontends: pods are in-cluster clients. */
static __always_inline struct tw_lb4_service *sock_lookup(struct tw_lb4_key *key)
{
	struct tw_lb4_service *svc = bpf_map_lookup_elem(&tw_lb4_services, key);

	if (svc && (svc->flags & TW_SVC_F_TWO_SCOPES)) {
		key->scope = TW_LB_SCOPE_INT;
		svc = bpf_map_lookup_elem(&tw_lb4_services, key);
	}
	return svc;
}

/* A backend id for a new socket: Maglev by socket cookie (the 5-tuple is
 * not known before connect), else a random slot; 0 if none. */
static __always_inline __u32 sock_select(struct tw_lb4_key *key, const struct tw_lb4_service *svc,
					 __u64 cookie)
{
	struct tw_lb4_service *slot;
	__u32 id = 0;

	if (svc->algorithm == TW_LB_ALG_MAGLEV) {
		__u32 outer = svc->rev_nat_index, zero = 0, m = TW_LB_MAGLEV_M_DEFAULT, idx;
		struct tw_config *cfg = bpf_map_lookup_elem(&tw_config, &zero);
		void *table = bpf_map_lookup_elem(&tw_lb4_maglev, &outer);
		__u32 *entry;

		if (cfg && cfg->maglev_m)
			m = cfg->maglev_m;
		if (table) {
			idx = (__u32)((cookie ^ (cookie >> 32)) % m);
			entry = bpf_map_lookup_elem(table, &idx);
			if (entry)
				id = *entry;
		}
		if (id)
			return id;
	}
	key->backend_slot = (__u16)(bpf_get_prandom_u32() % svc->count + 1);
	slot = bpf_map_lookup_elem(&tw_lb4_services, key);
	key->backend_slot = 0;
	return slot ? slot->backend_id : 0;
}

/*
 * A TRACE_SOCK flow event: the socket of the current cgroup was translated
 * from the frontend `vip`:`vport` to backend `be`. TCP once per connect();
 * unconnected UDP per datagram, so only when aggregation is low or none.
 */
static __always_inline void sock4_event(__u8 proto, __be32 vip, __be16 vport,
					const struct tw_lb4_backend *be, __u16 rev_nat)
{
	struct tw_events_config *cfg = tw_ev_config();
	struct tw_event *ev;

	if (!cfg || (proto != IPPROTO_TCP && cfg->level >= TW_AGG_MEDIUM))
		return;
	ev = bpf_ringbuf_reserve(&tw_events, sizeof(*ev), 0);
	if (!ev) {
		tw_ev_lost();
		return;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts = bpf_ktime_get_ns();
	ev->ev_type = TW_EV_TRACE_SOCK;
	ev->subtype = TW_SOCK_XLATE_PRE_DIRECTION_FWD;
	ev->proto = proto;
	ev->daddr = be->address;
	ev->dport = be->port;
	ev->dst_id = tw_ipcache_identity(be->address);
	ev->orig_addr = vip;
	ev->orig_port = vport;
	ev->flags = TW_EV_F_EGRESS | TW_EV_F_NEW;
	ev->rev_nat = rev_nat;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	tw_ev_submit(ev);
}

static __always_inline int sock4_xlate(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct tw_lb4_key key = {
		.address = ctx->user_ip4,
		.dport = (__be16)ctx->user_port,
		.proto = proto,
	};
	struct tw_lb4_reverse_sk_key rkey = {};
	struct tw_lb4_reverse_sk rval = {};
	struct tw_lb4_service *svc;
	struct tw_lb4_backend *be;
	__u64 cookie;
	__u32 id;

	if (!sock_lb_active())
		return SOCK_PROCEED;
	svc = sock_lookup(&key);
	if (!svc || svc->count == 0 || (svc->flags & TW_SVC_F_AFFINITY))
		return SOCK_PROCEED;
	cookie = bpf_get_socket_cookie(ctx);
	id = sock_select(&key, svc, cookie);
	if (!id)
		return SOCK_PROCEED;
	be = bpf_map_lookup_elem(&tw_lb4_backends, &id);
	if (!be)
		return SOCK_PROCEED;

	rkey.cookie = cookie;
	rkey.address = be->address;
	rkey.port = be->port;
	rval.address = key.address;
	rval.port = key.dport;
	rval.rev_nat_index = svc->rev_nat_index;
	/* Without the reverse entry getpeername() would show the backend:
	 * then translate nothing and let the tc path do it. */
	if (bpf_map_update_elem(&tw_lb4_rev_sk, &rkey, &rval, BPF_ANY) < 0)
		return SOCK_PROCEED;

	sock4_event(proto, key.address, key.dport, be, svc->rev_nat_index);
	ctx->user_ip4 = be->address;
	ctx->user_port = (__u32)be->port;
	return SOCK_PROCEED;
}

/* Show the frontend instead of the backend the socket talks to. */
static __always_inline int sock4_restore(struct bpf_sock_addr *ctx)
{
	struct tw_lb4_reverse_sk_key rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = ctx->user_ip4,
		.port = (__be16)ctx->user_port,
	};
	struct tw_lb4_reverse_sk *rval = bpf_map_lookup_elem(&tw_lb4_rev_sk, &rkey);

	if (rval) {
		ctx->user_ip4 = rval->address;
		ctx->user_port = (__u32)rval->port;
	}
	return SOCK_PROCEED;
}

SEC("cgroup/connect4")
int tw_sock4_conn(struct bpf_sock_addr *ctx)
{
	/* Connected UDP stays on the per-packet path (see the top). */
	if (ctx->protocol != IPPROTO_TCP)
		return SOCK_PROCEED;
	return sock4_xlate(ctx, IPPROTO_TCP);
}

SEC("cgroup/sendmsg4")
int tw_sock4_send(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_UDP)
		return SOCK_PROCEED;
	return sock4_xlate(ctx, IPPROTO_UDP);
}

SEC("cgroup/recvmsg4")
int tw_sock4_recv(struct bpf_sock_addr *ctx)
{
	return sock4_restore(ctx);
}

SEC("cgroup/getpeername4")
int tw_sock4_peer(struct bpf_sock_addr *ctx)
{
	return sock4_restore(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
