//! Pod networking through the CNI plugin (`tollway-cni`), called the way a
//! kubelet's runtime calls it: the `CNI_*` variables, the node's network
//! configuration on stdin, the plugin running in the node's namespace. The
//! plugin is this very binary (`tollway cni`), so it is always there and
//! always the same version as the daemon.
//!
//! Per node: IPAM in `<lab>/cni/<node>/`, endpoint records in
//! `<lab>/nodes/<node>/cni-endpoints/` (next to the agent's files). The
//! container id is the pod uid, so the host veth is `PodLink::for_uid`.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::config::{NodeConfig, POD_GATEWAY};
use crate::error::{LabError, Result};
use crate::paths::LabPaths;
use crate::sys::netns;
use crate::sys::process::{self, Placement};

/// The pod's interface.
pub const IFNAME: &str = "eth0";
/// The spec version the lab speaks.
pub const CNI_VERSION: &str = "1.1.0";

/// A node's IPAM directory.
pub fn data_dir(paths: &LabPaths, node: &str) -> PathBuf {
    paths.dir.join("cni").join(node)
}

/// The network configuration of a node.
pub fn net_conf(paths: &LabPaths, node: &NodeConfig) -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": format!("tollway-{}", paths.lab),
        "type": "tollway-cni",
        "podCIDR": node.pod_cidr,
        "mtu": 1500,
        "ipam": { "gateway": POD_GATEWAY },
        "dataDir": data_dir(paths, &node.name),
        "agentDir": paths.node_dir(&node.name),
    })
}

/// The pod a call is about.
#[derive(Debug, Clone)]
pub struct PodRef<'a> {
    /// Pod uid: the CNI container id.
    pub uid: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Its named network namespace.
    pub netns: &'a str,
}

fn call(
    exe: &Path,
    paths: &LabPaths,
    node: &NodeConfig,
    command: &str,
    pod: Option<&PodRef<'_>>,
    conf: &Value,
) -> Result<Option<Value>> {
    let what = match pod {
        Some(p) => format!("tollway cni {command} (pod {}/{})", p.namespace, p.name),
        None => format!("tollway cni {command} (node {})", node.name),
    };
    let hook = process::pre_exec_hook(&Placement {
        netns: Some(paths.node_netns(&node.name)),
        cgroup: None,
        new_session: false,
        resolv_conf: None,
    })?;
    let mut cmd = Command::new(exe);
    cmd.arg("cni")
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", exe.parent().unwrap_or_else(|| Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = pod {
        cmd.env("CNI_CONTAINERID", p.uid)
            .env("CNI_NETNS", netns::path(p.netns))
            .env("CNI_IFNAME", IFNAME)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    p.namespace, p.name, p.uid, p.uid
                ),
            );
    }
    // SAFETY: the hook makes only async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(hook);
    }
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        program: exe.display().to_string(),
        hint: "the tollway binary",
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| LabError::io("writing to", "tollway cni", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io("waiting for", "tollway cni", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Option<Value> = serde_json::from_str(&stdout).ok();
    if !out.status.success() {
        let stderr = match &parsed {
            Some(v) => format!(
                "CNI error {}: {}",
                v["code"],
                v["msg"].as_str().unwrap_or_default()
            ),
            None => format!(
                "{} {}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        };
        return Err(LabError::Command {
            command: what,
            stderr,
        });
    }
    Ok(parsed)
}

/// ADD: the pod's veth, address and routes. Returns its address.
pub fn add(exe: &Path, paths: &LabPaths, node: &NodeConfig, pod: &PodRef<'_>) -> Result<Ipv4Addr> {
    let result = call(exe, paths, node, "ADD", Some(pod), &net_conf(paths, node))?;
    result
        .as_ref()
        .and_then(|r| r["ips"][0]["address"].as_str())
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| LabError::Command {
            command: format!("tollway cni ADD (pod {}/{})", pod.namespace, pod.name),
            stderr: format!("the result has no address: {result:?}"),
        })
}

/// DEL (idempotent): before the pod's namespace goes.
pub fn del(exe: &Path, paths: &LabPaths, node: &NodeConfig, pod: &PodRef<'_>) -> Result<()> {
    call(exe, paths, node, "DEL", Some(pod), &net_conf(paths, node)).map(|_| ())
}

/// GC: every attachment of a pod not in `live` goes.
pub fn gc(exe: &Path, paths: &LabPaths, node: &NodeConfig, live: &BTreeSet<String>) -> Result<()> {
    let mut conf = net_conf(paths, node);
    conf["cni.dev/valid-attachments"] = live
        .iter()
        .map(|uid| json!({"containerID": uid, "ifname": IFNAME}))
        .collect();
    call(exe, paths, node, "GC", None, &conf).map(|_| ())
}

/// The address the plugin's IPAM holds for a pod (a sandbox that outlived
/// the daemon keeps it).
pub fn allocated_ip(paths: &LabPaths, node: &NodeConfig, uid: &str) -> Result<Option<Ipv4Addr>> {
    let conf =
        tollway_cni::NetConf::parse(net_conf(paths, node).to_string().as_bytes()).map_err(|e| {
            LabError::Command {
                command: "tollway-cni configuration".into(),
                stderr: e.to_string(),
            }
        })?;
    tollway_cni::ipam::Store::new(&conf)
        .find(uid, IFNAME)
        .map_err(|e| LabError::Command {
            command: format!("reading the CNI IPAM of node {}", node.name),
            stderr: e.to_string(),
        })
}
