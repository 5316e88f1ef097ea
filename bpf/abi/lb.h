/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tollway BPF ABI: service load balancing (kube-proxy replacement).
 *
 * Rust mirror: crates/tollway-abi/src/lb.rs.
 *
 * Model (Cilium's, so `tollway bpf lb list` reads like `cilium bpf lb list`):
 *  - a service frontend (VIP or node IP, port, protocol) has one entry in
 *    tw_lb4_services with backend_slot 0 (the "master": count, rev_nat_index,
 *    flags, algorithm) and one entry per backend with slots 1..count whose
 *    value carries the backend_id;
 *  - backends live in tw_lb4_backends by id; a backend that is only in the
 *    backends map (in no slot) gets no new flows, but established flows
 *    (conntrack holds the backend_id) go on: graceful termination;
 *  - tw_lb4_revnat maps rev_nat_index to the frontend, to restore it on
 *    replies (tc path) and in getpeername/recvmsg (socket path);
 *  - Maglev services have an inner array of M backend ids in tw_lb4_maglev,
 *    keyed by rev_nat_index; M is tw_config.maglev_m;
 *  - a frontend with TW_SVC_F_SRC_RANGE (a LoadBalancer ingress IP of a
 *    Service with spec.loadBalancerSourceRanges) admits only clients in
 *    one of its prefixes in tw_lb4_srcrange, keyed by {rev_nat_index,
 *    prefix} (Cilium's lb4_src_range): the uplink drops the others
 *    (TW_DROP_NOT_IN_SRC_RANGE), every packet, before any translation or
 *    conntrack entry. No entry admits nobody.
 *
 * Update order (user space), so that no packet sees a half-written service:
 * add backends, then slots, then the master (count) last; on shrink write the
 * master first, then remove slots, then unused backends. Source ranges:
 * a frontend's prefixes are added before its master gets (or keeps)
 * TW_SVC_F_SRC_RANGE, and removed after the flag goes (or, while it
 * stays, after the new ones are in).
 */
#ifndef TOLLWAY_ABI_LB_H
#define TOLLWAY_ABI_LB_H

#include "abi/common.h"

/* Map names (pinned by name under /sys/fs/bpf/tollway/<lab>/<node>/; the
 * kernel keeps 15 characters of a name, so every name fits in 15). */
/* tw_lb4_services   HASH      struct tw_lb4_key -> struct tw_lb4_service      */
/* tw_lb4_backends   HASH      __u32 backend_id  -> struct tw_lb4_backend      */
/* tw_lb4_revnat     HASH      __u32 rev_nat     -> struct tw_lb4_revnat       */
/* tw_lb4_maglev     HASH_OF_MAPS __u32 rev_nat  -> ARRAY[M] of __u32 backend_id */
/* tw_lb4_affinity   LRU_HASH  struct tw_lb4_affinity_key -> struct tw_lb_affinity */
/* tw_lb4_rev_sk    LRU_HASH  struct tw_lb4_reverse_sk_key -> struct tw_lb4_reverse_sk */
/* tw_lb4_srcrange   LPM_TRIE  struct tw_lb4_src_range_key -> __u8 (1)        */
/* tw_sock_skip      HASH      __u64 cgroup id -> __u32 (1: use the tc path)   */
/* tw_config         ARRAY[1]  struct tw_config                               */
/* tw_drops          PERCPU_ARRAY[TW_DROPS_MAX] __u64 (abi/drop.h)             */
/* tw_ct4, tw_np_nat4: abi/ct.h                                              */

/* Program names (ELF function names, also at most 15 characters). */
/* tw_from_lxc    tc ingress of a pod's host-side veth (traffic from the pod) */
/* tw_to_lxc      tc egress of a pod's host-side veth (traffic to the pod)    */
/* tw_from_netdev tc ingress of the node's uplink (NodePort)                  */
/* tw_to_netdev   tc egress of the node's uplink (NodePort)                   */
/* tw_sock4_conn  cgroup/connect4     tw_sock4_send  cgroup/sendmsg4          */
/* tw_sock4_recv  cgroup/recvmsg4     tw_sock4_peer  cgroup/getpeername4      */

#define TW_LB_SERVICES_MAX 262144
#define TW_LB_BACKENDS_MAX 131072
#define TW_LB_REVNAT_MAX 65536
#define TW_LB_MAGLEV_MAX 4096
#define TW_LB_AFFINITY_MAX 65536
#define TW_LB_REVERSE_SK_MAX 262144
#define TW_SOCK_SKIP_MAX 4096
#define TW_LB_SRC_RANGE_MAX 16384

/* Default Maglev table size: a prime, as Cilium's default. */
#define TW_LB_MAGLEV_M_DEFAULT 16381

/* tw_lb4_key.scope: external (all sources) or internal (in-cluster sources of
 * an externalTrafficPolicy=Local NodePort, which may use every backend). */
#define TW_LB_SCOPE_EXT 0
#define TW_LB_SCOPE_INT 1

struct tw_lb4_key {
	__be32 address;      /* offset 0: ClusterIP, or the node IP of a NodePort */
	__be16 dport;        /* offset 4: service port */
	__u16 backend_slot;  /* offset 6: 0 = the service, 1..count = backends */
	__u8 proto;          /* offset 8: IPPROTO_TCP or IPPROTO_UDP */
	__u8 scope;          /* offset 9: TW_LB_SCOPE_* */
	__u8 pad[2];         /* offset 10: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_lb4_key, 12);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_key, address, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_key, dport, 4);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_key, backend_slot, 6);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_key, proto, 8);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_key, scope, 9);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_key, pad, 10);

/* The source a pod sees on a connection to a service whose chosen backend
 * is the pod itself ("hairpin", Cilium's IPV4_LOOPBACK): host order,
 * 169.254.42.1. The tc path rewrites the source to it, so that the pod
 * does not get a packet from its own address, and takes it back on the
 * replies (lib/lb.h). */
#define TW_LB_IPV4_LOOPBACK 0xa9fe2a01

/* tw_lb4_service.flags */
#define TW_SVC_F_CLUSTERIP 0x0001
#define TW_SVC_F_NODEPORT 0x0002
#define TW_SVC_F_ETP_LOCAL 0x0004
#define TW_SVC_F_AFFINITY 0x0008
#define TW_SVC_F_TWO_SCOPES 0x0010
/* What the frontend's address is (also for readers, `bpf lb list`): a
 * LoadBalancer ingress IP or one of spec.externalIPs. Pods reach them as
 * any frontend (socket and tc paths); the uplink (tw_from_netdev)
 * translates packets from outside to a frontend with one of these bits, or
 * TW_SVC_F_NODEPORT on the node IP. */
#define TW_SVC_F_LOADBALANCER 0x0020
#define TW_SVC_F_EXTERNAL_IP 0x0040
/* The frontend admits only the clients of its prefixes in tw_lb4_srcrange
 * (set on LoadBalancer ingress IPs of a Service with
 * spec.loadBalancerSourceRanges; checked by tw_from_netdev only: pods of
 * the cluster are not filtered, as with Cilium). */
#define TW_SVC_F_SRC_RANGE 0x0080

/* tw_lb4_service.algorithm */
#define TW_LB_ALG_RANDOM 1
#define TW_LB_ALG_MAGLEV 2

struct tw_lb4_service {
	__u32 backend_id;       /* offset 0: slots > 0: the backend of the slot */
	__u16 count;            /* offset 4: slot 0: number of backend slots */
	__u16 rev_nat_index;    /* offset 6: slot 0: the service id, > 0 */
	__u16 flags;            /* offset 8: slot 0: TW_SVC_F_* */
	__u8 algorithm;         /* offset 10: slot 0: TW_LB_ALG_* */
	__u8 pad;               /* offset 11: zero */
	__u32 affinity_timeout; /* offset 12: slot 0: ClientIP affinity, seconds */
};

TW_ABI_ASSERT_SIZE(struct tw_lb4_service, 16);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_service, backend_id, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_service, count, 4);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_service, rev_nat_index, 6);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_service, flags, 8);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_service, algorithm, 10);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_service, pad, 11);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_service, affinity_timeout, 12);

/* tw_lb4_backend.flags */
#define TW_BE_F_LOCAL 0x01
#define TW_BE_F_TERMINATING 0x02

struct tw_lb4_backend {
	__be32 address; /* offset 0: pod IP */
	__be16 port;    /* offset 4: target port */
	__u8 proto;     /* offset 6: IPPROTO_TCP or IPPROTO_UDP */
	__u8 flags;     /* offset 7: TW_BE_F_* */
};

TW_ABI_ASSERT_SIZE(struct tw_lb4_backend, 8);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_backend, address, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_backend, port, 4);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_backend, proto, 6);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_backend, flags, 7);

struct tw_lb4_revnat {
	__be32 address; /* offset 0: the frontend address */
	__be16 port;    /* offset 4: the frontend port */
	__u16 pad;      /* offset 6: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_lb4_revnat, 8);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_revnat, address, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_revnat, port, 4);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_revnat, pad, 6);

struct tw_lb4_affinity_key {
	__be32 client;        /* offset 0: client address */
	__u16 rev_nat_index;  /* offset 4: the service */
	__u16 pad;            /* offset 6: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_lb4_affinity_key, 8);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_affinity_key, client, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_affinity_key, rev_nat_index, 4);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_affinity_key, pad, 6);

struct tw_lb_affinity {
	__u64 last_used;  /* offset 0: bpf_ktime_get_ns() of the last use */
	__u32 backend_id; /* offset 8: the backend the client sticks to */
	__u32 pad;        /* offset 12: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_lb_affinity, 16);
TW_ABI_ASSERT_OFFSET(struct tw_lb_affinity, last_used, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb_affinity, backend_id, 8);
TW_ABI_ASSERT_OFFSET(struct tw_lb_affinity, pad, 12);

/* Socket LB: what a socket connected (or sent) to, so that getpeername()
 * and recvmsg() show the service, not the backend. */
struct tw_lb4_reverse_sk_key {
	__u64 cookie;   /* offset 0: bpf_get_socket_cookie() */
	__be32 address; /* offset 8: the backend address */
	__be16 port;    /* offset 12: the backend port */
	__u16 pad;      /* offset 14: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_lb4_reverse_sk_key, 16);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_reverse_sk_key, cookie, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_reverse_sk_key, address, 8);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_reverse_sk_key, port, 12);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_reverse_sk_key, pad, 14);

struct tw_lb4_reverse_sk {
	__be32 address;      /* offset 0: the service address */
	__be16 port;         /* offset 4: the service port */
	__u16 rev_nat_index; /* offset 6: the service */
};

TW_ABI_ASSERT_SIZE(struct tw_lb4_reverse_sk, 8);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_reverse_sk, address, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_reverse_sk, port, 4);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_reverse_sk, rev_nat_index, 6);

/* Key of tw_lb4_srcrange, an LPM trie: prefixlen counts the bits after it
 * that must match, always all of rev_nat_index and pad
 * (TW_LB_SRC_RANGE_FIXED_BITS) and then the range's prefix length of
 * `address`. A lookup uses TW_LB_SRC_RANGE_FIXED_BITS + 32 and the
 * client's address. */
#define TW_LB_SRC_RANGE_FIXED_BITS 32

struct tw_lb4_src_range_key {
	__u32 prefixlen;      /* offset 0: TW_LB_SRC_RANGE_FIXED_BITS + 0..32 */
	__u16 rev_nat_index;  /* offset 4: the frontend (host order) */
	__u16 pad;            /* offset 6: zero */
	__be32 address;       /* offset 8: the range's network address */
};

TW_ABI_ASSERT_SIZE(struct tw_lb4_src_range_key, 12);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_src_range_key, prefixlen, 0);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_src_range_key, rev_nat_index, 4);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_src_range_key, pad, 6);
TW_ABI_ASSERT_OFFSET(struct tw_lb4_src_range_key, address, 8);

/* tw_config.flags */
#define TW_CFG_F_SOCK_LB 0x0001
#define TW_CFG_F_NODEPORT 0x0002

/* Node-wide settings, written by the agent (entry 0 of tw_config). */
struct tw_config {
	__be32 node_ip;        /* offset 0: this node's address */
	__u32 maglev_m;        /* offset 4: Maglev table size (prime) */
	__u32 flags;           /* offset 8: TW_CFG_F_* */
	__u32 uplink_ifindex;  /* offset 12: the node's uplink (NodePort) */
	__u16 nat_port_min;    /* offset 16: NodePort SNAT ports, first */
	__u16 nat_port_max;    /* offset 18: NodePort SNAT ports, last */
	__u32 reserved0;       /* offset 20: zero */
	__u64 reserved1;       /* offset 24: zero */
	__u64 reserved2;       /* offset 32: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_config, 40);
TW_ABI_ASSERT_OFFSET(struct tw_config, node_ip, 0);
TW_ABI_ASSERT_OFFSET(struct tw_config, maglev_m, 4);
TW_ABI_ASSERT_OFFSET(struct tw_config, flags, 8);
TW_ABI_ASSERT_OFFSET(struct tw_config, uplink_ifindex, 12);
TW_ABI_ASSERT_OFFSET(struct tw_config, nat_port_min, 16);
TW_ABI_ASSERT_OFFSET(struct tw_config, nat_port_max, 18);
TW_ABI_ASSERT_OFFSET(struct tw_config, reserved0, 20);
TW_ABI_ASSERT_OFFSET(struct tw_config, reserved1, 24);
TW_ABI_ASSERT_OFFSET(struct tw_config, reserved2, 32);

#endif /* TOLLWAY_ABI_LB_H */
