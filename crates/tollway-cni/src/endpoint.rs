//! Endpoint records: how the plugin tells the node's agent about a pod.
//!
//! ADD writes `<agentDir>/cni-endpoints/<containerID>.json` (for an
//! interface other than `eth0`: `<containerID>@<ifname>.json`; `@` cannot
//! occur in a container id) atomically: the JSON goes to a temporary file
//! in the same directory, is fsynced, and is renamed over the record, so a
//! reader sees the old record, the new one, or none, never part of one.
//! DEL and GC remove it. The agent may watch the directory (inotify on
//! `IN_MOVED_TO` / `IN_DELETE`) or list it; it must skip names starting
//! with `.` (temporary files).
//!
//! Once the agent has programmed the endpoint (its programs on the veth,
//! identity and policy in the maps), it writes `<record>.ready` next to
//! the record, holding the host veth's ifindex. With `agentWaitSeconds`
//! ADD waits for it before it returns, so that the runtime starts no
//! container of the pod before its policy is enforced (Cilium's plugin
//! waits for the agent's endpoint creation the same way).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CniError, Result};

/// The record format's version.
pub const RECORD_VERSION: u32 = 1;

/// One endpoint, as ADD made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The network's `name`.
    pub network: String,
    /// `CNI_CONTAINERID` (the pod sandbox).
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`: the interface in the pod.
    pub ifname: String,
    /// The pod-side interface's MAC.
    pub container_mac: String,
    /// The host-side veth in the node's namespace.
    pub host_ifname: String,
    /// Its ifindex (where the agent attaches its tc programs).
    pub host_ifindex: u32,
    /// Its MAC (the pod's gateway neighbour).
    pub host_mac: String,
    /// The pod's address (a /32).
    pub ip: Ipv4Addr,
    /// The pod's gateway.
    pub gateway: Ipv4Addr,
    /// MTU of both ends.
    pub mtu: u32,
    /// `K8S_POD_NAMESPACE` from `CNI_ARGS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// `K8S_POD_UID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// The record file of `(container_id, ifname)` in `dir`.
pub fn record_path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    if ifname == "eth0" {
        dir.join(format!("{container_id}.json"))
    } else {
        dir.join(format!("{container_id}@{ifname}.json"))
    }
}

/// Write a record atomically (write, fsync, rename).
pub fn write(dir: &Path, rec: &EndpointRecord) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| CniError::io("creating", dir, e))?;
    let path = record_path(dir, &rec.container_id, &rec.ifname);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record"),
        std::process::id()
    ));
    let text = serde_json::to_vec_pretty(rec).map_err(|source| CniError::Decode {
        what: "an endpoint record",
        source,
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| CniError::io("creating", &tmp, e))?;
    f.write_all(&text)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| CniError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CniError::io("renaming", &path, e)
    })?;
    Ok(path)
}

/// Read one record (`None` if absent).
pub fn read(path: &Path) -> Result<Option<EndpointRecord>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| CniError::Decode {
                what: "an endpoint record",
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::io("reading", path, e)),
    }
}

/// The agent's "programmed" marker of the record at `record`.
pub fn ready_path(record: &Path) -> PathBuf {
    record.with_extension("ready")
}

/// The agent's side: mark the endpoint of `record` programmed on the veth
/// with `ifindex` (written whole, by rename, as records are).
pub fn mark_ready(record: &Path, ifindex: u32) -> Result<()> {
    let ready = ready_path(record);
    let tmp = ready.with_extension("ready.tmp");
    std::fs::write(&tmp, format!("{ifindex}\n")).map_err(|e| CniError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &ready).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CniError::io("renaming", &ready, e)
    })
}

/// Whether the agent has programmed the endpoint of `record` on the veth
/// with `ifindex` (a marker of an earlier veth does not count).
pub fn is_ready(record: &Path, ifindex: u32) -> bool {
    std::fs::read_to_string(ready_path(record))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(ifindex)
}

/// Remove a record and its marker (idempotent).
pub fn remove(path: &Path) -> Result<()> {
    let ready = ready_path(path);
    match std::fs::remove_file(&ready) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CniError::io("removing", &ready, e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io("removing", path, e)),
    }
}

/// Every record in `dir` with its path; files that do not decode are
/// returned as `Err` with their path, so a reader can report and skip them.
pub fn read_all(dir: &Path) -> Result<Vec<(PathBuf, Result<EndpointRecord>)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CniError::io("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| CniError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let path = entry.path();
        let rec = read(&path).and_then(|r| {
            r.ok_or_else(|| CniError::io("reading", &path, std::io::ErrorKind::NotFound.into()))
        });
        out.push((path, rec));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, ifname: &str) -> EndpointRecord {
        EndpointRecord {
            version: RECORD_VERSION,
            network: "tollway".into(),
            container_id: id.into(),
            netns: "/var/run/netns/x".into(),
            ifname: ifname.into(),
            container_mac: "0a:00:00:00:00:01".into(),
            host_ifname: "lxc0123456789a".into(),
            host_ifindex: 7,
            host_mac: "02:00:00:00:00:01".into(),
            ip: Ipv4Addr::new(10, 244, 0, 2),
            gateway: Ipv4Addr::new(169, 254, 1, 1),
            mtu: 1500,
            pod_namespace: Some("default".into()),
            pod_name: Some("web".into()),
            pod_uid: None,
        }
    }

    #[test]
    fn records_round_trip_and_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("cni-endpoints");
        let p = write(&d, &rec("c1", "eth0")).unwrap();
        assert_eq!(p, d.join("c1.json"));
        let p2 = write(&d, &rec("c1", "net1")).unwrap();
        assert_eq!(p2, d.join("c1@net1.json"));
        std::fs::write(d.join(".junk.tmp"), "{").unwrap();
        std::fs::write(d.join("bad.json"), "{").unwrap();
        assert_eq!(read(&p).unwrap(), Some(rec("c1", "eth0")));
        let all = read_all(&d).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.iter().filter(|(_, r)| r.is_ok()).count() == 2);
        let text = std::fs::read_to_string(&p).unwrap();
        for key in [
            "containerID",
            "hostIfname",
            "hostIfindex",
            "podNamespace",
            "podName",
            "ip",
        ] {
            assert!(text.contains(&format!("\"{key}\"")), "{key} in {text}");
        }
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read(&p).unwrap(), None);
    }
}
