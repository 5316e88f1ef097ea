//! `bpf/abi/lb.h`: service load balancing maps.
//!
//! Addresses and ports in `__be*` fields are stored in network byte order:
//! use [`be32`] / [`be16`] (or `u32::from(Ipv4Addr).to_be()`) to fill them.

use std::net::Ipv4Addr;

abi_consts!(LB_CONSTS in "lb.h" {
    /// Capacity of `tw_lb4_services` (frontends plus their backend slots).
    TW_LB_SERVICES_MAX: u32 = 262144,
    /// Capacity of `tw_lb4_backends`.
    TW_LB_BACKENDS_MAX: u32 = 131072,
    /// Capacity of `tw_lb4_revnat` (= the number of frontends).
    TW_LB_REVNAT_MAX: u32 = 65536,
    /// Capacity of `tw_lb4_maglev` (Maglev frontends).
    TW_LB_MAGLEV_MAX: u32 = 4096,
    /// Capacity of `tw_lb4_affinity`.
    TW_LB_AFFINITY_MAX: u32 = 65536,
    /// Capacity of `tw_lb4_reverse_sk`.
    TW_LB_REVERSE_SK_MAX: u32 = 262144,
    /// Capacity of `tw_sock_skip`.
    TW_SOCK_SKIP_MAX: u32 = 4096,
    /// Capacity of `tw_lb4_srcrange` (source ranges of all frontends).
    TW_LB_SRC_RANGE_MAX: u32 = 16384,
    /// Bits of a `tw_lb4_src_range_key` every entry matches in full
    /// (`rev_nat_index` and `pad`), before the range's own prefix.
    TW_LB_SRC_RANGE_FIXED_BITS: u32 = 32,
    /// Default Maglev table size (prime).
    TW_LB_MAGLEV_M_DEFAULT: u32 = 16381,
    /// Key scope: every client.
    TW_LB_SCOPE_EXT: u8 = 0,
    /// Key scope: in-cluster clients of an externalTrafficPolicy=Local NodePort.
    TW_LB_SCOPE_INT: u8 = 1,
    /// The source address (host order: 169.254.42.1) a pod's tc path
    /// gives its connections to a service whose chosen backend is the pod
    /// itself (hairpin; Cilium's `IPV4_LOOPBACK`).
    TW_LB_IPV4_LOOPBACK: u32 = 0xa9fe2a01,
    /// Service flag: a ClusterIP frontend.
    TW_SVC_F_CLUSTERIP: u16 = 0x0001,
    /// Service flag: a NodePort frontend.
    TW_SVC_F_NODEPORT: u16 = 0x0002,
    /// Service flag: externalTrafficPolicy: Local.
    TW_SVC_F_ETP_LOCAL: u16 = 0x0004,
    /// Service flag: sessionAffinity: ClientIP.
    TW_SVC_F_AFFINITY: u16 = 0x0008,
    /// Service flag: an internal-scope entry exists too.
    TW_SVC_F_TWO_SCOPES: u16 = 0x0010,
    /// Service flag: a LoadBalancer ingress IP (served at the uplink too).
    TW_SVC_F_LOADBALANCER: u16 = 0x0020,
    /// Service flag: one of `spec.externalIPs` (served at the uplink too).
    TW_SVC_F_EXTERNAL_IP: u16 = 0x0040,
    /// Service flag: the frontend admits only the clients of its prefixes
    /// in `tw_lb4_srcrange` (`spec.loadBalancerSourceRanges`).
    TW_SVC_F_SRC_RANGE: u16 = 0x0080,
    /// Algorithm: random backend.
    TW_LB_ALG_RANDOM: u8 = 1,
    /// Algorithm: Maglev consistent hashing.
    TW_LB_ALG_MAGLEV: u8 = 2,
    /// Backend flag: on this node.
    TW_BE_F_LOCAL: u8 = 0x01,
    /// Backend flag: terminating (no new flows).
    TW_BE_F_TERMINATING: u8 = 0x02,
    /// Config flag: socket LB on.
    TW_CFG_F_SOCK_LB: u32 = 0x0001,
    /// Config flag: NodePort on.
    TW_CFG_F_NODEPORT: u32 = 0x0002,
});

/// An IPv4 address as a `__be32` field holds it.
pub fn be32(ip: Ipv4Addr) -> u32 {
    u32::from(ip).to_be()
}

/// A `__be32` field's address.
pub fn ip_of(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(be))
}

/// A port as a `__be16` field holds it.
pub fn be16(port: u16) -> u16 {
    port.to_be()
}

/// A `__be16` field's port.
pub fn port_of(be: u16) -> u16 {
    u16::from_be(be)
}

abi_struct! {
    /// Key of `tw_lb4_services`: a frontend and a slot (0 = the service itself).
    pub struct Lb4Key = "tw_lb4_key" in "lb.h" {
        /// ClusterIP, or the node IP of a NodePort (`__be32`).
        pub address: u32,
        /// Service port (`__be16`).
        pub dport: u16,
        /// 0 = the service, 1..count = backends.
        pub backend_slot: u16,
        /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
        pub proto: u8,
        /// `TW_LB_SCOPE_*`.
        pub scope: u8,
        /// Zero.
        pub pad: [u8; 2],
    }
}

abi_struct! {
    /// Value of `tw_lb4_services`.
    pub struct Lb4Service = "tw_lb4_service" in "lb.h" {
        /// Slots > 0: the backend of the slot.
        pub backend_id: u32,
        /// Slot 0: number of backend slots.
        pub count: u16,
        /// Slot 0: the service id (> 0).
        pub rev_nat_index: u16,
        /// Slot 0: `TW_SVC_F_*`.
        pub flags: u16,
        /// Slot 0: `TW_LB_ALG_*`.
        pub algorithm: u8,
        /// Zero.
        pub pad: u8,
        /// Slot 0: ClientIP affinity timeout, seconds (0 = none).
        pub affinity_timeout: u32,
    }
}

abi_struct! {
    /// Value of `tw_lb4_backends`.
    pub struct Lb4Backend = "tw_lb4_backend" in "lb.h" {
        /// Pod IP (`__be32`).
        pub address: u32,
        /// Target port (`__be16`).
        pub port: u16,
        /// IPPROTO_TCP or IPPROTO_UDP.
        pub proto: u8,
        /// `TW_BE_F_*`.
        pub flags: u8,
    }
}

abi_struct! {
    /// Value of `tw_lb4_revnat`: the frontend to restore on replies.
    pub struct Lb4Revnat = "tw_lb4_revnat" in "lb.h" {
        /// Frontend address (`__be32`).
        pub address: u32,
        /// Frontend port (`__be16`).
        pub port: u16,
        /// Zero.
        pub pad: u16,
    }
}

abi_struct! {
    /// Key of `tw_lb4_affinity`.
    pub struct Lb4AffinityKey = "tw_lb4_affinity_key" in "lb.h" {
        /// Client address (`__be32`).
        pub client: u32,
        /// The service.
        pub rev_nat_index: u16,
        /// Zero.
        pub pad: u16,
    }
}

abi_struct! {
    /// Value of `tw_lb4_affinity`.
    pub struct LbAffinity = "tw_lb_affinity" in "lb.h" {
        /// `bpf_ktime_get_ns()` of the last use.
        pub last_used: u64,
        /// The backend the client sticks to.
        pub backend_id: u32,
        /// Zero.
        pub pad: u32,
    }
}

abi_struct! {
    /// Key of `tw_lb4_reverse_sk`.
    pub struct Lb4ReverseSkKey = "tw_lb4_reverse_sk_key" in "lb.h" {
        /// `bpf_get_socket_cookie()`.
        pub cookie: u64,
        /// The backend address (`__be32`).
        pub address: u32,
        /// The backend port (`__be16`).
        pub port: u16,
        /// Zero.
        pub pad: u16,
    }
}

abi_struct! {
    /// Value of `tw_lb4_reverse_sk`.
    pub struct Lb4ReverseSk = "tw_lb4_reverse_sk" in "lb.h" {
        /// The service address (`__be32`).
        pub address: u32,
        /// The service port (`__be16`).
        pub port: u16,
        /// The service.
        pub rev_nat_index: u16,
    }
}

abi_struct! {
    /// Key of `tw_lb4_srcrange` (LPM trie; the value is a `u8`, 1): a
    /// frontend's source range.
    pub struct Lb4SrcRangeKey = "tw_lb4_src_range_key" in "lb.h" {
        /// `TW_LB_SRC_RANGE_FIXED_BITS` + the range's prefix length (0..32).
        pub prefixlen: u32,
        /// The frontend's reverse-NAT index (host order).
        pub rev_nat_index: u16,
        /// Zero.
        pub pad: u16,
        /// The range's network address (`__be32`).
        pub address: u32,
    }
}

abi_struct! {
    /// Entry 0 of `tw_config`: node-wide settings.
    pub struct Config = "tw_config" in "lb.h" {
        /// This node's address (`__be32`).
        pub node_ip: u32,
        /// Maglev table size (prime).
        pub maglev_m: u32,
        /// `TW_CFG_F_*`.
        pub flags: u32,
        /// The node's uplink interface.
        pub uplink_ifindex: u32,
        /// NodePort SNAT ports, first.
        pub nat_port_min: u16,
        /// NodePort SNAT ports, last.
        pub nat_port_max: u16,
        /// Zero.
        pub reserved0: u32,
        /// Zero.
        pub reserved1: u64,
        /// Zero.
        pub reserved2: u64,
    }
}
