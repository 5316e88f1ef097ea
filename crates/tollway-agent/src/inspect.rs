//! Reading a node's maps for the CLI: `tollway bpf lb list`, `bpf ct list`,
//! `service list` (Cilium's layouts), as plain rows that print as text or
//! JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use tollway_abi::{
    TW_CT_F_INGRESS, TW_CT_F_SERVICE, TW_SVC_F_AFFINITY, TW_SVC_F_CLUSTERIP, TW_SVC_F_ETP_LOCAL,
    TW_SVC_F_EXTERNAL_IP, TW_SVC_F_LOADBALANCER, TW_SVC_F_NODEPORT, TW_SVC_F_SRC_RANGE, ip_of,
    port_of,
};
use tollway_datapath::lb::{LbMaps, MapsError};

use crate::ctgc::ktime_ns;

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "TCP",
        17 => "UDP",
        1 => "ICMP",
        _ => "ANY",
    }
}

fn service_type(flags: u16) -> String {
    let mut t = Vec::new();
    if flags & TW_SVC_F_CLUSTERIP != 0 {
        t.push("ClusterIP");
    }
    if flags & TW_SVC_F_NODEPORT != 0 {
        t.push("NodePort");
    }
    if flags & TW_SVC_F_LOADBALANCER != 0 {
        t.push("LoadBalancer");
    }
    if flags & TW_SVC_F_EXTERNAL_IP != 0 {
        t.push("ExternalIPs");
    }
    if flags & TW_SVC_F_ETP_LOCAL != 0 {
        t.push("Local");
    }
    if flags & TW_SVC_F_AFFINITY != 0 {
        t.push("sessionAffinity");
    }
    if flags & TW_SVC_F_SRC_RANGE != 0 {
        t.push("check source-range");
    }
    t.join(", ")
}

/// A backend as `cilium bpf lb list` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LbBackendRow {
    /// `10.244.1.2:8080`.
    pub address: String,
    /// Backend id.
    pub backend_id: u32,
    /// Slot.
    pub slot: u16,
    /// `active` or `terminating`.
    pub state: String,
}

/// A frontend and its backends.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LbServiceRow {
    /// `10.96.0.11:8080`.
    pub frontend: String,
    /// `TCP` / `UDP`.
    pub protocol: String,
    /// `external` / `internal`.
    pub scope: String,
    /// Rev NAT index.
    pub rev_nat_id: u16,
    /// `ClusterIP`, `NodePort`, ...
    pub service_type: String,
    /// `random` / `maglev`.
    pub algorithm: String,
    /// Backend slots.
    pub backends: Vec<LbBackendRow>,
    /// The clients a frontend with `check source-range` admits
    /// (`10.0.0.0/8`); empty otherwise (and when it admits nobody).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<String>,
}

/// (address, port, protocol, scope) of a frontend.
type FrontendId = (u32, u16, u8, u8);

/// Every frontend of the node's maps, sorted.
pub fn lb_list(maps: &LbMaps) -> Result<Vec<LbServiceRow>, MapsError> {
    let mut masters = BTreeMap::new();
    let mut slots: BTreeMap<FrontendId, Vec<(u16, u32)>> = BTreeMap::new();
    for item in maps.services.iter() {
        let (k, v) = item.map_err(|source| MapsError::Access {
            op: "iterate",
            name: "tw_lb4_services",
            source,
        })?;
        let id = (u32::from_be(k.address), port_of(k.dport), k.proto, k.scope);
        if k.backend_slot == 0 {
            masters.insert(id, v);
        } else {
            slots
                .entry(id)
                .or_default()
                .push((k.backend_slot, v.backend_id));
        }
    }
    let mut ranges: BTreeMap<u16, Vec<(std::net::Ipv4Addr, u8)>> = BTreeMap::new();
    for (index, address, prefix_len) in maps.src_ranges()? {
        ranges.entry(index).or_default().push((address, prefix_len));
    }
    let mut out = Vec::new();
    for (id, m) in masters {
        let mut source_ranges = if m.flags & TW_SVC_F_SRC_RANGE != 0 {
            ranges.get(&m.rev_nat_index).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        source_ranges.sort_unstable();
        let source_ranges = source_ranges
            .into_iter()
            .map(|(a, n)| format!("{a}/{n}"))
            .collect();
        let mut bs = slots.remove(&id).unwrap_or_default();
        bs.sort_unstable();
        let backends = bs
            .into_iter()
            .filter(|(slot, _)| *slot <= m.count)
            .map(|(slot, bid)| {
                let b = maps.backends.get(&bid, 0).ok();
                LbBackendRow {
                    address: b.map_or("?".into(), |b| {
                        format!("{}:{}", ip_of(b.address), port_of(b.port))
                    }),
                    backend_id: bid,
                    slot,
                    state: match b {
                        Some(b) if b.flags & tollway_abi::TW_BE_F_TERMINATING != 0 => {
                            "terminating".into()
                        }
                        Some(_) => "active".into(),
                        None => "missing".into(),
                    },
                }
            })
            .collect();
        out.push(LbServiceRow {
            frontend: format!("{}:{}", std::net::Ipv4Addr::from(id.0), id.1),
            protocol: proto_name(id.2).into(),
            scope: if id.3 == tollway_abi::TW_LB_SCOPE_INT {
                "internal".into()
            } else {
                "external".into()
            },
            rev_nat_id: m.rev_nat_index,
            service_type: service_type(m.flags),
            algorithm: if m.algorithm == tollway_abi::TW_LB_ALG_MAGLEV {
                "maglev".into()
            } else {
                "random".into()
            },
            backends,
            source_ranges,
        });
    }
    Ok(out)
}

/// `cilium bpf lb list`'s text layout.
pub fn render_lb_list(rows: &[LbServiceRow]) -> String {
    let mut lines = vec![(
        "SERVICE ADDRESS".to_string(),
        "BACKEND ADDRESS (REVNAT_ID) (SLOT)".to_string(),
    )];
    for r in rows {
        let scope = if r.scope == "internal" { "/i" } else { "" };
        let first = format!("{}{scope}", r.frontend);
        lines.push((
            first,
            format!(
                "0.0.0.0:0 ({}) (0) [{}, {}]",
                r.rev_nat_id, r.service_type, r.algorithm
            ),
        ));
        for b in &r.backends {
            let term = if b.state == "active" {
                String::new()
            } else {
                format!(" [{}]", b.state)
            };
            lines.push((
                String::new(),
                format!("{} ({}) ({}){term}", b.address, r.rev_nat_id, b.slot),
            ));
        }
    }
    let w = lines.iter().map(|(a, _)| a.len()).max().unwrap_or(0) + 3;
    lines.iter().map(|(a, b)| format!("{a:<w$}{b}\n")).collect()
}

/// A conntrack entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CtRow {
    /// `TCP` ...
    pub protocol: String,
    /// `SERVICE`, `OUT` (from a local pod) or `IN` (to a local pod).
    pub kind: String,
    /// Originator.
    pub source: String,
    /// Responder (the frontend for SERVICE entries).
    pub destination: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Packets originator → responder.
    pub tx_packets: u64,
    /// Bytes originator → responder.
    pub tx_bytes: u64,
    /// Packets responder → originator.
    pub rx_packets: u64,
    /// Bytes responder → originator.
    pub rx_bytes: u64,
    /// TCP flags seen from the originator.
    pub tx_flags_seen: u8,
    /// TCP flags seen from the responder.
    pub rx_flags_seen: u8,
    /// `TW_CT_S_*` bits.
    pub state: u16,
    /// State names.
    pub state_names: Vec<&'static str>,
    /// Rev NAT index.
    pub rev_nat: u16,
    /// Backend id (SERVICE entries).
    pub backend_id: u32,
}

fn state_names(s: u16) -> Vec<&'static str> {
    use tollway_abi::*;
    [
        (TW_CT_S_SYN_SEEN, "SYN"),
        (TW_CT_S_ESTABLISHED, "ESTABLISHED"),
        (TW_CT_S_FIN_TX, "FIN_TX"),
        (TW_CT_S_FIN_RX, "FIN_RX"),
        (TW_CT_S_RST, "RST"),
        (TW_CT_S_SEEN_REPLY, "SEEN_REPLY"),
        (TW_CT_S_NODEPORT, "NODEPORT"),
        (TW_CT_S_SOCK_LB, "SOCK_LB"),
    ]
    .into_iter()
    .filter(|(bit, _)| s & bit != 0)
    .map(|(_, n)| n)
    .collect()
}

/// Every live conntrack entry.
pub fn ct_list(maps: &LbMaps) -> Result<Vec<CtRow>, MapsError> {
    let now = ktime_ns() as i128;
    let mut out = Vec::new();
    for item in maps.ct.iter() {
        let (k, v) = item.map_err(|source| MapsError::Access {
            op: "iterate",
            name: "tw_ct4",
            source,
        })?;
        let expires_in = ((i128::from(v.expires) - now) / 1_000_000_000) as i64;
        if expires_in < 0 {
            continue;
        }
        out.push(CtRow {
            protocol: proto_name(k.proto).into(),
            kind: if k.flags & TW_CT_F_SERVICE != 0 {
                "SERVICE".into()
            } else if k.flags & TW_CT_F_INGRESS != 0 {
                "IN".into()
            } else {
                "OUT".into()
            },
            source: format!("{}:{}", ip_of(k.saddr), port_of(k.sport)),
            destination: format!("{}:{}", ip_of(k.daddr), port_of(k.dport)),
            expires_in,
            tx_packets: v.tx_packets,
            tx_bytes: v.tx_bytes,
            rx_packets: v.rx_packets,
            rx_bytes: v.rx_bytes,
            tx_flags_seen: v.tx_flags_seen,
            rx_flags_seen: v.rx_flags_seen,
            state: v.state,
            state_names: state_names(v.state),
            rev_nat: v.rev_nat_index,
            backend_id: v.backend_id,
        });
    }
    out.sort_by(|a, b| {
        (&a.source, &a.destination, &a.kind).cmp(&(&b.source, &b.destination, &b.kind))
    });
    Ok(out)
}

/// `cilium bpf ct list global`'s text layout.
pub fn render_ct_list(rows: &[CtRow]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} -> {} expires={}s TxPackets={} TxBytes={} RxPackets={} RxBytes={} TxFlagsSeen=0x{:02x} RxFlagsSeen=0x{:02x} State=[{}] RevNAT={} BackendID={}\n",
                r.protocol, r.kind, r.source, r.destination, r.expires_in, r.tx_packets, r.tx_bytes,
                r.rx_packets, r.rx_bytes, r.tx_flags_seen, r.rx_flags_seen, r.state_names.join(" "),
                r.rev_nat, r.backend_id
            )
        })
        .collect()
}

/// `cilium service list`'s layout: ID, frontend, type, numbered backends.
pub fn render_service_list(rows: &[LbServiceRow]) -> String {
    let mut out = format!(
        "{:<5}{:<26}{:<22}{}\n",
        "ID", "Frontend", "Service Type", "Backend"
    );
    for r in rows {
        let fe = format!(
            "{}/{}{}",
            r.frontend,
            r.protocol,
            if r.scope == "internal" { "/i" } else { "" }
        );
        if r.backends.is_empty() {
            out.push_str(&format!(
                "{:<5}{fe:<26}{:<22}\n",
                r.rev_nat_id, r.service_type
            ));
        }
        for (i, b) in r.backends.iter().enumerate() {
            let (id, f, t) = if i == 0 {
                (r.rev_nat_id.to_string(), fe.clone(), r.service_type.clone())
            } else {
                (String::new(), String::new(), String::new())
            };
            out.push_str(&format!(
                "{id:<5}{f:<26}{t:<22}{} => {}/{} ({})\n",
                i + 1,
                b.address,
                r.protocol,
                b.state
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_types_read_like_cilium() {
        assert_eq!(service_type(TW_SVC_F_CLUSTERIP), "ClusterIP");
        assert_eq!(
            service_type(TW_SVC_F_NODEPORT | TW_SVC_F_ETP_LOCAL),
            "NodePort, Local"
        );
        assert_eq!(
            service_type(TW_SVC_F_LOADBALANCER | TW_SVC_F_ETP_LOCAL),
            "LoadBalancer, Local"
        );
        assert_eq!(
            service_type(TW_SVC_F_EXTERNAL_IP | TW_SVC_F_AFFINITY),
            "ExternalIPs, sessionAffinity"
        );
        assert_eq!(
            service_type(TW_SVC_F_LOADBALANCER | TW_SVC_F_SRC_RANGE),
            "LoadBalancer, check source-range"
        );
    }
}
