/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tollway BPF ABI: connection tracking and NodePort NAT.
 *
 * Rust mirror: crates/tollway-abi/src/ct.rs.
 *
 * tw_ct4 (LRU_HASH struct tw_ct4_key -> struct tw_ct_entry) holds, per
 * connection, the tuple as its originator sent it (after service
 * translation: daddr is the backend) and, for service connections, a second
 * entry with TW_CT_F_SERVICE whose daddr/dport are the frontend, recording
 * the chosen backend. Replies are looked up with the tuple reversed.
 *
 * tw_np_nat4 (LRU_HASH struct tw_ct4_key -> struct tw_nat4_entry) maps
 * the reply tuple of a SNATed NodePort flow, as it arrives at the uplink
 * (backend -> node IP:nat port), back to the client and the frontend.
 */
#ifndef TOLLWAY_ABI_CT_H
#define TOLLWAY_ABI_CT_H

#include "abi/common.h"

#define TW_CT_MAX 262144
#define TW_NODEPORT_NAT_MAX 65536

/* Lifetimes, seconds: Cilium's defaults. */
#define TW_CT_LIFETIME_TCP_ESTABLISHED 8000
#define TW_CT_LIFETIME_TCP_SYN 60
#define TW_CT_LIFETIME_TCP_CLOSE 10
#define TW_CT_LIFETIME_NONTCP 60

/* tw_ct4_key.flags */
#define TW_CT_F_SERVICE 0x01
/* An entry created by the pod-bound direction (tc egress of the pod's
 * veth, or ingress of a remote originator): kept apart from the entry the
 * originator's own side made, so that each endpoint's policy sees each new
 * connection exactly once. */
#define TW_CT_F_INGRESS 0x02

struct tw_ct4_key {
	__be32 saddr; /* offset 0: originator address */
	__be32 daddr; /* offset 4: responder address (frontend for SERVICE keys) */
	__be16 sport; /* offset 8: originator port (ICMP: echo id) */
	__be16 dport; /* offset 10: responder port (ICMP: 0) */
	__u8 proto;   /* offset 12: IPPROTO_* */
	__u8 flags;   /* offset 13: TW_CT_F_* */
	__u16 pad;    /* offset 14: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_ct4_key, 16);
TW_ABI_ASSERT_OFFSET(struct tw_ct4_key, saddr, 0);
TW_ABI_ASSERT_OFFSET(struct tw_ct4_key, daddr, 4);
TW_ABI_ASSERT_OFFSET(struct tw_ct4_key, sport, 8);
TW_ABI_ASSERT_OFFSET(struct tw_ct4_key, dport, 10);
TW_ABI_ASSERT_OFFSET(struct tw_ct4_key, proto, 12);
TW_ABI_ASSERT_OFFSET(struct tw_ct4_key, flags, 13);
TW_ABI_ASSERT_OFFSET(struct tw_ct4_key, pad, 14);

/* tw_ct_entry.state */
#define TW_CT_S_SYN_SEEN 0x0001
#define TW_CT_S_ESTABLISHED 0x0002
#define TW_CT_S_FIN_TX 0x0004
#define TW_CT_S_FIN_RX 0x0008
#define TW_CT_S_RST 0x0010
#define TW_CT_S_SEEN_REPLY 0x0020
#define TW_CT_S_NODEPORT 0x0040
#define TW_CT_S_SOCK_LB 0x0080

struct tw_ct_entry {
	__u64 expires;        /* offset 0: bpf_ktime_get_ns() deadline */
	__u64 tx_packets;     /* offset 8: originator -> responder */
	__u64 tx_bytes;       /* offset 16 */
	__u64 rx_packets;     /* offset 24: responder -> originator */
	__u64 rx_bytes;       /* offset 32 */
	__u32 backend_id;     /* offset 40: SERVICE entries: the chosen backend */
	__u16 rev_nat_index;  /* offset 44: the service, 0 = none */
	__u16 state;          /* offset 46: TW_CT_S_* */
	__u8 tx_flags_seen;   /* offset 48: TCP flags seen from the originator */
	__u8 rx_flags_seen;   /* offset 49: TCP flags seen from the responder */
	__be16 nat_port;      /* offset 50: SERVICE entries of SNATed NodePort flows: the node's source port */
	__u32 created;        /* offset 52: bpf_ktime_get_ns() / 1e9 at creation */
	__u32 tx_reported;    /* offset 56: flow events: last report of the tx direction, seconds (aggregation) */
	__u32 rx_reported;    /* offset 60: the same for rx */
};

TW_ABI_ASSERT_SIZE(struct tw_ct_entry, 64);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, expires, 0);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, tx_packets, 8);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, tx_bytes, 16);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, rx_packets, 24);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, rx_bytes, 32);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, backend_id, 40);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, rev_nat_index, 44);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, state, 46);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, tx_flags_seen, 48);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, rx_flags_seen, 49);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, nat_port, 50);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, created, 52);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, tx_reported, 56);
TW_ABI_ASSERT_OFFSET(struct tw_ct_entry, rx_reported, 60);

struct tw_nat4_entry {
	__u64 expires;       /* offset 0: bpf_ktime_get_ns() deadline */
	__be32 client_addr;  /* offset 8: the external client */
	__be32 frontend_addr;/* offset 12: the node IP the client used */
	__be16 client_port;  /* offset 16 */
	__be16 frontend_port;/* offset 18: the node port */
	__u32 pad;           /* offset 20: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_nat4_entry, 24);
TW_ABI_ASSERT_OFFSET(struct tw_nat4_entry, expires, 0);
TW_ABI_ASSERT_OFFSET(struct tw_nat4_entry, client_addr, 8);
TW_ABI_ASSERT_OFFSET(struct tw_nat4_entry, frontend_addr, 12);
TW_ABI_ASSERT_OFFSET(struct tw_nat4_entry, client_port, 16);
TW_ABI_ASSERT_OFFSET(struct tw_nat4_entry, frontend_port, 18);
TW_ABI_ASSERT_OFFSET(struct tw_nat4_entry, pad, 20);

#endif /* TOLLWAY_ABI_CT_H */
