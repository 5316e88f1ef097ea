//! The Cilium-shaped commands on a node's datapath: `tollway status`,
//! `tollway bpf lb list`, `tollway bpf ct list`, `tollway service list`
//! (`bpf ipcache` and `bpf policy` are in [`super::policy`]),
//! and the agent itself.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tollway_agent::AgentStatus;
use tollway_agent::inspect;
use tollway_datapath::lb::LbMaps;
use tollway_lab::{LabConfig, LabPaths};

/// Which node to look at: `--node`, or `TOLLWAY_NODE` (set by `lab exec
/// --node` and in pods), or the lab's first node.
#[derive(Args, Debug, Clone)]
pub struct NodeArg {
    /// Node (default: $TOLLWAY_NODE, else the first node).
    #[arg(long, env = "TOLLWAY_NODE")]
    pub(crate) node: Option<String>,
}

/// The lab's node, or (no lab of that name) the node of a Kubernetes
/// agent reporting under the same name: in the agent's container the
/// chart sets `TOLLWAY_LAB` to the cluster's name and `TOLLWAY_NODE` to the
/// node's (`K8S_NODE_NAME` is read too), so `kubectl exec ds/tollway --
/// tollway status` finds it. The configuration is None for a cluster.
pub(crate) fn resolve(lab: &str, node: &NodeArg) -> Result<(Option<LabConfig>, LabPaths, String)> {
    let paths = LabPaths::new(lab);
    let Some(cfg) = LabConfig::load(&paths)? else {
        if let Some((paths, node)) = kube_mode_node(lab, node) {
            return Ok((None, paths, node));
        }
        bail!(
            "lab {lab} does not exist (create it with `tollway --lab {lab} lab up`), and no Kubernetes agent of a cluster {lab} reports under {} (in a cluster, set TOLLWAY_LAB to the cluster's name and TOLLWAY_NODE to the node's)",
            paths.dir.join("nodes").display()
        );
    };
    let name = match &node.node {
        Some(n) => {
            cfg.node(n)?;
            n.clone()
        }
        None => cfg
            .nodes
            .first()
            .map(|n| n.name.clone())
            .context("the lab has no nodes")?,
    };
    Ok((Some(cfg), paths, name))
}

fn open_maps(paths: &LabPaths, node: &str) -> Result<LbMaps> {
    let dir = paths.bpf_node_dir(node);
    LbMaps::open(&dir).with_context(|| {
        format!("node {node}: the datapath maps are not there (is the agent running? see `tollway lab status`)")
    })
}

pub(crate) fn json_flag(output: &Option<String>) -> Result<bool> {
    match output.as_deref() {
        None => Ok(false),
        Some("json") => Ok(true),
        Some(o) => bail!("unknown output format {o:?} (json)"),
    }
}

/// `tollway agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The node this agent serves (with --kubernetes: the Node object's
    /// name, as the downward API gives it in $K8S_NODE_NAME).
    #[arg(long, visible_alias = "node-name", env = "K8S_NODE_NAME")]
    node: String,
    /// Follow the Kubernetes API (watches) instead of the lab's store.
    #[arg(long)]
    kubernetes: bool,
    /// With --kubernetes: this kubeconfig (default: the in-cluster
    /// configuration, else $KUBECONFIG or ~/.kube/config).
    #[arg(long, requires = "kubernetes")]
    kubeconfig: Option<std::path::PathBuf>,
    /// With --kubernetes: the cluster's name, which names the pin directory
    /// /sys/fs/bpf/tollway/<cluster>/<node> and the state directory (what
    /// --lab names for a lab).
    #[arg(long, env = "TOLLWAY_CLUSTER_NAME", default_value = "kubernetes")]
    cluster_name: String,
    /// With --kubernetes: the node's uplink interface (NodePort, SNAT).
    #[arg(long, requires = "kubernetes", default_value = tollway_agent::UPLINK)]
    uplink: String,
    /// With --kubernetes: the cgroup the socket LB attaches to (default:
    /// the cgroup2 root, so every pod is below it).
    #[arg(long, requires = "kubernetes")]
    socket_lb_cgroup: Option<std::path::PathBuf>,
    /// With --kubernetes: the default backend selection, random or maglev
    /// (a lab's comes from `lab up`).
    #[arg(
        long,
        requires = "kubernetes",
        env = "TOLLWAY_LB_ALGORITHM",
        default_value = "random"
    )]
    lb_algorithm: String,
    /// With --kubernetes: the Maglev table size (a prime).
    #[arg(
        long,
        requires = "kubernetes",
        env = "TOLLWAY_MAGLEV_TABLE_SIZE",
        default_value_t = 16381
    )]
    maglev_table_size: u32,
    /// With --kubernetes: leave ClusterIP translation to the tc path.
    #[arg(long, requires = "kubernetes")]
    no_socket_lb: bool,
    /// With --kubernetes: translate ClusterIPs at connect() (the socket
    /// LB); false is --no-socket-lb.
    #[arg(long, env = "TOLLWAY_SOCKET_LB", default_value_t = true, action = clap::ArgAction::Set)]
    socket_lb: bool,
    /// With --kubernetes: the API server's --service-node-port-range (for
    /// the status).
    #[arg(
        long,
        requires = "kubernetes",
        env = "TOLLWAY_NODE_PORT_RANGE",
        default_value = "30000-32767"
    )]
    node_port_range: String,
    /// Cilium's monitor aggregation: none, low, medium or maximum.
    #[arg(long, env = "TOLLWAY_MONITOR_AGGREGATION", default_value = "medium")]
    monitor_aggregation: String,
    /// Flows each node keeps (Hubble's ring).
    #[arg(long, env = "TOLLWAY_FLOW_BUFFER", default_value_t = tollway_agent::flows::DEFAULT_BUFFER)]
    flow_buffer: usize,
    /// Turn the datapath's flow events off.
    #[arg(long, env = "TOLLWAY_NO_FLOW_EVENTS")]
    no_flow_events: bool,
    /// Port of the Prometheus metrics (Hubble's 9965), in the node's network
    /// namespace; 0 turns them off.
    #[arg(long, env = "TOLLWAY_METRICS_PORT", default_value_t = tollway_agent::flows::METRICS_PORT)]
    metrics_port: u16,
    /// Port of `/healthz` and `/readyz` on 127.0.0.1 (Cilium's 9879), in
    /// the node's network namespace; 0 turns them off.
    #[arg(long, env = "TOLLWAY_HEALTH_PORT", default_value_t = tollway_agent::flows::HEALTH_PORT)]
    health_port: u16,
    /// Serve the flow API on TCP too, for a relay (`:4244` = every address,
    /// Hubble's port); the unix socket is always served.
    #[arg(long, env = "TOLLWAY_FLOWS_LISTEN")]
    flows_listen: Option<String>,
    /// The agent's API on this unix socket too (what the CNI plugin's
    /// STATUS waits for; default with --kubernetes:
    /// /var/run/tollway/agent.sock).
    #[arg(long, env = "TOLLWAY_API_SOCKET")]
    api_socket: Option<std::path::PathBuf>,
    /// Translate every service (ClusterIP, NodePort, LoadBalancer, external
    /// IPs; the socket LB), replacing kube-proxy; false translates only
    /// ClusterIPs at the pod veths and leaves the rest to kube-proxy
    /// (Cilium's `kubeProxyReplacement`).
    #[arg(long, env = "TOLLWAY_KUBE_PROXY_REPLACEMENT", default_value_t = true, action = clap::ArgAction::Set)]
    kube_proxy_replacement: bool,
    /// How pod traffic crosses nodes: `native` (routed by the network;
    /// the only mode so far).
    #[arg(long, env = "TOLLWAY_ROUTING_MODE", default_value = "native")]
    routing_mode: String,
    /// With --kubernetes: install routes to the other nodes' pod CIDRs via
    /// their InternalIPs (nodes on one L2 segment; Cilium's
    /// `autoDirectNodeRoutes`). The lab makes its own routes.
    #[arg(long, env = "TOLLWAY_AUTO_DIRECT_NODE_ROUTES", default_value_t = false, action = clap::ArgAction::Set)]
    auto_direct_node_routes: bool,
    /// Flow events and the flow API (Hubble); false is --no-flow-events.
    #[arg(long, env = "TOLLWAY_FLOWS", default_value_t = true, action = clap::ArgAction::Set)]
    enable_flows: bool,
    /// The ztunnel-like mesh proxy (ambient mode): not implemented yet, so
    /// true is refused rather than leaving traffic unencrypted that the
    /// operator meant to encrypt.
    #[arg(long, env = "TOLLWAY_AMBIENT", default_value_t = false, action = clap::ArgAction::Set)]
    enable_ambient: bool,
    /// With --kubernetes: the namespace the agent runs in (the downward
    /// API's metadata.namespace), shown in the status.
    #[arg(long, env = "TOLLWAY_K8S_NAMESPACE")]
    k8s_namespace: Option<String>,
    /// With --kubernetes: the CNI plugin's `agentDir`, where it writes its
    /// endpoint records (cni-endpoints/).
    #[arg(
        long,
        env = "TOLLWAY_CNI_AGENT_DIR",
        default_value = "/var/run/tollway"
    )]
    cni_agent_dir: std::path::PathBuf,
    /// With --kubernetes: time between garbage-collection passes of unused
    /// identities (Cilium's `identity-gc-interval`; `15m`, `90s`, ...).
    #[arg(long, env = "TOLLWAY_IDENTITY_GC_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    identity_gc_interval: std::time::Duration,
    /// With --kubernetes: how long an unused identity stays marked before
    /// it is deleted (longer than the API watches can lag).
    #[arg(long, env = "TOLLWAY_IDENTITY_GC_GRACE", default_value = "15m", value_parser = parse_duration)]
    identity_gc_grace: std::time::Duration,
}

/// `15m`, `90s`, `1h30m` (jiff's friendly format) or ISO 8601 (`PT15M`).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration such as 15m or 90s: {e}"))?;
    let d = std::time::Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))?;
    if d.is_zero() {
        return Err(format!("{s:?}: must be longer than zero"));
    }
    Ok(d)
}

/// Run the agent (the lab daemon starts it in the node's namespace).
pub fn agent(lab: &str, args: AgentArgs) -> Result<ExitCode> {
    let aggregation = tollway_datapath::lb::aggregation_level(&args.monitor_aggregation)
        .with_context(|| {
            format!(
                "--monitor-aggregation {:?}: expected none, low, medium or maximum",
                args.monitor_aggregation
            )
        })?;
    if args.flow_buffer == 0 {
        bail!("--flow-buffer must be at least 1");
    }
    if args.routing_mode != "native" {
        bail!(
            "--routing-mode {:?} (TOLLWAY_ROUTING_MODE, the chart's routingMode): only native routing is implemented (no tunnel: vxlan and geneve are not supported yet)",
            args.routing_mode
        );
    }
    if args.enable_ambient {
        bail!(
            "--enable-ambient (TOLLWAY_AMBIENT, the chart's ambient.enabled): the ambient mesh (node proxy, mTLS) is not implemented yet; refusing to start rather than leave traffic in plain text that was meant to be encrypted"
        );
    }
    if !args.kube_proxy_replacement && !args.kubernetes {
        bail!(
            "--kube-proxy-replacement=false needs --kubernetes (a lab has no kube-proxy to leave services to)"
        );
    }
    if args.auto_direct_node_routes && !args.kubernetes {
        bail!(
            "--auto-direct-node-routes needs --kubernetes (a lab routes between its nodes itself)"
        );
    }
    let flow_cfg = tollway_agent::flows::FlowConfig {
        enabled: !args.no_flow_events && args.enable_flows,
        aggregation,
        buffer: args.flow_buffer,
        metrics_port: (args.metrics_port != 0).then_some(args.metrics_port),
        health_port: (args.health_port != 0).then_some(args.health_port),
        listen: args
            .flows_listen
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(|a| {
                if a.starts_with(':') {
                    format!("0.0.0.0{a}")
                } else {
                    a.to_string()
                }
            }),
        api_socket: args.api_socket.clone().or_else(|| {
            args.kubernetes
                .then(|| std::path::PathBuf::from("/var/run/tollway/agent.sock"))
        }),
    };
    if args.kubernetes {
        if !matches!(args.lb_algorithm.as_str(), "random" | "maglev") {
            bail!(
                "--lb-algorithm {:?}: expected random or maglev",
                args.lb_algorithm
            );
        }
        let opts = tollway_agent::KubeOptions {
            node: args.node.clone(),
            kubeconfig: args.kubeconfig,
            cluster: args.cluster_name.clone(),
            uplink: args.uplink,
            cgroup: args.socket_lb_cgroup,
            lb: tollway_lab::LbSettings {
                algorithm: args.lb_algorithm,
                maglev_table_size: args.maglev_table_size,
                socket_lb: !args.no_socket_lb && args.socket_lb,
            },
            node_port_range: args.node_port_range,
            cni_agent_dir: args.cni_agent_dir,
            auto_direct_node_routes: args.auto_direct_node_routes,
            namespace: args.k8s_namespace,
            kube_proxy_replacement: args.kube_proxy_replacement,
            identity_gc_interval: args.identity_gc_interval,
            identity_gc_grace: args.identity_gc_grace,
        };
        tollway_agent::run_kubernetes(opts, flow_cfg).with_context(|| {
            format!(
                "agent of node {} in Kubernetes cluster {}",
                args.node, args.cluster_name
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    tollway_agent::run(lab, &args.node, flow_cfg)
        .with_context(|| format!("agent of node {} in lab {lab}", args.node))?;
    Ok(ExitCode::SUCCESS)
}

/// `tollway status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    node: NodeArg,
    /// The details block, programs and maps.
    #[arg(long)]
    verbose: bool,
    /// Output: json.
    #[arg(short = 'o', long)]
    output: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusJson {
    node: String,
    kube_proxy_replacement: bool,
    reason: Option<String>,
    agent: Option<AgentStatus>,
    maps: Vec<tollway_datapath::lb::MapFill>,
    drops: Vec<DropCount>,
}

#[derive(serde::Serialize)]
struct DropCount {
    reason: String,
    code: u8,
    description: String,
    count: u64,
}

/// Show the datapath's status, as `cilium status` does.
pub fn status(lab: &str, args: StatusArgs) -> Result<ExitCode> {
    let (cfg, paths, node) = resolve(lab, &args.node)?;
    let agent = AgentStatus::read(&paths.node_dir(&node));
    let agent_pid = agent
        .as_ref()
        .map(|a| a.pid as i32)
        .filter(|p| tollway_lab::sys::process::alive(*p));
    let maps = LbMaps::open(&paths.bpf_node_dir(&node)).ok();
    let (kpr, reason) = match (&agent, agent_pid, &maps) {
        (_, _, None) => (false, Some("the datapath is not loaded".to_string())),
        (None, _, _) => (false, Some("the agent has not reported yet".to_string())),
        (Some(_), None, Some(_)) => (
            true,
            Some(
                "agent not running: the datapath keeps forwarding, changes wait for the agent"
                    .to_string(),
            ),
        ),
        (Some(a), Some(_), Some(_)) if !a.kube_proxy_replacement => (
            false,
            Some(
                "disabled: ClusterIPs at the pod veths only; kube-proxy handles NodePort, LoadBalancer and external IPs (kubeProxyReplacement=false)".into(),
            ),
        ),
        (Some(_), Some(_), Some(_)) => (true, None),
    };
    let fills = maps.as_ref().map(LbMaps::fill).unwrap_or_default();
    let drops: Vec<DropCount> = maps
        .as_ref()
        .and_then(|m| m.drop_counts().ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(code, count)| {
            let r = tollway_abi::DropReason::from_code(code);
            DropCount {
                reason: r.map_or(format!("UNKNOWN_{code}"), |r| r.name().to_string()),
                code,
                description: r.map_or(String::new(), |r| r.description().to_string()),
                count,
            }
        })
        .collect();
    if json_flag(&args.output)? {
        let j = StatusJson {
            node,
            kube_proxy_replacement: kpr,
            reason,
            agent,
            maps: fills,
            drops,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(ExitCode::SUCCESS);
    }
    let node_ip = match &cfg {
        Some(cfg) => cfg.node(&node)?.ip.to_string(),
        None => agent
            .as_ref()
            .map(|a| a.node_ip.clone())
            .unwrap_or_default(),
    };
    let kube = agent.as_ref().and_then(|a| a.kubernetes.as_ref());
    let scope = if kube.is_some() { "cluster" } else { "lab" };
    println!("Node:                    {node} ({scope} {lab})");
    println!("KVStore:                 Disabled");
    match kube {
        Some(k) => println!("Kubernetes:              {}", kube_line(k)),
        None => println!(
            "Kubernetes:              Ok   (lab file store {})",
            paths.store_dir().display()
        ),
    }
    let uplink = agent.as_ref().map_or("eth0", |a| a.uplink.as_str());
    let kpr_line = if kpr {
        format!("True   [{uplink}   {node_ip} (Direct Routing)]")
    } else {
        "False".to_string()
    };
    println!("KubeProxyReplacement:    {kpr_line}");
    if let Some(r) = &reason {
        println!("                         ({r})");
    }
    match (&agent, agent_pid) {
        (Some(a), Some(pid)) => println!(
            "Agent:                   Ok   (pid {pid}, started {}, last sync {} ops in {}us)",
            a.started, a.sync.ops, a.sync.duration_us
        ),
        (Some(_), None) => println!(
            "Agent:                   NOT running ({} restarts it)",
            if kube.is_some() {
                "the kubelet"
            } else {
                "the lab daemon"
            }
        ),
        (None, _) => println!("Agent:                   NOT reported"),
    }
    if let Some(a) = &agent {
        println!(
            "Services:                {} frontends, {} backends",
            a.sync.frontends, a.sync.backends
        );
        let p = &a.policy;
        println!(
            "Policy:                  {} rules, {} identities; {}/{} endpoints enforce ingress/egress{}",
            p.rules,
            p.identities,
            p.enforcing_ingress,
            p.enforcing_egress,
            if p.errors.is_empty() {
                String::new()
            } else {
                format!(" [{} error(s): {}]", p.errors.len(), p.errors.join("; "))
            }
        );
        println!(
            "Endpoints:               {} ready, ipcache {} prefixes",
            p.endpoints, p.ipcache
        );
        match &a.node_routes {
            Some(r) => println!(
                "Routing:                 Network: Native   Host: Legacy   Node routes: {} (autoDirectNodeRoutes){}{}",
                r.routes.len(),
                if r.warnings.is_empty() {
                    String::new()
                } else {
                    format!(", {} node(s) not on link", r.warnings.len())
                },
                r.error
                    .as_deref()
                    .map(|e| format!(" [error: {e}]"))
                    .unwrap_or_default()
            ),
            None => println!("Routing:                 Network: Native   Host: Legacy"),
        }
        let c = &a.cni_endpoints;
        if kube.is_some() || c.records > 0 {
            println!(
                "CNI:                     {} endpoint records in {}{}{}",
                c.records,
                c.dir,
                if c.pods_without_record.is_empty() {
                    String::new()
                } else {
                    format!(", {} local pod(s) without one", c.pods_without_record.len())
                },
                if c.unreadable.is_empty() {
                    String::new()
                } else {
                    format!(", {} unreadable", c.unreadable.len())
                }
            );
        }
        println!(
            "Conntrack GC:            interval {:.0}s, last sweep deleted {} of {}{}",
            a.gc.interval_seconds,
            a.gc.last_deleted,
            a.gc.last_entries,
            a.gc.full_warning
                .as_deref()
                .map(|w| format!(" [{w}]"))
                .unwrap_or_default()
        );
        // Like `cilium status`'s Hubble line. The events config is read
        // from the map (it may have been changed since the agent started).
        let live = tollway_datapath::lb::EventMaps::open(&paths.bpf_node_dir(&node))
            .ok()
            .and_then(|m| m.config().ok());
        let mut flows = a.flows.clone();
        if let (Some(f), Some(c)) = (flows.as_mut(), live) {
            f.enabled = c.enabled != 0;
            f.aggregation = tollway_datapath::lb::aggregation_name(c.level).to_string();
        }
        match &flows {
            Some(f) if f.enabled => println!(
                "Hubble:                  Ok   Current/Max Flows: {}/{} ({:.2}%), Flows seen: {}, Lost events: {}, Aggregation: {}{}",
                f.stored,
                f.capacity,
                if f.capacity > 0 {
                    f.stored as f64 * 100.0 / f.capacity as f64
                } else {
                    0.0
                },
                f.seen,
                f.lost_events,
                f.aggregation,
                f.metrics
                    .as_deref()
                    .map(|m| format!(", Metrics: {m}"))
                    .unwrap_or_default()
            ),
            Some(_) => {
                println!("Hubble:                  Disabled (flow events are off in the datapath)")
            }
            None => println!(
                "Hubble:                  NOT running (the flow service did not start; see the agent's log)"
            ),
        }
    }
    if !args.verbose {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(k) = kube {
        println!("Kubernetes Details:");
        for kind in &k.kinds {
            let state = match (&kind.error, kind.served, kind.synced) {
                (Some(e), _, _) => format!("error: {e}"),
                (None, false, _) => "not served (CRD not installed?)".to_string(),
                (None, true, true) => "synced".to_string(),
                (None, true, false) => "listing".to_string(),
            };
            println!("  {:<32} {:>6} objects   {state}", kind.kind, kind.objects);
        }
        for r in &k.recent_rejections {
            println!("  refused: {r}");
        }
        if let Some(e) = &k.identity_error {
            println!("  identity allocation: {e}");
        }
        println!(
            "  identities: {} created, {} reclaimed from the garbage collection by this agent",
            k.identities_created, k.identities_reclaimed
        );
        match &k.identity_gc {
            Some(g) => println!("  identity GC: {}", identity_gc_line(g)),
            None => println!("  identity GC: off (the agent has no node name)"),
        }
    }
    if let Some(r) = agent.as_ref().and_then(|a| a.node_routes.as_ref()) {
        println!("Node Routes:");
        for route in &r.routes {
            println!("  {route}");
        }
        for w in &r.warnings {
            println!("  skipped: {w}");
        }
    }
    if let Some(a) = &agent {
        let c = &a.cni_endpoints;
        if !c.pods_without_record.is_empty() || !c.unreadable.is_empty() {
            println!("CNI Endpoints:");
        }
        for p in &c.pods_without_record {
            println!("  no CNI endpoint record for pod {p} (no programs on its veth)");
        }
        for u in &c.unreadable {
            println!("  unreadable CNI endpoint record: {u}");
        }
    }
    if let Some(a) = &agent {
        println!("KubeProxyReplacement Details:");
        println!(
            "  Status:                 {}",
            if kpr { "True" } else { "False" }
        );
        println!(
            "  Socket LB:              {}",
            if a.socket_lb { "Enabled" } else { "Disabled" }
        );
        let coverage = a
            .programs
            .iter()
            .find(|p| p.hook.starts_with("cgroup"))
            .and_then(|p| p.targets.first())
            .map_or_else(
                || format!("the pod cgroups of {node}"),
                |c| format!("cgroup {c}"),
            );
        println!("  Socket LB Coverage:     Full ({coverage})");
        println!(
            "  Devices:                {}   {} (Direct Routing)",
            a.uplink, a.node_ip
        );
        println!("  Mode:                   SNAT");
        let sel = if a.algorithm == "maglev" {
            format!("Maglev (Table Size: {})", a.maglev_table_size)
        } else {
            format!(
                "Random   (Maglev per service, Table Size: {})",
                a.maglev_table_size
            )
        };
        println!("  Backend Selection:      {sel}");
        println!("  Session Affinity:       Enabled");
        println!("  Graceful Termination:   Enabled");
        println!("  NAT46/64 Support:       Disabled");
        println!("  Services:");
        println!("  - ClusterIP:      Enabled");
        if a.nodeport {
            println!("  - NodePort:       Enabled (Range: {})", a.node_port_range);
        } else {
            println!("  - NodePort:       Disabled");
        }
        // Served to pods and, at the uplink, to clients outside the
        // cluster whose packets reach the node addressed to them.
        let external = if a.kube_proxy_replacement && a.nodeport {
            "Enabled"
        } else {
            "Disabled"
        };
        println!("  - LoadBalancer:   {external}");
        println!("  - externalIPs:    {external}");
        println!("  - HostPort:       Disabled");
        if !a.health_check_node_ports.is_empty() || !a.health_check_errors.is_empty() {
            println!("  Health-check node ports (port service local-endpoints):");
            for h in &a.health_check_node_ports {
                println!("  - {h}");
            }
            for e in &a.health_check_errors {
                println!("  - cannot serve {e}");
            }
        }
        println!("Programs:");
        for p in &a.programs {
            let shown: Vec<&str> = p.targets.iter().take(4).map(String::as_str).collect();
            let more = p.targets.len().saturating_sub(4);
            println!(
                "  {:<16} {:<22} {}{}",
                p.program,
                p.hook,
                shown.join(", "),
                if more > 0 {
                    format!(" (+{more})")
                } else {
                    String::new()
                }
            );
        }
        if !a.warnings.is_empty() {
            println!("Warnings:");
            for w in &a.warnings {
                println!("  {w}");
            }
        }
    }
    println!(
        "BPF Maps:   dynamic sizing: off   (pinned at {})",
        paths.bpf_node_dir(&node).display()
    );
    println!("  {:<20} {:>10} {:>10}", "Name", "Size", "In use");
    for f in &fills {
        println!("  {:<20} {:>10} {:>10}", f.name, f.max_entries, f.in_use);
    }
    for f in agent.iter().flat_map(|a| a.policy_maps.iter()) {
        println!("  {:<20} {:>10} {:>10}", f.name, f.max_entries, f.in_use);
    }
    if !drops.is_empty() {
        println!("Drops:");
        for d in &drops {
            println!(
                "  {:<24} ({:>3}) {:>10}   {}",
                d.reason, d.code, d.count, d.description
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A node whose agent runs with `--kubernetes --cluster-name <lab>`: no
/// lab configuration, but a status file that says so.
fn kube_mode_node(lab: &str, node: &NodeArg) -> Option<(LabPaths, String)> {
    let name = node
        .node
        .clone()
        .or_else(|| std::env::var("K8S_NODE_NAME").ok())
        .filter(|n| !n.is_empty())?;
    let paths = LabPaths::new(lab);
    let status = AgentStatus::read(&paths.node_dir(&name))?;
    status.kubernetes.is_some().then_some((paths, name))
}

/// `cilium status`'s Kubernetes line, for an agent fed by the API.
fn kube_line(k: &tollway_agent::KubeReport) -> String {
    let version = k.server_version.as_deref().unwrap_or("unknown version");
    let refused = if k.rejected > 0 {
        format!(", {} object(s) refused", k.rejected)
    } else {
        String::new()
    };
    match (k.connected, k.synced) {
        (true, true) => format!(
            "Ok   {version} ({}; last event {}{refused})",
            k.api_server,
            k.last_event.as_deref().unwrap_or("none")
        ),
        (true, false) => format!("Syncing   {version} ({}: first lists)", k.api_server),
        (false, _) => format!(
            "Disconnected   ({}: {} at {}; the last state is kept, the datapath keeps forwarding)",
            k.api_server,
            k.last_error.as_deref().unwrap_or("no answer"),
            k.last_error_at.as_deref().unwrap_or("?")
        ),
    }
}

/// The identity garbage collection, as `tollway status --verbose` shows
/// it.
fn identity_gc_line(g: &tollway_kube::IdentityGcReport) -> String {
    let every = format!("every {}s, grace {}s", g.interval_seconds, g.grace_seconds);
    let who = match g.collector.as_deref() {
        Some(c) if c == g.node => format!("run by this node ({c}, the lowest node name), {every}"),
        Some(c) => format!("run by {c}'s agent (the lowest node name), not here"),
        None => "waiting for the Node objects".to_string(),
    };
    let mut line = format!(
        "{who}; {} passes: {} marked, {} unmarked, {} deleted, {} conflicts, {} waiting for the grace; last pass {}",
        g.passes,
        g.marked,
        g.unmarked,
        g.deleted,
        g.conflicts,
        g.waiting,
        g.last_pass.as_deref().unwrap_or("none")
    );
    if let Some(e) = &g.last_error {
        line.push_str(&format!(
            "; last error at {}: {e}",
            g.last_error_at.as_deref().unwrap_or("?")
        ));
    }
    line
}

/// `tollway bpf`.
#[derive(Args, Debug)]
pub struct BpfArgs {
    #[command(subcommand)]
    command: BpfCommand,
}

#[derive(Subcommand, Debug)]
enum BpfCommand {
    /// Load-balancing maps.
    Lb {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Connection tracking.
    Ct {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Address → identity map.
    Ipcache {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Endpoints' policy tries.
    Policy {
        #[command(subcommand)]
        command: PolicyGet,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyGet {
    /// An endpoint's policy entries with their hit counters.
    Get {
        /// Endpoint id, or a pod (`namespace/name`, or a name with -n).
        endpoint: String,
        /// The pod's namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        node: NodeArg,
        /// Output: json.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ListOnly {
    /// List the entries.
    List {
        #[command(flatten)]
        node: NodeArg,
        /// Output: json.
        #[arg(short = 'o', long)]
        output: Option<String>,
        /// Accepted for `cilium bpf ct list global`.
        #[arg(hide = true)]
        scope: Option<String>,
    },
}

/// `tollway bpf lb list` / `bpf ct list`.
pub fn bpf(lab: &str, args: BpfArgs) -> Result<ExitCode> {
    match args.command {
        BpfCommand::Lb {
            command: ListOnly::List { node, output, .. },
        } => {
            let (_, paths, node) = resolve(lab, &node)?;
            let rows = inspect::lb_list(&open_maps(&paths, &node)?)?;
            if json_flag(&output)? {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", inspect::render_lb_list(&rows));
            }
        }
        BpfCommand::Ct {
            command: ListOnly::List { node, output, .. },
        } => {
            let (_, paths, node) = resolve(lab, &node)?;
            let rows = inspect::ct_list(&open_maps(&paths, &node)?)?;
            if json_flag(&output)? {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", inspect::render_ct_list(&rows));
            }
        }
        BpfCommand::Ipcache {
            command: ListOnly::List { node, output, .. },
        } => return super::policy::bpf_ipcache(lab, &node, &output),
        BpfCommand::Policy {
            command:
                PolicyGet::Get {
                    endpoint,
                    namespace,
                    node,
                    output,
                },
        } => {
            return super::policy::bpf_policy_get(
                lab,
                &endpoint,
                namespace.as_deref(),
                &node,
                &output,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tollway service`.
#[derive(Args, Debug)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ListOnly,
}

/// `tollway service list`.
pub fn service(lab: &str, args: ServiceArgs) -> Result<ExitCode> {
    let ListOnly::List { node, output, .. } = args.command;
    let (_, paths, node) = resolve(lab, &node)?;
    let rows = inspect::lb_list(&open_maps(&paths, &node)?)?;
    if json_flag(&output)? {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", inspect::render_service_list(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tollway install-cni` (the DaemonSet's init container).
#[derive(Args, Debug)]
pub struct InstallCniArgs {
    /// The node whose pod CIDR goes into the configuration.
    #[arg(long, env = "K8S_NODE_NAME")]
    node: String,
    /// The plugin binary to install (this binary, installed as tollway-cni).
    #[arg(long, default_value = "/usr/local/bin/tollway-cni")]
    plugin: std::path::PathBuf,
    /// The runtime's CNI bin directory.
    #[arg(long, default_value = "/opt/cni/bin")]
    bin_dir: std::path::PathBuf,
    /// The configuration template (without the pod CIDR).
    #[arg(long)]
    conf: std::path::PathBuf,
    /// The runtime's CNI configuration directory.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: std::path::PathBuf,
    /// The node's pod CIDR (default: the Node object's spec.podCIDR, asked
    /// from the API).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// A kubeconfig (default: in-cluster, else $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
}

/// Installs the CNI plugin and its configuration on this node.
pub fn install_cni(args: InstallCniArgs) -> Result<ExitCode> {
    let pod_cidr = match args.pod_cidr {
        Some(c) => c,
        None => {
            let spec = match args.kubeconfig {
                Some(p) => tollway_kube::ClientSpec::Kubeconfig(p),
                None => tollway_kube::ClientSpec::Infer,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(tollway_kube::node_pod_cidr(spec, &args.node))
                .with_context(|| format!("reading node {}'s pod CIDR", args.node))?
                .with_context(|| {
                    format!(
                        "node {} has no spec.podCIDR (run the controller manager with --allocate-node-cidrs, or pass --pod-cidr)",
                        args.node
                    )
                })?
        }
    };
    let out = tollway_cni::install::install(&tollway_cni::install::InstallOptions {
        plugin: args.plugin,
        bin_dir: args.bin_dir,
        conf: args.conf,
        conf_dir: args.conf_dir,
        pod_cidr: pod_cidr.clone(),
    })?;
    println!(
        "installed {} and {} (pod CIDR {pod_cidr})",
        out.plugin.display(),
        out.conf.display()
    );
    Ok(ExitCode::SUCCESS)
}
