//! Reading a node's policy maps for the CLI, in Cilium's layouts:
//! `tollway endpoint list`, `identity list`, `bpf ipcache list`,
//! `bpf policy get`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;
use tollway_abi::{
    PolicyEntry, PolicyKey, TW_IPC_F_CIDR, TW_IPC_F_ENDPOINT, TW_IPC_F_NODE, TW_POL_F_DENY, ip_of,
};
use tollway_datapath::lb::{MapsError, PolicyMaps};
use tollway_policy::abi::KEY_PREFIX_ANY_PROTO;
use tollway_policy::{LabelSet, TW_ID_ANY, identity_cidr, reserved_identities};
use tollway_state::Snapshot;

/// The labels of every identity the node knows: reserved, endpoints (from
/// the store's CiliumIdentities) and the node's CIDR identities (from its
/// ipcache).
pub fn identity_labels(snap: &Snapshot, ipcache: &[IpcacheRow]) -> BTreeMap<u32, LabelSet> {
    let mut out = reserved_identities();
    out.extend(tollway_policy::identity_table(snap.cilium_identities()));
    for r in ipcache.iter().filter(|r| r.kind == "cidr") {
        if let Ok(net) = r.prefix.parse() {
            out.insert(r.identity, tollway_policy::cidr_labels(net));
        }
    }
    out
}

fn label_lines(labels: Option<&LabelSet>) -> Vec<String> {
    match labels {
        Some(l) if !l.is_empty() => l.iter().map(ToString::to_string).collect(),
        _ => vec!["reserved:unknown".to_string()],
    }
}

/// An ipcache prefix.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpcacheRow {
    /// `10.244.1.5/32`.
    pub prefix: String,
    /// Its identity.
    pub identity: u32,
    /// For a pod: the node hosting it.
    pub node_ip: Option<String>,
    /// `endpoint`, `node` or `cidr`.
    pub kind: &'static str,
}

/// Every ipcache prefix, most specific last within an address.
pub fn ipcache_list(maps: &PolicyMaps) -> Result<Vec<IpcacheRow>, MapsError> {
    let mut rows: Vec<(Ipv4Addr, u8, IpcacheRow)> = maps
        .ipcache_entries()?
        .into_iter()
        .map(|(addr, plen, e)| {
            (
                addr,
                plen,
                IpcacheRow {
                    prefix: format!("{addr}/{plen}"),
                    identity: e.identity,
                    node_ip: (e.node_ip != 0).then(|| ip_of(e.node_ip).to_string()),
                    kind: if e.flags & TW_IPC_F_ENDPOINT != 0 {
                        "endpoint"
                    } else if e.flags & TW_IPC_F_NODE != 0 {
                        "node"
                    } else if e.flags & TW_IPC_F_CIDR != 0 {
                        "cidr"
                    } else {
                        "unknown"
                    },
                },
            )
        })
        .collect();
    rows.sort_by_key(|(a, p, _)| (*a, *p));
    Ok(rows.into_iter().map(|(_, _, r)| r).collect())
}

/// `cilium bpf ipcache list`'s layout.
pub fn render_ipcache_list(rows: &[IpcacheRow]) -> String {
    let mut out = format!("{:<22}{}\n", "IP PREFIX/ADDRESS", "IDENTITY");
    for r in rows {
        let node = r
            .node_ip
            .as_deref()
            .map(|n| format!(" tunnelendpoint={n}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<22}identity={} encryptkey=0{node} flags={}\n",
            r.prefix, r.identity, r.kind
        ));
    }
    out
}

/// One endpoint of the node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRow {
    /// Endpoint id (the ifindex of the pod's host-side veth).
    pub endpoint_id: u32,
    /// `namespace/name` of the pod, if the store still has it.
    pub pod: Option<String>,
    /// Ingress policy enforcement: `Enabled` or `Disabled`.
    pub ingress_enforcement: &'static str,
    /// Egress policy enforcement.
    pub egress_enforcement: &'static str,
    /// The identity.
    pub identity: u32,
    /// Its labels.
    pub labels: Vec<String>,
    /// The pod's address.
    pub ipv4: String,
    /// `ready` once a policy is installed.
    pub status: &'static str,
    /// Entries of its policy trie.
    pub policy_entries: usize,
}

/// Whether a direction is enforced: the agent encodes "not isolated" as
/// an allow-everything entry for every peer with rule id 0.
fn enforced(entries: &[(PolicyKey, PolicyEntry)], egress: u8) -> bool {
    !entries.iter().any(|(k, v)| {
        k.egress == egress
            && k.identity == TW_ID_ANY
            && k.prefixlen == KEY_PREFIX_ANY_PROTO
            && v.flags & TW_POL_F_DENY == 0
            && v.rule_id == 0
    })
}

/// Every endpoint of the node.
pub fn endpoint_list(
    maps: &PolicyMaps,
    snap: &Snapshot,
    labels: &BTreeMap<u32, LabelSet>,
) -> Result<Vec<EndpointRow>, MapsError> {
    let pods_by_ip: BTreeMap<&str, String> = snap
        .pods()
        .filter_map(|p| {
            Some((
                p.pod_ip()?,
                format!("{}/{}", p.metadata.namespace_or_default(), p.metadata.name),
            ))
        })
        .collect();
    let mut rows = Vec::new();
    for (ifindex, ep) in maps.endpoints()? {
        let entries = maps.policy_entries(ep.endpoint_id)?;
        let ip = ip_of(ep.ip).to_string();
        let flags = |on: bool| if on { "Enabled" } else { "Disabled" };
        rows.push(EndpointRow {
            endpoint_id: ifindex,
            pod: pods_by_ip.get(ip.as_str()).cloned(),
            ingress_enforcement: flags(enforced(&entries, 0)),
            egress_enforcement: flags(enforced(&entries, 1)),
            identity: ep.identity,
            labels: label_lines(labels.get(&ep.identity)),
            ipv4: ip,
            status: if ep.flags & tollway_abi::TW_EP_F_POLICY != 0 {
                "ready"
            } else {
                "waiting-for-policy"
            },
            policy_entries: entries.len(),
        });
    }
    rows.sort_by_key(|r| r.endpoint_id);
    Ok(rows)
}

/// `cilium endpoint list`'s layout.
pub fn render_endpoint_list(rows: &[EndpointRow]) -> String {
    let mut out = format!(
        "{:<10}{:<22}{:<22}{:<10}{:<46}{:<16}{}\n",
        "ENDPOINT",
        "POLICY (ingress)",
        "POLICY (egress)",
        "IDENTITY",
        "LABELS (source:key[=value])",
        "IPv4",
        "STATUS"
    );
    out.push_str(&format!(
        "{:<10}{:<22}{:<22}\n",
        "", "ENFORCEMENT", "ENFORCEMENT"
    ));
    for r in rows {
        for (i, l) in r.labels.iter().enumerate() {
            if i == 0 {
                out.push_str(&format!(
                    "{:<10}{:<22}{:<22}{:<10}{:<46}{:<16}{}\n",
                    r.endpoint_id,
                    r.ingress_enforcement,
                    r.egress_enforcement,
                    r.identity,
                    l,
                    r.ipv4,
                    r.status
                ));
            } else {
                out.push_str(&format!("{:<64}{l}\n", ""));
            }
        }
    }
    out
}

/// One identity.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityRow {
    /// The number.
    pub id: u32,
    /// Its labels.
    pub labels: Vec<String>,
}

/// Every identity, by number.
pub fn identity_list(labels: &BTreeMap<u32, LabelSet>) -> Vec<IdentityRow> {
    labels
        .iter()
        .map(|(id, l)| IdentityRow {
            id: *id,
            labels: label_lines(Some(l)),
        })
        .collect()
}

/// `cilium identity list`'s layout.
pub fn render_identity_list(rows: &[IdentityRow]) -> String {
    let mut out = format!("{:<10}{}\n", "ID", "LABELS");
    for r in rows {
        for (i, l) in r.labels.iter().enumerate() {
            let id = if i == 0 {
                r.id.to_string()
            } else {
                String::new()
            };
            out.push_str(&format!("{id:<10}{l}\n"));
        }
    }
    out
}

/// One entry of an endpoint's policy trie.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRow {
    /// `Allow` or `Deny`.
    pub policy: &'static str,
    /// `Ingress` or `Egress`.
    pub direction: &'static str,
    /// The peer identity (0: every peer).
    pub identity: u32,
    /// The peer's labels.
    pub labels: Vec<String>,
    /// `8080/TCP`, `8080-8087/TCP`, `ANY` ...
    pub port: String,
    /// The rule it comes from (0: the agent's "not isolated" entry), and
    /// where that rule was written.
    pub rule_id: u32,
    /// `namespace/name field` of the rule.
    pub origin: Option<String>,
    /// Bytes that hit it.
    pub bytes: u64,
    /// Packets that hit it.
    pub packets: u64,
    /// The key's prefix length.
    pub prefix: u32,
}

/// The policy of endpoint `endpoint_id` with live hit counters; `origins`
/// names the rules (by id).
pub fn policy_get(
    maps: &PolicyMaps,
    endpoint_id: u32,
    labels: &BTreeMap<u32, LabelSet>,
    origins: &BTreeMap<u32, String>,
) -> Result<Vec<PolicyRow>, MapsError> {
    let mut rows: Vec<PolicyRow> = maps
        .policy_entries(endpoint_id)?
        .into_iter()
        .map(|(k, v)| {
            let proto = match k.proto {
                6 => "TCP",
                17 => "UDP",
                _ => "ANY",
            };
            let port = if k.prefixlen <= KEY_PREFIX_ANY_PROTO {
                "ANY".to_string()
            } else {
                let bits = k.prefixlen - 48;
                let first = u16::from_be(k.dport);
                let span = 1u32 << (16 - bits);
                if bits == 0 {
                    format!("ANY/{proto}")
                } else if span == 1 {
                    format!("{first}/{proto}")
                } else {
                    let last = u32::from(first) + span - 1;
                    format!("{first}-{last}/{proto}")
                }
            };
            PolicyRow {
                policy: if v.flags & TW_POL_F_DENY != 0 {
                    "Deny"
                } else {
                    "Allow"
                },
                direction: if k.egress == 0 { "Ingress" } else { "Egress" },
                identity: k.identity,
                labels: if k.identity == TW_ID_ANY {
                    vec!["reserved:unknown (every peer)".to_string()]
                } else {
                    label_lines(labels.get(&k.identity))
                },
                port,
                rule_id: v.rule_id,
                origin: if v.rule_id == 0 {
                    Some("(direction not isolated)".to_string())
                } else {
                    origins.get(&v.rule_id).cloned()
                },
                bytes: v.bytes,
                packets: v.packets,
                prefix: k.prefixlen,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.direction, a.identity, &a.port).cmp(&(b.direction, b.identity, &b.port))
    });
    Ok(rows)
}

/// `cilium bpf policy get`'s layout.
pub fn render_policy_get(rows: &[PolicyRow]) -> String {
    let mut out = format!(
        "{:<8}{:<11}{:<44}{:<16}{:<10}{:<10}{:<8}{}\n",
        "POLICY",
        "DIRECTION",
        "LABELS (source:key[=value])",
        "PORT/PROTO",
        "BYTES",
        "PACKETS",
        "PREFIX",
        "RULE"
    );
    for r in rows {
        let origin = r
            .origin
            .clone()
            .unwrap_or_else(|| format!("#{}", r.rule_id));
        for (i, l) in r.labels.iter().enumerate() {
            if i == 0 {
                out.push_str(&format!(
                    "{:<8}{:<11}{:<44}{:<16}{:<10}{:<10}{:<8}{}\n",
                    r.policy, r.direction, l, r.port, r.bytes, r.packets, r.prefix, origin
                ));
            } else {
                out.push_str(&format!("{:<19}{l}\n", ""));
            }
        }
    }
    out
}

/// Whether `labels` names a CIDR identity (for display).
pub fn is_cidr(labels: &LabelSet) -> bool {
    identity_cidr(labels).is_some()
}
