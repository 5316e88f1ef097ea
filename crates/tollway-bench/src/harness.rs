//! `tollway bench service-lb`: one run in a lab of its own, the same server
//! and client pods throughout, every path measured against the same server.
//!
//! Per size N:
//! 1. Tollway: N Services (one endpoint each: the server pod) in one
//!    `tollway apply -f -`, timed until both agents report them; the direct
//!    path, the socket LB and the tc path measured in alternating rounds;
//!    one service's port changed (several times), timed until both nodes'
//!    maps have it; the services deleted again.
//! 2. For each iptables backend: kube-proxy's rules for N services
//!    (VIPs outside the lab's service CIDR, so the eBPF datapath passes them
//!    untouched) restored into node-1's namespace and timed; the last
//!    service measured; kube-proxy's partial sync for one changed service
//!    timed; the rules removed.
//!
//! The lab is taken down at the end, on error and on Ctrl-C.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tollway_agent::AgentStatus;
use tollway_datapath::lb::LbMaps;
use tollway_lab::{LabConfig, LabPaths};

use crate::client::{ClientReport, Mode};
use crate::error::BenchError;
use crate::kubeproxy::{self, ProxierConfig, ServicePort};
use crate::progress::{Progress, catch_interrupts, interrupted};
use crate::report::{
    ChangeSample, IptablesLoad, Machine, Measure, NodeLoad, Params, PathKind, Report, Row,
    SizeResult, TollwayLoad, render_table, render_verdicts, verdicts,
};
use crate::server::{REQUEST_LEN, RESPONSE_LEN};
use crate::stats::{Latency, median, ratio};

/// The benchmark's namespace.
pub const NAMESPACE: &str = "bench";
/// The server's port (the services' targetPort).
pub const SERVER_PORT: u16 = 8000;
/// The services' port.
pub const SERVICE_PORT: u16 = 80;
/// The port a timed change moves the measured service to (and back).
pub const CHANGED_PORT: u16 = 81;
/// Where the clients run.
pub const CLIENT_NODE: &str = "node-1";
/// Where the server runs.
pub const SERVER_NODE: &str = "node-2";
/// First VIP of the iptables services (a range the lab does not serve).
pub const IPTABLES_VIP_BASE: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 1);
/// Most services a run can have (the iptables VIPs are in a /16).
pub const MAX_SIZE: usize = 60_000;

pub(crate) const NODES: [&str; 2] = ["node-1", "node-2"];
pub(crate) const SOCK_POD: &str = "client-sock";
const TC_POD: &str = "client-tc";
pub(crate) const SERVER_POD: &str = "server";

/// An iptables backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-legacy-restore` (x_tables).
    Legacy,
    /// `iptables-nft-restore` (nf_tables).
    Nft,
}

impl Backend {
    /// `legacy` / `nft`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy-restore",
            Backend::Nft => "iptables-nft-restore",
        }
    }

    fn path(self) -> PathKind {
        match self {
            Backend::Legacy => PathKind::IptablesLegacy,
            Backend::Nft => PathKind::IptablesNft,
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "legacy" => Ok(Backend::Legacy),
            "nft" => Ok(Backend::Nft),
            o => Err(format!("unknown iptables backend {o:?} (legacy, nft)")),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ServiceLbOptions {
    /// The `tollway` binary (the harness drives the lab through it).
    pub tollway: PathBuf,
    /// Service counts, in order.
    pub sizes: Vec<usize>,
    /// Time measured per path and mode, split over `rounds`.
    pub duration: Duration,
    /// Rounds (paths alternate between rounds).
    pub rounds: usize,
    /// Warm-up of each client run.
    pub warmup: Duration,
    /// iptables backends.
    pub iptables: Vec<Backend>,
    /// Timed one-service changes per size.
    pub changes: usize,
    /// Longest an `iptables-restore` may take.
    pub restore_timeout: Duration,
    /// Where the JSON goes.
    pub out: PathBuf,
    /// Pin the client and the server to this CPU (both to the same one).
    pub cpu: Option<usize>,
}

impl ServiceLbOptions {
    fn check(&self) -> Result<(), BenchError> {
        if self.sizes.is_empty() {
            return Err(BenchError::Usage("--sizes: give at least one size".into()));
        }
        if let Some(s) = self.sizes.iter().find(|s| **s == 0 || **s > MAX_SIZE) {
            return Err(BenchError::Usage(format!(
                "--sizes: {s} is not in 1..={MAX_SIZE}"
            )));
        }
        if self.rounds == 0 {
            return Err(BenchError::Usage("--rounds must be at least 1".into()));
        }
        if self.duration.as_secs_f64() / (self.rounds as f64) < 0.05 {
            return Err(BenchError::Usage(
                "--duration-s / --rounds must leave at least 50 ms per round".into(),
            ));
        }
        Ok(())
    }
}

/// A finished command.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

pub(crate) fn tail(s: &str, n: usize) -> String {
    let t = s.trim();
    let start = t.char_indices().rev().nth(n).map_or(0, |(i, _)| i);
    t[start..].replace('\n', " | ")
}

pub(crate) fn head(s: &str, n: usize) -> String {
    s.trim().chars().take(n).collect()
}

/// Spawn `cmd` (from a thread in network namespace `netns`, so the child
/// starts there), feed it `stdin`, and wait at most `timeout`, killing it
/// then or on Ctrl-C. The time is measured from just before the spawn to
/// the moment its exit was seen.
pub(crate) fn run_cmd(
    mut cmd: Command,
    what: &str,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    netns: Option<&str>,
) -> Result<Finished, BenchError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child: Child = match netns {
        None => cmd
            .spawn()
            .map_err(|e| BenchError::io("starting", what.to_string(), e))?,
        Some(ns) => {
            let path = format!("/var/run/netns/{ns}");
            std::thread::scope(|s| {
                s.spawn(|| -> Result<Child, BenchError> {
                    let f = std::fs::File::open(&path)
                        .map_err(|e| BenchError::io("opening", path.clone(), e))?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                        BenchError::io("entering", path.clone(), std::io::Error::from(e))
                    })?;
                    cmd.spawn()
                        .map_err(|e| BenchError::io("starting", what.to_string(), e))
                })
                .join()
                .unwrap_or_else(|_| Err(BenchError::Lab("spawning thread panicked".into())))
            })?
        }
    };
    let writer = stdin.and_then(|data| {
        child.stdin.take().map(|mut w| {
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            })
        })
    });
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                s = String::from_utf8_lossy(&buf).into_owned();
            }
            s
        })
    };
    let out_t = reader(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err_t = reader(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = started + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) => {}
            Err(e) => break Err(BenchError::io("waiting for", what.to_string(), e)),
        }
        if interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            break Err(BenchError::Interrupted);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Err(BenchError::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let elapsed = started.elapsed();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    let status = status?;
    // Ctrl-C reaches the children too: their failure is the interrupt.
    if interrupted() {
        return Err(BenchError::Interrupted);
    }
    Ok(Finished {
        status,
        stdout,
        stderr,
        elapsed,
    })
}

pub(crate) fn check_ok(f: Finished, what: &str) -> Result<Finished, BenchError> {
    if f.status.success() {
        Ok(f)
    } else {
        Err(BenchError::Command {
            command: what.to_string(),
            status: f.status.to_string(),
            stderr: tail(&f.stderr, 600),
        })
    }
}

/// Poll `f` every `every` until it gives a value, at most `timeout`.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>, BenchError>,
) -> Result<T, BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if interrupted() {
            return Err(BenchError::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(every);
    }
}

/// The lab, driven through the `tollway` binary; taken down on drop.
pub(crate) struct Lab {
    pub(crate) bin: PathBuf,
    pub(crate) name: String,
    pub(crate) paths: LabPaths,
    /// Whether [`Lab::down`] has something to do.
    pub(crate) up: bool,
}

impl Lab {
    /// Lab `name`, driven through `bin`; not up yet.
    pub(crate) fn new(bin: PathBuf, name: String) -> Lab {
        Lab {
            bin,
            paths: LabPaths::new(&name),
            name,
            up: false,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--lab").arg(&self.name).args(args);
        c
    }

    pub(crate) fn what(args: &[&str]) -> String {
        let mut s = format!("tollway {}", args.join(" "));
        if s.len() > 160 {
            s.truncate(160);
            s.push_str("...");
        }
        s
    }

    /// Run `tollway --lab NAME ARGS`; fail unless it exits 0.
    pub(crate) fn tw(
        &self,
        args: &[&str],
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Finished, BenchError> {
        let what = Self::what(args);
        let f = run_cmd(self.command(args), &what, stdin, timeout, None)?;
        check_ok(f, &what)
    }

    pub(crate) fn json(&self, args: &[&str]) -> Result<serde_json::Value, BenchError> {
        let f = self.tw(args, None, Duration::from_secs(60))?;
        serde_json::from_str(f.stdout.trim()).map_err(|e| BenchError::Output {
            command: Self::what(args),
            reason: e.to_string(),
            output: head(&f.stdout, 300),
        })
    }

    /// Brings the lab up with `nodes` nodes (a leftover of a killed run
    /// with the same name is removed first); [`Lab::down`] takes it down.
    pub(crate) fn bring_up(&mut self, nodes: usize) -> Result<(), BenchError> {
        let _ = self.tw(&["lab", "down"], None, Duration::from_secs(120));
        self.up = true;
        let n = nodes.to_string();
        self.tw(
            &["lab", "up", "--nodes", &n],
            None,
            Duration::from_secs(180),
        )?;
        Ok(())
    }

    /// Applies `manifest` and waits until every pod of `namespace` is Ready.
    pub(crate) fn start_pods(&self, manifest: String, namespace: &str) -> Result<(), BenchError> {
        self.tw(
            &["apply", "-f", "-"],
            Some(manifest.into_bytes()),
            Duration::from_secs(60),
        )?;
        self.tw(
            &[
                "wait",
                "--for=condition=Ready",
                "pod",
                "--all",
                "-n",
                namespace,
                "--timeout",
                "120s",
            ],
            None,
            Duration::from_secs(150),
        )?;
        Ok(())
    }

    pub(crate) fn agent(&self, node: &str) -> Option<AgentStatus> {
        AgentStatus::read(&self.paths.node_dir(node))
    }

    pub(crate) fn down(&mut self) {
        if !self.up {
            return;
        }
        // Out of the terminal's process group: a second Ctrl-C must not
        // stop the cleanup.
        let mut c = self.command(&["lab", "down"]);
        c.process_group(0);
        match c.stdout(Stdio::null()).stderr(Stdio::piped()).output() {
            Ok(o) if o.status.success() => self.up = false,
            Ok(o) => eprintln!(
                "warning: `tollway --lab {} lab down` failed: {}",
                self.name,
                tail(&String::from_utf8_lossy(&o.stderr), 400)
            ),
            Err(e) => eprintln!(
                "warning: cannot run `tollway --lab {} lab down`: {e}",
                self.name
            ),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

/// The pinned LB maps of both nodes, for exact "is it in the maps yet".
struct Maps {
    nodes: Vec<(String, LbMaps)>,
}

impl Maps {
    fn open(paths: &LabPaths) -> Result<Maps, BenchError> {
        let mut nodes = Vec::new();
        for n in NODES {
            let m = LbMaps::open(&paths.bpf_node_dir(n))
                .map_err(|e| BenchError::Lab(format!("opening the maps of {n}: {e}")))?;
            nodes.push((n.to_string(), m));
        }
        Ok(Maps { nodes })
    }

    /// Whether a node's maps have TCP frontend `ip:port` with a backend.
    fn has(m: &LbMaps, ip: Ipv4Addr, port: u16) -> bool {
        let key = tollway_abi::Lb4Key {
            address: tollway_abi::be32(ip),
            dport: tollway_abi::be16(port),
            backend_slot: 0,
            proto: 6,
            scope: tollway_abi::TW_LB_SCOPE_EXT,
            pad: [0; 2],
        };
        m.services.get(&key, 0).is_ok_and(|s| s.count > 0)
    }

    /// Every node has `ip:new` and none has `ip:old`.
    fn moved(&self, ip: Ipv4Addr, old: u16, new: u16) -> bool {
        self.nodes
            .iter()
            .all(|(_, m)| Self::has(m, ip, new) && !Self::has(m, ip, old))
    }
}

/// The store's resource version (first number of its version file; 0 if
/// unreadable).
fn store_version(store_dir: &Path) -> u64 {
    std::fs::read_to_string(store_dir.join("version"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A measurement being merged over rounds.
#[derive(Default)]
pub(crate) struct Acc {
    hist: Latency,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    duration_s: f64,
}

impl Acc {
    pub(crate) fn add(&mut self, r: &ClientReport) {
        self.hist.add_buckets(&r.buckets);
        self.ops += r.ops;
        self.errors += r.errors;
        self.duration_s += r.duration_s;
        if self.first_error.is_none() {
            self.first_error.clone_from(&r.first_error);
        }
    }

    /// The merged histogram's non-empty buckets.
    pub(crate) fn buckets(&self) -> Vec<crate::stats::Bucket> {
        self.hist.buckets()
    }

    pub(crate) fn measure(&self) -> Measure {
        Measure {
            ops: self.ops,
            errors: self.errors,
            first_error: self.first_error.clone(),
            duration_s: (self.duration_s * 1000.0).round() / 1000.0,
            rate_ops_s: if self.duration_s > 0.0 {
                (self.ops as f64 / self.duration_s).round()
            } else {
                0.0
            },
            latency: self.hist.summary(),
        }
    }
}

/// One path to measure: from which pod, to where.
#[derive(Clone, Copy)]
struct Target {
    path: PathKind,
    pod: &'static str,
    addr: SocketAddrV4,
}

/// One `tollway bench client` run in pod `pod` of the benchmark's
/// namespace (pinned to `cpu`), to `addr`, for `secs` after `warmup`.
pub(crate) fn run_client(
    lab: &Lab,
    cpu: Option<usize>,
    pod: &str,
    addr: SocketAddrV4,
    mode: Mode,
    secs: f64,
    warmup: Duration,
) -> Result<ClientReport, BenchError> {
    run_client_with(lab, cpu, pod, addr, mode, secs, warmup, &[])
}

/// [`run_client`] with more arguments for the client (`--udp-ports N`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_client_with(
    lab: &Lab,
    cpu: Option<usize>,
    pod: &str,
    addr: SocketAddrV4,
    mode: Mode,
    secs: f64,
    warmup: Duration,
    extra: &[&str],
) -> Result<ClientReport, BenchError> {
    let target = addr.to_string();
    let dur = format!("{secs:.3}");
    let warm = warmup.as_millis().to_string();
    let cpu = cpu.map(|c| c.to_string());
    let mut args = vec![
        "lab",
        "exec",
        "-n",
        NAMESPACE,
        pod,
        "--",
        "tollway",
        "bench",
        "client",
        "--target",
        &target,
        "--mode",
        mode.as_str(),
        "--duration-s",
        &dur,
        "--warmup-ms",
        &warm,
        "-o",
        "json",
    ];
    if let Some(c) = &cpu {
        args.extend(["--cpu", c.as_str()]);
    }
    args.extend(extra);
    let f = lab.tw(
        &args,
        None,
        Duration::from_secs_f64(secs + warmup.as_secs_f64() + 30.0),
    )?;
    serde_json::from_str(f.stdout.trim()).map_err(|e| BenchError::Output {
        command: Lab::what(&args),
        reason: e.to_string(),
        output: head(&f.stdout, 300),
    })
}

/// Both nodes' drop counters, by reason: `[node, reason, count]`.
pub(crate) fn drops(paths: &LabPaths) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for node in NODES {
        let Ok(m) = LbMaps::open(&paths.bpf_node_dir(node)) else {
            continue;
        };
        for (code, count) in m.drop_counts().unwrap_or_default() {
            let reason = tollway_abi::DropReason::from_code(code)
                .map_or(format!("UNKNOWN_{code}"), |r| r.name().to_string());
            out.push((node.to_string(), reason, count));
        }
    }
    out
}

struct Bench<'a> {
    opts: &'a ServiceLbOptions,
    lab: Lab,
    progress: Progress,
    server_ip: Ipv4Addr,
    cluster_cidr: String,
    base_frontends: Vec<usize>,
    report: Report,
}

/// The manifest of service `i` (selecting the server pod) on `port`.
pub fn service_yaml(i: usize, port: u16) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {}, namespace: {NAMESPACE}}}\nspec: {{selector: {{app: bench-server}}, ports: [{{name: http, port: {port}, targetPort: {SERVER_PORT}}}]}}\n",
        service_name(i)
    )
}

/// N Service manifests selecting the server pod.
pub fn services_yaml(n: usize, port_of: impl Fn(usize) -> u16) -> String {
    let mut s = String::with_capacity(n * 190);
    for i in 0..n {
        s.push_str(&service_yaml(i, port_of(i)));
    }
    s
}

/// The name of service `i`.
pub fn service_name(i: usize) -> String {
    format!("lb-{i:05}")
}

/// The VIP of iptables service `i`.
pub fn iptables_vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(IPTABLES_VIP_BASE) + i as u32)
}

fn pods_yaml(cpu: Option<usize>) -> String {
    let pin = cpu.map_or(String::new(), |c| format!(", --cpu, \"{c}\""));
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: {SERVER_POD}
  namespace: {NAMESPACE}
  labels: {{app: bench-server}}
spec:
  nodeName: {SERVER_NODE}
  containers:
  - name: server
    command: [tollway, bench, server, --port, "{SERVER_PORT}"{pin}]
    ports: [{{name: http, containerPort: {SERVER_PORT}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: {SOCK_POD}, namespace: {NAMESPACE}}}
spec:
  nodeName: {CLIENT_NODE}
  containers: [{{name: client, command: [sleep, "86400"]}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: {TC_POD}
  namespace: {NAMESPACE}
  annotations: {{tollway.io/socket-lb: "false"}}
spec:
  nodeName: {CLIENT_NODE}
  containers: [{{name: client, command: [sleep, "86400"]}}]
"#
    )
}

pub(crate) fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let version = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    Machine {
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        mem_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        iptables_legacy: version("iptables-legacy"),
        iptables_nft: version("iptables-nft"),
    }
}

fn notes(opts: &ServiceLbOptions) -> Vec<String> {
    let mut n = vec![
        format!(
            "Machine: {} CPUs shared by the client, the server, both agents and the lab daemon; \
             a VM, so the numbers are noisy (compare ratios from the same run, not across runs).",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        "Latency of one CRR transaction: connect() to close() returned (connect, 32-byte request, \
         32-byte response, close). CRR closes with RST (SO_LINGER 0) so that no TIME_WAIT state \
         piles up (the client's 28k ephemeral ports would run out in seconds). RR: one kept \
         connection, 32-byte request and response."
            .into(),
        match opts.cpu {
            Some(c) => format!(
                "The client and the server are pinned to the same CPU ({c}): a transaction's \
                 latency is then the CPU work of both ends and of the datapath in between, without \
                 cross-CPU wake-ups, which on this VM cost tens of µs and come and go with the \
                 scheduler's placement (unpinned, RR p50 swings between ~22 and ~60 µs from run to \
                 run)."
            ),
            None => "The client and the server are not pinned: RR latency swings with the \
                     scheduler's placement (cross-CPU wake-ups)."
                .to_string(),
        },
        format!(
            "Each path's time is split into {} rounds; within a size the direct, socket-LB and tc \
             paths alternate round by round, so slow drift of the machine hits them alike. Ratios \
             divide by the direct path of the same size in this run.",
            opts.rounds
        ),
        "iptables rows: kube-proxy 1.28's rules (full sync: KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, \
         KUBE-MARK-MASQ, KUBE-POSTROUTING, the filter chains and the jump rules; chain names hashed \
         as kube-proxy does) for N services with one endpoint, VIPs in 10.128.0.0/16 (outside the \
         lab's service CIDR, so Tollway's datapath passes them untouched), restored into node-1's \
         network namespace; the measured service is the last of N in KUBE-SERVICES. They are \
         measured after the Tollway paths of the same size, once their rules are in place (the rules \
         and their conntrack apply to every connection of the node), and removed after."
            .into(),
        "iptables change: kube-proxy's partial sync (`iptables-restore --noflush --counters` of the \
         filter table, the nat table's top-level chains — so all of KUBE-SERVICES — and the changed \
         service's own chains); restore times include starting the restore binary (spawned straight \
         into node-1's namespace)."
            .into(),
        "Tollway load: from the start of `tollway apply -f -` of N Service manifests until both \
         agents report N more frontends (their status file, what `tollway status -o json` shows). \
         Tollway change: the measured service's port moved (80 -> 81 -> 80 ...) with `tollway apply`; \
         one loop, every 100 us while the apply runs, reads the store's version file and looks the \
         frontend up in both nodes' pinned maps. `change_commit_ms` is from the store's commit (the \
         version file changing) until both maps have the new frontend and not the old one; \
         `change_ms` is from the start of the apply until both that and the command's exit; \
         `change_agent_sync_ms` is the agents' own `sync.durationUs` for the change."
            .into(),
    ];
    n.shrink_to_fit();
    n
}

/// Run the whole benchmark; the report is also written to `opts.out`
/// (when the run stops early too, with `complete: false`).
pub fn service_lb(opts: &ServiceLbOptions) -> Result<Report, BenchError> {
    opts.check()?;
    catch_interrupts();
    let name = format!("bench-{}", std::process::id() % 100_000);
    let lab = Lab::new(opts.tollway.clone(), name.clone());
    let report = Report {
        benchmark: "service-lb".into(),
        date: jiff::Timestamp::now().to_string(),
        tollway_version: env!("CARGO_PKG_VERSION").into(),
        machine: machine(),
        params: Params {
            sizes: opts.sizes.clone(),
            duration_s: opts.duration.as_secs_f64(),
            rounds: opts.rounds,
            warmup_ms: opts.warmup.as_millis() as u64,
            iptables: opts.iptables.iter().map(|b| b.name().to_string()).collect(),
            changes: opts.changes,
            lab: name,
            server_port: SERVER_PORT,
            service_port: SERVICE_PORT,
            iptables_vips: format!("{IPTABLES_VIP_BASE} upward (10.128.0.0/16)"),
            request_bytes: REQUEST_LEN,
            response_bytes: RESPONSE_LEN,
            crr_close: "abortive (SO_LINGER 0: RST)".into(),
            cpu: opts.cpu.map_or_else(
                || "not pinned".to_string(),
                |c| format!("client and server pinned to CPU {c}"),
            ),
            kube_proxy_model: "kube-proxy 1.28 iptables mode, --cluster-cidr set, random-fully, \
                               localhost nodeports on"
                .into(),
        },
        notes: notes(opts),
        ..Default::default()
    };
    let mut b = Bench {
        opts,
        lab,
        progress: Progress::new(),
        server_ip: Ipv4Addr::UNSPECIFIED,
        cluster_cidr: String::new(),
        base_frontends: Vec::new(),
        report,
    };
    let result = b.run();
    b.progress.step("taking the lab down");
    b.lab.down();
    b.progress.finish();
    match result {
        Ok(()) => {
            b.report.complete = true;
            b.finalize();
            b.write()?;
            Ok(b.report)
        }
        Err(e) => {
            b.report.error = Some(e.to_string());
            b.finalize();
            if let Err(w) = b.write() {
                eprintln!("warning: {w}");
            }
            if !b.report.rows.is_empty() {
                eprintln!(
                    "partial results ({}):\n{}",
                    b.opts.out.display(),
                    b.report.table
                );
            }
            Err(e)
        }
    }
}

impl Bench<'_> {
    fn finalize(&mut self) {
        self.report.verdicts = verdicts(&self.report.rows);
        self.report.table = render_table(&self.report.rows);
    }

    fn write(&self) -> Result<(), BenchError> {
        crate::report::write_json(&self.opts.out, &self.report)
    }

    fn run(&mut self) -> Result<(), BenchError> {
        self.setup()?;
        let sizes = self.opts.sizes.clone();
        for n in sizes {
            let mut size = SizeResult {
                services: n,
                ..Default::default()
            };
            let mut rows = self.tollway_size(n, &mut size)?;
            for backend in self.opts.iptables.clone() {
                rows.push(self.iptables_size(n, backend, &mut size)?);
            }
            // Ratios against this size's direct path.
            let direct = rows
                .iter()
                .find(|r| r.path == Some(PathKind::Direct))
                .cloned();
            for r in &mut rows {
                let d = direct.as_ref();
                r.crr_p50_vs_direct = ratio(
                    r.crr.as_ref().map(|m| m.latency.p50_us),
                    d.and_then(|d| d.crr.as_ref()).map(|m| m.latency.p50_us),
                );
                r.rr_p50_vs_direct = ratio(
                    r.rr.as_ref().map(|m| m.latency.p50_us),
                    d.and_then(|d| d.rr.as_ref()).map(|m| m.latency.p50_us),
                );
            }
            size.datapath_drops = self.drops();
            if !size.datapath_drops.is_empty() {
                self.progress.line(format!(
                    "  {n:>6} services  datapath drops so far: {:?}",
                    size.datapath_drops
                ));
            }
            self.report.rows.extend(rows);
            self.report.sizes.push(size);
            self.finalize();
            self.progress
                .line(format!("after {n} services:\n{}", self.report.table));
            // Keep what is done even if a later size fails.
            self.write()?;
        }
        self.progress.line(render_verdicts(&self.report.verdicts));
        Ok(())
    }

    fn setup(&mut self) -> Result<(), BenchError> {
        let lab_name = self.lab.name.clone();
        self.progress
            .step(format!("bringing up lab {lab_name} (2 nodes)"));
        self.lab.bring_up(2)?;
        let cfg = LabConfig::load(&self.lab.paths)
            .map_err(|e| BenchError::Lab(e.to_string()))?
            .ok_or_else(|| BenchError::Lab(format!("lab {lab_name} has no config")))?;
        self.cluster_cidr = cfg.cluster_pod_cidr.to_string();
        let last = iptables_vip(MAX_SIZE - 1);
        for vip in [IPTABLES_VIP_BASE, last] {
            if cfg.cluster.service_cidr.contains(&vip) || cfg.cluster_pod_cidr.contains(&vip) {
                return Err(BenchError::Lab(format!(
                    "the iptables VIP range ({IPTABLES_VIP_BASE}..{last}) overlaps the lab's \
                     service CIDR {} or pod CIDR {}",
                    cfg.cluster.service_cidr, cfg.cluster_pod_cidr
                )));
            }
        }
        self.progress
            .step("starting the server (node-2) and client pods (node-1)");
        self.lab.start_pods(pods_yaml(self.opts.cpu), NAMESPACE)?;
        let pod = self
            .lab
            .json(&["get", "pod", SERVER_POD, "-n", NAMESPACE, "-o", "json"])?;
        let ip = pod["status"]["podIP"]
            .as_str()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| BenchError::Output {
                command: "tollway get pod server".into(),
                reason: "no status.podIP".into(),
                output: head(&pod.to_string(), 300),
            })?;
        self.server_ip = ip;
        let direct = SocketAddrV4::new(ip, SERVER_PORT);
        self.progress
            .step(format!("waiting for the server on {direct}"));
        wait_for(
            "the benchmark server to answer",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || Ok(self.probe(SOCK_POD, direct).ok()),
        )?;
        self.progress
            .step("warming up (2 s of CRR on the direct path, not recorded)");
        self.client(SOCK_POD, direct, Mode::Crr, 2.0, Duration::ZERO)?;
        self.progress.step("waiting for both agents");
        let mut base = Vec::new();
        for node in NODES {
            let st = wait_for(
                &format!("the agent of {node}"),
                Duration::from_secs(60),
                Duration::from_millis(50),
                || Ok(self.lab.agent(node)),
            )?;
            base.push(st.sync.frontends);
        }
        self.base_frontends = base;
        self.check_no_iptables()?;
        Ok(())
    }

    /// One short CRR run that must succeed (a reachability check).
    fn probe(&self, pod: &'static str, addr: SocketAddrV4) -> Result<ClientReport, BenchError> {
        let r = self.client(pod, addr, Mode::Crr, 0.1, Duration::ZERO)?;
        if r.ops == 0 || r.errors > 0 {
            return Err(BenchError::Lab(format!(
                "{pod} -> {addr}: {} ok, {} failed ({})",
                r.ops,
                r.errors,
                r.first_error.unwrap_or_default()
            )));
        }
        Ok(r)
    }

    fn client(
        &self,
        pod: &str,
        addr: SocketAddrV4,
        mode: Mode,
        secs: f64,
        warmup: Duration,
    ) -> Result<ClientReport, BenchError> {
        run_client(&self.lab, self.opts.cpu, pod, addr, mode, secs, warmup)
    }

    /// CRR, then RR, on each target, in `rounds` rounds whose order rotates.
    fn measure(
        &self,
        what: &str,
        targets: &[Target],
    ) -> Result<Vec<(Measure, Measure)>, BenchError> {
        let rounds = self.opts.rounds;
        let secs = self.opts.duration.as_secs_f64() / rounds as f64;
        let mut out = Vec::new();
        let mut accs: Vec<[Acc; 2]> = targets.iter().map(|_| Default::default()).collect();
        for (mi, mode) in [Mode::Crr, Mode::Rr].into_iter().enumerate() {
            for round in 0..rounds {
                for k in 0..targets.len() {
                    let i = (round + k) % targets.len();
                    let t = targets[i];
                    self.progress.step(format!(
                        "{what}: {} {} round {}/{rounds} -> {}",
                        t.path.label(),
                        mode.as_str().to_uppercase(),
                        round + 1,
                        t.addr
                    ));
                    let r = self.client(t.pod, t.addr, mode, secs, self.opts.warmup)?;
                    accs[i][mi].add(&r);
                }
            }
        }
        for a in &accs {
            out.push((a[0].measure(), a[1].measure()));
        }
        Ok(out)
    }

    fn result_line(&self, n: usize, path: PathKind, crr: &Measure, rr: &Measure) {
        self.progress.line(format!(
            "  {n:>6} services  {:<18} CRR {:>6.0}/s p50 {:>6.1} p99 {:>7.1} µs | RR p50 {:>6.1} p99 {:>7.1} µs{}",
            path.label(),
            crr.rate_ops_s,
            crr.latency.p50_us,
            crr.latency.p99_us,
            rr.latency.p50_us,
            rr.latency.p99_us,
            if crr.errors + rr.errors > 0 {
                format!("  ({} errors: {})", crr.errors + rr.errors, crr.first_error.clone().or(rr.first_error.clone()).unwrap_or_default())
            } else {
                String::new()
            }
        ));
    }

    /// Neither iptables backend has a rule in node-1 (else the Tollway
    /// numbers would carry iptables' cost).
    fn check_no_iptables(&self) -> Result<(), BenchError> {
        let ns = self.lab.paths.node_netns(CLIENT_NODE);
        let legacy = run_cmd(
            Command::new("iptables-legacy-save"),
            "iptables-legacy-save",
            None,
            Duration::from_secs(60),
            Some(&ns),
        )?;
        let mut nft_cmd = Command::new("nft");
        nft_cmd.args(["list", "ruleset"]);
        let nft = run_cmd(
            nft_cmd,
            "nft list ruleset",
            None,
            Duration::from_secs(60),
            Some(&ns),
        )?;
        let rules = legacy
            .stdout
            .lines()
            .filter(|l| l.starts_with("-A") || l.starts_with("-I"))
            .count();
        if rules > 0 || !nft.stdout.trim().is_empty() {
            return Err(BenchError::Lab(format!(
                "{ns} has packet-filter rules ({rules} iptables-legacy rules; nft: {}): \
                 they would be in every measured path",
                head(&nft.stdout, 200)
            )));
        }
        Ok(())
    }

    /// Both nodes' drop counters, by reason.
    fn drops(&self) -> Vec<(String, String, u64)> {
        drops(&self.lab.paths)
    }

    fn agents_at(&self, want: &[usize]) -> Option<Vec<AgentStatus>> {
        let mut out = Vec::new();
        for (i, node) in NODES.iter().enumerate() {
            let st = self.lab.agent(node)?;
            if st.sync.frontends != want[i] {
                return None;
            }
            out.push(st);
        }
        Some(out)
    }

    fn tollway_size(&self, n: usize, size: &mut SizeResult) -> Result<Vec<Row>, BenchError> {
        let p = &self.progress;
        let want: Vec<usize> = self.base_frontends.iter().map(|b| b + n).collect();
        let manifests = services_yaml(n, |_| SERVICE_PORT);
        p.step(format!(
            "{n} services: tollway apply -f - ({} KiB)",
            manifests.len() / 1024
        ));
        let t0 = Instant::now();
        let applied = self.lab.tw(
            &["apply", "-f", "-"],
            Some(manifests.clone().into_bytes()),
            Duration::from_secs(900),
        )?;
        let apply_s = applied.elapsed.as_secs_f64();
        p.step(format!(
            "{n} services: applied in {apply_s:.2} s; waiting for both agents"
        ));
        let mut loaded: Vec<Option<(f64, AgentStatus)>> = vec![None; NODES.len()];
        wait_for(
            &format!("both agents to load {n} services"),
            Duration::from_secs(900),
            Duration::from_millis(2),
            || {
                for (i, node) in NODES.iter().enumerate() {
                    if loaded[i].is_none()
                        && let Some(st) = self.lab.agent(node)
                        && st.sync.frontends >= want[i]
                    {
                        loaded[i] = Some((t0.elapsed().as_secs_f64(), st));
                    }
                }
                Ok(loaded.iter().all(Option::is_some).then_some(()))
            },
        )?;
        let nodes: Vec<NodeLoad> = loaded
            .into_iter()
            .flatten()
            .zip(NODES)
            .map(|((t, st), node)| NodeLoad {
                node: node.into(),
                loaded_s: (t * 1000.0).round() / 1000.0,
                frontends: st.sync.frontends,
                ops: st.sync.ops,
                sync_ms: st.sync.duration_us as f64 / 1000.0,
            })
            .collect();
        let load_s = nodes.iter().map(|x| x.loaded_s).fold(0.0, f64::max);
        p.line(format!(
            "  {n:>6} services  Tollway loaded in {load_s:.3} s (apply {apply_s:.3} s; agent syncs {})",
            nodes
                .iter()
                .map(|x| format!("{} {:.0} ms", x.node, x.sync_ms))
                .collect::<Vec<_>>()
                .join(", ")
        ));

        let measured = service_name(n - 1);
        let svc = self
            .lab
            .json(&["get", "svc", &measured, "-n", NAMESPACE, "-o", "json"])?;
        let vip: Ipv4Addr = svc["spec"]["clusterIP"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| BenchError::Output {
                command: format!("tollway get svc {measured}"),
                reason: "no spec.clusterIP".into(),
                output: head(&svc.to_string(), 300),
            })?;
        let maps = Maps::open(&self.lab.paths)?;
        wait_for(
            &format!("{vip}:{SERVICE_PORT} in both nodes' maps"),
            Duration::from_secs(60),
            Duration::from_millis(5),
            || {
                Ok(maps
                    .nodes
                    .iter()
                    .all(|(_, m)| Maps::has(m, vip, SERVICE_PORT))
                    .then_some(()))
            },
        )?;
        let vip_addr = SocketAddrV4::new(vip, SERVICE_PORT);
        self.probe(SOCK_POD, vip_addr)?;
        self.probe(TC_POD, vip_addr)?;

        let targets = [
            Target {
                path: PathKind::Direct,
                pod: SOCK_POD,
                addr: SocketAddrV4::new(self.server_ip, SERVER_PORT),
            },
            Target {
                path: PathKind::TollwaySocket,
                pod: SOCK_POD,
                addr: vip_addr,
            },
            Target {
                path: PathKind::TollwayTc,
                pod: TC_POD,
                addr: vip_addr,
            },
        ];
        let results = self.measure(&format!("{n} services"), &targets)?;
        for (t, (crr, rr)) in targets.iter().zip(&results) {
            self.result_line(n, t.path, crr, rr);
        }

        // Timed changes of the measured service's port.
        let store_dir = tollway_lab::LabPaths::new(&self.lab.name).store_dir();
        let mut changes = Vec::new();
        let mut port = SERVICE_PORT;
        for k in 0..self.opts.changes {
            let new = if port == SERVICE_PORT {
                CHANGED_PORT
            } else {
                SERVICE_PORT
            };
            self.progress.step(format!(
                "{n} services: change {}/{}: {measured} port {port} -> {new}",
                k + 1,
                self.opts.changes
            ));
            let before: Vec<u64> = NODES
                .iter()
                .map(|node| self.lab.agent(node).map_or(0, |s| s.sync.resource_version))
                .collect();
            // Only the changed service is applied.
            let one = service_yaml(n - 1, new);
            let version_before = store_version(&store_dir);
            let committed = std::cell::Cell::new(None::<Instant>);
            let t0 = Instant::now();
            // The maps are watched while the apply runs: the apply command
            // goes on for a while after its commit (freeing the whole store
            // it read), and the datapath does not wait for it.
            let (f, e2e) = std::thread::scope(|scope| {
                let apply = scope.spawn(|| {
                    self.lab.tw(
                        &["apply", "-f", "-"],
                        Some(one.into_bytes()),
                        Duration::from_secs(120),
                    )
                });
                let e2e = wait_for(
                    &format!("{vip}:{new} in both nodes' maps"),
                    Duration::from_secs(60),
                    Duration::from_micros(100),
                    || {
                        // The commit and the maps are watched by the same
                        // loop, so both are seen with the same delay.
                        if committed.get().is_none() && store_version(&store_dir) > version_before {
                            committed.set(Some(Instant::now()));
                        }
                        Ok(maps.moved(vip, port, new).then(|| t0.elapsed()))
                    },
                );
                let f = apply
                    .join()
                    .unwrap_or_else(|_| Err(BenchError::Lab("the apply thread panicked".into())));
                (f, e2e)
            });
            let f = f?;
            let seen_in_maps = e2e?;
            let apply_ms = f.elapsed.as_secs_f64() * 1000.0;
            // "With apply" is the longer of the two: a user's change is not
            // done before their command is.
            let e2e = seen_in_maps.max(f.elapsed);
            // From the store's commit (its version file, the last write of
            // the transaction, changing) to both maps changed, as seen by
            // the polling loop (every 100 µs).
            let maps_at = t0 + seen_in_maps;
            let commit_to_maps_ms = committed
                .get()
                .map(|c| maps_at.saturating_duration_since(c))
                .map(|d| (d.as_secs_f64() * 1e5).round() / 100.0);
            // The agents write their status right after the sync.
            let mut agent_sync_ms = Vec::new();
            for (i, node) in NODES.iter().enumerate() {
                let st = wait_for(
                    &format!("the agent of {node} to report the change"),
                    Duration::from_secs(30),
                    Duration::from_millis(1),
                    || {
                        Ok(self
                            .lab
                            .agent(node)
                            .filter(|s| s.sync.resource_version > before[i] && s.sync.ops > 0))
                    },
                );
                match st {
                    Ok(s) => {
                        agent_sync_ms.push((node.to_string(), s.sync.duration_us as f64 / 1000.0))
                    }
                    Err(BenchError::Interrupted) => return Err(BenchError::Interrupted),
                    Err(_) => {}
                }
            }
            changes.push(ChangeSample {
                change: format!("{NAMESPACE}/{measured} port {port} -> {new}"),
                apply_ms: (apply_ms * 100.0).round() / 100.0,
                e2e_ms: Some((e2e.as_secs_f64() * 1e5).round() / 100.0),
                commit_to_maps_ms,
                agent_sync_ms,
            });
            port = new;
        }
        let change_ms = median(&changes.iter().filter_map(|c| c.e2e_ms).collect::<Vec<_>>());
        let commit_ms = median(
            &changes
                .iter()
                .filter_map(|c| c.commit_to_maps_ms)
                .collect::<Vec<_>>(),
        );
        let agent_ms = median(
            &changes
                .iter()
                .filter_map(|c| c.agent_sync_ms.iter().map(|x| x.1).reduce(f64::max))
                .collect::<Vec<_>>(),
        );
        if let Some(c) = change_ms {
            self.progress.line(format!(
                "  {n:>6} services  Tollway one change: {} from the store's commit to both maps, {c:.1} ms including the apply command (median of {}; agent sync {})",
                commit_ms.map_or("?".into(), |a| format!("{a:.2} ms")),
                changes.len(),
                agent_ms.map_or("?".into(), |a| format!("{a:.1} ms"))
            ));
        }

        // Back to nothing, for the next size's load.
        self.progress.step(format!("{n} services: deleting them"));
        self.lab.tw(
            &["delete", "-f", "-", "--timeout", "900s"],
            Some(manifests.into_bytes()),
            Duration::from_secs(960),
        )?;
        let base = self.base_frontends.clone();
        wait_for(
            "both agents to remove the services",
            Duration::from_secs(900),
            Duration::from_millis(20),
            || Ok(self.agents_at(&base)),
        )?;
        size.tollway = Some(TollwayLoad {
            apply_s: (apply_s * 1000.0).round() / 1000.0,
            load_s,
            nodes,
            measured_service: format!("{NAMESPACE}/{measured}"),
            cluster_ip: vip.to_string(),
            changes,
        });
        let mut rows = Vec::new();
        for (t, (crr, rr)) in targets.iter().zip(results) {
            let tw = t.path.is_tollway();
            rows.push(Row {
                services: n,
                path: Some(t.path),
                crr: Some(crr),
                rr: Some(rr),
                load_s: tw.then_some(load_s),
                change_ms: if tw { change_ms } else { None },
                change_agent_sync_ms: if tw { agent_ms } else { None },
                change_commit_ms: if tw { commit_ms } else { None },
                ..Default::default()
            });
        }
        Ok(rows)
    }

    fn restore(
        &self,
        backend: Backend,
        args: &[&str],
        input: &str,
        what: &str,
    ) -> Result<Duration, BenchError> {
        let ns = self.lab.paths.node_netns(CLIENT_NODE);
        let mut cmd = Command::new(backend.restore());
        cmd.args(args);
        let f = run_cmd(
            cmd,
            &format!("{} {}", backend.restore(), args.join(" ")),
            Some(input.as_bytes().to_vec()),
            self.opts.restore_timeout,
            Some(&ns),
        )?;
        let f = check_ok(f, what)?;
        Ok(f.elapsed)
    }

    /// Empty node-1's tables of this backend (and drop nft's tables whole,
    /// so that no hook is left behind).
    fn remove_rules(&self, backend: Backend) -> Result<(), BenchError> {
        self.restore(backend, &["-w", "5"], &kubeproxy::flush_all(), "flushing")?;
        if backend == Backend::Nft {
            let ns = self.lab.paths.node_netns(CLIENT_NODE);
            for table in ["filter", "nat", "mangle"] {
                let mut c = Command::new("nft");
                c.args(["delete", "table", "ip", table]);
                // Absent tables are fine.
                let _ = run_cmd(
                    c,
                    "nft delete table",
                    None,
                    Duration::from_secs(120),
                    Some(&ns),
                )?;
            }
        }
        self.check_no_iptables()
    }

    fn iptables_size(
        &self,
        n: usize,
        backend: Backend,
        size: &mut SizeResult,
    ) -> Result<Row, BenchError> {
        let cfg = ProxierConfig {
            cluster_cidr: Some(self.cluster_cidr.clone()),
            ..Default::default()
        };
        let endpoint = SocketAddrV4::new(self.server_ip, SERVER_PORT);
        let mut services: Vec<ServicePort> = (0..n)
            .map(|i| ServicePort {
                namespace: NAMESPACE.into(),
                name: service_name(i),
                port_name: "http".into(),
                cluster_ip: iptables_vip(i),
                port: SERVICE_PORT,
                endpoints: vec![endpoint],
            })
            .collect();
        let full = kubeproxy::full_sync(&cfg, &services);
        let mut load = IptablesLoad {
            backend: backend.name().into(),
            restore: format!("{} -w 5 -W 100000 --noflush --counters", backend.restore()),
            rules: kubeproxy::rule_count(&full),
            chains: kubeproxy::chain_count(&full),
            bytes: full.len(),
            ..Default::default()
        };
        let mut row = Row {
            services: n,
            path: Some(backend.path()),
            ..Default::default()
        };
        let result =
            self.iptables_inner(n, backend, &cfg, &mut services, &full, &mut load, &mut row);
        // Remove the rules whatever happened (unless interrupted: the lab
        // goes, and its namespaces with them).
        if !matches!(result, Err(BenchError::Interrupted)) {
            self.progress.step(format!(
                "{n} services: removing the iptables-{} rules",
                backend.name()
            ));
            self.remove_rules(backend)?;
        }
        match result {
            Ok(()) => {}
            Err(BenchError::Interrupted) => return Err(BenchError::Interrupted),
            Err(e) => {
                self.progress.line(format!(
                    "  {n:>6} services  iptables-{}: {e}",
                    backend.name()
                ));
                load.error = Some(e.to_string());
                row.note = Some(e.to_string());
            }
        }
        row.load_s = load.full_restore_s;
        row.change_ms = median(&load.change_restore_ms);
        size.iptables.push(load);
        Ok(row)
    }

    #[allow(clippy::too_many_arguments)]
    fn iptables_inner(
        &self,
        n: usize,
        backend: Backend,
        cfg: &ProxierConfig,
        services: &mut [ServicePort],
        full: &str,
        load: &mut IptablesLoad,
        row: &mut Row,
    ) -> Result<(), BenchError> {
        let name = backend.name();
        let args = ["-w", "5", "-W", "100000", "--noflush", "--counters"];
        self.progress.step(format!(
            "{n} services: iptables-{name}: kube-proxy's jump rules"
        ));
        self.restore(
            backend,
            &["-w", "5", "--noflush"],
            &kubeproxy::jump_rules(),
            "jump rules",
        )?;
        self.progress.step(format!(
            "{n} services: iptables-{name}: full restore ({} rules, {} KiB)",
            load.rules,
            full.len() / 1024
        ));
        let took = self.restore(backend, &args, full, "full sync")?;
        load.full_restore_s = Some((took.as_secs_f64() * 1000.0).round() / 1000.0);
        self.progress.line(format!(
            "  {n:>6} services  iptables-{name} full restore: {:.3} s ({} rules, {} chains)",
            took.as_secs_f64(),
            load.rules,
            load.chains
        ));
        let last = n - 1;
        let vip = SocketAddrV4::new(services[last].cluster_ip, SERVICE_PORT);
        self.probe(SOCK_POD, vip)?;
        let t = Target {
            path: backend.path(),
            pod: SOCK_POD,
            addr: vip,
        };
        let results = self.measure(&format!("{n} services"), &[t])?;
        let (crr, rr) = results.into_iter().next().unwrap_or_default();
        self.result_line(n, backend.path(), &crr, &rr);
        row.crr = Some(crr);
        row.rr = Some(rr);

        // kube-proxy's partial sync for one changed service.
        let mut port = SERVICE_PORT;
        for k in 0..self.opts.changes {
            let new = if port == SERVICE_PORT {
                CHANGED_PORT
            } else {
                SERVICE_PORT
            };
            services[last].port = new;
            let partial = kubeproxy::partial_sync(cfg, services, &[last]);
            load.partial_rules = kubeproxy::rule_count(&partial);
            self.progress.step(format!(
                "{n} services: iptables-{name}: partial sync {}/{} ({} rules)",
                k + 1,
                self.opts.changes,
                load.partial_rules
            ));
            let took = self.restore(backend, &args, &partial, "partial sync")?;
            load.change_restore_ms
                .push((took.as_secs_f64() * 1e5).round() / 100.0);
            port = new;
        }
        if self.opts.changes > 0 {
            // The change took effect.
            self.probe(SOCK_POD, SocketAddrV4::new(*vip.ip(), port))?;
            self.progress.line(format!(
                "  {n:>6} services  iptables-{name} one change (partial sync): {:.1} ms (median of {})",
                median(&load.change_restore_ms).unwrap_or(0.0),
                load.change_restore_ms.len()
            ));
        }
        Ok(())
    }
}

/// Where `bench/results/service-lb.json` goes by default.
pub fn default_out() -> &'static Path {
    Path::new("bench/results/service-lb.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_manifests_select_the_server() {
        let y = services_yaml(3, |i| if i == 2 { 81 } else { 80 });
        assert_eq!(y.matches("kind: Service").count(), 3);
        assert!(y.contains("metadata: {name: lb-00002, namespace: bench}"));
        assert!(y.contains("ports: [{name: http, port: 81, targetPort: 8000}]"));
        assert!(y.contains("selector: {app: bench-server}"));
        assert!(pods_yaml(None).contains("labels: {app: bench-server}"));
        assert!(
            pods_yaml(Some(1))
                .contains(r#"command: [tollway, bench, server, --port, "8000", --cpu, "1"]"#)
        );
    }

    #[test]
    fn iptables_vips_stay_in_their_range() {
        assert_eq!(iptables_vip(0), Ipv4Addr::new(10, 128, 0, 1));
        assert_eq!(iptables_vip(29_999), Ipv4Addr::new(10, 128, 117, 48));
        assert_eq!(iptables_vip(MAX_SIZE - 1), Ipv4Addr::new(10, 128, 234, 96));
    }

    #[test]
    fn options_are_checked() {
        let mut o = ServiceLbOptions {
            tollway: "tollway".into(),
            sizes: vec![10],
            duration: Duration::from_secs(5),
            rounds: 5,
            warmup: Duration::from_millis(100),
            iptables: vec![Backend::Legacy],
            changes: 3,
            restore_timeout: Duration::from_secs(60),
            out: default_out().into(),
            cpu: Some(1),
        };
        assert!(o.check().is_ok());
        o.sizes = vec![0];
        assert!(o.check().is_err());
        o.sizes = vec![MAX_SIZE + 1];
        assert!(o.check().is_err());
        o.sizes = vec![10];
        o.rounds = 0;
        assert!(o.check().is_err());
        assert_eq!("nft".parse::<Backend>(), Ok(Backend::Nft));
        assert!("ipvs".parse::<Backend>().is_err());
    }

    #[test]
    fn tails_and_heads() {
        assert_eq!(tail("a\nb\nc", 2), "b | c");
        assert_eq!(head("  abcdef", 3), "abc");
    }
}
