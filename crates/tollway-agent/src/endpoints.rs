//! The CNI plugin's endpoint records (`<agentDir>/cni-endpoints/*.json`,
//! crates/tollway-cni's `endpoint` module): how the agent learns which host
//! veth belongs to which pod. The plugin names the veth after the CNI
//! container id (the pod sandbox's id on a real node, the pod uid in the
//! lab), which the Pod object does not carry, so the agent matches a
//! record to a pod by `K8S_POD_UID`, else by namespace and name, else by
//! address, and uses the record's `hostIfname`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use tollway_api::Pod;
use tollway_cni::endpoint::EndpointRecord;

/// The records of a node, indexed for lookups by pod.
#[derive(Debug, Default)]
pub struct EndpointIndex {
    records: Vec<EndpointRecord>,
    by_uid: HashMap<String, usize>,
    by_name: HashMap<(String, String), usize>,
    by_ip: HashMap<Ipv4Addr, usize>,
    /// Records that could not be read, with why (reported, skipped).
    pub unreadable: Vec<String>,
}

impl EndpointIndex {
    /// Read every record of `dir` (a missing directory has none). Only the
    /// pods' primary interfaces (`eth0`) count.
    pub fn load(dir: &Path) -> EndpointIndex {
        let mut index = EndpointIndex::default();
        let all = match tollway_cni::endpoint::read_all(dir) {
            Ok(all) => all,
            Err(e) => {
                index.unreadable.push(e.to_string());
                return index;
            }
        };
        for (path, rec) in all {
            match rec {
                Ok(r) if r.ifname == "eth0" => index.push(r),
                Ok(_) => {}
                Err(e) => index.unreadable.push(format!("{}: {e}", path.display())),
            }
        }
        index
    }

    fn push(&mut self, r: EndpointRecord) {
        let i = self.records.len();
        if let Some(uid) = &r.pod_uid {
            self.by_uid.insert(uid.clone(), i);
        }
        if let (Some(ns), Some(name)) = (&r.pod_namespace, &r.pod_name) {
            self.by_name.insert((ns.clone(), name.clone()), i);
        }
        self.by_ip.insert(r.ip, i);
        self.records.push(r);
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record of `pod`: by uid, else by namespace/name, else by the
    /// pod's address. A record found by name or uid whose address differs
    /// from the pod's (a sandbox being replaced) still names the veth the
    /// pod's address will be on only if the addresses agree, so those are
    /// checked.
    pub fn find(&self, pod: &Pod) -> Option<&EndpointRecord> {
        let ip: Option<Ipv4Addr> = pod.pod_ip().and_then(|s| s.parse().ok());
        let agrees = |r: &&EndpointRecord| ip.is_none_or(|ip| r.ip == ip);
        let uid = pod.metadata.uid.as_deref();
        let by_uid = uid
            .and_then(|u| self.by_uid.get(u))
            .map(|&i| &self.records[i])
            .filter(agrees);
        let by_name = || {
            self.by_name
                .get(&(
                    pod.metadata.namespace_or_default().to_string(),
                    pod.metadata.name.clone(),
                ))
                .map(|&i| &self.records[i])
                .filter(agrees)
        };
        let by_ip = || {
            ip.and_then(|ip| self.by_ip.get(&ip))
                .map(|&i| &self.records[i])
                // An address record of another pod (by uid) is not this one.
                .filter(|r| r.pod_uid.is_none() || r.pod_uid.as_deref() == uid)
        };
        by_uid.or_else(by_name).or_else(by_ip)
    }
}

/// Where a node's records are: the lab's node directory, or (Kubernetes)
/// the agent directory the chart's CNI configuration names.
pub fn records_dir(agent_dir: &Path) -> PathBuf {
    agent_dir.join("cni-endpoints")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        container: &str,
        uid: Option<&str>,
        ns_name: Option<(&str, &str)>,
        ip: &str,
    ) -> EndpointRecord {
        EndpointRecord {
            version: tollway_cni::endpoint::RECORD_VERSION,
            network: "tollway".into(),
            container_id: container.into(),
            netns: format!("/var/run/netns/{container}"),
            ifname: "eth0".into(),
            container_mac: "02:00:00:00:00:01".into(),
            host_ifname: format!("lxc{container}"),
            host_ifindex: 7,
            host_mac: "02:00:00:00:00:02".into(),
            ip: ip.parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            mtu: 1500,
            pod_namespace: ns_name.map(|(n, _)| n.to_string()),
            pod_name: ns_name.map(|(_, n)| n.to_string()),
            pod_uid: uid.map(str::to_string),
        }
    }

    fn pod(ns: &str, name: &str, uid: &str, ip: &str) -> Pod {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  uid: {uid}\nspec:\n  containers:\n  - name: c\n    image: x\nstatus:\n  podIP: {ip}\n"
        );
        let docs = tollway_api::parse_documents("pod.yaml", &yaml).unwrap();
        match tollway_api::decode(&docs[0]).unwrap().object {
            tollway_api::Object::Pod(p) => p,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn records_are_found_by_uid_then_name_then_address() {
        let dir = tempfile::tempdir().unwrap();
        let d = records_dir(dir.path());
        for r in [
            record(
                "sandbox1",
                Some("uid-1"),
                Some(("shop", "web-0")),
                "10.244.1.5",
            ),
            record("sandbox2", None, Some(("shop", "web-1")), "10.244.1.6"),
            record("sandbox3", None, None, "10.244.1.7"),
        ] {
            tollway_cni::endpoint::write(&d, &r).unwrap();
        }
        std::fs::write(d.join("broken.json"), "{").unwrap();
        let idx = EndpointIndex::load(&d);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.unreadable.len(), 1, "{:?}", idx.unreadable);
        let host = |p: &Pod| idx.find(p).map(|r| r.host_ifname.clone());
        assert_eq!(
            host(&pod("shop", "web-0", "uid-1", "10.244.1.5")).as_deref(),
            Some("lxcsandbox1")
        );
        assert_eq!(
            host(&pod("shop", "web-1", "uid-2", "10.244.1.6")).as_deref(),
            Some("lxcsandbox2")
        );
        assert_eq!(
            host(&pod("shop", "other", "uid-3", "10.244.1.7")).as_deref(),
            Some("lxcsandbox3")
        );
        // The uid's record with another address (an old sandbox): not it.
        assert_eq!(host(&pod("shop", "web-0", "uid-1", "10.244.1.99")), None);
        // Another pod's address record (it has a uid): not this pod's.
        assert_eq!(host(&pod("shop", "x", "uid-9", "10.244.1.5")), None);
    }

    #[test]
    fn a_missing_directory_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let idx = EndpointIndex::load(&dir.path().join("nope"));
        assert!(idx.is_empty() && idx.unreadable.is_empty());
    }
}
