/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tollway BPF ABI: flow events (Cilium's monitor events, for Hubble-like
 * flows).
 *
 * Rust mirror: crates/tollway-abi/src/events.rs.
 *
 * tw_events (RINGBUF, TW_EVENTS_RING_BYTES) carries one record per event:
 * a struct tw_event, followed, when cap_len > 0, by cap_len bytes of the
 * packet's L4 payload (DNS messages: the UDP payload), inside a record of
 * fixed size sizeof(struct tw_event) + TW_EVENTS_CAP_MAX. A record that
 * finds the ring full is not written: tw_events_lost (PERCPU_ARRAY[1] of
 * __u64) counts it, and the datapath goes on.
 *
 * tw_events_cfg (ARRAY[1] of struct tw_events_config) is written by the
 * agent: whether events are on and the aggregation level.
 *
 * Types are Cilium's message types (pkg/monitor/api/types.go) so that
 * Hubble's `event_type.type` numbers carry over; trace subtypes are its
 * observation points (bpf/lib/trace.h).
 */
#ifndef TOLLWAY_ABI_EVENTS_H
#define TOLLWAY_ABI_EVENTS_H

#include "abi/common.h"

#define TW_EVENTS_RING_BYTES 4194304
#define TW_EVENTS_CAP_MAX 512
/* Unread bytes from which a submit wakes the reader; below, the reader
 * looks on its own every 100 ms (a wakeup per event costs an interrupt). */
#define TW_EVENTS_WAKEUP_BYTES 262144

/* tw_event.ev_type */
#define TW_EV_DROP 1
#define TW_EV_TRACE 4
#define TW_EV_POLICY_VERDICT 5
#define TW_EV_TRACE_SOCK 7

/* tw_event.subtype of TW_EV_TRACE: the observation point. */
#define TW_TRACE_TO_LXC 0
#define TW_TRACE_TO_STACK 3
#define TW_TRACE_FROM_LXC 5
#define TW_TRACE_FROM_NETWORK 10
#define TW_TRACE_TO_NETWORK 11

/* tw_event.subtype of TW_EV_TRACE_SOCK: where the socket was translated. */
#define TW_SOCK_XLATE_PRE_DIRECTION_FWD 1

/* tw_event.flags */
#define TW_EV_F_INGRESS 0x01 /* the endpoint receives the packet */
#define TW_EV_F_EGRESS 0x02  /* the endpoint sends the packet */
#define TW_EV_F_REPLY 0x04   /* a reply of a tracked connection */
#define TW_EV_F_NEW 0x08     /* the packet opened the connection */
#define TW_EV_F_ALLOWED 0x10 /* policy verdict: allowed */
#define TW_EV_F_AUDIT 0x20   /* policy verdict: would drop, audit mode */

/* tw_event.match_type of TW_EV_POLICY_VERDICT: Hubble's policy match types. */
#define TW_MATCH_NONE 0
#define TW_MATCH_L3_ONLY 1
#define TW_MATCH_L3_L4 2
#define TW_MATCH_L4_ONLY 3
#define TW_MATCH_ALL 4

/* tw_events_config.level: Cilium's monitor aggregation levels. */
#define TW_AGG_NONE 0    /* every packet at every observation point */
#define TW_AGG_LOW 1     /* every packet, sending observation points only */
#define TW_AGG_MEDIUM 2  /* per connection: new, new TCP flags, every 5 s */
#define TW_AGG_MAXIMUM 3 /* per connection: new, first SYN/FIN/RST per direction */

/* Seconds between two reports of one busy connection at TW_AGG_MEDIUM. */
#define TW_AGG_INTERVAL 5

struct tw_events_config {
	__u32 enabled; /* offset 0: 0 = no events at all */
	__u32 level;   /* offset 4: TW_AGG_* */
	__u64 reserved;/* offset 8: zero */
};

TW_ABI_ASSERT_SIZE(struct tw_events_config, 16);
TW_ABI_ASSERT_OFFSET(struct tw_events_config, enabled, 0);
TW_ABI_ASSERT_OFFSET(struct tw_events_config, level, 4);
TW_ABI_ASSERT_OFFSET(struct tw_events_config, reserved, 8);

struct tw_event {
	__u64 ts;          /* offset 0: bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u8 ev_type;      /* offset 8: TW_EV_* */
	__u8 subtype;      /* offset 9: trace point, drop reason, sock point */
	__u8 proto;        /* offset 10: IPPROTO_* */
	__u8 tcp_flags;    /* offset 11: TCP: the packet's flags; ICMP: its type */
	__u32 ifindex;     /* offset 12: the device (pod veth, uplink) */
	__be32 saddr;      /* offset 16: as the packet is seen at that point */
	__be32 daddr;      /* offset 20 */
	__be16 sport;      /* offset 24: ICMP echo: the identifier */
	__be16 dport;      /* offset 26 */
	__u32 src_id;      /* offset 28: source identity (ipcache) */
	__u32 dst_id;      /* offset 32: destination identity (ipcache) */
	__be32 orig_addr;  /* offset 36: service frontend (before DNAT / after reverse NAT), 0 = none */
	__be16 orig_port;  /* offset 40 */
	__u8 flags;        /* offset 42: TW_EV_F_* */
	__u8 match_type;   /* offset 43: policy verdicts: TW_MATCH_* */
	__u32 len;         /* offset 44: skb->len */
	__u16 cap_len;     /* offset 48: payload bytes after the record */
	__u16 rev_nat;     /* offset 50: the service's rev NAT index, 0 = none */
	__u32 rule_id;     /* offset 52: policy verdicts: the deciding entry's rule */
	__u64 cgroup_id;   /* offset 56: TRACE_SOCK: the socket's cgroup */
};

TW_ABI_ASSERT_SIZE(struct tw_event, 64);
TW_ABI_ASSERT_OFFSET(struct tw_event, ts, 0);
TW_ABI_ASSERT_OFFSET(struct tw_event, ev_type, 8);
TW_ABI_ASSERT_OFFSET(struct tw_event, subtype, 9);
TW_ABI_ASSERT_OFFSET(struct tw_event, proto, 10);
TW_ABI_ASSERT_OFFSET(struct tw_event, tcp_flags, 11);
TW_ABI_ASSERT_OFFSET(struct tw_event, ifindex, 12);
TW_ABI_ASSERT_OFFSET(struct tw_event, saddr, 16);
TW_ABI_ASSERT_OFFSET(struct tw_event, daddr, 20);
TW_ABI_ASSERT_OFFSET(struct tw_event, sport, 24);
TW_ABI_ASSERT_OFFSET(struct tw_event, dport, 26);
TW_ABI_ASSERT_OFFSET(struct tw_event, src_id, 28);
TW_ABI_ASSERT_OFFSET(struct tw_event, dst_id, 32);
TW_ABI_ASSERT_OFFSET(struct tw_event, orig_addr, 36);
TW_ABI_ASSERT_OFFSET(struct tw_event, orig_port, 40);
TW_ABI_ASSERT_OFFSET(struct tw_event, flags, 42);
TW_ABI_ASSERT_OFFSET(struct tw_event, match_type, 43);
TW_ABI_ASSERT_OFFSET(struct tw_event, len, 44);
TW_ABI_ASSERT_OFFSET(struct tw_event, cap_len, 48);
TW_ABI_ASSERT_OFFSET(struct tw_event, rev_nat, 50);
TW_ABI_ASSERT_OFFSET(struct tw_event, rule_id, 52);
TW_ABI_ASSERT_OFFSET(struct tw_event, cgroup_id, 56);

#endif /* TOLLWAY_ABI_EVENTS_H */
