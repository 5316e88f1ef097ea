//! Values shared with the BPF programs, as `bpf/abi/lb.h` defines them.
//!
//! They are spelled exactly as in the header; a unit test reads the header
//! and checks every one, so they cannot drift.

/// `tw_lb4_service.flags`: the frontend is a cluster IP.
pub const TW_SVC_F_CLUSTERIP: u16 = 0x0001;
/// `tw_lb4_service.flags`: the frontend is a node port.
pub const TW_SVC_F_NODEPORT: u16 = 0x0002;
/// `tw_lb4_service.flags`: `externalTrafficPolicy: Local` (local backends
/// only, client source address preserved).
pub const TW_SVC_F_ETP_LOCAL: u16 = 0x0004;
/// `tw_lb4_service.flags`: ClientIP session affinity.
pub const TW_SVC_F_AFFINITY: u16 = 0x0008;
/// `tw_lb4_service.flags`: an internal-scope twin of the frontend exists.
pub const TW_SVC_F_TWO_SCOPES: u16 = 0x0010;
/// `tw_lb4_service.flags`: the frontend is a LoadBalancer ingress IP (the
/// uplink program translates packets from outside to it).
pub const TW_SVC_F_LOADBALANCER: u16 = 0x0020;
/// `tw_lb4_service.flags`: the frontend is one of `spec.externalIPs` (the
/// uplink program translates packets from outside to it).
pub const TW_SVC_F_EXTERNAL_IP: u16 = 0x0040;
/// `tw_lb4_service.flags`: the frontend admits only the clients of its
/// ranges in `tw_lb4_srcrange` (`spec.loadBalancerSourceRanges`).
pub const TW_SVC_F_SRC_RANGE: u16 = 0x0080;

/// `tw_lb4_backend.flags`: the backend runs on this node.
pub const TW_BE_F_LOCAL: u8 = 0x01;
/// `tw_lb4_backend.flags`: the backend's pod is terminating (no new flows).
pub const TW_BE_F_TERMINATING: u8 = 0x02;

/// `tw_lb4_key.scope`: all sources.
pub const TW_LB_SCOPE_EXT: u8 = 0;
/// `tw_lb4_key.scope`: in-cluster sources of a two-scope frontend.
pub const TW_LB_SCOPE_INT: u8 = 1;

/// `tw_lb4_service.algorithm`: random slot.
pub const TW_LB_ALG_RANDOM: u8 = 1;
/// `tw_lb4_service.algorithm`: Maglev table.
pub const TW_LB_ALG_MAGLEV: u8 = 2;

/// Capacity of `tw_lb4_services` (masters and slots together).
pub const TW_LB_SERVICES_MAX: usize = 262_144;
/// Capacity of `tw_lb4_backends`.
pub const TW_LB_BACKENDS_MAX: usize = 131_072;
/// Capacity of `tw_lb4_revnat`.
pub const TW_LB_REVNAT_MAX: usize = 65_536;
/// Capacity of `tw_lb4_maglev` (services using Maglev).
pub const TW_LB_MAGLEV_MAX: usize = 4_096;
/// Capacity of `tw_lb4_srcrange` (source ranges of all frontends).
pub const TW_LB_SRC_RANGE_MAX: usize = 16_384;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::maglev::DEFAULT_M;

    fn header_defines() -> BTreeMap<String, u64> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/abi/lb.h");
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
    fn constants_match_lb_h() {
        let h = header_defines();
        let ours: &[(&str, u64)] = &[
            ("TW_SVC_F_CLUSTERIP", TW_SVC_F_CLUSTERIP.into()),
            ("TW_SVC_F_NODEPORT", TW_SVC_F_NODEPORT.into()),
            ("TW_SVC_F_ETP_LOCAL", TW_SVC_F_ETP_LOCAL.into()),
            ("TW_SVC_F_AFFINITY", TW_SVC_F_AFFINITY.into()),
            ("TW_SVC_F_TWO_SCOPES", TW_SVC_F_TWO_SCOPES.into()),
            ("TW_SVC_F_LOADBALANCER", TW_SVC_F_LOADBALANCER.into()),
            ("TW_SVC_F_EXTERNAL_IP", TW_SVC_F_EXTERNAL_IP.into()),
            ("TW_SVC_F_SRC_RANGE", TW_SVC_F_SRC_RANGE.into()),
            ("TW_BE_F_LOCAL", TW_BE_F_LOCAL.into()),
            ("TW_BE_F_TERMINATING", TW_BE_F_TERMINATING.into()),
            ("TW_LB_SCOPE_EXT", TW_LB_SCOPE_EXT.into()),
            ("TW_LB_SCOPE_INT", TW_LB_SCOPE_INT.into()),
            ("TW_LB_ALG_RANDOM", TW_LB_ALG_RANDOM.into()),
            ("TW_LB_ALG_MAGLEV", TW_LB_ALG_MAGLEV.into()),
            ("TW_LB_SERVICES_MAX", TW_LB_SERVICES_MAX as u64),
            ("TW_LB_BACKENDS_MAX", TW_LB_BACKENDS_MAX as u64),
            ("TW_LB_REVNAT_MAX", TW_LB_REVNAT_MAX as u64),
            ("TW_LB_MAGLEV_MAX", TW_LB_MAGLEV_MAX as u64),
            ("TW_LB_SRC_RANGE_MAX", TW_LB_SRC_RANGE_MAX as u64),
            ("TW_LB_MAGLEV_M_DEFAULT", DEFAULT_M.into()),
        ];
        for (name, value) in ours {
            assert_eq!(h.get(*name), Some(value), "{name} differs from lb.h");
        }
    }
}
