//! The lab part of `tollway bench flows`: the pods, the latency and
//! stream rounds (the event modes taking turns), and the storm.
//!
//! Pods (namespace `bench`): `server` on node-2 and `server-local` on
//! node-1, each running `tollway bench server` with its request/response
//! port (8000), a stream sink (8001) and a UDP sink on port 53; the client
//! pod `client-sock` on node-1, in which every `tollway bench client` run
//! is started (`tollway lab exec`). The client connects to the servers'
//! pod IPs: no service translation.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::FlowsOptions;
use super::agents::{
    ActivityAcc, CpuClock, EventMode, EventSwitch, Gauges, NodeReading, Reading, UdpCounters,
    backlog_drops, round_order, udp_counters,
};
use super::report::{
    CpuUse, FlowsBenchReport, ModeActivity, ModeResult, PathInfo, PathResult, RrRound, StormMode,
    StormPart, StormRun, StormSample, StreamMeasure,
};
use crate::client::{ClientReport, Mode};
use crate::error::BenchError;
use crate::harness::{
    Acc, CLIENT_NODE, Lab, NAMESPACE, NODES, SERVER_NODE, SERVER_POD, SERVER_PORT, SOCK_POD, drops,
    head, run_client_with, wait_for,
};
use crate::progress::Progress;
use crate::stats::ratio;

/// The server pod on the client's node.
pub const LOCAL_SERVER_POD: &str = "server-local";
/// The servers' stream sink.
pub const STREAM_PORT: u16 = 8001;
/// The servers' UDP sink (DNS: its packets are always reported).
pub const DNS_PORT: u16 = 53;
/// The storm's query name (per source port `storm-<i>.…`).
pub const STORM_QUERY: &str = "storm-<port index>.bench.svc.cluster.local";
/// The storm's clients are told to start this long after the harness
/// starts them (their start-up in the pod: `tollway lab exec`).
const STORM_START: Duration = Duration::from_millis(1000);
/// The window opens this long after the clients' start.
pub(crate) const STORM_RAMP: Duration = Duration::from_millis(300);
/// After it closes: the clients still send.
const STORM_TAIL: Duration = Duration::from_millis(1000);
/// Attempts of a storm run whose clients started too late for the window.
const STORM_TRIES: usize = 3;
/// How often the storm's counters are sampled.
const STORM_SAMPLE: Duration = Duration::from_millis(200);

fn pods_yaml(cpu: Option<usize>) -> String {
    let pin = cpu.map_or(String::new(), |c| format!(", --cpu, \"{c}\""));
    let server = |name: &str, node: &str| {
        format!(
            r#"---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {NAMESPACE}
  labels: {{app: bench-server}}
spec:
  nodeName: {node}
  containers:
  - name: server
    command: [tollway, bench, server, --port, "{SERVER_PORT}", --stream-port, "{STREAM_PORT}", --udp-port, "{DNS_PORT}"{pin}]
    ports: [{{name: rr, containerPort: {SERVER_PORT}}}, {{name: stream, containerPort: {STREAM_PORT}}}, {{name: dns, containerPort: {DNS_PORT}, protocol: UDP}}]
"#
        )
    };
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
{}{}---
apiVersion: v1
kind: Pod
metadata:
  name: {SOCK_POD}
  namespace: {NAMESPACE}
  labels: {{app: bench-client}}
spec:
  nodeName: {CLIENT_NODE}
  containers: [{{name: client, command: [sleep, "86400"]}}]
"#,
        server(SERVER_POD, SERVER_NODE),
        server(LOCAL_SERVER_POD, CLIENT_NODE),
    )
}

fn pod_ip(lab: &Lab, name: &str) -> Result<Ipv4Addr, BenchError> {
    let pod = lab.json(&["get", "pod", name, "-n", NAMESPACE, "-o", "json"])?;
    pod["status"]["podIP"]
        .as_str()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| BenchError::Output {
            command: format!("tollway get pod {name}"),
            reason: "no status.podIP".into(),
            output: head(&pod.to_string(), 300),
        })
}

/// One measured path.
#[derive(Clone)]
struct Path {
    info: PathInfo,
    rr: SocketAddrV4,
    stream: SocketAddrV4,
}

/// Stream runs being merged over rounds.
#[derive(Default)]
struct StreamAcc {
    bytes: u64,
    secs: f64,
    rounds: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

impl StreamAcc {
    fn add(&mut self, r: &ClientReport) {
        self.bytes += r.bytes;
        self.secs += r.duration_s;
        self.rounds.push(r.gbit_s);
        self.errors += r.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&r.first_error);
        }
    }

    fn measure(&self) -> StreamMeasure {
        StreamMeasure {
            bytes: self.bytes,
            duration_s: (self.secs * 1000.0).round() / 1000.0,
            gbit_s: if self.secs > 0.0 {
                (self.bytes as f64 * 8.0 / self.secs / 1e9 * 1000.0).round() / 1000.0
            } else {
                0.0
            },
            rounds_gbit_s: self.rounds.clone(),
            errors: self.errors,
            first_error: self.first_error.clone(),
        }
    }
}

struct Bench<'a> {
    opts: &'a FlowsOptions,
    lab: &'a Lab,
    progress: &'a Progress,
}

impl Bench<'_> {
    fn client(
        &self,
        mode: Mode,
        addr: SocketAddrV4,
        secs: f64,
        warmup: Duration,
        extra: &[&str],
    ) -> Result<ClientReport, BenchError> {
        self.client_on(self.opts.cpu, mode, addr, secs, warmup, extra)
    }

    fn client_on(
        &self,
        cpu: Option<usize>,
        mode: Mode,
        addr: SocketAddrV4,
        secs: f64,
        warmup: Duration,
        extra: &[&str],
    ) -> Result<ClientReport, BenchError> {
        run_client_with(self.lab, cpu, SOCK_POD, addr, mode, secs, warmup, extra)
    }

    fn reaches(&self, addr: SocketAddrV4) -> bool {
        self.client(Mode::Rr, addr, 0.1, Duration::ZERO, &[])
            .is_ok_and(|r| r.ops > 0 && r.errors == 0)
    }
}

fn setup(opts: &FlowsOptions, lab: &mut Lab, progress: &Progress) -> Result<Vec<Path>, BenchError> {
    progress.step(format!("bringing up lab {} (2 nodes)", lab.name));
    lab.bring_up(2)?;
    progress.step("starting the servers (node-2, node-1) and the client pod (node-1)");
    lab.start_pods(pods_yaml(opts.cpu), NAMESPACE)?;
    let mut paths = Vec::new();
    let mut add = |name: &str, pod: &str, server_node: &str| -> Result<(), BenchError> {
        let ip = pod_ip(lab, pod)?;
        let rr = SocketAddrV4::new(ip, SERVER_PORT);
        let stream = SocketAddrV4::new(ip, STREAM_PORT);
        paths.push(Path {
            info: PathInfo {
                path: name.into(),
                client_node: CLIENT_NODE.into(),
                server_node: server_node.into(),
                rr_target: rr.to_string(),
                stream_target: stream.to_string(),
            },
            rr,
            stream,
        });
        Ok(())
    };
    add("cross-node", SERVER_POD, SERVER_NODE)?;
    // Always started (the storm's target); measured when asked.
    add("same-node", LOCAL_SERVER_POD, CLIENT_NODE)?;
    Ok(paths)
}

/// Runs the lab part, filling `report` as parts finish; the lab is
/// brought up here (the caller takes it down).
pub(crate) fn run(
    opts: &FlowsOptions,
    lab: &mut Lab,
    progress: &Progress,
    report: &mut FlowsBenchReport,
) -> Result<(), BenchError> {
    let all_paths = setup(opts, lab, progress)?;
    let lab: &Lab = lab;
    let cgroup = lab.paths.cgroup().ok();
    let clock0 = CpuClock::read(cgroup.as_deref());
    let b = Bench {
        opts,
        lab,
        progress,
    };
    for p in &all_paths {
        progress.step(format!("waiting for the server on {}", p.rr));
        wait_for(
            "the benchmark server to answer",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || Ok(b.reaches(p.rr).then_some(())),
        )?;
    }
    progress.step("waiting for both agents' flow APIs");
    let gauges = wait_for(
        "both agents' flow status",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let Ok(g) = Gauges::new(lab) else {
                return Ok(None);
            };
            Ok(g.nodes
                .iter()
                .all(|n| super::agents::flow_status(&n.socket).is_ok())
                .then_some(g))
        },
    )?;
    for g in &gauges.nodes {
        if g.reader.is_none() {
            progress.line(format!(
                "warning: no flow-reader thread found for {}'s agent: its CPU is not reported",
                g.node
            ));
        }
    }
    if let Some(cpu) = opts.agents_cpu {
        for g in &gauges.nodes {
            let n = super::agents::pin_process(g.pid, cpu)?;
            progress.line(format!(
                "{}'s agent (pid {}, {n} threads) pinned to CPU {cpu}",
                g.node, g.pid
            ));
        }
    }
    let mut sw = EventSwitch::open(&lab.paths)?;
    report.events_config_before = sw.saved();
    let paths: Vec<Path> = all_paths
        .iter()
        .filter(|p| opts.same_node || p.info.path != "same-node")
        .cloned()
        .collect();
    report.paths = paths.iter().map(|p| p.info.clone()).collect();

    let result = (|| -> Result<(), BenchError> {
        latency_and_stream(&b, &mut sw, &gauges, &paths, report)?;
        if opts.storm.as_secs_f64() > 0.0 {
            let local = all_paths
                .iter()
                .find(|p| p.info.path == "same-node")
                .map(|p| *p.rr.ip())
                .ok_or_else(|| BenchError::Lab("no same-node server".into()))?;
            storm(&b, &mut sw, &gauges, local, report)?;
        }
        Ok(())
    })();
    let (wall_s, busy, own) = clock0.since(&CpuClock::read(cgroup.as_deref()));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let other = match (busy, own) {
        (Some(b), Some(o)) => Some((b - o).max(0.0)),
        _ => None,
    };
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    report.cpu_use = Some(CpuUse {
        wall_s: r1(wall_s),
        cpus,
        machine_busy_s: busy.map(r1),
        run_s: own.map(r1),
        other_s: other.map(r1),
        other_pct: other.map(|o| r1(o / (wall_s * cpus as f64).max(1e-9) * 100.0)),
    });
    progress.step("restoring the event config");
    report.events_config_restored = sw.restore();
    report.datapath_drops = drops(&lab.paths);
    result
}

fn latency_and_stream(
    b: &Bench<'_>,
    sw: &mut EventSwitch,
    gauges: &Gauges,
    paths: &[Path],
    report: &mut FlowsBenchReport,
) -> Result<(), BenchError> {
    let opts = b.opts;
    let modes = EventMode::ALL;
    // Unrecorded: the first connections, the first stream's window growth.
    sw.set(EventMode::Medium)?;
    for p in paths {
        b.progress
            .step(format!("warming up {} (not recorded)", p.info.path));
        b.client(Mode::Rr, p.rr, 1.0, Duration::ZERO, &[])?;
        b.client(Mode::Stream, p.stream, 0.5, Duration::ZERO, &[])?;
    }
    let rounds = opts.rounds;
    let rr_secs = opts.rr.as_secs_f64() / rounds as f64;
    let st_secs = opts.stream.as_secs_f64() / rounds as f64;
    let n = modes.len();
    let mut rr: Vec<Vec<Acc>> = (0..n)
        .map(|_| paths.iter().map(|_| Acc::default()).collect())
        .collect();
    let mut rr_rounds: Vec<Vec<Vec<RrRound>>> = vec![vec![Vec::new(); paths.len()]; n];
    let mut st: Vec<Vec<StreamAcc>> = (0..n)
        .map(|_| paths.iter().map(|_| StreamAcc::default()).collect())
        .collect();
    let nodes = gauges.nodes.len();
    let mut act: Vec<[Vec<ActivityAcc>; 2]> = (0..n)
        .map(|_| {
            [
                vec![ActivityAcc::default(); nodes],
                vec![ActivityAcc::default(); nodes],
            ]
        })
        .collect();
    let add = |acc: &mut Vec<ActivityAcc>, a: &Reading, z: &Reading| {
        let secs = z.at.duration_since(a.at).as_secs_f64();
        for (i, x) in acc.iter_mut().enumerate() {
            x.add(&a.nodes[i], &z.nodes[i], secs);
        }
    };
    for round in 0..rounds {
        for mode in round_order(&modes, round) {
            let mi = modes.iter().position(|m| *m == mode).unwrap_or(0);
            sw.set(mode)?;
            let r0 = gauges.read(sw)?;
            for (pi, p) in paths.iter().enumerate() {
                b.progress.step(format!(
                    "{}: RR round {}/{rounds} {} -> {}",
                    mode.label(),
                    round + 1,
                    p.info.path,
                    p.rr
                ));
                let r = b.client(Mode::Rr, p.rr, rr_secs, opts.warmup, &[])?;
                rr_rounds[mi][pi].push(RrRound {
                    round,
                    ops: r.ops,
                    errors: r.errors,
                    p50_us: r.latency.p50_us,
                    p99_us: r.latency.p99_us,
                });
                rr[mi][pi].add(&r);
            }
            let r1 = gauges.read(sw)?;
            for (pi, p) in paths.iter().enumerate() {
                b.progress.step(format!(
                    "{}: stream round {}/{rounds} {} -> {}",
                    mode.label(),
                    round + 1,
                    p.info.path,
                    p.stream
                ));
                let r = b.client(Mode::Stream, p.stream, st_secs, opts.warmup, &[])?;
                st[mi][pi].add(&r);
            }
            let r2 = gauges.read(sw)?;
            add(&mut act[mi][0], &r0, &r1);
            add(&mut act[mi][1], &r1, &r2);
        }
    }
    let mut results: Vec<ModeResult> = modes
        .iter()
        .enumerate()
        .map(|(mi, m)| {
            let (enabled, level) = m.config();
            ModeResult {
                mode: m.key().into(),
                label: m.label().into(),
                enabled,
                level: tollway_datapath::lb::aggregation_name(level).into(),
                paths: paths
                    .iter()
                    .enumerate()
                    .map(|(pi, p)| PathResult {
                        path: p.info.path.clone(),
                        rr: rr[mi][pi].measure(),
                        rr_buckets: rr[mi][pi].buckets(),
                        rr_rounds: rr_rounds[mi][pi].clone(),
                        stream: st[mi][pi].measure(),
                        ..Default::default()
                    })
                    .collect(),
            }
        })
        .collect();
    let off = results[0].paths.clone();
    for m in &mut results {
        for (p, o) in m.paths.iter_mut().zip(&off) {
            p.rr_p50_vs_off = ratio(Some(p.rr.latency.p50_us), Some(o.rr.latency.p50_us));
            p.rr_p99_vs_off = ratio(Some(p.rr.latency.p99_us), Some(o.rr.latency.p99_us));
            p.stream_vs_off = ratio(Some(p.stream.gbit_s), Some(o.stream.gbit_s));
        }
    }
    report.modes = results;
    report.agents = modes
        .iter()
        .enumerate()
        .flat_map(|(mi, m)| {
            let act = &act;
            ["rr", "stream"]
                .into_iter()
                .enumerate()
                .map(move |(k, phase)| ModeActivity {
                    mode: m.key().into(),
                    phase: phase.into(),
                    nodes: act[mi][k]
                        .iter()
                        .zip(NODES)
                        .map(|(a, n)| a.activity(n))
                        .collect(),
                })
        })
        .collect();
    Ok(())
}

/// One reading of the storm's counters.
#[derive(Clone, Copy)]
struct Point {
    node: NodeReading,
    at: Instant,
    client: UdpCounters,
    server: UdpCounters,
    backlog: Option<u64>,
}

/// The measured node's counters (`at`: when the agent answered) and the
/// pods' UDP counters right after; and how long the agent took, ms.
fn point(
    gauges: &Gauges,
    sw: &EventSwitch,
    ni: usize,
    netns: (&str, &str),
) -> Result<(Point, f64), BenchError> {
    let (node, at, ms) = gauges.read_node_timed(ni, sw)?;
    Ok((
        Point {
            node,
            at,
            client: udp_counters(netns.0)?,
            server: udp_counters(netns.1)?,
            backlog: backlog_drops(),
        },
        ms,
    ))
}

/// What the storm's window saw.
struct Window {
    first_all: Reading,
    last_all: Reading,
    first: Point,
    /// The last reading inside the window (plus half the tail): a slow
    /// answer of the agent can land after the clients stopped.
    last: Point,
    /// Whether even that is later than the window and half the tail.
    late_end: bool,
    samples: Vec<StormSample>,
}

/// Samples the storm's counters from `open_at` over `window`.
fn storm_window(
    gauges: &Gauges,
    sw: &EventSwitch,
    ni: usize,
    netns: (&str, &str),
    open_at: Instant,
    window: Duration,
) -> Result<Window, BenchError> {
    std::thread::sleep(open_at.saturating_duration_since(Instant::now()));
    let first_all = gauges.read(sw)?;
    let (first, ms) = point(gauges, sw, ni, netns)?;
    let sample = |p: &Point, ms: f64| StormSample {
        t_s: (p.at.duration_since(first.at).as_secs_f64() * 1000.0).round() / 1000.0,
        seen: p.node.seen,
        lost: p.node.lost,
        status_ms: (ms * 10.0).round() / 10.0,
    };
    let mut samples = vec![sample(&first, ms)];
    let deadline = first.at + window;
    let limit = deadline + STORM_TAIL / 2;
    let mut points = vec![first];
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(STORM_SAMPLE.min(deadline - now));
        let (p, ms) = point(gauges, sw, ni, netns)?;
        samples.push(sample(&p, ms));
        points.push(p);
    }
    let last_all = gauges.read(sw)?;
    let inside = points
        .iter()
        .rev()
        .find(|p| p.at <= limit && p.at >= first.at + window / 2)
        .copied();
    let late_end = inside.is_none();
    let last = inside.unwrap_or(points[points.len() - 1]);
    Ok(Window {
        first_all,
        last_all,
        first,
        last,
        late_end,
        samples,
    })
}

fn storm(
    b: &Bench<'_>,
    sw: &mut EventSwitch,
    gauges: &Gauges,
    server: Ipv4Addr,
    report: &mut FlowsBenchReport,
) -> Result<(), BenchError> {
    let opts = b.opts;
    let target = SocketAddrV4::new(server, DNS_PORT);
    let node = CLIENT_NODE;
    let ni = gauges
        .nodes
        .iter()
        .position(|g| g.node == node)
        .ok_or_else(|| BenchError::Lab(format!("no gauges for {node}")))?;
    let client_ns = b.lab.paths.pod_netns(NAMESPACE, SOCK_POD);
    let server_ns = b.lab.paths.pod_netns(NAMESPACE, LOCAL_SERVER_POD);
    let modes = EventMode::ALL;
    let rounds = opts.storm_rounds;
    let window = opts.storm.div_f64(rounds as f64);
    let ports = opts.storm_ports.to_string();
    let client_secs = (STORM_RAMP + window + STORM_TAIL).as_secs_f64();
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out: Vec<StormMode> = Vec::new();
    for &senders in &opts.storm_senders {
        let mut runs: Vec<Vec<StormRun>> = vec![Vec::new(); modes.len()];
        for round in 0..rounds {
            for mode in round_order(&modes, round) {
                let mi = modes.iter().position(|m| *m == mode).unwrap_or(0);
                sw.set(mode)?;
                b.progress.step(format!(
                    "storm, {senders} x {} ports, {}: round {}/{rounds} -> {target}",
                    opts.storm_ports,
                    mode.label(),
                    round + 1,
                ));
                let sw_ref: &EventSwitch = sw;
                let mut tries = 0;
                let (clients, w) = loop {
                    tries += 1;
                    let start_at = std::time::SystemTime::now() + STORM_START;
                    let open_at = Instant::now() + STORM_START + STORM_RAMP;
                    let start_ms = start_at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis())
                        .to_string();
                    let (clients, sampled) = std::thread::scope(|s| {
                        let handles: Vec<_> = (0..senders)
                            .map(|k| {
                                let cpu = opts.cpu.map(|c| (c + k) % nproc);
                                let (ports, start_ms) = (&ports, &start_ms);
                                s.spawn(move || {
                                    b.client_on(
                                        cpu,
                                        Mode::Udp,
                                        target,
                                        client_secs,
                                        Duration::ZERO,
                                        &["--udp-ports", ports, "--start-at-ms", start_ms],
                                    )
                                })
                            })
                            .collect();
                        let sampled = storm_window(
                            gauges,
                            sw_ref,
                            ni,
                            (&client_ns, &server_ns),
                            open_at,
                            window,
                        );
                        let clients: Vec<Result<ClientReport, BenchError>> = handles
                            .into_iter()
                            .map(|h| {
                                h.join().unwrap_or_else(|_| {
                                    Err(BenchError::Lab("storm client thread panicked".into()))
                                })
                            })
                            .collect();
                        (clients, sampled)
                    });
                    let clients = clients.into_iter().collect::<Result<Vec<_>, _>>()?;
                    let w = sampled?;
                    let late = clients.iter().filter_map(|c| c.late_ms).fold(0.0, f64::max);
                    if late < STORM_RAMP.as_secs_f64() * 1000.0 {
                        break (clients, w);
                    }
                    let msg = format!(
                        "storm ({senders} x {}): a client started {late:.0} ms late, after the window opened",
                        mode.key()
                    );
                    if tries >= STORM_TRIES {
                        return Err(BenchError::Lab(msg));
                    }
                    b.progress.line(format!("warning: {msg}; again"));
                };
                let (first, last) = (w.first, w.last);
                let secs = last.at.duration_since(first.at).as_secs_f64();
                if w.late_end {
                    b.progress.line(format!(
                        "warning: storm ({senders} x {}): {node}'s agent answered its status {:.0} ms after the window; the rates include time after the storm",
                        mode.key(),
                        last.at.saturating_duration_since(first.at + window).as_secs_f64() * 1000.0
                    ));
                }
                let mut acc = ActivityAcc::default();
                acc.add(&first.node, &last.node, secs);
                let agent = acc.activity(node);
                if mode != EventMode::Off && agent.flows == 0 {
                    return Err(BenchError::Lab(format!(
                        "the storm ({}) made no flow on {node}: are the clients sending? {}",
                        mode.key(),
                        clients
                            .iter()
                            .map(ClientReport::render_text)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )));
                }
                let other_node_flows = w
                    .first_all
                    .nodes
                    .iter()
                    .zip(&w.last_all.nodes)
                    .enumerate()
                    .filter(|(i, _)| *i != ni)
                    .map(|(_, (a, z))| z.seen.saturating_sub(a.seen))
                    .sum();
                let client_udp = last.client.since(&first.client);
                let server_udp = last.server.since(&first.server);
                let per = |x: u64| {
                    if secs > 0.0 {
                        (x as f64 / secs).round()
                    } else {
                        0.0
                    }
                };
                let n = clients.len().max(1) as f64;
                runs[mi].push(StormRun {
                    round,
                    senders,
                    attempts: tries,
                    late_ms: clients.iter().filter_map(|c| c.late_ms).collect(),
                    client_sent: clients.iter().map(|c| c.ops).sum(),
                    client_s: (clients.iter().map(|c| c.duration_s).sum::<f64>() / n * 1000.0)
                        .round()
                        / 1000.0,
                    client_rates: clients.iter().map(|c| c.rate_ops_s).collect(),
                    errors: clients.iter().map(|c| c.errors).sum(),
                    first_error: clients.iter().find_map(|c| c.first_error.clone()),
                    window_s: (secs * 1000.0).round() / 1000.0,
                    sent_per_s: per(client_udp.sent()),
                    reached_per_s: per(server_udp.reached()),
                    client_udp,
                    server_udp,
                    backlog_drops: match (first.backlog, last.backlog) {
                        (Some(x), Some(y)) => Some(y.saturating_sub(x)),
                        _ => None,
                    },
                    window_late_end: w.late_end,
                    agent,
                    other_node_flows,
                    status_max_ms: w.samples.iter().map(|x| x.status_ms).fold(0.0, f64::max),
                    samples: w.samples,
                });
            }
        }
        let mut group: Vec<StormMode> = modes
            .iter()
            .zip(runs)
            .map(|(m, runs)| storm_mode(senders, *m, runs))
            .collect();
        let off = group[0].reached_per_s;
        for m in &mut group {
            m.reached_vs_off = ratio(Some(m.reached_per_s), Some(off));
        }
        out.extend(group);
        report.storm = Some(StormPart {
            target: target.to_string(),
            node: node.into(),
            ports: opts.storm_ports,
            senders: opts.storm_senders.clone(),
            query: STORM_QUERY.into(),
            modes: out.clone(),
        });
    }
    Ok(())
}

/// One mode's storm runs, summed.
fn storm_mode(senders: usize, m: EventMode, runs: Vec<StormRun>) -> StormMode {
    let secs: f64 = runs.iter().map(|r| r.window_s).sum();
    let sum = |f: &dyn Fn(&StormRun) -> u64| runs.iter().map(f).sum::<u64>();
    let flows = sum(&|r| r.agent.flows);
    let lost = sum(&|r| r.agent.lost_events);
    let sent = sum(&|r| r.client_udp.sent());
    let reached = sum(&|r| r.server_udp.reached());
    let backlog: Option<u64> = runs.iter().map(|r| r.backlog_drops).sum();
    let cpu: Option<f64> = runs.iter().map(|r| r.agent.reader_cpu_s).sum();
    let wait: Option<f64> = runs
        .iter()
        .map(|r| r.agent.reader_wait_pct.map(|p| p * r.window_s / 100.0))
        .sum();
    let per = |x: f64| if secs > 0.0 { (x / secs).round() } else { 0.0 };
    StormMode {
        senders,
        mode: m.key().into(),
        label: m.label().into(),
        sent_per_s: per(sent as f64),
        reached_per_s: per(reached as f64),
        reached_vs_off: None,
        flows_per_s: per(flows as f64),
        lost_per_s: per(lost as f64),
        backlog_drops_per_s: backlog.map(|b| per(b as f64)),
        reader_cpu_pct: cpu
            .filter(|_| secs > 0.0)
            .map(|c| (c / secs * 1000.0).round() / 10.0),
        reader_wait_pct: wait
            .filter(|_| secs > 0.0)
            .map(|c| (c / secs * 1000.0).round() / 10.0),
        flows_per_reader_cpu_s: cpu
            .filter(|c| *c > 0.0 && flows > 0)
            .map(|c| (flows as f64 / c).round()),
        events_per_datagram: (reached > 0 && m != EventMode::Off)
            .then(|| ((flows + lost) as f64 / reached as f64 * 100.0).round() / 100.0),
        status_max_ms: runs.iter().map(|r| r.status_max_ms).fold(0.0, f64::max),
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_have_the_sinks_and_the_client() {
        let y = pods_yaml(Some(1));
        assert!(y.contains("name: server\n"), "{y}");
        assert!(y.contains("name: server-local\n"), "{y}");
        assert!(
            y.contains("--stream-port, \"8001\", --udp-port, \"53\", --cpu, \"1\"]"),
            "{y}"
        );
        assert!(y.contains("protocol: UDP"), "{y}");
        assert!(y.contains(&format!("name: {SOCK_POD}")), "{y}");
        assert!(!pods_yaml(None).contains("--cpu"));
        // One document per object.
        assert_eq!(y.matches("kind: Pod").count(), 3);
    }

    #[test]
    fn stream_rounds_merge_by_bytes_and_time() {
        let mut a = StreamAcc::default();
        let r = |bytes: u64, secs: f64, gbit: f64| ClientReport {
            mode: Mode::Stream,
            target: "x".into(),
            duration_s: secs,
            ops: 0,
            errors: 0,
            first_error: None,
            rate_ops_s: 0.0,
            latency: Default::default(),
            buckets: vec![],
            bytes,
            gbit_s: gbit,
            server_bytes: None,
            late_ms: None,
        };
        a.add(&r(1_250_000_000, 1.0, 10.0));
        a.add(&r(625_000_000, 1.0, 5.0));
        let m = a.measure();
        assert_eq!(m.gbit_s, 7.5);
        assert_eq!(m.rounds_gbit_s, vec![10.0, 5.0]);
    }
}
