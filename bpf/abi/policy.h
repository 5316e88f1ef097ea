/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tollway BPF ABI: identities, the ipcache, endpoints and policy.
 *
 * Rust mirror: crates/tollway-abi/src/policy.rs.
 *
 * Model (Cilium's):
 *  - every endpoint (pod) has a numeric security identity, the same on every
 *    node, derived from its security-relevant labels; reserved identities
 *    have Cilium's numbers (TW_ID_*); CIDR identities start at
 *    TW_ID_CIDR_FIRST (Cilium's local scope, 1 << 24);
 *  - tw_ipcache4 (LPM trie) maps every address the node knows (pods of
 *    every node /32, node addresses /32, policy CIDRs) to its identity; a
 *    miss is TW_ID_WORLD;
 *  - tw_endpoints maps the ifindex of a pod's host-side veth to the
 *    endpoint: its id, identity and which directions are default-deny;
 *  - tw_policy (HASH_OF_MAPS) maps an endpoint id to its policy: an inner
 *    LPM trie keyed by {identity, direction, protocol, port prefix}; user
 *    space builds a complete new inner map and swaps it in with one update,
 *    so no packet ever sees a half-written policy.
 *
 * Policy lookup for a new connection (after service translation, so ports
 * are the backend's): look up {peer identity, dir, proto, dport} and
 * {TW_ID_ANY, dir, proto, dport} with full prefix length; an entry with
 * TW_POL_F_DENY in either wins (TW_DROP_POLICY_DENY); else an allow in
 * either passes; else the direction's default applies (default-deny:
 * TW_DROP_POLICY_DENIED; not enforced: allow). User space resolves
 * overlaps so that within one identity allow and deny prefixes never
 * overlap (the longest match is then the answer). Replies of tracked
 * connections are never checked.
 */
#ifndef TOLLWAY_ABI_POLICY_H
#define TOLLWAY_ABI_POLICY_H

#include "abi/common.h"

/* tw_ipcache4   LPM_TRIE     struct tw_ipcache_key -> struct tw_ipcache_entry */
/* tw_endpoints  HASH         __u32 ifindex -> struct tw_endpoint             */
/* tw_policy     HASH_OF_MAPS __u32 endpoint id -> LPM_TRIE struct tw_policy_key -> struct tw_policy_entry */

#define TW_IPCACHE_MAX 524288
#define TW_ENDPOINTS_MAX 65536
#define TW_POLICY_ENDPOINTS_MAX 65536
#define TW_POLICY_ENTRIES_MAX 16384

/* Reserved identities: Cilium's numbers. */
#define TW_ID_ANY 0
#define TW_ID_HOST 1
#define TW_ID_WORLD 2
#define TW_ID_UNMANAGED 3
#define TW_ID_HEALTH 4
#define TW_ID_INIT 5
#define TW_ID_REMOTE_NODE 6
#define TW_ID_KUBE_APISERVER 7
/* First identity of endpoints (cluster scope). */
#define TW_ID_CLUSTER_FIRST 256
/* First identity of CIDRs (local scope). */
#define TW_ID_CIDR_FIRST 16777216

/* An LPM key: prefixlen counts the bits of `address` that must match. */
struct tw_ipcache_key {
	__u32 prefixlen; /* offset 0: 0..32 */
	__be32 address;  /* offset 4 */
};

TW_ABI_ASSERT_SIZE(struct tw_ipcache_key, 8);
TW_ABI_ASSERT_OFFSET(struct tw_ipcache_key, prefixlen, 0);
TW_ABI_ASSERT_OFFSET(struct tw_ipcache_key, address, 4);

/* tw_ipcache_entry.flags */
#define TW_IPC_F_ENDPOINT 0x01  /* a pod */
#define TW_IPC_F_NODE 0x02      /* a node address */
#define TW_IPC_F_CIDR 0x04      /* a policy CIDR */

struct tw_ipcache_entry {
	__u32 identity; /* offset 0 */
	__be32 node_ip; /* offset 4: the node hosting a pod, 0 otherwise */
	__u8 flags;     /* offset 8: TW_IPC_F_* */
	__u8 pad[3];    /* offset 9: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_ipcache_entry, 12);
TW_ABI_ASSERT_OFFSET(struct tw_ipcache_entry, identity, 0);
TW_ABI_ASSERT_OFFSET(struct tw_ipcache_entry, node_ip, 4);
TW_ABI_ASSERT_OFFSET(struct tw_ipcache_entry, flags, 8);
TW_ABI_ASSERT_OFFSET(struct tw_ipcache_entry, pad, 9);

/* tw_endpoint.flags */
#define TW_EP_F_INGRESS_DEFAULT_DENY 0x01
#define TW_EP_F_EGRESS_DEFAULT_DENY 0x02
#define TW_EP_F_POLICY 0x04 /* tw_policy has an inner map for the endpoint */

struct tw_endpoint {
	__u32 endpoint_id; /* offset 0: key of tw_policy */
	__u32 identity;    /* offset 4: the pod's identity */
	__be32 ip;         /* offset 8: the pod's address */
	__u32 flags;       /* offset 12: TW_EP_F_* */
};

TW_ABI_ASSERT_SIZE(struct tw_endpoint, 16);
TW_ABI_ASSERT_OFFSET(struct tw_endpoint, endpoint_id, 0);
TW_ABI_ASSERT_OFFSET(struct tw_endpoint, identity, 4);
TW_ABI_ASSERT_OFFSET(struct tw_endpoint, ip, 8);
TW_ABI_ASSERT_OFFSET(struct tw_endpoint, flags, 12);

/* tw_policy_key.egress */
#define TW_POL_INGRESS 0
#define TW_POL_EGRESS 1

/*
 * prefixlen counts bits from `identity` on: 32 (identity) + 8 (egress) +
 * 8 (protocol, 0 = any: then the prefix stops there) + 0..16 bits of the
 * port (0 = any port; a port range is a few prefixes). Lookups use the
 * full 64.
 */
struct tw_policy_key {
	__u32 prefixlen; /* offset 0: 40..64 */
	__u32 identity;  /* offset 4: peer identity (TW_ID_ANY = every peer); always matched whole */
	__u8 egress;     /* offset 8: TW_POL_INGRESS / TW_POL_EGRESS */
	__u8 proto;      /* offset 9: IPPROTO_TCP / IPPROTO_UDP / 0 = any */
	__be16 dport;    /* offset 10: destination port */
};

TW_ABI_ASSERT_SIZE(struct tw_policy_key, 12);
TW_ABI_ASSERT_OFFSET(struct tw_policy_key, prefixlen, 0);
TW_ABI_ASSERT_OFFSET(struct tw_policy_key, identity, 4);
TW_ABI_ASSERT_OFFSET(struct tw_policy_key, egress, 8);
TW_ABI_ASSERT_OFFSET(struct tw_policy_key, proto, 9);
TW_ABI_ASSERT_OFFSET(struct tw_policy_key, dport, 10);

/* tw_policy_entry.flags */
#define TW_POL_F_DENY 0x01

struct tw_policy_entry {
	__u8 flags;        /* offset 0: TW_POL_F_* */
	__u8 l4;           /* offset 1: 1 if the entry names a protocol (and port): flow events' match type */
	__u16 proxy_port;  /* offset 2: L7 redirect (later issues), 0 = none */
	__u32 rule_id;     /* offset 4: which compiled rule (for `bpf policy get`) */
	__u64 packets;     /* offset 8: hits (new connections), atomic */
	__u64 bytes;       /* offset 16: their bytes, atomic */
};

TW_ABI_ASSERT_SIZE(struct tw_policy_entry, 24);
TW_ABI_ASSERT_OFFSET(struct tw_policy_entry, flags, 0);
TW_ABI_ASSERT_OFFSET(struct tw_policy_entry, l4, 1);
TW_ABI_ASSERT_OFFSET(struct tw_policy_entry, proxy_port, 2);
TW_ABI_ASSERT_OFFSET(struct tw_policy_entry, rule_id, 4);
TW_ABI_ASSERT_OFFSET(struct tw_policy_entry, packets, 8);
TW_ABI_ASSERT_OFFSET(struct tw_policy_entry, bytes, 16);

#endif /* TOLLWAY_ABI_POLICY_H */
