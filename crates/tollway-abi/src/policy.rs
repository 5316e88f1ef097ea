//! `bpf/abi/policy.h`: identities, ipcache, endpoints, policy.

abi_consts!(POLICY_CONSTS in "policy.h" {
    /// Capacity of `tw_ipcache4`.
    TW_IPCACHE_MAX: u32 = 524288,
    /// Capacity of `tw_endpoints`.
    TW_ENDPOINTS_MAX: u32 = 65536,
    /// Capacity of `tw_policy` (endpoints with a policy).
    TW_POLICY_ENDPOINTS_MAX: u32 = 65536,
    /// Capacity of one endpoint's inner policy trie.
    TW_POLICY_ENTRIES_MAX: u32 = 16384,
    /// Wildcard peer in policy keys.
    TW_ID_ANY: u32 = 0,
    /// The local node.
    TW_ID_HOST: u32 = 1,
    /// Anything outside the cluster.
    TW_ID_WORLD: u32 = 2,
    /// Unmanaged endpoints.
    TW_ID_UNMANAGED: u32 = 3,
    /// Health endpoints.
    TW_ID_HEALTH: u32 = 4,
    /// Endpoints being initialised.
    TW_ID_INIT: u32 = 5,
    /// Other nodes.
    TW_ID_REMOTE_NODE: u32 = 6,
    /// The API server.
    TW_ID_KUBE_APISERVER: u32 = 7,
    /// First identity of endpoints.
    TW_ID_CLUSTER_FIRST: u32 = 256,
    /// First identity of CIDRs.
    TW_ID_CIDR_FIRST: u32 = 16777216,
    /// ipcache flag: a pod.
    TW_IPC_F_ENDPOINT: u8 = 0x01,
    /// ipcache flag: a node address.
    TW_IPC_F_NODE: u8 = 0x02,
    /// ipcache flag: a policy CIDR.
    TW_IPC_F_CIDR: u8 = 0x04,
    /// Endpoint flag: ingress is default-deny.
    TW_EP_F_INGRESS_DEFAULT_DENY: u32 = 0x01,
    /// Endpoint flag: egress is default-deny.
    TW_EP_F_EGRESS_DEFAULT_DENY: u32 = 0x02,
    /// Endpoint flag: a policy map is installed.
    TW_EP_F_POLICY: u32 = 0x04,
    /// Policy key direction: ingress.
    TW_POL_INGRESS: u8 = 0,
    /// Policy key direction: egress.
    TW_POL_EGRESS: u8 = 1,
    /// Policy entry flag: deny.
    TW_POL_F_DENY: u8 = 0x01,
});

abi_struct! {
    /// Key of `tw_ipcache4` (LPM trie).
    pub struct IpcacheKey = "tw_ipcache_key" in "policy.h" {
        /// Prefix length, 0..32.
        pub prefixlen: u32,
        /// Address (`__be32`).
        pub address: u32,
    }
}

abi_struct! {
    /// Value of `tw_ipcache4`.
    pub struct IpcacheEntry = "tw_ipcache_entry" in "policy.h" {
        /// Identity.
        pub identity: u32,
        /// The node hosting a pod (`__be32`), 0 otherwise.
        pub node_ip: u32,
        /// `TW_IPC_F_*`.
        pub flags: u8,
        /// Zero.
        pub pad: [u8; 3],
    }
}

abi_struct! {
    /// Value of `tw_endpoints` (key: host-side veth ifindex).
    pub struct Endpoint = "tw_endpoint" in "policy.h" {
        /// Key of `tw_policy`.
        pub endpoint_id: u32,
        /// The pod's identity.
        pub identity: u32,
        /// The pod's address (`__be32`).
        pub ip: u32,
        /// `TW_EP_F_*`.
        pub flags: u32,
    }
}

abi_struct! {
    /// Key of an endpoint's inner policy trie.
    pub struct PolicyKey = "tw_policy_key" in "policy.h" {
        /// Prefix length from `identity` on: 40..64.
        pub prefixlen: u32,
        /// Peer identity (`TW_ID_ANY` = every peer).
        pub identity: u32,
        /// `TW_POL_INGRESS` / `TW_POL_EGRESS`.
        pub egress: u8,
        /// IPPROTO_TCP / IPPROTO_UDP / 0 = any.
        pub proto: u8,
        /// Destination port (`__be16`).
        pub dport: u16,
    }
}

abi_struct! {
    /// Value of an endpoint's inner policy trie.
    pub struct PolicyEntry = "tw_policy_entry" in "policy.h" {
        /// `TW_POL_F_*`.
        pub flags: u8,
        /// 1 if the entry names a protocol (and port): the match type of
        /// policy-verdict events (L3-L4 / L4-only vs L3-only / all).
        pub l4: u8,
        /// L7 redirect port (later), 0 = none.
        pub proxy_port: u16,
        /// Which compiled rule.
        pub rule_id: u32,
        /// Hits (new connections).
        pub packets: u64,
        /// Their bytes.
        pub bytes: u64,
    }
}
