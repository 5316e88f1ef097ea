//! `bpf/abi/ct.h`: connection tracking and NodePort NAT.

abi_consts!(CT_CONSTS in "ct.h" {
    /// Capacity of `tw_ct4`.
    TW_CT_MAX: u32 = 262144,
    /// Capacity of `tw_nodeport_nat4`.
    TW_NODEPORT_NAT_MAX: u32 = 65536,
    /// Lifetime of an established TCP connection, seconds.
    TW_CT_LIFETIME_TCP_ESTABLISHED: u32 = 8000,
    /// Lifetime of a TCP connection before it is established, seconds.
    TW_CT_LIFETIME_TCP_SYN: u32 = 60,
    /// Lifetime of a closing TCP connection (FIN or RST seen), seconds.
    TW_CT_LIFETIME_TCP_CLOSE: u32 = 10,
    /// Lifetime of UDP and ICMP flows, seconds.
    TW_CT_LIFETIME_NONTCP: u32 = 60,
    /// Key flag: a service entry (daddr/dport = the frontend).
    TW_CT_F_SERVICE: u8 = 0x01,
    /// Key flag: the entry of the pod-bound side (ingress policy).
    TW_CT_F_INGRESS: u8 = 0x02,
    /// State: SYN seen.
    TW_CT_S_SYN_SEEN: u16 = 0x0001,
    /// State: established.
    TW_CT_S_ESTABLISHED: u16 = 0x0002,
    /// State: FIN from the originator.
    TW_CT_S_FIN_TX: u16 = 0x0004,
    /// State: FIN from the responder.
    TW_CT_S_FIN_RX: u16 = 0x0008,
    /// State: RST seen.
    TW_CT_S_RST: u16 = 0x0010,
    /// State: a reply was seen.
    TW_CT_S_SEEN_REPLY: u16 = 0x0020,
    /// State: a NodePort flow.
    TW_CT_S_NODEPORT: u16 = 0x0040,
    /// State: translated by the socket LB (no per-packet NAT).
    TW_CT_S_SOCK_LB: u16 = 0x0080,
});

abi_struct! {
    /// Key of `tw_ct4`.
    pub struct Ct4Key = "tw_ct4_key" in "ct.h" {
        /// Originator address (`__be32`).
        pub saddr: u32,
        /// Responder address, the frontend for SERVICE keys (`__be32`).
        pub daddr: u32,
        /// Originator port (`__be16`; ICMP: echo id).
        pub sport: u16,
        /// Responder port (`__be16`; ICMP: 0).
        pub dport: u16,
        /// IPPROTO_*.
        pub proto: u8,
        /// `TW_CT_F_*`.
        pub flags: u8,
        /// Zero.
        pub pad: u16,
    }
}

abi_struct! {
    /// Value of `tw_ct4`.
    pub struct CtEntry = "tw_ct_entry" in "ct.h" {
        /// `bpf_ktime_get_ns()` deadline.
        pub expires: u64,
        /// Packets originator → responder.
        pub tx_packets: u64,
        /// Bytes originator → responder.
        pub tx_bytes: u64,
        /// Packets responder → originator.
        pub rx_packets: u64,
        /// Bytes responder → originator.
        pub rx_bytes: u64,
        /// SERVICE entries: the chosen backend.
        pub backend_id: u32,
        /// The service (0 = none).
        pub rev_nat_index: u16,
        /// `TW_CT_S_*`.
        pub state: u16,
        /// TCP flags seen from the originator.
        pub tx_flags_seen: u8,
        /// TCP flags seen from the responder.
        pub rx_flags_seen: u8,
        /// SERVICE entries of SNATed NodePort flows: the node's source port
        /// (`__be16`).
        pub nat_port: u16,
        /// Creation time, seconds of `bpf_ktime_get_ns()`.
        pub created: u32,
        /// Flow events: the last report of the tx direction, seconds of
        /// `bpf_ktime_get_ns()` (monitor aggregation).
        pub tx_reported: u32,
        /// The same for rx.
        pub rx_reported: u32,
    }
}

abi_struct! {
    /// Value of `tw_nodeport_nat4`.
    pub struct Nat4Entry = "tw_nat4_entry" in "ct.h" {
        /// `bpf_ktime_get_ns()` deadline.
        pub expires: u64,
        /// The external client (`__be32`).
        pub client_addr: u32,
        /// The node IP the client used (`__be32`).
        pub frontend_addr: u32,
        /// Client port (`__be16`).
        pub client_port: u16,
        /// The node port (`__be16`).
        pub frontend_port: u16,
        /// Zero.
        pub pad: u32,
    }
}
