//! The results of `tollway bench flows`: what is written to
//! `bench/results/flows.json`, and the tables printed from it.

use serde::{Deserialize, Serialize};

use super::agents::UdpCounters;
use crate::policy::report::{markdown, thousands};
use crate::report::{Machine, Measure};
use crate::stats::Bucket;

/// The run's parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowsParams {
    /// TCP_RR seconds per mode and path (split over the rounds).
    pub rr_s: f64,
    /// Stream seconds per mode and path (split over the rounds).
    pub stream_s: f64,
    /// Rounds of the latency and stream part (the modes take turns).
    pub rounds: usize,
    /// Storm seconds measured per mode (split over the storm rounds).
    pub storm_s: f64,
    /// Rounds of the storm part.
    pub storm_rounds: usize,
    /// Source ports of each storm client.
    pub storm_ports: usize,
    /// Storm client counts.
    pub storm_senders: Vec<usize>,
    /// Warm-up of each RR and stream client run, ms.
    pub warmup_ms: u64,
    /// How the client and the servers are pinned.
    pub cpu: String,
    /// Whether the same-node path was measured.
    pub same_node: bool,
    /// The CPU both agents were pinned to (`--agents-cpu`), if any.
    #[serde(default)]
    pub agents_cpu: Option<usize>,
    /// `--quick`.
    pub quick: bool,
}

/// Where the machine's CPU time went while the lab was up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    /// Wall seconds.
    pub wall_s: f64,
    /// CPUs.
    pub cpus: usize,
    /// Busy CPU-seconds of the whole machine (`/proc/stat`: user, nice,
    /// system, irq, softirq, steal).
    pub machine_busy_s: Option<f64>,
    /// CPU-seconds of the run: the lab's cgroup (pods and the clients
    /// exec'd in them, agents, daemon) and the harness itself.
    pub run_s: Option<f64>,
    /// `machine_busy_s - run_s`: other work (approximate: the two count
    /// interrupt time differently), CPU-seconds.
    pub other_s: Option<f64>,
    /// `other_s` in percent of the machine (`wall_s × cpus`).
    pub other_pct: Option<f64>,
}

/// One node's event config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEventsConfig {
    /// The node.
    pub node: String,
    /// Events on.
    pub enabled: bool,
    /// Aggregation level (Cilium's name).
    pub level: String,
}

/// One measured path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    /// `cross-node` or `same-node`.
    pub path: String,
    /// Where the client runs.
    pub client_node: String,
    /// Where the server runs.
    pub server_node: String,
    /// RR target `IP:port` (the server pod's IP: no service).
    pub rr_target: String,
    /// Stream target `IP:port`.
    pub stream_target: String,
}

/// One RR client run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RrRound {
    /// Round (0-based).
    pub round: usize,
    /// Transactions.
    pub ops: u64,
    /// Failures.
    pub errors: u64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
}

/// The stream runs of one mode and path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamMeasure {
    /// Bytes written in the measured windows (all rounds).
    pub bytes: u64,
    /// Seconds measured (all rounds).
    pub duration_s: f64,
    /// `bytes` in Gbit/s over `duration_s`.
    pub gbit_s: f64,
    /// Each round's Gbit/s.
    pub rounds_gbit_s: Vec<f64>,
    /// Failed runs (or counts that did not match).
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
}

/// One mode on one path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PathResult {
    /// `cross-node` or `same-node`.
    pub path: String,
    /// TCP_RR, all rounds merged.
    pub rr: Measure,
    /// The merged latency histogram `[ns, count]`.
    pub rr_buckets: Vec<Bucket>,
    /// Each RR run.
    pub rr_rounds: Vec<RrRound>,
    /// RR p50 ÷ the same path's with events off.
    pub rr_p50_vs_off: Option<f64>,
    /// RR p99 ÷ the same path's with events off.
    pub rr_p99_vs_off: Option<f64>,
    /// Single-stream throughput.
    pub stream: StreamMeasure,
    /// Gbit/s ÷ the same path's with events off.
    pub stream_vs_off: Option<f64>,
}

/// One event mode of the latency and stream part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModeResult {
    /// `off`, `medium`, `none`.
    pub mode: String,
    /// For the table.
    pub label: String,
    /// `tw_events_cfg.enabled`.
    pub enabled: bool,
    /// `tw_events_cfg.level` (Cilium's name).
    pub level: String,
    /// One per path.
    pub paths: Vec<PathResult>,
}

/// What one agent did over some windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeActivity {
    /// The node.
    pub node: String,
    /// Seconds of the windows.
    pub seconds: f64,
    /// Growth of the agent's `seen` (flows decoded and stored).
    pub flows: u64,
    /// Growth of the datapath's `tw_events_lost` (events the ring had no
    /// room for).
    pub lost_events: u64,
    /// CPU time of the agent's `flow-reader` thread, seconds (None: not
    /// found).
    pub reader_cpu_s: Option<f64>,
    /// `flows / seconds`.
    pub flows_per_s: f64,
    /// `lost_events / seconds`.
    pub lost_per_s: f64,
    /// `reader_cpu_s / seconds`, percent of one CPU.
    pub reader_cpu_pct: Option<f64>,
    /// Time the flow reader was runnable but waiting for a CPU, percent
    /// of the windows (schedstat's run delay): high when it is starved.
    #[serde(default)]
    pub reader_wait_pct: Option<f64>,
}

/// The agents while one mode's RR or stream runs went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModeActivity {
    /// `off`, `medium`, `none`.
    pub mode: String,
    /// `rr` or `stream`.
    pub phase: String,
    /// Both nodes.
    pub nodes: Vec<NodeActivity>,
}

impl ModeActivity {
    /// Flows per second over both nodes.
    pub fn flows_per_s(&self) -> f64 {
        self.nodes.iter().map(|n| n.flows_per_s).sum()
    }

    /// Lost events per second over both nodes.
    pub fn lost_per_s(&self) -> f64 {
        self.nodes.iter().map(|n| n.lost_per_s).sum()
    }

    /// The flow readers' CPU over both nodes, percent of one CPU.
    pub fn reader_cpu_pct(&self) -> Option<f64> {
        self.nodes.iter().map(|n| n.reader_cpu_pct).sum()
    }
}

/// One sample of the storm's agent counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormSample {
    /// Seconds since the window started.
    pub t_s: f64,
    /// The agent's `seen`.
    pub seen: u64,
    /// The datapath's `tw_events_lost`.
    pub lost: u64,
    /// How long the agent took to answer `GET /v1/status`, ms.
    pub status_ms: f64,
}

/// One storm run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormRun {
    /// Round (0-based).
    pub round: usize,
    /// Clients sending at once.
    pub senders: usize,
    /// Attempts (a run whose clients started after the window opened is
    /// done again).
    pub attempts: usize,
    /// How late each client was for the common start, ms.
    pub late_ms: Vec<f64>,
    /// Datagrams the clients say they sent (their whole runs).
    pub client_sent: u64,
    /// The clients' runs, seconds (mean).
    pub client_s: f64,
    /// Each client's datagrams per second (its whole run).
    pub client_rates: Vec<f64>,
    /// Send errors.
    pub errors: u64,
    /// The first one.
    pub first_error: Option<String>,
    /// The harness's window, seconds (the flows, lost and UDP counters
    /// below are over it).
    pub window_s: f64,
    /// The client pod's UDP counters over the window.
    pub client_udp: UdpCounters,
    /// The server pod's UDP counters over the window.
    pub server_udp: UdpCounters,
    /// Datagrams per second the client pod's sockets sent
    /// (`OutDatagrams + SndbufErrors`).
    pub sent_per_s: f64,
    /// Datagrams per second that reached the server pod's UDP layer:
    /// through the whole datapath.
    pub reached_per_s: f64,
    /// Packets the machine's input backlogs dropped over the window.
    pub backlog_drops: Option<u64>,
    /// The agent's last answer inside the window came after it (and half
    /// the clients' tail): the rates may include time after the storm.
    pub window_late_end: bool,
    /// The measured node's agent over the window.
    pub agent: NodeActivity,
    /// Flows the other node's agent stored in that window.
    pub other_node_flows: u64,
    /// The slowest answer of the measured agent's `GET /v1/status`, ms.
    pub status_max_ms: f64,
    /// The counters, every ~200 ms of the window.
    pub samples: Vec<StormSample>,
}

/// One event mode of the storm, with some number of clients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormMode {
    /// Clients sending at once.
    pub senders: usize,
    /// `off`, `medium`, `none`.
    pub mode: String,
    /// For the table.
    pub label: String,
    /// Each run.
    pub runs: Vec<StormRun>,
    /// Datagrams per second sent (all runs' windows).
    pub sent_per_s: f64,
    /// Datagrams per second through the datapath to the server's UDP
    /// layer.
    pub reached_per_s: f64,
    /// `reached_per_s` ÷ the same clients' with events off.
    pub reached_vs_off: Option<f64>,
    /// The agent's flows per second.
    pub flows_per_s: f64,
    /// Events per second the ring had no room for.
    pub lost_per_s: f64,
    /// Packets per second the input backlogs dropped (whole machine).
    pub backlog_drops_per_s: Option<f64>,
    /// The flow reader's CPU, percent of one CPU.
    pub reader_cpu_pct: Option<f64>,
    /// The flow reader runnable but waiting for a CPU, percent of the
    /// windows.
    pub reader_wait_pct: Option<f64>,
    /// Flows per second of the flow reader's CPU time.
    pub flows_per_reader_cpu_s: Option<f64>,
    /// (flows + lost) per datagram that reached the server: the events
    /// each datagram made on the measured node.
    pub events_per_datagram: Option<f64>,
    /// The agent's slowest answer to `GET /v1/status` in these runs, ms.
    pub status_max_ms: f64,
}

/// The storm part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormPart {
    /// `IP:53` of the server pod.
    pub target: String,
    /// The node whose agent is measured (client and server both on it).
    pub node: String,
    /// Source ports per client.
    pub ports: usize,
    /// The client counts run.
    pub senders: Vec<usize>,
    /// The DNS query sent (its name; the id changes).
    pub query: String,
    /// One per client count and mode.
    pub modes: Vec<StormMode>,
}

/// `bench/results/flows.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowsBenchReport {
    /// `flows`.
    pub benchmark: String,
    /// When (RFC 3339).
    pub date: String,
    /// Tollway's version.
    pub tollway_version: String,
    /// The machine.
    pub machine: Machine,
    /// Parameters.
    pub params: FlowsParams,
    /// How to read it.
    pub notes: Vec<String>,
    /// The lab.
    pub lab: String,
    /// `/proc/loadavg` when the run started (other work on the machine
    /// shows here: it shares the CPUs with the measurement).
    #[serde(default)]
    pub loadavg_start: String,
    /// `/proc/loadavg` when it ended.
    #[serde(default)]
    pub loadavg_end: String,
    /// CPU time while the lab was up, to tell other work on the machine.
    #[serde(default)]
    pub cpu_use: Option<CpuUse>,
    /// The event config of each node when the harness found it (what it
    /// restores at the end).
    pub events_config_before: Vec<NodeEventsConfig>,
    /// Whether the config was restored and read back equal.
    pub events_config_restored: bool,
    /// The measured paths.
    pub paths: Vec<PathInfo>,
    /// The latency and stream part, one per mode (off first).
    pub modes: Vec<ModeResult>,
    /// The agents during the latency and stream part.
    pub agents: Vec<ModeActivity>,
    /// The storm.
    pub storm: Option<StormPart>,
    /// The in-process figure the criterion bench measured (cited, not
    /// measured here).
    pub pipeline_reference: String,
    /// Both nodes' datapath drop counters at the end `[node, reason, n]`.
    pub datapath_drops: Vec<(String, String, u64)>,
    /// The tables, as printed.
    pub tables: String,
    /// One line per finding.
    pub summary: Vec<String>,
    /// Whether the run finished.
    pub complete: bool,
    /// Why it did not.
    pub error: Option<String>,
}

fn num(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

fn times(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.2}×"))
}

fn rate(x: f64) -> String {
    thousands(x.round().max(0.0) as usize)
}

/// The main table: RR latency and stream throughput per path and mode.
pub fn render_datapath(modes: &[ModeResult]) -> String {
    let header = [
        "path",
        "mode",
        "RR p50 µs",
        "RR p99 µs",
        "p50 ×off",
        "p99 ×off",
        "stream Gbit/s",
        "×off",
    ]
    .map(String::from);
    let paths: Vec<String> = modes
        .first()
        .map(|m| m.paths.iter().map(|p| p.path.clone()).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for path in &paths {
        for m in modes {
            let Some(p) = m.paths.iter().find(|p| &p.path == path) else {
                continue;
            };
            let errors = p.rr.errors + p.stream.errors;
            let mut label = m.label.clone();
            if errors > 0 {
                label.push_str(&format!(" ({errors} errors)"));
            }
            rows.push(vec![
                path.clone(),
                label,
                num(Some(p.rr.latency.p50_us), 1),
                num(Some(p.rr.latency.p99_us), 1),
                times(p.rr_p50_vs_off),
                times(p.rr_p99_vs_off),
                num(Some(p.stream.gbit_s), 2),
                times(p.stream_vs_off),
            ]);
        }
    }
    markdown(&header, &rows, &[0, 1])
}

/// The agents while the latency and stream runs went.
pub fn render_agents(agents: &[ModeActivity], labels: &[(String, String)]) -> String {
    let header = [
        "mode",
        "flows/s during RR",
        "flows/s during stream",
        "lost events/s",
        "flow-reader CPU %",
    ]
    .map(String::from);
    let mut rows = Vec::new();
    for (key, label) in labels {
        let get = |phase: &str| agents.iter().find(|a| &a.mode == key && a.phase == phase);
        let (rr, st) = (get("rr"), get("stream"));
        let lost =
            rr.map_or(0.0, ModeActivity::lost_per_s) + st.map_or(0.0, ModeActivity::lost_per_s);
        let cpu = |a: Option<&ModeActivity>| a.and_then(ModeActivity::reader_cpu_pct);
        rows.push(vec![
            label.clone(),
            rr.map_or("-".into(), |a| rate(a.flows_per_s())),
            st.map_or("-".into(), |a| rate(a.flows_per_s())),
            rate(lost),
            format!("{} / {}", num(cpu(rr), 1), num(cpu(st), 1)),
        ]);
    }
    markdown(&header, &rows, &[0])
}

/// `min–max` of some rates, in thousands (`k`); `-` for none.
fn round_range(rates: impl Iterator<Item = f64>) -> String {
    let v: Vec<f64> = rates.collect();
    if v.is_empty() {
        return "-".into();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    let k = |x: f64| format!("{:.0}k", x / 1000.0);
    if hi < 500.0 {
        "0".into()
    } else {
        format!("{}–{}", k(lo), k(hi))
    }
}

/// The storm table.
pub fn render_storm(storm: &StormPart) -> String {
    let header = [
        "clients",
        "mode",
        "sent/s",
        "reached server/s",
        "×off",
        "agent flows/s",
        "per round",
        "lost events/s",
        "events/datagram",
        "flow-reader CPU % (waiting %)",
        "flows per reader CPU-s",
        "slowest status",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = storm
        .modes
        .iter()
        .map(|m| {
            let errors: u64 = m.runs.iter().map(|r| r.errors).sum();
            let mut label = m.label.clone();
            if errors > 0 {
                label.push_str(&format!(" ({errors} send errors)"));
            }
            vec![
                m.senders.to_string(),
                label,
                rate(m.sent_per_s),
                rate(m.reached_per_s),
                times(m.reached_vs_off),
                rate(m.flows_per_s),
                round_range(m.runs.iter().map(|r| r.agent.flows_per_s)),
                rate(m.lost_per_s),
                num(m.events_per_datagram, 2),
                format!(
                    "{} ({})",
                    num(m.reader_cpu_pct, 0),
                    num(m.reader_wait_pct, 0)
                ),
                m.flows_per_reader_cpu_s.map_or("-".into(), rate),
                if m.status_max_ms < 10.0 {
                    format!("{:.1} ms", m.status_max_ms)
                } else {
                    format!("{:.0} ms", m.status_max_ms)
                },
            ]
        })
        .collect();
    markdown(&header, &rows, &[1])
}

/// Above this share of the CPUs taken by other work during the run, the
/// run is flagged.
pub const BUSY_OTHER_PCT: f64 = 5.0;

/// The findings, one line each.
pub fn summary(r: &FlowsBenchReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = r.cpu_use.as_ref().and_then(|c| c.other_pct)
        && p > BUSY_OTHER_PCT
    {
        out.push(format!(
            "WARNING: other work on the machine took ~{p:.0}% of its CPUs during the run: expect noisy numbers"
        ));
    }
    for m in r.modes.iter().filter(|m| m.mode != "off") {
        for p in &m.paths {
            out.push(format!(
                "{} vs off, {}: TCP_RR p50 {}, p99 {}; stream {} ({:.2} vs {} Gbit/s)",
                m.label,
                p.path,
                times(p.rr_p50_vs_off),
                times(p.rr_p99_vs_off),
                times(p.stream_vs_off),
                p.stream.gbit_s,
                r.modes
                    .iter()
                    .find(|o| o.mode == "off")
                    .and_then(|o| o.paths.iter().find(|q| q.path == p.path))
                    .map_or("-".into(), |q| format!("{:.2}", q.stream.gbit_s)),
            ));
        }
    }
    if !r.agents.is_empty() {
        let off: u64 = r
            .agents
            .iter()
            .filter(|a| a.mode == "off")
            .flat_map(|a| &a.nodes)
            .map(|n| n.flows)
            .sum();
        out.push(format!(
            "with events off, the agents stored {off} flows during the RR and stream runs (events of the previous mode, which the reader picks up to 100 ms late; none are made while events are off)"
        ));
    }
    if let Some(s) = &r.storm {
        for m in &s.modes {
            out.push(format!(
                "storm ({} x {} ports -> {} on {}), {}: {} datagrams/s through the datapath ({} of events off's), {}'s agent stored {} flows/s, {} events/s lost, flow reader {}% of a CPU",
                m.senders,
                s.ports,
                s.target,
                s.node,
                m.label,
                rate(m.reached_per_s),
                times(m.reached_vs_off),
                s.node,
                rate(m.flows_per_s),
                rate(m.lost_per_s),
                num(m.reader_cpu_pct, 0),
            ));
        }
    }
    if !r.pipeline_reference.is_empty() {
        out.push(r.pipeline_reference.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    fn path(name: &str, p50: f64, gbit: f64) -> PathResult {
        PathResult {
            path: name.into(),
            rr: Measure {
                ops: 100,
                latency: Summary {
                    p50_us: p50,
                    p99_us: p50 * 1.5,
                    ..Default::default()
                },
                ..Default::default()
            },
            stream: StreamMeasure {
                gbit_s: gbit,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn modes() -> Vec<ModeResult> {
        ["off", "medium", "none"]
            .iter()
            .enumerate()
            .map(|(i, m)| ModeResult {
                mode: (*m).into(),
                label: format!("label {m}"),
                paths: vec![
                    path("cross-node", 20.0 + i as f64, 10.0 - i as f64),
                    path("same-node", 15.0 + i as f64, 12.0),
                ],
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn the_datapath_table_has_a_row_per_path_and_mode() {
        let mut m = modes();
        m[1].paths[0].rr_p50_vs_off = Some(1.05);
        m[2].paths[1].stream.errors = 2;
        let t = render_datapath(&m);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 6, "{t}");
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "aligned:\n{t}");
        assert!(lines[2].starts_with("| cross-node | label off "), "{t}");
        assert!(lines[3].contains(" 1.05× "), "{t}");
        assert!(lines[7].contains("(2 errors)"), "{t}");
        assert!(lines[7].starts_with("| same-node "), "{t}");
    }

    #[test]
    fn agents_and_storm_tables() {
        let node = |f: f64, cpu: Option<f64>| NodeActivity {
            node: "node-1".into(),
            flows_per_s: f,
            reader_cpu_pct: cpu,
            ..Default::default()
        };
        let agents = vec![
            ModeActivity {
                mode: "medium".into(),
                phase: "rr".into(),
                nodes: vec![node(10.0, Some(1.0)), node(5.0, Some(0.5))],
            },
            ModeActivity {
                mode: "medium".into(),
                phase: "stream".into(),
                nodes: vec![node(2.0, None)],
            },
        ];
        assert_eq!(agents[0].flows_per_s(), 15.0);
        assert_eq!(agents[0].reader_cpu_pct(), Some(1.5));
        assert_eq!(agents[1].reader_cpu_pct(), None);
        let t = render_agents(&agents, &[("medium".into(), "on (medium)".into())]);
        assert!(t.contains("| on (medium) "), "{t}");
        assert!(t.contains(" 1.5 / - "), "{t}");
        let storm = StormPart {
            node: "node-1".into(),
            modes: vec![StormMode {
                senders: 2,
                mode: "medium".into(),
                label: "on (medium)".into(),
                sent_per_s: 300_000.0,
                reached_per_s: 123_456.4,
                reached_vs_off: Some(0.9),
                flows_per_s: 200_000.0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = render_storm(&storm);
        assert!(t.contains(" 123,456 "), "{t}");
        assert!(t.contains(" 2 | on (medium) "), "{t}");
        assert!(t.contains(" 300,000 "), "{t}");
        assert_eq!(
            round_range([1_000.0, 250_400.0, 99_000.0].into_iter()),
            "1k–250k"
        );
        assert_eq!(round_range([0.0].into_iter()), "0");
        assert_eq!(round_range(std::iter::empty()), "-");
        assert!(t.contains(" 0.90× "), "{t}");
        assert!(t.contains(" 200,000 "), "{t}");
    }

    #[test]
    fn the_report_round_trips_through_json_and_summarises() {
        let r = FlowsBenchReport {
            benchmark: "flows".into(),
            modes: modes(),
            storm: Some(StormPart::default()),
            complete: true,
            ..Default::default()
        };
        let back: FlowsBenchReport =
            serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
        assert_eq!(back, r);
        let s = summary(&r);
        assert_eq!(s.len(), 4, "{s:?}");
        let busy = FlowsBenchReport {
            cpu_use: Some(CpuUse {
                other_pct: Some(12.0),
                ..Default::default()
            }),
            ..r.clone()
        };
        assert!(summary(&busy)[0].starts_with("WARNING: other work"));
        assert!(s[0].contains("label medium vs off, cross-node"), "{}", s[0]);
        assert!(s[0].contains("(9.00 vs 10.00 Gbit/s)"), "{}", s[0]);
    }
}
