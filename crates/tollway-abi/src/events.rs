//! `bpf/abi/events.h`: flow events (the ring buffer) and their config.

abi_consts!(EVENTS_CONSTS in "events.h" {
    /// Size of the `tw_events` ring buffer, bytes.
    TW_EVENTS_RING_BYTES: u32 = 4194304,
    /// Most payload bytes a record carries after its `tw_event`.
    TW_EVENTS_CAP_MAX: u32 = 512,
    /// Unread bytes from which a submit wakes the reader.
    TW_EVENTS_WAKEUP_BYTES: u32 = 262144,
    /// Drop (Cilium's MessageTypeDrop).
    TW_EV_DROP: u8 = 1,
    /// Trace (MessageTypeTrace).
    TW_EV_TRACE: u8 = 4,
    /// Policy verdict (MessageTypePolicyVerdict).
    TW_EV_POLICY_VERDICT: u8 = 5,
    /// Socket translation (MessageTypeTraceSock).
    TW_EV_TRACE_SOCK: u8 = 7,
    /// Observation point: to the pod.
    TW_TRACE_TO_LXC: u8 = 0,
    /// Observation point: from the pod into the node's stack.
    TW_TRACE_TO_STACK: u8 = 3,
    /// Observation point: from the pod (before any processing).
    TW_TRACE_FROM_LXC: u8 = 5,
    /// Observation point: from the network (the uplink).
    TW_TRACE_FROM_NETWORK: u8 = 10,
    /// Observation point: to the network (the uplink).
    TW_TRACE_TO_NETWORK: u8 = 11,
    /// Socket translated at connect/sendmsg.
    TW_SOCK_XLATE_PRE_DIRECTION_FWD: u8 = 1,
    /// The endpoint receives the packet.
    TW_EV_F_INGRESS: u8 = 0x01,
    /// The endpoint sends the packet.
    TW_EV_F_EGRESS: u8 = 0x02,
    /// A reply of a tracked connection.
    TW_EV_F_REPLY: u8 = 0x04,
    /// The packet opened the connection.
    TW_EV_F_NEW: u8 = 0x08,
    /// Policy verdict: allowed.
    TW_EV_F_ALLOWED: u8 = 0x10,
    /// Policy verdict: audit.
    TW_EV_F_AUDIT: u8 = 0x20,
    /// Policy match: none (default allow or default deny).
    TW_MATCH_NONE: u8 = 0,
    /// Policy match: L3 only.
    TW_MATCH_L3_ONLY: u8 = 1,
    /// Policy match: L3 and L4.
    TW_MATCH_L3_L4: u8 = 2,
    /// Policy match: L4 only.
    TW_MATCH_L4_ONLY: u8 = 3,
    /// Policy match: all (any peer, any port).
    TW_MATCH_ALL: u8 = 4,
    /// Aggregation: none.
    TW_AGG_NONE: u32 = 0,
    /// Aggregation: low.
    TW_AGG_LOW: u32 = 1,
    /// Aggregation: medium (default).
    TW_AGG_MEDIUM: u32 = 2,
    /// Aggregation: maximum.
    TW_AGG_MAXIMUM: u32 = 3,
    /// Seconds between two reports of a busy connection (medium).
    TW_AGG_INTERVAL: u32 = 5,
});

abi_struct! {
    /// The single value of `tw_events_cfg`.
    pub struct EventsConfig = "tw_events_config" in "events.h" {
        /// 0 = no events at all.
        pub enabled: u32,
        /// `TW_AGG_*`.
        pub level: u32,
        /// Zero.
        pub reserved: u64,
    }
}

abi_struct! {
    /// One record of `tw_events` (followed by `cap_len` payload bytes).
    pub struct Event = "tw_event" in "events.h" {
        /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
        pub ts: u64,
        /// `TW_EV_*`.
        pub ev_type: u8,
        /// Trace point, drop reason or socket point.
        pub subtype: u8,
        /// IPPROTO_*.
        pub proto: u8,
        /// TCP: the packet's flags; ICMP: its type.
        pub tcp_flags: u8,
        /// The device.
        pub ifindex: u32,
        /// Source address (`__be32`).
        pub saddr: u32,
        /// Destination address (`__be32`).
        pub daddr: u32,
        /// Source port (`__be16`).
        pub sport: u16,
        /// Destination port (`__be16`).
        pub dport: u16,
        /// Source identity.
        pub src_id: u32,
        /// Destination identity.
        pub dst_id: u32,
        /// Service frontend address (`__be32`), 0 = none.
        pub orig_addr: u32,
        /// Service frontend port (`__be16`).
        pub orig_port: u16,
        /// `TW_EV_F_*`.
        pub flags: u8,
        /// `TW_MATCH_*`.
        pub match_type: u8,
        /// `skb->len`.
        pub len: u32,
        /// Payload bytes after the record.
        pub cap_len: u16,
        /// Rev NAT index of the service, 0 = none.
        pub rev_nat: u16,
        /// Policy verdicts: the deciding rule.
        pub rule_id: u32,
        /// TRACE_SOCK: the socket's cgroup id.
        pub cgroup_id: u64,
    }
}

impl Event {
    /// Size of the record header.
    pub const SIZE: usize = core::mem::size_of::<Event>();

    /// Decodes a ring buffer record: the header and its payload (empty if
    /// none). `None` if the record is shorter than a header.
    pub fn parse(record: &[u8]) -> Option<(Event, &[u8])> {
        if record.len() < Self::SIZE {
            return None;
        }
        // SAFETY: `Event` is `#[repr(C)]`, made only of integers (every bit
        // pattern is valid), and `record` holds at least SIZE bytes; the
        // read is unaligned-safe.
        let ev = unsafe { core::ptr::read_unaligned(record.as_ptr().cast::<Event>()) };
        let cap = usize::from(ev.cap_len).min(record.len() - Self::SIZE);
        Some((ev, &record[Self::SIZE..Self::SIZE + cap]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_the_header_and_bounds_the_payload() {
        let ev = Event {
            ts: 7,
            ev_type: TW_EV_DROP,
            subtype: 133,
            cap_len: 4,
            ..Event::default()
        };
        let mut rec = vec![0u8; Event::SIZE + 8];
        // SAFETY: writing a plain-integer struct into a buffer big enough.
        unsafe { core::ptr::write_unaligned(rec.as_mut_ptr().cast::<Event>(), ev) };
        rec[Event::SIZE..Event::SIZE + 4].copy_from_slice(b"abcd");
        let (got, payload) = Event::parse(&rec).expect("parses");
        assert_eq!(got, ev);
        assert_eq!(payload, b"abcd");
        // cap_len larger than the record: bounded.
        let mut short = rec[..Event::SIZE + 2].to_vec();
        short[48] = 200;
        let (_, p) = Event::parse(&short).expect("parses");
        assert_eq!(p.len(), 2);
        assert!(Event::parse(&rec[..10]).is_none());
    }
}
