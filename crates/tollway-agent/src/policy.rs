//! Network policy on one node: the ipcache, the endpoints of the node's
//! pods and their policy tries, kept in line with the store.
//!
//! Invariants:
//! - an endpoint entry is written only after its policy trie is installed,
//!   and with both default-deny bits and `TW_EP_F_POLICY` set; a direction
//!   no policy isolates gets an "every peer, every protocol" allow entry in
//!   the trie instead of a cleared bit. So a policy change is always one
//!   swap of one trie: packets see the old policy or the new one.
//! - a pod's containers start only once its endpoint is programmed: the
//!   agent writes `endpoints/<uid>` under the node's directory, the kubelet
//!   waits for it ([`tollway_lab::LabPaths::endpoint_marker`]).
//! - tries are rebuilt only when their entries change (hit counters
//!   survive unrelated changes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tollway_abi::{
    Endpoint, IpcacheEntry, PolicyEntry, PolicyKey, TW_EP_F_EGRESS_DEFAULT_DENY,
    TW_EP_F_INGRESS_DEFAULT_DENY, TW_EP_F_POLICY, TW_IPC_F_CIDR, TW_IPC_F_ENDPOINT, TW_IPC_F_NODE,
    be16, be32,
};
use tollway_datapath::lb::PolicyMaps;
use tollway_policy::abi::KEY_PREFIX_ANY_PROTO;
use tollway_policy::{
    CidrIdentities, ClusterObjects, ClusterPolicy, Direction, EndpointPolicy, IpKind, TW_ID_ANY,
};
use tollway_state::Snapshot;

use crate::error::AgentError;

/// A local pod whose veth carries the pod programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    /// Pod uid.
    pub uid: String,
    /// Ifindex of its host-side veth (also its endpoint id).
    pub ifindex: u32,
    /// Its address as the CNI plugin's record gives it: the endpoint is
    /// programmed with it before the API server's pod status has one
    /// (the plugin waits for that before the pod's containers start).
    pub ip: Ipv4Addr,
    /// The plugin's record, whose `.ready` marker says "programmed".
    pub record: std::path::PathBuf,
}

/// What `tollway status` shows of policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// Store version it was computed from.
    pub resource_version: u64,
    /// Rules of all policies.
    pub rules: usize,
    /// Identities known (reserved, endpoints, CIDRs).
    pub identities: usize,
    /// Endpoints of this node with a policy installed.
    pub endpoints: usize,
    /// Endpoints whose policy isolates ingress / egress.
    pub enforcing_ingress: usize,
    /// See `enforcing_ingress`.
    pub enforcing_egress: usize,
    /// Prefixes in the ipcache.
    pub ipcache: usize,
    /// Tries swapped in by the last sync.
    pub swapped: usize,
    /// How long the last sync took, microseconds.
    pub duration_us: u64,
    /// Policies that could not be translated, and the last sync error.
    pub errors: Vec<String>,
}

/// One endpoint as installed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Installed {
    identity: u32,
    ip: Ipv4Addr,
    entries: Vec<(PolicyKey, PolicyEntry)>,
}

/// The node's policy state.
pub struct PolicySync {
    maps: PolicyMaps,
    cidrs: CidrIdentities,
    installed: BTreeMap<u32, Installed>,
    ipcache: BTreeMap<Ipv4Net, IpcacheEntry>,
    /// Endpoint ids whose marker is written.
    marked: BTreeSet<(String, u32)>,
}

/// The trie entries of a compiled policy, ready for the map: directions
/// the policy does not isolate get an allow-everything entry for
/// `TW_ID_ANY` (unless the compiler already put an entry on that key, which
/// is then a deny of everything and stays).
pub fn trie_entries(p: &EndpointPolicy) -> Vec<(PolicyKey, PolicyEntry)> {
    let mut out: Vec<(PolicyKey, PolicyEntry)> = p
        .entries
        .iter()
        .map(|e| {
            (
                PolicyKey {
                    prefixlen: e.key_prefixlen(),
                    identity: e.identity,
                    egress: e.direction.abi(),
                    proto: e.proto,
                    dport: be16(e.port),
                },
                PolicyEntry {
                    flags: e.flags(),
                    l4: u8::from(e.proto != 0),
                    rule_id: e.rule_id,
                    ..Default::default()
                },
            )
        })
        .collect();
    for d in [Direction::Ingress, Direction::Egress] {
        let key = PolicyKey {
            prefixlen: KEY_PREFIX_ANY_PROTO,
            identity: TW_ID_ANY,
            egress: d.abi(),
            proto: 0,
            dport: 0,
        };
        if !p.default_deny(d) && !out.iter().any(|(k, _)| *k == key) {
            out.push((key, PolicyEntry::default()));
        }
    }
    out.sort_by_key(|(k, _)| {
        (
            k.egress,
            k.identity,
            k.proto,
            u16::from_be(k.dport),
            k.prefixlen,
        )
    });
    out
}

fn ipcache_entry(w: &tollway_policy::IpcacheWant) -> IpcacheEntry {
    IpcacheEntry {
        identity: w.identity,
        node_ip: w.node_ip.map_or(0, be32),
        flags: match w.kind {
            IpKind::Endpoint => TW_IPC_F_ENDPOINT,
            IpKind::Node => TW_IPC_F_NODE,
            IpKind::Cidr => TW_IPC_F_CIDR,
        },
        pad: [0; 3],
    }
}

/// The cluster's policy state from a snapshot, as `node` sees it.
pub fn cluster_policy(snap: &Snapshot, node: &str, cidrs: &mut CidrIdentities) -> ClusterPolicy {
    let objects = ClusterObjects {
        namespaces: snap.namespaces().collect(),
        pods: snap.pods().collect(),
        identities: snap.cilium_identities().collect(),
        nodes: snap.nodes().collect(),
        network_policies: snap.network_policies().collect(),
        cilium_policies: snap.cilium_policies().collect(),
    };
    tollway_policy::cluster_policy(&objects, node, cidrs)
}

impl PolicySync {
    /// Open the node's policy maps and adopt the ipcache they hold.
    pub fn open(pin_dir: &Path) -> Result<PolicySync, AgentError> {
        let maps = PolicyMaps::open(pin_dir)?;
        let ipcache = maps
            .ipcache_entries()?
            .into_iter()
            .filter_map(|(a, plen, e)| Some((Ipv4Net::new(a, plen).ok()?, e)))
            .collect();
        Ok(PolicySync {
            maps,
            cidrs: CidrIdentities::new(),
            installed: BTreeMap::new(),
            ipcache,
            marked: BTreeSet::new(),
        })
    }

    /// The maps (for `tollway status`).
    pub fn maps(&self) -> &PolicyMaps {
        &self.maps
    }

    /// Bring the maps in line with the snapshot for the node's `local`
    /// pods; returns the report and the uids of pods whose endpoint is now
    /// programmed.
    pub fn sync(
        &mut self,
        snap: &Snapshot,
        node: &str,
        local: &[LocalPod],
    ) -> Result<PolicyReport, AgentError> {
        let started = Instant::now();
        let cp = cluster_policy(snap, node, &mut self.cidrs);
        let mut report = PolicyReport {
            resource_version: snap.resource_version,
            rules: cp.rules.len(),
            identities: cp.ctx.identities.len(),
            errors: cp
                .errors
                .iter()
                .map(|(name, e)| format!("{name}: {e}"))
                .collect(),
            ..Default::default()
        };

        // 1. The ipcache: add and change first, then remove. A local pod
        //    whose address only its CNI record has yet is in it too.
        let mut want: BTreeMap<Ipv4Net, IpcacheEntry> = cp
            .ipcache
            .iter()
            .map(|(n, w)| (*n, ipcache_entry(w)))
            .collect();
        let node_ip: Option<Ipv4Addr> = snap
            .nodes()
            .find(|n| n.metadata.name == node)
            .and_then(|n| n.internal_ip())
            .and_then(|ip| ip.parse().ok());
        for l in local {
            if let Some(p) = cp.pods.get(&l.uid)
                && p.ip.is_none()
            {
                // The entry the pod gets once its status has the address.
                let w = tollway_policy::IpcacheWant {
                    identity: p.identity,
                    node_ip,
                    kind: IpKind::Endpoint,
                };
                want.entry(Ipv4Net::from(l.ip))
                    .or_insert_with(|| ipcache_entry(&w));
            }
        }
        for (net, e) in &want {
            if self.ipcache.get(net) != Some(e) {
                self.maps.ipcache_upsert(net.addr(), net.prefix_len(), e)?;
                self.ipcache.insert(*net, *e);
            }
        }
        let stale: Vec<Ipv4Net> = self
            .ipcache
            .keys()
            .filter(|n| !want.contains_key(n))
            .copied()
            .collect();
        for net in stale {
            self.maps.ipcache_delete(net.addr(), net.prefix_len())?;
            self.ipcache.remove(&net);
        }
        report.ipcache = self.ipcache.len();

        // 2. Compile for the identities of local endpoints.
        let endpoints: Vec<(u32, u32, Ipv4Addr)> = local
            .iter()
            .filter_map(|l| {
                let p = cp.pods.get(&l.uid)?;
                Some((l.ifindex, p.identity, p.ip.unwrap_or(l.ip)))
            })
            .collect();
        let ids: BTreeSet<u32> = endpoints.iter().map(|(_, id, _)| *id).collect();
        let compiled = tollway_policy::compile_each(&cp.rules, &cp.ctx, &ids).map_err(|e| {
            AgentError::Policy {
                message: e.to_string(),
            }
        })?;

        // 3. Tries first, then the endpoint entries that point at them. An
        //    identity whose policy cannot be compiled keeps what its
        //    endpoints have (a new endpoint of it stays unprogrammed, so its
        //    pod does not start): fail closed, and only there.
        let empty = EndpointPolicy::default();
        let mut failed = BTreeSet::new();
        for (identity, r) in &compiled {
            if let Err(e) = r {
                report.errors.push(format!("identity {identity}: {e}"));
                failed.insert(*identity);
            }
        }
        for (ifindex, identity, ip) in &endpoints {
            if failed.contains(identity) {
                continue;
            }
            let policy = match compiled.get(identity) {
                Some(Ok(p)) => p,
                _ => &empty,
            };
            if policy.ingress_default_deny {
                report.enforcing_ingress += 1;
            }
            if policy.egress_default_deny {
                report.enforcing_egress += 1;
            }
            let want = Installed {
                identity: *identity,
                ip: *ip,
                entries: trie_entries(policy),
            };
            let current = self.installed.get(ifindex);
            if current.map(|c| &c.entries) != Some(&want.entries) {
                self.maps.set_policy(*ifindex, &want.entries)?;
                report.swapped += 1;
            }
            if current.is_none_or(|c| c.identity != want.identity || c.ip != want.ip) {
                self.maps.endpoint_upsert(
                    *ifindex,
                    &Endpoint {
                        endpoint_id: *ifindex,
                        identity: *identity,
                        ip: be32(*ip),
                        flags: TW_EP_F_INGRESS_DEFAULT_DENY
                            | TW_EP_F_EGRESS_DEFAULT_DENY
                            | TW_EP_F_POLICY,
                    },
                )?;
            }
            self.installed.insert(*ifindex, want);
        }
        // 4. Endpoints that are gone: the entry first, then its trie. Also
        //    entries an earlier agent left for veths that no longer exist.
        //    (An endpoint whose identity failed to compile is still live.)
        let live: BTreeSet<u32> = endpoints.iter().map(|(i, _, _)| *i).collect();
        let mut gone: BTreeSet<u32> = self
            .installed
            .keys()
            .filter(|i| !live.contains(i))
            .copied()
            .collect();
        gone.extend(
            self.maps
                .endpoints()?
                .into_iter()
                .map(|(i, _)| i)
                .filter(|i| !live.contains(i)),
        );
        gone.extend(
            self.maps
                .policy_endpoints()?
                .into_iter()
                .filter(|i| !live.contains(i)),
        );
        for ifindex in gone {
            self.maps.endpoint_delete(ifindex)?;
            self.maps.delete_policy(ifindex)?;
            self.installed.remove(&ifindex);
        }
        report.endpoints = self.installed.len();
        report.duration_us = started.elapsed().as_micros() as u64;
        Ok(report)
    }

    /// Pods whose endpoint is programmed, by (uid, ifindex): with its
    /// identity (not the init identity of a pod whose labels have no
    /// number yet) and its policy.
    pub fn programmed(&self, local: &[LocalPod]) -> Vec<(String, u32)> {
        local
            .iter()
            .filter(|l| {
                self.installed
                    .get(&l.ifindex)
                    .is_some_and(|i| i.identity != tollway_policy::abi::TW_ID_INIT)
            })
            .map(|l| (l.uid.clone(), l.ifindex))
            .collect()
    }

    /// The CNI plugin's `.ready` marker of each programmed pod that has a
    /// record (the plugin's ADD waits for it).
    pub fn write_ready(&mut self, local: &[LocalPod]) {
        let programmed: BTreeSet<(String, u32)> = self.programmed(local).into_iter().collect();
        for l in local {
            if !programmed.contains(&(l.uid.clone(), l.ifindex))
                || tollway_cni::endpoint::is_ready(&l.record, l.ifindex)
            {
                continue;
            }
            if let Err(e) = tollway_cni::endpoint::mark_ready(&l.record, l.ifindex) {
                tracing::warn!(error = %e, "cannot write the CNI ready marker");
            }
        }
    }

    /// Write the marker of each newly programmed pod (and forget those of
    /// pods that are gone).
    pub fn write_markers(&mut self, node_dir: &Path, local: &[LocalPod]) {
        let now: BTreeSet<(String, u32)> = self.programmed(local).into_iter().collect();
        for (uid, ifindex) in now.difference(&self.marked) {
            let dir = node_dir.join("endpoints");
            let _ = std::fs::create_dir_all(&dir);
            if let Err(e) = std::fs::write(dir.join(uid), format!("{ifindex}\n")) {
                tracing::warn!(%uid, error = %e, "cannot write the endpoint marker");
            }
        }
        self.marked = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollway_policy::PolicyEntry as Compiled;
    use tollway_policy::abi::{IPPROTO_TCP, TW_POL_F_DENY};

    #[test]
    fn unenforced_directions_get_an_allow_everything_entry() {
        let p = EndpointPolicy {
            ingress_default_deny: true,
            egress_default_deny: false,
            entries: vec![Compiled {
                direction: Direction::Ingress,
                identity: 300,
                proto: IPPROTO_TCP,
                port: 8080,
                prefix_len: 16,
                deny: false,
                rule_id: 7,
            }],
        };
        let e = trie_entries(&p);
        assert_eq!(e.len(), 2);
        // Sorted by direction first: ingress, then egress.
        let (k, v) = &e[0];
        assert_eq!(
            (
                k.prefixlen,
                k.identity,
                k.egress,
                k.proto,
                u16::from_be(k.dport)
            ),
            (64, 300, 0, IPPROTO_TCP, 8080)
        );
        assert_eq!(v.rule_id, 7);
        let (k, v) = &e[1];
        assert_eq!((k.prefixlen, k.identity, k.egress, k.proto), (40, 0, 1, 0));
        assert_eq!(v.flags, 0, "an allow");
    }

    #[test]
    fn a_deny_everything_entry_is_not_overridden() {
        let p = EndpointPolicy {
            ingress_default_deny: false,
            egress_default_deny: false,
            entries: vec![Compiled {
                direction: Direction::Ingress,
                identity: TW_ID_ANY,
                proto: 0,
                port: 0,
                prefix_len: 0,
                deny: true,
                rule_id: 3,
            }],
        };
        let e = trie_entries(&p);
        assert_eq!(e.len(), 2);
        let ingress = e.iter().find(|(k, _)| k.egress == 0).unwrap();
        assert_eq!(ingress.1.flags, TW_POL_F_DENY);
        assert_eq!(ingress.1.rule_id, 3);
    }
}
