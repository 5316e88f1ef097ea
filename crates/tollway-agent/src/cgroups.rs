//! Which cgroups a pod's processes run in: what the socket LB's bypass list
//! (`tw_sock_skip`, keyed by the socket's cgroup id) and the flow decoder
//! (socket events carry the cgroup id) need to know about a pod.
//!
//! - In the lab, a pod's processes run in its pod cgroup
//!   (`tollway/<lab>/node_<node>/pod_<ns>_<name>`).
//! - On a Kubernetes node, kubelet makes one cgroup per pod under
//!   `kubepods` (QoS classes below it for Burstable and BestEffort), named
//!   `pod<uid>` with the cgroupfs driver or
//!   `kubepods-<qos>-pod<uid with _ for ->.slice` with the systemd driver,
//!   and the runtime one cgroup per container below that, where the
//!   processes are. [`PodCgroups::scan`] finds each pod's directory by its
//!   uid and reports the pod's and its containers' cgroup ids.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tollway_api::Pod;
use tollway_lab::LabPaths;

/// How deep below the cgroup root a pod's directory can be
/// (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod….slice`).
const MAX_DEPTH: usize = 3;

/// Where a node's pods' cgroups are.
#[derive(Debug, Clone)]
pub enum PodCgroups {
    /// The lab's naming.
    Lab {
        /// The lab.
        paths: LabPaths,
        /// The node.
        node: String,
    },
    /// A Kubernetes node: pod directories found by uid.
    Kubernetes {
        /// Pod uid → its cgroup directory.
        by_uid: BTreeMap<String, PathBuf>,
    },
}

/// The uid in a kubelet pod cgroup's name, as the API writes it.
fn uid_of(name: &str) -> Option<String> {
    // systemd: kubepods-burstable-pod<uid with _>.slice, kubepods-pod<uid>.slice
    if let Some(rest) = name.strip_suffix(".slice") {
        let i = rest.rfind("-pod")?;
        return Some(rest[i + 4..].replace('_', "-"));
    }
    // cgroupfs: pod<uid>
    name.strip_prefix("pod").map(str::to_string)
}

impl PodCgroups {
    /// Index the pod cgroups under `root` (the cgroup2 mount), looking only
    /// below its `kubepods*` directories.
    pub fn scan(root: &Path) -> PodCgroups {
        let mut by_uid = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(root) else {
            return PodCgroups::Kubernetes { by_uid };
        };
        for e in rd.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("kubepods") && e.path().is_dir() {
                walk(&e.path(), 1, &mut by_uid);
            }
        }
        PodCgroups::Kubernetes { by_uid }
    }

    /// The cgroup ids of `pod`'s processes: its pod cgroup and (Kubernetes)
    /// its containers' cgroups below it. Empty when none is found.
    pub fn ids(&self, pod: &Pod) -> Vec<u64> {
        let dir = match self {
            PodCgroups::Lab { paths, node } => paths
                .pod_cgroup(
                    node,
                    pod.metadata.namespace_or_default(),
                    &pod.metadata.name,
                )
                .ok(),
            PodCgroups::Kubernetes { by_uid } => pod
                .metadata
                .uid
                .as_deref()
                .and_then(|u| by_uid.get(u))
                .cloned(),
        };
        let Some(dir) = dir else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        if let Ok(m) = std::fs::metadata(&dir) {
            ids.push(m.ino());
        }
        if matches!(self, PodCgroups::Kubernetes { .. })
            && let Ok(rd) = std::fs::read_dir(&dir)
        {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata()
                    && m.is_dir()
                {
                    ids.push(m.ino());
                }
            }
        }
        ids
    }
}

fn walk(dir: &Path, depth: usize, out: &mut BTreeMap<String, PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        let name = e.file_name();
        let name = name.to_string_lossy();
        match uid_of(&name) {
            Some(uid) if !uid.is_empty() => {
                out.insert(uid, path);
            }
            _ if depth < MAX_DEPTH => walk(&path, depth + 1, out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> Pod {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: shop, uid: {uid}}}\nspec:\n  containers: [{{name: c, image: x}}]\n"
        );
        let docs = tollway_api::parse_documents("p.yaml", &yaml).unwrap();
        match tollway_api::decode(&docs[0]).unwrap().object {
            tollway_api::Object::Pod(p) => p,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn names_of_both_drivers() {
        assert_eq!(
            uid_of("kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice").as_deref(),
            Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
        );
        assert_eq!(uid_of("kubepods-podabc.slice").as_deref(), Some("abc"));
        assert_eq!(uid_of("podabc-1").as_deref(), Some("abc-1"));
        assert_eq!(uid_of("kubepods-burstable.slice"), None);
        assert_eq!(uid_of("burstable"), None);
    }

    #[test]
    fn pods_and_their_containers_are_found_under_either_layout() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // systemd, Burstable; cgroupfs, BestEffort; systemd, Guaranteed.
        let a = r.join("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poduid_a.slice");
        let b = r.join("kubepods/besteffort/poduid-b");
        let c = r.join("kubepods.slice/kubepods-poduid_c.slice");
        for (d, containers) in [(&a, 2), (&b, 1), (&c, 0)] {
            for i in 0..containers {
                std::fs::create_dir_all(d.join(format!("cri-containerd-{i}.scope"))).unwrap();
            }
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::create_dir_all(r.join("system.slice/podnot-this.slice")).unwrap();
        let idx = PodCgroups::scan(r);
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let ids = idx.ids(&pod("uid-a"));
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids[0], ino(&a));
        assert!(ids.contains(&ino(&a.join("cri-containerd-1.scope"))));
        assert_eq!(idx.ids(&pod("uid-b")).len(), 2);
        assert_eq!(idx.ids(&pod("uid-c")), [ino(&c)]);
        assert!(idx.ids(&pod("not-this")).is_empty());
        assert!(idx.ids(&pod("uid-x")).is_empty());
    }
}
