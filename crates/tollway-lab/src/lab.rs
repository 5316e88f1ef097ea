//! `tollway lab up | down | status | exec`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tollway_api::{Kind, Node, NodeAddress, NodeSpec, NodeStatus, Object, ObjectKey, ObjectMeta};
use tollway_state::{FileStore, StateError, StateSource, registry};

use crate::config::LabConfig;
use crate::daemon;
use crate::error::{LabError, Result};
use crate::net;
use crate::paths::{LabPaths, check_lab_name};
use crate::sys::process::{self, Placement};
use crate::sys::{cgroup, netns};

/// A step of a long operation, for progress display.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Steps done so far.
    pub done: usize,
    /// All steps.
    pub total: usize,
    /// What is happening.
    pub message: String,
}

fn need_root() -> Result<()> {
    if process::is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// The store of a lab that exists.
pub fn open_store(lab: &str) -> Result<(LabConfig, FileStore)> {
    let paths = LabPaths::new(lab);
    let cfg = LabConfig::load(&paths)?.ok_or_else(|| LabError::NoSuchLab { name: lab.into() })?;
    Ok((cfg, FileStore::open(&paths.store_dir())?))
}

/// What `lab up` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpReport {
    /// The lab.
    pub name: String,
    /// Whether it was created now (false: it existed and was checked).
    pub created: bool,
    /// Nodes rebuilt because they were missing or broken.
    pub rebuilt_nodes: Vec<String>,
    /// Whether the daemon was (re)started.
    pub started_daemon: bool,
}

/// What `lab up` is asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Load-balancing settings for a new lab (an existing lab keeps its own;
    /// asking for different ones is an error).
    pub lb: Option<crate::config::LbSettings>,
}

/// Bring a lab up, or check and repair it if it exists (idempotent).
pub fn up(lab: &str, opts: &UpOptions, progress: &mut dyn FnMut(Progress)) -> Result<UpReport> {
    need_root()?;
    check_lab_name(lab)?;
    let nodes = opts.nodes;
    let paths = LabPaths::new(lab);
    let existing = LabConfig::load(&paths)?;
    let created = existing.is_none();
    let cfg = match existing {
        Some(c) if c.nodes.len() != nodes => {
            return Err(LabError::ShapeMismatch {
                name: lab.into(),
                existing: c.nodes.len(),
                wanted: nodes,
            });
        }
        Some(c) => {
            if let Some(lb) = &opts.lb
                && *lb != c.lb
            {
                return Err(LabError::BadName {
                    name: lab.into(),
                    reason: format!(
                        "the lab exists with load balancing {:?}; run `tollway --lab {lab} lab down` to change it",
                        c.lb
                    ),
                });
            }
            c
        }
        None => {
            let mut c = LabConfig::plan(lab, nodes)?;
            if let Some(lb) = &opts.lb {
                c.lb = lb.clone();
            }
            c
        }
    };
    let total = 4 + cfg.nodes.len();
    let mut done = 0;
    let mut step = |msg: String| {
        progress(Progress {
            done,
            total,
            message: msg,
        });
        done += 1;
    };

    step("preparing cgroups and bpffs".into());
    let cg = paths.cgroup()?;
    cgroup::create(&paths.system_cgroup()?)?;
    for n in &cfg.nodes {
        cgroup::create(&paths.node_cgroup(&n.name)?)?;
    }
    tollway_datapath::bpffs::ensure_bpffs(Path::new(tollway_datapath::bpffs::BPFFS_MOUNT))
        .map_err(|e| LabError::Command {
            command: "mount bpffs".into(),
            stderr: e.to_string(),
        })?;
    for n in &cfg.nodes {
        let d = paths.bpf_node_dir(&n.name);
        std::fs::create_dir_all(&d).map_err(|e| LabError::io("creating", d, e))?;
    }
    let _ = cg;

    step("creating the fabric".into());
    let mut rebuilt = Vec::new();
    let fabric_new = !net::fabric_healthy(&paths);
    if fabric_new {
        netns::delete(&paths.fabric_netns())?;
        net::create_fabric(&paths)?;
    }
    for n in &cfg.nodes {
        step(format!(
            "creating node {} ({}, pods {})",
            n.name, n.ip, n.pod_cidr
        ));
        if fabric_new || !net::node_healthy(&paths, n) {
            net::create_node(&paths, &cfg, n)?;
            if !created {
                rebuilt.push(n.name.clone());
            }
        }
    }
    if fabric_new || !net::external_healthy(&paths, &cfg) {
        net::create_external(&paths, &cfg)?;
    }

    step("registering nodes".into());
    cfg.save(&paths)?;
    let store = FileStore::open(&paths.store_dir())?;
    registry::bootstrap(&store)?;
    register_nodes(&store, &cfg)?;
    crate::addons::ensure(&store, &cfg)?;

    step("starting the lab daemon".into());
    let started_daemon = if daemon::running_pid(&paths).is_none() {
        start_daemon(&paths)?;
        true
    } else {
        false
    };
    progress(Progress {
        done: total,
        total,
        message: format!("lab {lab} is up"),
    });
    Ok(UpReport {
        name: lab.into(),
        created,
        rebuilt_nodes: rebuilt,
        started_daemon,
    })
}

fn register_nodes(store: &FileStore, cfg: &LabConfig) -> Result<()> {
    let now = tollway_state::file::now_seconds();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    store.update(|txn| {
        for n in &cfg.nodes {
            let key = ObjectKey::new(Kind::Node, None, &n.name);
            let mut labels = BTreeMap::new();
            labels.insert("kubernetes.io/hostname".to_string(), n.name.clone());
            labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
            labels.insert("tollway.io/lab".to_string(), cfg.name.clone());
            let mut annotations = BTreeMap::new();
            annotations.insert(
                "tollway.io/version".to_string(),
                format!("v{}", env!("CARGO_PKG_VERSION")),
            );
            annotations.insert("tollway.io/kernel-version".to_string(), kernel.clone());
            annotations.insert(
                "tollway.io/os-image".to_string(),
                "tollway lab (network namespace)".to_string(),
            );
            annotations.insert(
                "tollway.io/container-runtime".to_string(),
                "tollway-lab://processes".to_string(),
            );
            let conditions = match txn.get(&key) {
                Some(Object::Node(old)) => {
                    old.status.clone().map(|s| s.conditions).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            let mut conditions = conditions;
            crate::daemon::controllers::set_condition(&mut conditions, "Ready", true);
            let _ = now;
            txn.put(Object::Node(Node {
                api_version: "v1".into(),
                kind: "Node".into(),
                metadata: ObjectMeta {
                    name: n.name.clone(),
                    labels,
                    annotations,
                    ..Default::default()
                },
                spec: NodeSpec {
                    pod_cidr: Some(n.pod_cidr.to_string()),
                    pod_cidrs: vec![n.pod_cidr.to_string()],
                },
                status: Some(NodeStatus {
                    addresses: vec![
                        NodeAddress {
                            type_: "InternalIP".into(),
                            address: n.ip.to_string(),
                        },
                        NodeAddress {
                            type_: "Hostname".into(),
                            address: n.name.clone(),
                        },
                    ],
                    conditions,
                }),
            }));
        }
        Ok::<_, StateError>(())
    })?;
    Ok(())
}

fn start_daemon(paths: &LabPaths) -> Result<()> {
    let exe =
        std::env::current_exe().map_err(|e| LabError::io("finding", "current executable", e))?;
    let log = process::log_file(&paths.daemon_log())?;
    let log2 = log
        .try_clone()
        .map_err(|e| LabError::io("duplicating", paths.daemon_log(), e))?;
    let hook = process::pre_exec_hook(&Placement {
        netns: None,
        cgroup: Some(paths.system_cgroup()?),
        new_session: true,
        resolv_conf: None,
    })?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["lab", "daemon", "--lab", &paths.lab])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    // SAFETY: the hook makes only async-signal-safe system calls.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, hook);
    }
    let child = cmd.spawn().map_err(|source| LabError::Spawn {
        program: exe.display().to_string(),
        hint: "the tollway binary",
        source,
    })?;
    let pid = child.id() as i32;
    // The daemon outlives us; it is reaped by init once we exit.
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if daemon::running_pid(paths) == Some(pid) {
            return Ok(());
        }
        if !process::alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(paths.daemon_log()).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    Err(LabError::Command {
        command: "tollway lab daemon".into(),
        stderr: format!(
            "did not start; last lines of {}: {}",
            paths.daemon_log().display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ),
    })
}

/// What `lab down` removed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownReport {
    /// The lab.
    pub name: String,
    /// Network namespaces deleted.
    pub namespaces: usize,
    /// Whether processes were killed.
    pub killed_processes: bool,
    /// Whether the state directory was removed.
    pub removed_state: bool,
}

/// Remove everything a lab made. Works from whatever is left after a crash:
/// it goes by name prefixes and the lab's cgroup, not by the lab's records.
pub fn down(lab: &str, progress: &mut dyn FnMut(Progress)) -> Result<DownReport> {
    need_root()?;
    check_lab_name(lab)?;
    let paths = LabPaths::new(lab);
    let mut report = DownReport {
        name: lab.into(),
        ..Default::default()
    };
    let total = 4;
    progress(Progress {
        done: 0,
        total,
        message: "stopping processes".into(),
    });
    let cg = paths.cgroup()?;
    if let Some(mine) = cgroup::of_pid(std::process::id() as i32) {
        let rel = format!("/{}", paths.cgroup_rel().display());
        if mine == rel || mine.starts_with(&format!("{rel}/")) {
            return Err(LabError::Command {
                command: "tollway lab down".into(),
                stderr: format!(
                    "refusing to run from inside lab {lab} (cgroup {mine}): run it on the host"
                ),
            });
        }
    }
    if cg.exists() {
        report.killed_processes = cgroup::populated(&cg);
        cgroup::kill_all(&cg, Duration::from_secs(10))?;
    }
    progress(Progress {
        done: 1,
        total,
        message: "deleting network namespaces".into(),
    });
    for ns in netns::list_with_prefix(&paths.netns_prefix())? {
        netns::delete(&ns)?;
        report.namespaces += 1;
    }
    progress(Progress {
        done: 2,
        total,
        message: "removing cgroups and BPF pins".into(),
    });
    cgroup::remove_tree(&cg)?;
    // Remove the shared parents if this was the last lab.
    if let Some(parent) = cg.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    let bpf = paths.bpf_dir();
    if bpf.exists() {
        std::fs::remove_dir_all(&bpf).map_err(|e| LabError::io("removing", &bpf, e))?;
    }
    if let Some(parent) = bpf.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    progress(Progress {
        done: 3,
        total,
        message: "removing state".into(),
    });
    if paths.dir.exists() {
        std::fs::remove_dir_all(&paths.dir).map_err(|e| LabError::io("removing", &paths.dir, e))?;
        report.removed_state = true;
    }
    progress(Progress {
        done: total,
        total,
        message: format!("lab {lab} is down"),
    });
    Ok(report)
}

/// A node in `lab status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Address on the fabric.
    pub ip: String,
    /// Pod CIDR.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    /// Whether its namespace and uplink are intact.
    pub healthy: bool,
}

/// A pod in `lab status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node.
    pub node: Option<String>,
    /// Address.
    pub ip: Option<String>,
    /// Phase.
    pub phase: String,
    /// Ready condition.
    pub ready: bool,
    /// Sum of container restarts.
    pub restarts: u32,
}

/// `lab status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabStatus {
    /// The lab.
    pub name: String,
    /// The daemon's PID, if it runs.
    #[serde(rename = "daemonPID")]
    pub daemon_pid: Option<i32>,
    /// Service CIDR.
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,
    /// Nodes.
    pub nodes: Vec<NodeInfo>,
    /// Pods.
    pub pods: Vec<PodInfo>,
}

/// The state of a lab.
pub fn status(lab: &str) -> Result<LabStatus> {
    let paths = LabPaths::new(lab);
    let (cfg, store) = open_store(lab)?;
    let snap = store.snapshot()?;
    Ok(LabStatus {
        name: lab.into(),
        daemon_pid: daemon::running_pid(&paths),
        service_cidr: cfg.cluster.service_cidr.to_string(),
        nodes: cfg
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                ip: n.ip.to_string(),
                pod_cidr: n.pod_cidr.to_string(),
                healthy: net::node_healthy(&paths, n),
            })
            .collect(),
        pods: snap
            .pods()
            .map(|p| PodInfo {
                namespace: p.metadata.namespace_or_default().to_string(),
                name: p.metadata.name.clone(),
                node: p.spec.node_name.clone(),
                ip: p.pod_ip().map(str::to_string),
                phase: if p.metadata.is_terminating() {
                    "Terminating".into()
                } else {
                    p.phase().to_string()
                },
                ready: p.is_ready(),
                restarts: p.status.as_ref().map_or(0, |s| {
                    s.container_statuses.iter().map(|c| c.restart_count).sum()
                }),
            })
            .collect(),
    })
}

/// Every lab that has state on this machine.
pub fn list() -> Vec<String> {
    let dir = crate::paths::state_root().join("labs");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("lab.json").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// How an exec'd command's output is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Inherit the caller's terminal.
    Inherit,
    /// Capture stdout (stderr still goes to the caller's).
    Capture,
}

fn run_placed(
    argv: &[String],
    placement: &Placement,
    env: &[(String, String)],
    output: Output,
) -> Result<(i32, String)> {
    let Some((program, args)) = argv.split_first() else {
        return Err(LabError::Command {
            command: "exec".into(),
            stderr: "no command given".into(),
        });
    };
    let hook = process::pre_exec_hook(placement)?;
    // `tollway` means this binary, as it does in pod commands.
    let exe =
        std::env::current_exe().map_err(|e| LabError::io("finding", "current executable", e))?;
    let program = if program == "tollway" {
        exe.display().to_string()
    } else {
        program.clone()
    };
    let mut cmd = std::process::Command::new(&program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let (Some(dir), Ok(path)) = (exe.parent(), std::env::var("PATH")) {
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    // SAFETY: the hook makes only async-signal-safe system calls.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, hook);
    }
    let spawn_err = |source| LabError::Spawn {
        program: program.clone(),
        hint: "check the command name",
        source,
    };
    let (status, stdout) = match output {
        Output::Inherit => (cmd.status().map_err(spawn_err)?, String::new()),
        Output::Capture => {
            let out = cmd.stderr(Stdio::inherit()).output().map_err(spawn_err)?;
            (
                out.status,
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok((code, stdout))
}

/// Run a command in a pod's network namespace and cgroup; returns its exit code.
pub fn exec_pod(lab: &str, namespace: &str, pod: &str, argv: &[String]) -> Result<i32> {
    exec_pod_with(lab, namespace, pod, argv, Output::Inherit).map(|(code, _)| code)
}

/// [`exec_pod`], with the command's stdout captured or inherited.
pub fn exec_pod_with(
    lab: &str,
    namespace: &str,
    pod: &str,
    argv: &[String],
    output: Output,
) -> Result<(i32, String)> {
    need_root()?;
    let paths = LabPaths::new(lab);
    let (_, store) = open_store(lab)?;
    let snap = store.snapshot()?;
    let p = snap
        .pod(namespace, pod)
        .ok_or_else(|| LabError::NoSuchPod {
            lab: lab.into(),
            namespace: namespace.into(),
            name: pod.into(),
        })?;
    let (Some(node), Some(ip)) = (p.spec.node_name.clone(), p.pod_ip().map(str::to_string)) else {
        return Err(LabError::PodNotRunning {
            namespace: namespace.into(),
            name: pod.into(),
            phase: p.phase().into(),
        });
    };
    let netns_name = paths.pod_netns(namespace, pod);
    if !netns::exists(&netns_name) {
        return Err(LabError::PodNotRunning {
            namespace: namespace.into(),
            name: pod.into(),
            phase: p.phase().into(),
        });
    }
    let env = vec![
        ("POD_NAME".to_string(), pod.to_string()),
        ("POD_NAMESPACE".to_string(), namespace.to_string()),
        ("POD_IP".to_string(), ip),
        ("NODE_NAME".to_string(), node.clone()),
        ("TOLLWAY_LAB".to_string(), lab.to_string()),
        ("TOLLWAY_NODE".to_string(), node.clone()),
    ];
    // The pod's resolv.conf, as its containers have it.
    let resolv = paths.pod_dir(namespace, pod).join("resolv.conf");
    let placement = Placement {
        netns: Some(netns_name),
        cgroup: Some(paths.pod_cgroup(&node, namespace, pod)?),
        new_session: false,
        resolv_conf: resolv.exists().then_some(resolv),
    };
    run_placed(argv, &placement, &env, output)
}

/// Run a command in a node's network namespace; returns its exit code.
pub fn exec_node(lab: &str, node: &str, argv: &[String]) -> Result<i32> {
    need_root()?;
    let paths = LabPaths::new(lab);
    let (cfg, _) = open_store(lab)?;
    cfg.node(node)?;
    let env = vec![
        ("NODE_NAME".to_string(), node.to_string()),
        ("TOLLWAY_LAB".to_string(), lab.to_string()),
        ("TOLLWAY_NODE".to_string(), node.to_string()),
    ];
    let placement = Placement {
        netns: Some(paths.node_netns(node)),
        cgroup: Some(paths.system_cgroup()?),
        new_session: false,
        resolv_conf: None,
    };
    run_placed(argv, &placement, &env, Output::Inherit).map(|(code, _)| code)
}

/// Run a command in the `external` namespace (a client outside the
/// cluster, on the fabric); returns its exit code.
pub fn exec_external(lab: &str, argv: &[String]) -> Result<i32> {
    need_root()?;
    let paths = LabPaths::new(lab);
    open_store(lab)?;
    let env = vec![("TOLLWAY_LAB".to_string(), lab.to_string())];
    let placement = Placement {
        netns: Some(paths.external_netns()),
        cgroup: Some(paths.system_cgroup()?),
        new_session: false,
        resolv_conf: None,
    };
    run_placed(argv, &placement, &env, Output::Inherit).map(|(code, _)| code)
}

/// Wait until the daemon has seen the store's current version (useful right
/// after a write in tests and the demo).
pub fn store_version(lab: &str) -> Result<u64> {
    let (_, store) = open_store(lab)?;
    Ok(store.version()?)
}
