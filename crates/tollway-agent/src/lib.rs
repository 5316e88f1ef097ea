//! The per-node agent (`tollway agent --lab NAME --node NODE`), started and
//! supervised by the lab daemon inside the node's network namespace.
//!
//! At start it loads the datapath, adopting the maps pinned under
//! `/sys/fs/bpf/tollway/<lab>/<node>/` (never flushing them), re-attaches
//! its programs without a gap, and reads the maps back as its starting
//! point. Then it loops: when the store changes, it computes the wanted
//! services ([`tollway_lb::desired_services`]), plans the difference
//! ([`tollway_lb::plan`]) and executes it in the planner's order; it puts
//! the pod programs on new pods' veths; it sweeps expired conntrack entries
//! on an adaptive interval; and it writes a status file for `tollway status`.
//!
//! The loop reads the desired state through a [`ChangeSource`]: the lab's
//! store ([`Follower`], [`run`]) or the Kubernetes API
//! ([`tollway_kube::KubeSource`], [`run_kubernetes`], `tollway agent
//! --kubernetes`), which also allocates the identities of the node's pods
//! and reports its connection in the status.

pub mod cgroups;
pub mod ctgc;
pub mod endpoints;
mod error;
pub mod flows;
mod follow;
pub mod healthcheck;
pub mod inspect;
pub mod inspect_policy;
pub mod policy;
pub mod routes;
pub mod status;
mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tollway_abi::{Config, TW_CFG_F_NODEPORT, TW_CFG_F_SOCK_LB, be32};
use tollway_datapath::lb::{LbMaps, LoadOptions, NodeDatapath, SOCK_PROGRAMS, TC_PROGRAMS};
use tollway_lab::{LabConfig, LabPaths, LbSettings};
use tollway_lb::{Algorithm, Applied, LbConfig, NodeContext};
use tollway_state::{FileStore, Snapshot};

pub use error::AgentError;
pub use follow::{Change, ChangeSource, Delta, Follower};
pub use status::AgentStatus;
pub use tollway_kube::KubeReport;

/// The uplink of a lab node.
pub const UPLINK: &str = "eth0";
/// First and last port NodePort SNAT uses (outside the node's ephemeral range).
pub const NAT_PORTS: (u16, u16) = (61000, 65000);
/// Annotation that sends a pod's connections through the tc path instead of
/// the socket LB (for tests and for debugging).
pub const SOCKET_LB_ANNOTATION: &str = "tollway.io/socket-lb";

const RESYNC: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How often the CNI plugin's record directory is looked at.
const RECORDS_POLL: Duration = Duration::from_millis(100);
/// Service-only changes rebuild the flow decoder's view at most this often
/// (pods and identities rebuild it at once).
const RESOLVER_THROTTLE: Duration = Duration::from_millis(500);

struct Agent {
    node: String,
    paths: LabPaths,
    node_dir: PathBuf,
    lb_cfg: LbConfig,
    node_ctx: NodeContext,
    base_programs: Vec<status::ProgramAttachment>,
    datapath: NodeDatapath,
    maps: LbMaps,
    mirror: Applied,
    /// The wanted services, kept up to date change by change (None until
    /// the first full sync, and after a failed one).
    lb_state: Option<tollway_lb::DesiredState>,
    /// This node's pods whose veth carries the programs (last attach).
    local: Vec<policy::LocalPod>,
    policy: policy::PolicySync,
    /// Pod veths carrying the pod programs, with the ifindex they had.
    attached_ifaces: BTreeMap<String, u32>,
    skipped_cgroups: BTreeSet<u64>,
    status: AgentStatus,
    /// The flow service (Hubble's observer), if it could start.
    flows: Option<flows::FlowService>,
    /// The flow decoder's view needs rebuilding (services changed).
    resolver_dirty: bool,
    last_resolver: Instant,
    /// The CNI plugin's endpoint records (which veth is which pod's).
    cni_endpoints: PathBuf,
    /// Routes to the other nodes' pod CIDRs (Kubernetes with
    /// autoDirectNodeRoutes; the lab makes its own).
    routes: Option<routes::NodeRoutes>,
    /// Translate services (false: kube-proxy does, no frontend is
    /// programmed).
    services: bool,
    /// The record directory's mtime at the last look.
    records_mtime: Option<std::time::SystemTime>,
    /// Kubernetes: the cgroup2 root below which kubelet makes the pods'
    /// cgroups (None: the lab's naming).
    kube_cgroups: Option<PathBuf>,
    /// The health-check node ports' server (None: it could not start, or
    /// services are left to kube-proxy, which serves them then).
    health_checks: Option<healthcheck::HealthChecks>,
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// Where the socket-LB programs attach.
enum CgroupSpec {
    /// The lab node's cgroup (`tollway/<lab>/node_<node>`).
    LabNode,
    /// This cgroup (Kubernetes: the cgroup2 root, every pod below it).
    Path(PathBuf),
}

/// What the agent needs to know about its node, wherever it comes from:
/// the lab's configuration ([`run`]) or the Node object and flags
/// ([`run_kubernetes`]).
struct NodeSetup {
    node: String,
    node_ip: Ipv4Addr,
    uplink: String,
    /// Pins (`/sys/fs/bpf/tollway/<lab or cluster>/<node>`), the node's
    /// directory (status, flows.sock, endpoint markers) and the lab's
    /// naming of pod cgroups.
    paths: LabPaths,
    cgroup: CgroupSpec,
    lb: LbSettings,
    node_port_range: String,
    /// Where the CNI plugin writes its endpoint records.
    cni_endpoints: PathBuf,
    /// Manage routes to the other nodes' pod CIDRs.
    node_routes: bool,
    /// The agent's namespace (Kubernetes).
    namespace: Option<String>,
    /// Translate services (kube-proxy replacement).
    services: bool,
}

/// Run the agent of `node` in lab `lab` until it is killed. The caller must
/// already be in the node's network namespace.
pub fn run(lab: &str, node: &str, flow_cfg: flows::FlowConfig) -> Result<(), AgentError> {
    let paths = LabPaths::new(lab);
    let cfg = LabConfig::load(&paths)?
        .ok_or_else(|| tollway_lab::LabError::NoSuchLab { name: lab.into() })?;
    let node_cfg = cfg.node(node)?.clone();
    let store = FileStore::open(&paths.store_dir())?;
    let cni_endpoints = endpoints::records_dir(&paths.node_dir(node));
    let setup = NodeSetup {
        node: node.into(),
        node_ip: node_cfg.ip,
        uplink: UPLINK.into(),
        cni_endpoints,
        node_routes: false,
        namespace: None,
        services: true,
        paths,
        cgroup: CgroupSpec::LabNode,
        lb: cfg.lb.clone(),
        node_port_range: format!(
            "{}-{}",
            cfg.cluster.node_port_range.start(),
            cfg.cluster.node_port_range.end()
        ),
    };
    let mut agent = start(setup, flow_cfg)?;
    let mut follower = follow::Follower::new(&store)?;
    agent.loop_forever(&mut follower)
}

/// `tollway agent --kubernetes`: what the lab would otherwise provide.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// This node's name (the Node object's).
    pub node: String,
    /// A kubeconfig; None: in-cluster, else what kube's `Config::infer`
    /// finds.
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's name: pins under `/sys/fs/bpf/tollway/<cluster>/<node>`,
    /// state under `$TOLLWAY_STATE_DIR/labs/<cluster>/nodes/<node>`.
    pub cluster: String,
    /// The uplink interface (NodePort, SNAT).
    pub uplink: String,
    /// The cgroup the socket LB attaches to (None: the cgroup2 root).
    pub cgroup: Option<PathBuf>,
    /// Load-balancing settings.
    pub lb: LbSettings,
    /// The API server's node port range, for the status.
    pub node_port_range: String,
    /// The CNI plugin's `agentDir` (its endpoint records are in
    /// `cni-endpoints/` there).
    pub cni_agent_dir: PathBuf,
    /// Install routes to the other nodes' pod CIDRs via their InternalIPs
    /// (Cilium's `autoDirectNodeRoutes`).
    pub auto_direct_node_routes: bool,
    /// The namespace the agent runs in (for the status).
    pub namespace: Option<String>,
    /// Translate services (false: kube-proxy does; the agent programs no
    /// frontend and attaches neither the socket LB nor NodePort).
    pub kube_proxy_replacement: bool,
    /// Time between identity garbage-collection passes.
    pub identity_gc_interval: Duration,
    /// How long an unused identity stays marked before it is deleted.
    pub identity_gc_grace: Duration,
}

/// Run the agent of a Kubernetes node until it is killed, fed by the API
/// server's watches ([`tollway_kube::KubeSource`]). It first waits (as
/// long as it takes) for every kind's first list and for its Node object,
/// which gives the node's address; until then it does not touch the maps,
/// so a datapath an earlier agent left keeps forwarding.
pub fn run_kubernetes(opts: KubeOptions, flow_cfg: flows::FlowConfig) -> Result<(), AgentError> {
    let spec = match &opts.kubeconfig {
        Some(p) => tollway_kube::ClientSpec::Kubeconfig(p.clone()),
        None => tollway_kube::ClientSpec::Infer,
    };
    // Identity garbage collection runs in the agent of the lowest-named
    // node (see tollway_kube::identity).
    let source_options = tollway_kube::SourceOptions {
        node: Some(opts.node.clone()),
        identity_gc_interval: opts.identity_gc_interval,
        identity_gc_grace: opts.identity_gc_grace,
        ..tollway_kube::SourceOptions::default()
    };
    let mut source = tollway_kube::KubeSource::start(spec, source_options)?;
    let node_ip = wait_for_node(&mut source, &opts.node)?;
    tollway_datapath::bpffs::ensure_bpffs(std::path::Path::new(
        tollway_datapath::bpffs::BPFFS_MOUNT,
    ))?;
    let cgroup = match opts.cgroup {
        Some(p) => p,
        None => tollway_lab::sys::cgroup::mount_point()?,
    };
    let setup = NodeSetup {
        node: opts.node,
        node_ip,
        uplink: opts.uplink,
        paths: LabPaths::new(&opts.cluster),
        cgroup: CgroupSpec::Path(cgroup),
        lb: opts.lb,
        node_port_range: opts.node_port_range,
        cni_endpoints: endpoints::records_dir(&opts.cni_agent_dir),
        node_routes: opts.auto_direct_node_routes,
        namespace: opts.namespace,
        services: opts.kube_proxy_replacement,
    };
    let mut agent = start(setup, flow_cfg)?;
    agent.loop_forever(&mut source)
}

/// Wait until every kind is listed and `node`'s Node object has an IPv4
/// InternalIP; returns it.
fn wait_for_node(
    source: &mut tollway_kube::KubeSource,
    node: &str,
) -> Result<Ipv4Addr, AgentError> {
    let mut last_log = Instant::now();
    loop {
        source.wait(Duration::from_millis(500));
        source.poll();
        if source.synced() {
            let found = source.snapshot().nodes().find(|n| n.metadata.name == node);
            if let Some(address) = found.and_then(|n| n.internal_ip()) {
                let ip = address
                    .parse::<Ipv4Addr>()
                    .map_err(|_| AgentError::NodeAddress {
                        node: node.into(),
                        address: address.into(),
                    })?;
                let pod_cidr = found.and_then(|n| n.spec.pod_cidr.clone());
                tracing::info!(node, %ip, pod_cidr = pod_cidr.as_deref().unwrap_or("none"), "found this node");
                return Ok(ip);
            }
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            let r = source.report();
            tracing::warn!(
                node,
                synced = r.synced,
                connected = r.connected,
                error = r.last_error.as_deref().unwrap_or(""),
                "waiting for the Kubernetes API and this node's Node object (with an InternalIP)"
            );
            last_log = Instant::now();
        }
    }
}

/// The frontends an agent programs: all of them (`kpr`: it replaces
/// kube-proxy), or else only the ClusterIPs, as Cilium does without
/// kube-proxy replacement: pod-to-service traffic is translated at the
/// pod's veth, before policy, while kube-proxy keeps NodePort,
/// LoadBalancer and external IPs.
fn translated(
    kpr: bool,
    desired: Vec<tollway_lb::DesiredService>,
) -> Vec<tollway_lb::DesiredService> {
    if kpr {
        return desired;
    }
    desired
        .into_iter()
        .filter(|d| d.kind == tollway_lb::FrontendKind::ClusterIp)
        .collect()
}

/// Load the datapath and adopt the maps an earlier agent left.
fn start(setup: NodeSetup, flow_cfg: flows::FlowConfig) -> Result<Agent, AgentError> {
    let node = setup.node.as_str();
    let paths = setup.paths;
    let node_dir = paths.node_dir(node);
    let pin_dir = paths.bpf_node_dir(node);
    let algorithm = if setup.lb.algorithm == "maglev" {
        Algorithm::Maglev
    } else {
        Algorithm::Random
    };
    let lb_cfg = LbConfig {
        default_algorithm: algorithm,
        maglev_m: setup.lb.maglev_table_size,
    };
    if !tollway_lb::is_prime(lb_cfg.maglev_m) {
        return Err(AgentError::MaglevSize { m: lb_cfg.maglev_m });
    }

    // The kernel first: one clear error per missing feature, not a
    // verifier log.
    let problems = tollway_datapath::probe::probe();
    if !problems.is_empty() {
        return Err(AgentError::Kernel {
            problems: problems.iter().map(ToString::to_string).collect(),
        });
    }
    let mut datapath = NodeDatapath::load(&LoadOptions {
        pin_dir: pin_dir.clone(),
    })?;
    let mut maps = LbMaps::open(&pin_dir)?;
    let policy = policy::PolicySync::open(&pin_dir)?;
    let uplink = setup.uplink.as_str();
    let uplink_ifindex = ifindex(uplink).ok_or_else(|| AgentError::NoInterface {
        ifname: uplink.into(),
        node: node.into(),
    })?;
    let nodeport = setup.services && datapath.has("nodeport");
    let socket_lb = setup.services && setup.lb.socket_lb && datapath.has("sock");
    let mut flags = 0;
    if socket_lb {
        flags |= TW_CFG_F_SOCK_LB;
    }
    if nodeport {
        flags |= TW_CFG_F_NODEPORT;
    }
    maps.set_config(&Config {
        node_ip: be32(setup.node_ip),
        maglev_m: lb_cfg.maglev_m,
        flags,
        uplink_ifindex,
        nat_port_min: NAT_PORTS.0,
        nat_port_max: NAT_PORTS.1,
        ..Default::default()
    })?;
    let mut programs = Vec::new();
    if nodeport && datapath.attach_uplink(uplink)?.is_some() {
        for (_, p, hook) in TC_PROGRAMS.iter().filter(|(o, _, _)| *o == "nodeport") {
            programs.push(status::ProgramAttachment {
                program: (*p).into(),
                hook: format!("tc {hook}"),
                targets: vec![uplink.into()],
            });
        }
    }
    let (node_cgroup, kube_cgroups) = match setup.cgroup {
        CgroupSpec::LabNode => (paths.node_cgroup(node)?, None),
        CgroupSpec::Path(p) => (p.clone(), Some(p)),
    };
    if socket_lb && datapath.attach_cgroup(&node_cgroup)?.is_some() {
        for (_, p, hook) in SOCK_PROGRAMS {
            programs.push(status::ProgramAttachment {
                program: (*p).into(),
                hook: format!("cgroup {hook}"),
                targets: vec![node_cgroup.display().to_string()],
            });
        }
    }
    // Adopt what an earlier agent left: the maps are the truth.
    let mut mirror = sync::read_applied(&maps)?;
    mirror.rebuild_indexes();
    tracing::info!(
        lab = %paths.lab,
        node,
        frontends = mirror.services.len(),
        backends = mirror.backends.len(),
        "agent started; adopted the pinned maps"
    );
    let status = AgentStatus {
        node: node.into(),
        pid: std::process::id(),
        started: now_rfc3339(),
        node_ip: setup.node_ip.to_string(),
        uplink: uplink.into(),
        algorithm: setup.lb.algorithm.clone(),
        maglev_table_size: lb_cfg.maglev_m,
        socket_lb,
        nodeport,
        node_port_range: setup.node_port_range.clone(),
        programs: programs.clone(),
        pin_dir: pin_dir.display().to_string(),
        gc: status::GcReport {
            interval_seconds: ctgc::START_INTERVAL.as_secs_f64(),
            ..Default::default()
        },
        kube_proxy_replacement: setup.services,
        namespace: setup.namespace.clone(),
        node_routes: setup.node_routes.then(status::NodeRoutesReport::default),
        cni_endpoints: status::CniEndpointsReport {
            dir: setup.cni_endpoints.display().to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    // Flows: a failure here leaves the datapath working, and is reported.
    let flows = match flows::FlowService::start(node, &pin_dir, &node_dir, flow_cfg) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(error = %e, "the flow service did not start");
            None
        }
    };
    Ok(Agent {
        node: node.into(),
        paths,
        node_dir,
        lb_cfg,
        node_ctx: NodeContext {
            node_name: node.into(),
            node_ip: setup.node_ip,
        },
        base_programs: programs,
        datapath,
        maps,
        mirror,
        lb_state: None,
        local: Vec::new(),
        policy,
        attached_ifaces: BTreeMap::new(),
        skipped_cgroups: BTreeSet::new(),
        status,
        flows,
        resolver_dirty: true,
        last_resolver: Instant::now(),
        routes: setup
            .node_routes
            .then(|| routes::NodeRoutes::new(node, &setup.uplink)),
        cni_endpoints: setup.cni_endpoints,
        services: setup.services,
        records_mtime: None,
        kube_cgroups,
        health_checks: if setup.services {
            match healthcheck::HealthChecks::start() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!(error = %e, "the health-check node port server did not start");
                    None
                }
            }
        } else {
            None
        },
    })
}

impl Agent {
    fn loop_forever(&mut self, follower: &mut dyn follow::ChangeSource) -> Result<(), AgentError> {
        self.status.kubernetes = follower.report();
        self.full_sync(follower.snapshot());
        self.sync_routes(follower.snapshot());
        follower.changed(&self.node);
        if let Some(f) = &self.flows {
            f.set_ready();
        }
        let mut last_full = Instant::now();
        let mut next_gc = Instant::now() + ctgc::START_INTERVAL;
        let mut last_beat = Instant::now();
        loop {
            let now = Instant::now();
            let resolver_at = if self.resolver_dirty {
                self.last_resolver + RESOLVER_THROTTLE
            } else {
                last_full + RESYNC
            };
            let wake = [
                next_gc,
                last_beat + HEARTBEAT,
                last_full + RESYNC,
                resolver_at,
            ]
            .into_iter()
            .min()
            .unwrap_or(now + HEARTBEAT);
            // Woken at least every RECORDS_POLL to see new CNI records (a
            // plugin ADD waits for its endpoint).
            follower.wait(wake.saturating_duration_since(now).min(RECORDS_POLL));
            let change = follower.poll()?;
            self.status.kubernetes = follower.report();
            match change {
                follow::Change::None if last_full.elapsed() < RESYNC => {}
                follow::Change::None | follow::Change::Full => {
                    self.full_sync(follower.snapshot());
                    self.sync_routes(follower.snapshot());
                    last_full = Instant::now();
                    follower.changed(&self.node);
                }
                follow::Change::Delta(delta) => {
                    self.delta_sync(follower.snapshot(), &delta);
                    if !delta.others.is_empty() {
                        self.sync_routes(follower.snapshot());
                    }
                    if !delta.pods.is_empty() || !delta.others.is_empty() {
                        follower.changed(&self.node);
                    }
                }
            }
            if self.records_changed() {
                self.refresh_endpoints(follower.snapshot());
                follower.changed(&self.node);
            }
            if self.resolver_dirty && self.last_resolver.elapsed() >= RESOLVER_THROTTLE {
                self.rebuild_resolver(follower.snapshot());
            }
            if Instant::now() >= next_gc {
                match ctgc::sweep(&mut self.maps, &mut self.status.gc) {
                    Ok(interval) => next_gc = Instant::now() + interval,
                    Err(e) => {
                        tracing::error!(error = %e, "conntrack sweep failed");
                        next_gc = Instant::now() + ctgc::START_INTERVAL;
                    }
                }
                self.write_status();
            }
            if last_beat.elapsed() >= HEARTBEAT {
                self.write_status();
                last_beat = Instant::now();
            }
        }
    }

    /// Recompute everything from the mirror (at start, after a journal
    /// rotation, and periodically as a safety net).
    fn full_sync(&mut self, snap: &Snapshot) {
        let result = self.sync(snap);
        self.rebuild_resolver(snap);
        if let Err(e) = result {
            tracing::error!(error = %e, "sync failed; re-reading the maps");
            self.status.sync.error = Some(e.to_string());
            self.lb_state = None;
            match sync::read_applied(&self.maps) {
                Ok(mut m) => {
                    m.rebuild_indexes();
                    self.mirror = m;
                }
                Err(e) => tracing::error!(error = %e, "cannot re-read the maps"),
            }
        }
        self.write_status();
    }

    /// Apply what changed: only the services a change touches are
    /// re-planned ([`tollway_lb::plan_scoped`]); pods are re-attached only
    /// when pods changed, and policy is recomputed only when something
    /// other than services changed. Anything unexpected falls back to a
    /// full sync.
    fn delta_sync(&mut self, snap: &Snapshot, delta: &follow::Delta) {
        match self.try_delta(snap, delta) {
            Ok(true) => self.write_status(),
            Ok(false) => self.full_sync(snap),
            Err(e) => {
                tracing::warn!(error = %e, "incremental sync failed; doing a full one");
                self.full_sync(snap);
            }
        }
    }

    /// `Ok(false)`: no incremental state yet, do a full sync.
    fn try_delta(&mut self, snap: &Snapshot, delta: &follow::Delta) -> Result<bool, AgentError> {
        let started = Instant::now();
        let Some(state) = self.lb_state.as_mut() else {
            return Ok(false);
        };
        for key in &delta.services {
            match snap.get(key) {
                Some(tollway_api::Object::Service(s)) => {
                    state.upsert_service(s.clone());
                }
                _ => {
                    state.remove_service(key.namespace.as_deref().unwrap_or("default"), &key.name);
                }
            }
        }
        for (before, after) in &delta.pods {
            match (before, after) {
                (_, Some(p)) => {
                    state.upsert_pod(p.clone());
                }
                (Some(b), None) => {
                    state.remove_pod(b.metadata.namespace_or_default(), &b.metadata.name);
                }
                (None, None) => {}
            }
        }
        // The endpoints of services without a selector.
        for key in &delta.slices {
            match snap.get(key) {
                Some(tollway_api::Object::EndpointSlice(s)) => {
                    state.upsert_slice(s.clone());
                }
                _ => {
                    state.remove_slice(key.namespace.as_deref().unwrap_or("default"), &key.name);
                }
            }
        }
        let (desired, scope) = state.pending();
        let desired = translated(self.services, desired);
        let ops =
            tollway_lb::plan_scoped(&self.mirror, &desired, &scope, state.demand(), &self.lb_cfg);
        let ops = match ops {
            Ok(ops) => ops,
            Err(e) => {
                // Drop the incremental state: the full sync rebuilds it.
                self.lb_state = None;
                return Err(e.into());
            }
        };
        for op in &ops {
            if let Err(e) = sync::execute(&mut self.maps, op) {
                self.lb_state = None;
                return Err(e.into());
            }
            tollway_lb::apply_to(&mut self.mirror, op);
        }
        if let Some(state) = self.lb_state.as_mut() {
            state.commit();
            if let Some(h) = &self.health_checks {
                h.set(healthcheck::entries(state, self.node_ctx.node_ip));
            }
            if !ops.is_empty()
                || !delta.services.is_empty()
                || !delta.pods.is_empty()
                || !delta.slices.is_empty()
            {
                self.status.warnings = state.warnings().iter().map(ToString::to_string).collect();
            }
        }
        if !delta.pods.is_empty() {
            let pods: Vec<&tollway_api::Pod> = snap.pods().collect();
            self.local = self.attach_pods(&pods)?;
        }
        if !delta.pods.is_empty() || !delta.others.is_empty() {
            let local = std::mem::take(&mut self.local);
            self.sync_policy(snap, &local);
            self.local = local;
            self.rebuild_resolver(snap);
        } else if !delta.services.is_empty() || !delta.slices.is_empty() {
            self.resolver_dirty = true;
        }
        self.report_sync(snap.resource_version, ops.len(), started, "incremental");
        if !ops.is_empty() {
            tracing::info!(
                ops = ops.len(),
                scope = scope.len(),
                us = started.elapsed().as_micros() as u64,
                "synced services (incremental)"
            );
        }
        Ok(true)
    }

    /// Where this node's pods' cgroups are.
    fn pod_cgroups(&self) -> cgroups::PodCgroups {
        match &self.kube_cgroups {
            Some(root) => cgroups::PodCgroups::scan(root),
            None => cgroups::PodCgroups::Lab {
                paths: self.paths.clone(),
                node: self.node.clone(),
            },
        }
    }

    /// Whether the CNI plugin's record directory changed (a record came or
    /// went) since the last look.
    fn records_changed(&mut self) -> bool {
        let now = std::fs::metadata(&self.cni_endpoints)
            .and_then(|m| m.modified())
            .ok();
        if now == self.records_mtime {
            return false;
        }
        self.records_mtime = now;
        true
    }

    /// A record came or went: attach and program the node's pods again
    /// (a new pod's endpoint is programmed with its record's address, and
    /// its `.ready` marker lets the plugin's ADD return).
    fn refresh_endpoints(&mut self, snap: &Snapshot) {
        let pods: Vec<&tollway_api::Pod> = snap.pods().collect();
        match self.attach_pods(&pods) {
            Ok(local) => {
                self.sync_policy(snap, &local);
                self.local = local;
                self.rebuild_resolver(snap);
            }
            Err(e) => tracing::warn!(error = %e, "attaching pods after a CNI record change"),
        }
        self.write_status();
    }

    /// Routes to the other nodes' pods, if the agent manages them.
    fn sync_routes(&mut self, snap: &Snapshot) {
        if let Some(r) = self.routes.as_mut() {
            r.reconcile(snap.nodes());
            let report = Some(r.report.clone());
            if report != self.status.node_routes {
                self.status.node_routes = report;
                self.write_status();
            }
        }
    }

    fn report_sync(&mut self, resource_version: u64, ops: usize, started: Instant, mode: &str) {
        self.status.sync = status::SyncReport {
            resource_version,
            frontends: self.mirror.services.len(),
            backends: self.mirror.backends.len(),
            ops,
            duration_us: started.elapsed().as_micros() as u64,
            at: now_rfc3339(),
            error: None,
            mode: mode.into(),
        };
    }

    /// The flow decoder's view of the cluster, from `snap`.
    fn rebuild_resolver(&mut self, snap: &Snapshot) {
        if let Some(f) = &self.flows {
            f.set_resolver(flows::resolver::build(
                snap,
                &self.node,
                self.node_ctx.node_ip,
                &self.pod_cgroups(),
                &self.mirror,
            ));
        }
        self.resolver_dirty = false;
        self.last_resolver = Instant::now();
    }

    fn write_status(&mut self) {
        self.status.heartbeat = now_rfc3339();
        if let Some(h) = &self.health_checks {
            let (served, failed) = h.report();
            self.status.health_check_node_ports = served;
            self.status.health_check_errors = failed;
        }
        self.status.flows = self.flows.as_ref().map(flows::FlowService::report);
        if let Err(e) = self.status.write(&self.node_dir) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    }

    fn sync(&mut self, snap: &Snapshot) -> Result<(), AgentError> {
        let started = Instant::now();
        self.lb_state = None;
        let pods: Vec<&tollway_api::Pod> = snap.pods().collect();
        let mut state = tollway_lb::DesiredState::from_objects(
            snap.services(),
            pods.iter().copied(),
            snap.endpoint_slices(),
            self.node_ctx.clone(),
            self.lb_cfg,
        );
        let desired = translated(self.services, state.desired());
        let warnings = state.warnings();
        let ops = tollway_lb::plan(&self.mirror, &desired, &self.lb_cfg)?;
        for op in &ops {
            sync::execute(&mut self.maps, op)?;
            tollway_lb::apply_to(&mut self.mirror, op);
        }
        state.commit();
        if let Some(h) = &self.health_checks {
            h.set(healthcheck::entries(&state, self.node_ctx.node_ip));
        }
        self.lb_state = Some(state);
        let local = self.attach_pods(&pods)?;
        self.sync_policy(snap, &local);
        self.local = local;
        self.status.warnings = warnings.iter().map(ToString::to_string).collect();
        self.report_sync(snap.resource_version, ops.len(), started, "full");
        if !ops.is_empty() {
            tracing::info!(
                ops = ops.len(),
                frontends = self.mirror.services.len(),
                us = started.elapsed().as_micros() as u64,
                "synced services"
            );
        }
        Ok(())
    }

    /// Identities, ipcache, endpoints and policies; then the markers that
    /// let the kubelet start the containers of programmed pods. A failure
    /// leaves the previous policies in place (and new pods waiting).
    fn sync_policy(&mut self, snap: &Snapshot, local: &[policy::LocalPod]) {
        match self.policy.sync(snap, &self.node, local) {
            Ok(report) => {
                if report.swapped > 0 {
                    tracing::info!(
                        swapped = report.swapped,
                        endpoints = report.endpoints,
                        rules = report.rules,
                        us = report.duration_us,
                        "synced policy"
                    );
                }
                self.status.policy = report;
                self.policy.write_markers(&self.node_dir, local);
                self.policy.write_ready(local);
            }
            Err(e) => {
                tracing::error!(error = %e, "policy sync failed; the previous policies stay");
                self.status.policy.errors = vec![e.to_string()];
            }
        }
        self.status.policy_maps = self
            .policy
            .maps()
            .fill()
            .into_iter()
            .map(|f| status::MapFillReport {
                name: f.name.to_string(),
                max_entries: f.max_entries,
                in_use: f.in_use,
            })
            .collect();
    }

    /// Put the pod programs on this node's pods' veths, and keep the socket
    /// LB bypass list in line with the pods' annotations. Returns the pods
    /// whose veth carries the programs.
    fn attach_pods(
        &mut self,
        pods: &[&tollway_api::Pod],
    ) -> Result<Vec<policy::LocalPod>, AgentError> {
        let mut live = BTreeMap::new();
        let mut local = Vec::new();
        let mut skip = BTreeSet::new();
        let records = endpoints::EndpointIndex::load(&self.cni_endpoints);
        let cgroup_layout = self.pod_cgroups();
        let mut without_record = Vec::new();
        for p in pods
            .iter()
            .filter(|p| p.spec.node_name.as_deref() == Some(self.node.as_str()))
        {
            let Some(uid) = p.metadata.uid.as_deref() else {
                continue;
            };
            // The plugin's record names the veth (hostNetwork pods and
            // pods of another plugin have none). A pod the plugin is still
            // adding has a record but no address in its status yet: it is
            // programmed with the record's, so that its containers start
            // with their policy in place.
            let Some(record) = records.find(p) else {
                // Not started yet, or on the host's network (the node's
                // address).
                if p.pod_ip()
                    .is_none_or(|ip| ip == self.node_ctx.node_ip.to_string())
                {
                    continue;
                }
                without_record.push(format!(
                    "{}/{}",
                    p.metadata.namespace_or_default(),
                    p.metadata.name
                ));
                continue;
            };
            let iface = record.host_ifname.clone();
            let record_ip = record.ip;
            let record_path = tollway_cni::endpoint::record_path(
                &self.cni_endpoints,
                &record.container_id,
                &record.ifname,
            );
            let Some(index) = ifindex(&iface) else {
                continue;
            };
            // A new veth of the same name (the sandbox was remade) needs
            // the programs again.
            if self.attached_ifaces.get(&iface) != Some(&index) {
                self.datapath.attach_pod_interface(&iface)?;
                tracing::info!(pod = %p.metadata.name, %iface, "attached pod programs");
                self.attached_ifaces.insert(iface.clone(), index);
            }
            live.insert(iface, index);
            local.push(policy::LocalPod {
                uid: uid.to_string(),
                ifindex: index,
                ip: record_ip,
                record: record_path,
            });
            let wants_tc = p
                .metadata
                .annotations
                .get(SOCKET_LB_ANNOTATION)
                .is_some_and(|v| matches!(v.as_str(), "false" | "disabled" | "off"));
            if wants_tc {
                skip.extend(cgroup_layout.ids(p));
            }
        }
        self.attached_ifaces = live;
        self.status.cni_endpoints.records = records.len();
        self.status.cni_endpoints.unreadable = records.unreadable;
        self.status.cni_endpoints.pods_without_record = without_record;
        for id in skip.difference(&self.skipped_cgroups) {
            let _ = self.maps.sock_skip.insert(id, 1, 0);
        }
        for id in self.skipped_cgroups.difference(&skip) {
            let _ = self.maps.sock_skip.remove(id);
        }
        self.skipped_cgroups = skip;
        let ifaces: Vec<String> = self.attached_ifaces.keys().cloned().collect();
        self.status.programs = self.base_programs.clone();
        for (_, program, hook) in TC_PROGRAMS.iter().filter(|(o, _, _)| *o == "lxc") {
            self.status.programs.push(status::ProgramAttachment {
                program: (*program).into(),
                hook: format!("tc {hook}"),
                targets: ifaces.clone(),
            });
        }
        Ok(local)
    }
}
