//! Values shared with the BPF programs, as `bpf/abi/policy.h` defines them.
//!
//! They are spelled exactly as in the header; a unit test reads the header
//! and checks every one, so they cannot drift.

/// Wildcard peer in policy keys: an entry for it applies to every peer.
pub const TW_ID_ANY: u32 = 0;
/// The local node (`reserved:host`).
pub const TW_ID_HOST: u32 = 1;
/// Anything outside the cluster (`reserved:world`); an ipcache miss.
pub const TW_ID_WORLD: u32 = 2;
/// Endpoints not managed by Tollway (`reserved:unmanaged`).
pub const TW_ID_UNMANAGED: u32 = 3;
/// Health-check endpoints (`reserved:health`).
pub const TW_ID_HEALTH: u32 = 4;
/// Endpoints whose identity is not resolved yet (`reserved:init`).
pub const TW_ID_INIT: u32 = 5;
/// Other nodes of the cluster (`reserved:remote-node`).
pub const TW_ID_REMOTE_NODE: u32 = 6;
/// The Kubernetes API server (`reserved:kube-apiserver`).
pub const TW_ID_KUBE_APISERVER: u32 = 7;
/// First identity of endpoints (cluster scope).
pub const TW_ID_CLUSTER_FIRST: u32 = 256;
/// First identity of CIDRs (local scope, Cilium's `1 << 24`).
pub const TW_ID_CIDR_FIRST: u32 = 16_777_216;

/// Capacity of one endpoint's inner policy trie.
pub const TW_POLICY_ENTRIES_MAX: usize = 16_384;

/// `tw_policy_key.egress`: ingress.
pub const TW_POL_INGRESS: u8 = 0;
/// `tw_policy_key.egress`: egress.
pub const TW_POL_EGRESS: u8 = 1;
/// `tw_policy_entry.flags`: the entry denies.
pub const TW_POL_F_DENY: u8 = 0x01;

/// `tw_endpoint.flags`: ingress is default-deny.
pub const TW_EP_F_INGRESS_DEFAULT_DENY: u32 = 0x01;
/// `tw_endpoint.flags`: egress is default-deny.
pub const TW_EP_F_EGRESS_DEFAULT_DENY: u32 = 0x02;
/// `tw_endpoint.flags`: `tw_policy` has an inner map for the endpoint.
pub const TW_EP_F_POLICY: u32 = 0x04;

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;

/// Bits of `tw_policy_key` before the protocol: identity (32) + egress (8).
/// An entry for every protocol and port has this prefix length.
pub const KEY_PREFIX_ANY_PROTO: u32 = 40;
/// Bits of `tw_policy_key` before the port: identity + egress + protocol.
pub const KEY_PREFIX_PORT_START: u32 = 48;
/// The full key length, used by lookups.
pub const KEY_PREFIX_FULL: u32 = 64;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn header_defines() -> BTreeMap<String, u64> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/abi/policy.h");
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "#define").then_some(())?;
                let name = w.next()?;
                let value = w.next()?;
                let n = match value.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok()?,
                    None => value.parse().ok()?,
                };
                Some((name.to_string(), n))
            })
            .collect()
    }

    #[test]
    fn constants_match_policy_h() {
        let h = header_defines();
        let ours: &[(&str, u64)] = &[
            ("TW_ID_ANY", TW_ID_ANY.into()),
            ("TW_ID_HOST", TW_ID_HOST.into()),
            ("TW_ID_WORLD", TW_ID_WORLD.into()),
            ("TW_ID_UNMANAGED", TW_ID_UNMANAGED.into()),
            ("TW_ID_HEALTH", TW_ID_HEALTH.into()),
            ("TW_ID_INIT", TW_ID_INIT.into()),
            ("TW_ID_REMOTE_NODE", TW_ID_REMOTE_NODE.into()),
            ("TW_ID_KUBE_APISERVER", TW_ID_KUBE_APISERVER.into()),
            ("TW_ID_CLUSTER_FIRST", TW_ID_CLUSTER_FIRST.into()),
            ("TW_ID_CIDR_FIRST", TW_ID_CIDR_FIRST.into()),
            ("TW_POLICY_ENTRIES_MAX", TW_POLICY_ENTRIES_MAX as u64),
            ("TW_POL_INGRESS", TW_POL_INGRESS.into()),
            ("TW_POL_EGRESS", TW_POL_EGRESS.into()),
            ("TW_POL_F_DENY", TW_POL_F_DENY.into()),
            (
                "TW_EP_F_INGRESS_DEFAULT_DENY",
                TW_EP_F_INGRESS_DEFAULT_DENY.into(),
            ),
            (
                "TW_EP_F_EGRESS_DEFAULT_DENY",
                TW_EP_F_EGRESS_DEFAULT_DENY.into(),
            ),
            ("TW_EP_F_POLICY", TW_EP_F_POLICY.into()),
        ];
        for (name, value) in ours {
            assert_eq!(h.get(*name), Some(value), "{name} differs from policy.h");
        }
    }
}
