//! The lab's kubelet: runs the pods bound to the lab's nodes — sandbox
//! (namespace and cgroup; veth and address by CNI ADD of the `tollway-cni`
//! plugin, CNI DEL on teardown, CNI GC in the sweep), supervised containers, status, and
//! graceful termination — and adopts running pods after a daemon restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tollway_api::{
    ContainerState, ContainerStatus, Kind, ObjectKey, Pod, PodIp, PodStatus, StateRunning,
    StateTerminated, StateWaiting,
};
use tollway_state::Snapshot;

use super::container::{self, Adopted, ContainerEvent, ContainerSpec, EventTx, RestartPolicy};
use super::controllers::set_condition;
use super::spec::PodContext;
use crate::cni::{self, PodRef};
use crate::config::LabConfig;
use crate::net::{self, PodLink};
use crate::paths::LabPaths;
use crate::sys::cgroup;
use crate::sys::netns;
use crate::sys::process::{self, Placement};

/// Lifecycle messages from pod tasks to the daemon loop.
#[derive(Debug)]
pub enum PodMsg {
    /// The sandbox is ready: start the containers.
    SandboxReady {
        /// Pod uid.
        uid: String,
        /// The address the CNI plugin gave it.
        ip: Ipv4Addr,
    },
    /// The sandbox could not be made.
    SandboxFailed {
        /// Pod uid.
        uid: String,
        /// Why.
        message: String,
    },
    /// Everything of the pod is gone: remove it from the store.
    Gone {
        /// Pod uid.
        uid: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Creating,
    Running,
    Terminating,
}

#[derive(Debug, Clone, Default)]
struct CState {
    image: String,
    restart_count: u32,
    pid: Option<i32>,
    running_since: Option<Timestamp>,
    waiting: Option<(String, Option<String>)>,
    last_terminated: Option<StateTerminated>,
    terminated: Option<StateTerminated>,
    done: bool,
    started_once: bool,
}

struct PodRuntime {
    key: ObjectKey,
    pod: Pod,
    node: String,
    /// Known once the CNI ADD has answered (or from its IPAM, for a
    /// sandbox that outlived the daemon).
    ip: Option<Ipv4Addr>,
    host_ip: Ipv4Addr,
    netns: String,
    cgroup: PathBuf,
    stage: Stage,
    containers: BTreeMap<String, CState>,
    stop: watch::Sender<bool>,
    start_time: Timestamp,
    sandbox_error: Option<String>,
    /// The sandbox is ready; the node agent has not programmed the pod's
    /// endpoint yet.
    awaiting_datapath: bool,
}

/// What a pod's containers wait for while the agent programs the endpoint.
const AWAITING_DATAPATH: &str = "waiting for the Tollway agent to program the pod's endpoint";

/// The pod manager of every node of the lab.
pub struct Kubelet {
    paths: LabPaths,
    cfg: Arc<LabConfig>,
    exe: PathBuf,
    pods: HashMap<String, PodRuntime>,
    dirty: BTreeSet<String>,
    events: EventTx,
    msgs: mpsc::UnboundedSender<PodMsg>,
}

impl Kubelet {
    /// A kubelet for the lab; events of its containers and pods go to the
    /// given channels, which the daemon loop feeds back into [`Kubelet::on_container`]
    /// and [`Kubelet::on_pod`].
    pub fn new(
        paths: LabPaths,
        cfg: Arc<LabConfig>,
        exe: PathBuf,
        events: EventTx,
        msgs: mpsc::UnboundedSender<PodMsg>,
    ) -> Self {
        Kubelet {
            paths,
            cfg,
            exe,
            pods: HashMap::new(),
            dirty: BTreeSet::new(),
            events,
            msgs,
        }
    }

    /// Bring the running pods in line with the snapshot.
    pub fn sync(&mut self, snap: &Snapshot) {
        let mut seen = BTreeSet::new();
        for pod in snap.pods() {
            let Some(node) = pod.spec.node_name.clone() else {
                continue;
            };
            if !self.cfg.nodes.iter().any(|n| n.name == node) {
                continue;
            }
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            seen.insert(uid.clone());
            match self.pods.get_mut(&uid) {
                Some(rt) => {
                    rt.pod.metadata = pod.metadata.clone();
                    if pod.metadata.is_terminating() && rt.stage != Stage::Terminating {
                        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
                        self.terminate(&uid, Duration::from_secs(grace.max(0) as u64));
                    }
                }
                None => {
                    let finished = matches!(pod.phase(), "Succeeded" | "Failed");
                    if let Err(e) = self.start(pod, &node, finished) {
                        tracing::warn!(pod = %pod.metadata.name, error = %e, "cannot start pod");
                    }
                    if pod.metadata.is_terminating() {
                        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
                        self.terminate(&uid, Duration::from_secs(grace.max(0) as u64));
                    }
                }
            }
        }
        // Pods removed from the store without waiting (forced): stop now.
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, rt)| !seen.contains(*uid) && rt.stage != Stage::Terminating)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.terminate(&uid, Duration::ZERO);
        }
    }

    /// Create the runtime of a pod: adopt what still runs, else make the
    /// sandbox and start the containers.
    fn start(&mut self, pod: &Pod, node: &str, finished: bool) -> crate::Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace_or_default().to_string();
        let name = pod.metadata.name.clone();
        let node_cfg = self.cfg.node(node)?.clone();
        let host_ip = node_cfg.ip;
        let stored_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|s| s.parse::<Ipv4Addr>().ok());
        // A running sandbox keeps the address the CNI plugin gave it; a new
        // one learns it from the CNI ADD.
        let ip = if finished {
            stored_ip
        } else {
            cni::allocated_ip(&self.paths, &node_cfg, &uid)?
        };
        let netns_name = self.paths.pod_netns(&ns, &name);
        let cg = self.paths.pod_cgroup(node, &ns, &name)?;
        let link = PodLink::for_uid(&uid);
        let stored = pod.status.clone().unwrap_or_default();
        let (stop, _) = watch::channel(false);
        let mut containers = BTreeMap::new();
        for c in &pod.spec.containers {
            let prev = stored.container_statuses.iter().find(|s| s.name == c.name);
            containers.insert(
                c.name.clone(),
                CState {
                    image: c.image.clone().unwrap_or_default(),
                    restart_count: prev.map_or(0, |s| s.restart_count),
                    waiting: Some(("ContainerCreating".into(), None)),
                    last_terminated: prev.and_then(|s| s.last_state.terminated.clone()),
                    started_once: prev.is_some_and(|s| s.started),
                    ..CState::default()
                },
            );
        }
        let mut rt = PodRuntime {
            key: ObjectKey::new(Kind::Pod, Some(&ns), &name),
            pod: pod.clone(),
            node: node.to_string(),
            ip,
            host_ip,
            netns: netns_name.clone(),
            cgroup: cg.clone(),
            stage: Stage::Creating,
            containers,
            stop,
            start_time: stored.start_time.unwrap_or_else(Timestamp::now),
            sandbox_error: None,
            awaiting_datapath: false,
        };
        if finished {
            // A completed pod keeps its status and is not run again.
            for (name, c) in rt.containers.iter_mut() {
                c.waiting = None;
                c.done = true;
                c.terminated = stored
                    .container_statuses
                    .iter()
                    .find(|s| &s.name == name)
                    .and_then(|s| s.state.terminated.clone());
            }
            rt.stage = Stage::Running;
            self.pods.insert(uid, rt);
            return Ok(());
        }
        let healthy =
            ip.is_some_and(|ip| net::pod_healthy(&self.paths, node, &netns_name, &link, ip));
        let mut adopted = BTreeMap::new();
        if healthy {
            let rel = cg
                .strip_prefix(cgroup::mount_point()?)
                .map(|p| format!("/{}", p.display()))
                .unwrap_or_default();
            for s in &stored.container_statuses {
                let pid = s
                    .container_id
                    .as_deref()
                    .and_then(|id| id.strip_prefix("pid://"))
                    .and_then(|p| p.parse::<i32>().ok());
                let (Some(pid), Some(running)) = (pid, &s.state.running) else {
                    continue;
                };
                if process::alive(pid)
                    && cgroup::of_pid(pid).as_deref() == Some(rel.as_str())
                    && let Ok(pidfd) = process::pidfd_open(pid)
                {
                    adopted.insert(
                        s.name.clone(),
                        Adopted {
                            pid,
                            pidfd,
                            started_at: running.started_at,
                        },
                    );
                }
            }
        }
        self.dirty.insert(uid.clone());
        if healthy && adopted.is_empty() && !self.paths.endpoint_marker(node, &uid).exists() {
            // The sandbox survived but nothing runs and the agent has not
            // confirmed the endpoint: wait for it as for a new sandbox.
            rt.awaiting_datapath = true;
            for c in rt.containers.values_mut() {
                c.waiting = Some(("ContainerCreating".into(), Some(AWAITING_DATAPATH.into())));
            }
            self.pods.insert(uid, rt);
            return Ok(());
        }
        if healthy {
            tracing::info!(pod = %name, adopted = adopted.len(), "adopting running pod");
            rt.stage = Stage::Running;
            self.pods.insert(uid.clone(), rt);
            self.start_containers(&uid, adopted);
            return Ok(());
        }
        self.pods.insert(uid.clone(), rt);
        // A new sandbox: whatever an agent said about an earlier one is void.
        let _ = std::fs::remove_file(self.paths.endpoint_marker(node, &uid));
        let paths = self.paths.clone();
        let exe = self.exe.clone();
        let msgs = self.msgs.clone();
        tokio::spawn(async move {
            let uid2 = uid.clone();
            let r = tokio::task::spawn_blocking(move || -> crate::Result<Ipv4Addr> {
                cgroup::kill_all(&cg, Duration::from_secs(5))?;
                cgroup::create(&cg)?;
                // As a runtime does: the namespace, then CNI ADD (and DEL
                // after a failed ADD).
                net::create_pod_netns(&netns_name)?;
                let pod = PodRef {
                    uid: &uid2,
                    namespace: &ns,
                    name: &name,
                    netns: &netns_name,
                };
                cni::add(&exe, &paths, &node_cfg, &pod).inspect_err(|_| {
                    let _ = cni::del(&exe, &paths, &node_cfg, &pod);
                })
            })
            .await;
            let msg = match r {
                Ok(Ok(ip)) => PodMsg::SandboxReady { uid, ip },
                Ok(Err(e)) => PodMsg::SandboxFailed {
                    uid,
                    message: e.to_string(),
                },
                Err(e) => PodMsg::SandboxFailed {
                    uid,
                    message: e.to_string(),
                },
            };
            let _ = msgs.send(msg);
        });
        Ok(())
    }

    fn start_containers(&mut self, uid: &str, mut adopted: BTreeMap<String, Adopted>) {
        let Some(rt) = self.pods.get(uid) else { return };
        let ip = rt.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let host_ip = rt.host_ip.to_string();
        let ctx = PodContext {
            pod: &rt.pod,
            pod_ip: &ip,
            host_ip: &host_ip,
            node: &rt.node,
            lab: &self.paths.lab,
            exe: &self.exe,
        };
        let ns = rt.pod.metadata.namespace_or_default().to_string();
        let pod_dir = self.paths.pod_dir(&ns, &rt.pod.metadata.name);
        let _ = std::fs::create_dir_all(&pod_dir);
        // As kubelet does for ClusterFirst: the pod's own resolv.conf.
        let resolv_conf = crate::addons::uses_cluster_dns(rt.pod.spec.dns_policy.as_deref())
            .then(|| {
                let path = pod_dir.join("resolv.conf");
                let text = crate::addons::pod_resolv_conf(&ns, crate::addons::kube_dns_ip(&self.cfg));
                match std::fs::write(&path, text) {
                    Ok(()) => Some(path),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the pod's resolv.conf; it gets the node's");
                        None
                    }
                }
            })
            .flatten();
        let restart = RestartPolicy::parse(rt.pod.restart_policy());
        for c in &rt.pod.spec.containers {
            let env = ctx.env(c);
            let argv = ctx.argv(c, &env);
            let cwd = c
                .working_dir
                .as_ref()
                .map_or(pod_dir.clone(), PathBuf::from);
            let spec = ContainerSpec {
                pod_uid: uid.to_string(),
                name: c.name.clone(),
                argv,
                env,
                cwd,
                log: self
                    .paths
                    .container_log(&ns, &rt.pod.metadata.name, &c.name),
                placement: Placement {
                    netns: Some(rt.netns.clone()),
                    cgroup: Some(rt.cgroup.clone()),
                    new_session: true,
                    resolv_conf: resolv_conf.clone(),
                },
                restart,
                adopt: adopted.remove(&c.name),
            };
            tokio::spawn(container::supervise(
                spec,
                self.events.clone(),
                rt.stop.subscribe(),
            ));
        }
    }

    /// Begin graceful termination: SIGTERM, then SIGKILL after `grace`, then
    /// tear the sandbox down.
    fn terminate(&mut self, uid: &str, grace: Duration) {
        let node_cfg = self
            .pods
            .get(uid)
            .and_then(|rt| self.cfg.node(&rt.node).ok().cloned());
        let (paths, exe) = (self.paths.clone(), self.exe.clone());
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        if rt.stage == Stage::Terminating {
            return;
        }
        rt.stage = Stage::Terminating;
        let _ = rt.stop.send(true);
        let cg = rt.cgroup.clone();
        let netns_name = rt.netns.clone();
        let pod_ns = rt.pod.metadata.namespace_or_default().to_string();
        let pod_name = rt.pod.metadata.name.clone();
        let pod_dir = self.paths.pod_dir(
            rt.pod.metadata.namespace_or_default(),
            &rt.pod.metadata.name,
        );
        let msgs = self.msgs.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            let _ = cgroup::signal_all(&cg, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while cgroup::populated(&cg) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let uid2 = uid.clone();
            let _ = tokio::task::spawn_blocking(move || -> crate::Result<()> {
                cgroup::kill_all(&cg, Duration::from_secs(10))?;
                // As a runtime does: CNI DEL, then the namespace goes. A
                // failed DEL is logged; the sweep's CNI GC catches up.
                if let Some(node_cfg) = &node_cfg {
                    let pod = PodRef {
                        uid: &uid2,
                        namespace: &pod_ns,
                        name: &pod_name,
                        netns: &netns_name,
                    };
                    if let Err(e) = cni::del(&exe, &paths, node_cfg, &pod) {
                        tracing::warn!(pod = %pod_name, error = %e, "CNI DEL failed");
                    }
                }
                net::delete_pod(&netns_name)?;
                cgroup::remove_tree(&cg)?;
                let _ = std::fs::remove_dir_all(&pod_dir);
                Ok(())
            })
            .await;
            let _ = msgs.send(PodMsg::Gone { uid });
        });
    }

    /// A container event.
    pub fn on_container(&mut self, uid: &str, name: &str, ev: ContainerEvent) {
        let Some(rt) = self.pods.get_mut(uid) else {
            return;
        };
        let Some(c) = rt.containers.get_mut(name) else {
            return;
        };
        match ev {
            ContainerEvent::Started { pid, at, adopted } => {
                if c.started_once && !adopted {
                    c.restart_count += 1;
                }
                c.pid = Some(pid);
                c.running_since = Some(at);
                c.waiting = None;
                if let Some(t) = c.terminated.take() {
                    c.last_terminated = Some(t);
                }
                c.started_once = true;
            }
            ContainerEvent::StartFailed { message, .. } => {
                c.waiting = Some(("RunContainerError".into(), Some(message)));
            }
            ContainerEvent::Exited {
                code,
                started_at,
                at,
            } => {
                c.pid = None;
                c.running_since = None;
                c.terminated = Some(StateTerminated {
                    exit_code: code,
                    reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                    started_at: Some(started_at),
                    finished_at: Some(at),
                });
            }
            ContainerEvent::BackOff { delay } => {
                c.waiting = Some((
                    "CrashLoopBackOff".into(),
                    Some(format!(
                        "back-off {}s restarting failed container",
                        delay.as_secs()
                    )),
                ));
            }
            ContainerEvent::Done => {
                c.done = true;
                c.waiting = None;
            }
        }
        self.dirty.insert(uid.to_string());
    }

    /// A pod lifecycle message. Returns the key and uid of a pod that is
    /// completely gone (to be removed from the store).
    pub fn on_pod(&mut self, msg: PodMsg) -> Option<(ObjectKey, String)> {
        match msg {
            PodMsg::SandboxReady { uid, ip } => {
                let rt = self.pods.get_mut(&uid)?;
                rt.ip = Some(ip);
                if rt.stage == Stage::Creating {
                    // The pod's address and veth exist now; its containers
                    // start once the agent has put its endpoint in place
                    // (the status change wakes the agent).
                    rt.awaiting_datapath = true;
                    for c in rt.containers.values_mut() {
                        c.waiting =
                            Some(("ContainerCreating".into(), Some(AWAITING_DATAPATH.into())));
                    }
                    self.dirty.insert(uid.clone());
                    self.start_ready();
                }
                None
            }
            PodMsg::SandboxFailed { uid, message } => {
                tracing::warn!(%uid, %message, "pod sandbox failed");
                let rt = self.pods.get_mut(&uid)?;
                rt.sandbox_error = Some(message);
                self.dirty.insert(uid);
                None
            }
            PodMsg::Gone { uid } => {
                let rt = self.pods.remove(&uid)?;
                let _ = std::fs::remove_file(self.paths.endpoint_marker(&rt.node, &uid));
                self.dirty.remove(&uid);
                Some((rt.key, uid))
            }
        }
    }

    /// Start the containers of pods whose endpoint the agent has
    /// programmed (called on every tick of the daemon loop).
    pub fn start_ready(&mut self) {
        let ready: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, rt)| {
                rt.stage == Stage::Creating
                    && rt.awaiting_datapath
                    && self.paths.endpoint_marker(&rt.node, uid).exists()
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in ready {
            if let Some(rt) = self.pods.get_mut(&uid) {
                rt.awaiting_datapath = false;
                rt.stage = Stage::Running;
                for c in rt.containers.values_mut() {
                    c.waiting = Some(("ContainerCreating".into(), None));
                }
            }
            self.dirty.insert(uid.clone());
            self.start_containers(&uid, BTreeMap::new());
        }
    }

    /// Statuses that changed since the last call, by (key, uid).
    pub fn take_dirty(&mut self) -> Vec<(ObjectKey, String, PodStatus)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|uid| {
                let rt = self.pods.get(&uid)?;
                Some((rt.key.clone(), uid, status_of(rt)))
            })
            .collect()
    }

    /// Remove what belongs to no pod of this kubelet: namespaces, cgroups
    /// and addresses left by a crash or by pods deleted while the daemon was
    /// down.
    pub fn sweep_orphans(&self, snap: &Snapshot) {
        let expected_netns: BTreeSet<&str> = self.pods.values().map(|p| p.netns.as_str()).collect();
        if let Ok(all) = netns::list_with_prefix(&self.paths.netns_prefix()) {
            for ns in all.iter().filter(|n| self.paths.is_pod_netns(n)) {
                if !expected_netns.contains(ns.as_str()) {
                    tracing::info!(netns = %ns, "removing orphaned pod namespace");
                    let _ = net::delete_pod(ns);
                }
            }
        }
        let expected_cg: BTreeSet<&Path> = self.pods.values().map(|p| p.cgroup.as_path()).collect();
        for node in &self.cfg.nodes {
            let Ok(dir) = self.paths.node_cgroup(&node.name) else {
                continue;
            };
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() && !expected_cg.contains(p.as_path()) {
                    tracing::info!(cgroup = %p.display(), "removing orphaned pod cgroup");
                    let _ = cgroup::kill_all(&p, Duration::from_secs(5));
                    let _ = cgroup::remove_tree(&p);
                }
            }
            // Addresses, host veths and endpoint records of pods that are
            // gone: CNI GC with every pod still known as valid.
            let live: BTreeSet<String> = snap
                .pods()
                .filter_map(|p| p.metadata.uid.clone())
                .chain(self.pods.keys().cloned())
                .collect();
            if let Err(e) = cni::gc(&self.exe, &self.paths, node, &live) {
                tracing::warn!(node = %node.name, error = %e, "CNI GC failed");
            }
        }
    }
}

fn status_of(rt: &PodRuntime) -> PodStatus {
    let mut statuses = Vec::new();
    for c in &rt.pod.spec.containers {
        let Some(cs) = rt.containers.get(&c.name) else {
            continue;
        };
        let state = if let (Some(_), Some(since)) = (cs.pid, cs.running_since) {
            ContainerState {
                running: Some(StateRunning { started_at: since }),
                ..Default::default()
            }
        } else if let Some((reason, message)) = &cs.waiting {
            ContainerState {
                waiting: Some(StateWaiting {
                    reason: reason.clone(),
                    message: message.clone(),
                }),
                ..Default::default()
            }
        } else if let Some(t) = &cs.terminated {
            ContainerState {
                terminated: Some(t.clone()),
                ..Default::default()
            }
        } else {
            ContainerState {
                waiting: Some(StateWaiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                }),
                ..Default::default()
            }
        };
        let last_state = match (&cs.waiting, &cs.terminated, &cs.last_terminated) {
            // Backing off: the last run is the terminated one.
            (Some(_), Some(t), _) => ContainerState {
                terminated: Some(t.clone()),
                ..Default::default()
            },
            (_, _, Some(t)) => ContainerState {
                terminated: Some(t.clone()),
                ..Default::default()
            },
            _ => ContainerState::default(),
        };
        statuses.push(ContainerStatus {
            name: c.name.clone(),
            ready: state.running.is_some() && rt.stage == Stage::Running,
            restart_count: cs.restart_count,
            started: state.running.is_some(),
            image: cs.image.clone(),
            container_id: cs.pid.map(|p| format!("pid://{p}")),
            state,
            last_state,
        });
    }
    let all_done = rt.containers.values().all(|c| c.done);
    let any_started = rt.containers.values().any(|c| c.started_once);
    let phase = if rt.stage == Stage::Creating || !any_started {
        "Pending"
    } else if all_done {
        let failed = rt
            .containers
            .values()
            .any(|c| c.terminated.as_ref().is_some_and(|t| t.exit_code != 0));
        if failed { "Failed" } else { "Succeeded" }
    } else {
        "Running"
    };
    let ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let mut conditions = rt
        .pod
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    set_condition(&mut conditions, "PodScheduled", true);
    set_condition(&mut conditions, "Initialized", true);
    set_condition(&mut conditions, "ContainersReady", ready);
    set_condition(&mut conditions, "Ready", ready);
    PodStatus {
        phase: phase.into(),
        conditions,
        host_ip: Some(rt.host_ip.to_string()),
        pod_ip: rt.ip.map(|ip| ip.to_string()),
        pod_ips: rt
            .ip
            .iter()
            .map(|ip| PodIp { ip: ip.to_string() })
            .collect(),
        start_time: Some(rt.start_time),
        container_statuses: statuses,
        reason: rt
            .sandbox_error
            .as_ref()
            .map(|_| "SandboxFailed".to_string()),
        message: rt.sandbox_error.clone(),
    }
}
