//! `tollway bench flows`: what flow events (Hubble) cost the datapath, and
//! how many flows one agent decodes and stores.
//!
//! In a lab of its own (`bench-flows-<pid>`, 2 nodes, taken down at the
//! end, on error and on Ctrl-C), with the event config of both nodes'
//! datapath (`tw_events_cfg`) switched between three modes
//! ([`agents::EventMode`]: off, on at aggregation medium, on at
//! aggregation none) and restored at the end:
//!
//! 1. TCP_RR latency (one kept connection, as `bench service-lb`'s RR) and
//!    single-stream TCP throughput, client on node-1, to a server pod on
//!    node-2 and to one on node-1, the modes taking turns round by round
//!    ([`run`]); the agents' flow counters and flow-reader CPU meanwhile;
//! 2. a storm of DNS queries (UDP port 53, always reported, with their
//!    payload) from many source ports to the server pod on the client's
//!    node, while node-1's agent's `seen` counter and the datapath's lost
//!    counter are sampled.
//!
//! The results go to a JSON file (also when the run stops early, with
//! `complete: false`) and are printed as three tables.

pub mod agents;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::BenchError;
use crate::harness::{Lab, machine};
use crate::progress::{Progress, catch_interrupts};
use agents::EventMode;
use report::{
    FlowsBenchReport, FlowsParams, render_agents, render_datapath, render_storm, summary,
};

/// What the tollway-flow criterion bench measured in-process (cited in the
/// report, not measured by this harness).
pub const PIPELINE_REFERENCE: &str = "in-process reference (not measured by this run): \
     `cargo bench -p tollway-flow --bench pipeline` measured ~1.25 M events/s for decode + \
     store and ~0.97 M/s with Hubble's metrics on this machine (one thread, synthetic events \
     at medium aggregation's mix, no kernel, no DNS payloads)";

/// What to run.
#[derive(Debug, Clone)]
pub struct FlowsOptions {
    /// The `tollway` binary (the lab is driven through it).
    pub tollway: PathBuf,
    /// TCP_RR time per mode and path, split over `rounds`.
    pub rr: Duration,
    /// Stream time per mode and path, split over `rounds`.
    pub stream: Duration,
    /// Rounds of the latency and stream part (the modes take turns).
    pub rounds: usize,
    /// Storm time measured per mode (zero: no storm), split over
    /// `storm_rounds`.
    pub storm: Duration,
    /// Rounds of the storm.
    pub storm_rounds: usize,
    /// Source ports of each storm client.
    pub storm_ports: usize,
    /// The storm is run with each of these numbers of clients sending at
    /// once.
    pub storm_senders: Vec<usize>,
    /// Warm-up of each RR and stream client run.
    pub warmup: Duration,
    /// Pin the client and the servers to this CPU.
    pub cpu: Option<usize>,
    /// Pin both agents (every thread) to this CPU: a diagnostic that keeps
    /// their work off the client's CPU. `None`: left alone.
    pub agents_cpu: Option<usize>,
    /// Also the same-node path.
    pub same_node: bool,
    /// `--quick` (only recorded).
    pub quick: bool,
    /// Where the JSON goes.
    pub out: PathBuf,
}

/// `--quick`'s durations: (RR s, stream s, rounds, storm s, storm rounds).
pub const QUICK: (f64, f64, usize, f64, usize) = (1.5, 1.5, 3, 2.0, 1);
/// The defaults: (RR s, stream s, rounds, storm s, storm rounds).
pub const DEFAULTS: (f64, f64, usize, f64, usize) = (5.0, 5.0, 5, 6.0, 3);

impl FlowsOptions {
    fn check(&self) -> Result<(), BenchError> {
        if self.rounds == 0 {
            return Err(BenchError::Usage("--rounds must be at least 1".into()));
        }
        if self.storm_rounds == 0 {
            return Err(BenchError::Usage(
                "--storm-rounds must be at least 1".into(),
            ));
        }
        if self.storm_ports == 0 || self.storm_ports > 20_000 {
            return Err(BenchError::Usage("--storm-ports: 1..=20000".into()));
        }
        if self.storm_senders.is_empty() || self.storm_senders.iter().any(|n| *n == 0 || *n > 16) {
            return Err(BenchError::Usage(
                "--storm-senders: a list of client counts in 1..=16".into(),
            ));
        }
        let per = |d: Duration, n: usize| d.as_secs_f64() / n as f64;
        if per(self.rr, self.rounds) < 0.05 || per(self.stream, self.rounds) < 0.05 {
            return Err(BenchError::Usage(
                "--duration-s and --stream-s / --rounds must leave at least 50 ms per round".into(),
            ));
        }
        if !self.storm.is_zero() && per(self.storm, self.storm_rounds) < 0.5 {
            return Err(BenchError::Usage(
                "--storm-s / --storm-rounds must leave at least 0.5 s per round (or 0: no storm)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Where `bench/results/flows.json` goes by default.
pub fn default_out() -> &'static Path {
    Path::new("bench/results/flows.json")
}

fn notes(opts: &FlowsOptions) -> Vec<String> {
    let modes: Vec<String> = EventMode::ALL
        .iter()
        .map(|m| {
            let (e, l) = m.config();
            format!(
                "{} (enabled={}, level={})",
                m.key(),
                u8::from(e),
                tollway_datapath::lb::aggregation_name(l)
            )
        })
        .collect();
    vec![
        format!(
            "Machine: {} CPUs shared by the client, the servers, both agents and the lab daemon; \
             a VM, so the numbers are noisy: compare the ratios of one run, not numbers across runs.",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        format!(
            "Modes, written into both nodes' tw_events_cfg through the pinned map (the agents keep \
             running and reading the ring): {}. The config found at the start is restored at the \
             end. The modes take turns round by round (rotated: each comes first, second and last \
             alike), {} rounds.",
            modes.join(", "),
            opts.rounds
        ),
        format!(
            "TCP_RR: one kept connection, 32-byte request and response (bench service-lb's \
             client), {:.1} s per mode and path in all. Stream: one connection, {} KiB writes for \
             {:.1} s per mode and path in all; Gbit/s counts the bytes written in the measured \
             window, and the server's count of what it received is checked against what was sent. \
             The client and the servers are {}; the agents are {}.",
            opts.rr.as_secs_f64(),
            crate::client::STREAM_CHUNK / 1024,
            opts.stream.as_secs_f64(),
            opts.cpu
                .map_or("not pinned".to_string(), |c| format!("pinned to CPU {c}")),
            opts.agents_cpu.map_or(
                "not pinned (the scheduler puts them where it likes, the client's CPU included)"
                    .to_string(),
                |c| format!("pinned to CPU {c} (--agents-cpu)")
            ),
        ),
        format!(
            "Storm: N clients (N in {:?}) in the client pod (node-1), each one process and thread \
             with {} connected UDP sockets (one source port each){}, send DNS queries to port 53 \
             of the server pod on node-1 as fast as they can. DNS is always reported, with its \
             payload: at medium each datagram makes two events on node-1 (leaving the client, \
             reaching the server), at none three. Over a window of {:.1} s per mode and client \
             count ({} rounds; the clients start together at a wall-clock time the harness gives \
             them, and the window opens {} ms later): agent flows/s is the growth of node-1's \
             agent's `seen` (GET /v1/status on its flows.sock), lost events/s the growth of \
             tw_events_lost (read from the map), flow-reader CPU the agent's flow-reader thread's \
             schedstat (and the time it was runnable but waiting for a CPU), sent/s the client \
             pod's UDP OutDatagrams + SndbufErrors and reached server/s the server \
             pod's UDP InDatagrams + InErrors + NoPorts (/proc/net/snmp in each pod's \
             namespace): the datagrams that went through both tc programs to the server's UDP \
             layer, read by the sink or dropped at its full socket buffer. With two clients both \
             CPUs are saturated and what each thread gets varies from round to round (per-round \
             agent flows/s in the table; every sample in the JSON).",
            opts.storm_senders,
            opts.storm_ports,
            opts.cpu.map_or(String::new(), |c| format!(
                ", pinned to consecutive CPUs from CPU {c}"
            )),
            opts.storm.as_secs_f64() / opts.storm_rounds as f64,
            opts.storm_rounds,
            run::STORM_RAMP.as_millis(),
        ),
    ]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The three load averages of a `/proc/loadavg` line.
fn first3(loadavg: &str) -> String {
    let v: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    if v.is_empty() {
        "?".into()
    } else {
        v.join(" ")
    }
}

struct Runner<'a> {
    opts: &'a FlowsOptions,
    report: FlowsBenchReport,
}

impl Runner<'_> {
    fn finalize(&mut self) {
        let r = &self.report;
        let m = &r.machine;
        let mut t = format!(
            "Machine: {} CPUs ({}), {} GiB, kernel {}; load average at the start {}, at the end {}\n\n",
            m.nproc,
            m.cpu_model,
            m.mem_gib,
            m.kernel,
            first3(&r.loadavg_start),
            first3(&r.loadavg_end),
        );
        if let Some(c) = &r.cpu_use {
            t.insert_str(
                t.len() - 2,
                &format!(
                    "; while the lab was up ({:.0} s), the run used {} CPU-s and other work on the machine ~{} CPU-s ({}% of the CPUs)",
                    c.wall_s,
                    c.run_s.map_or("?".into(), |v| format!("{v:.0}")),
                    c.other_s.map_or("?".into(), |v| format!("{v:.0}")),
                    c.other_pct.map_or("?".into(), |v| format!("{v:.0}")),
                ),
            );
        }
        if !r.modes.is_empty() {
            t.push_str(
                "TCP_RR latency and single-stream throughput, client on node-1, by event mode\n\n",
            );
            t.push_str(&render_datapath(&r.modes));
            t.push_str(
                "\nThe agents meanwhile (both nodes; flow-reader CPU: during RR / during stream, % of one CPU)\n\n",
            );
            let labels: Vec<(String, String)> = r
                .modes
                .iter()
                .map(|m| (m.mode.clone(), m.label.clone()))
                .collect();
            t.push_str(&render_agents(&r.agents, &labels));
        }
        if let Some(s) = &r.storm {
            if !r.modes.is_empty() {
                t.push('\n');
            }
            t.push_str(&format!(
                "DNS storm: {} source ports per client -> {} (both pods on {}), {}'s agent\n\n",
                s.ports, s.target, s.node, s.node
            ));
            t.push_str(&render_storm(s));
        }
        self.report.tables = t;
        self.report.summary = summary(&self.report);
    }

    fn write(&self) -> Result<(), BenchError> {
        crate::report::write_json(&self.opts.out, &self.report)
    }
}

/// Run the benchmark; the report is also written to `opts.out` (when the
/// run stops early too, with `complete: false`).
pub fn flows(opts: &FlowsOptions) -> Result<FlowsBenchReport, BenchError> {
    opts.check()?;
    catch_interrupts();
    let progress = Progress::new();
    let lab_name = format!("bench-flows-{}", std::process::id() % 100_000);
    let mut r = Runner {
        opts,
        report: FlowsBenchReport {
            benchmark: "flows".into(),
            date: jiff::Timestamp::now().to_string(),
            tollway_version: env!("CARGO_PKG_VERSION").into(),
            machine: machine(),
            params: FlowsParams {
                rr_s: opts.rr.as_secs_f64(),
                stream_s: opts.stream.as_secs_f64(),
                rounds: opts.rounds,
                storm_s: opts.storm.as_secs_f64(),
                storm_rounds: opts.storm_rounds,
                storm_ports: opts.storm_ports,
                storm_senders: opts.storm_senders.clone(),
                warmup_ms: opts.warmup.as_millis() as u64,
                cpu: opts.cpu.map_or_else(
                    || "not pinned".to_string(),
                    |c| format!("client and servers pinned to CPU {c}"),
                ),
                same_node: opts.same_node,
                agents_cpu: opts.agents_cpu,
                quick: opts.quick,
            },
            notes: notes(opts),
            lab: lab_name.clone(),
            loadavg_start: loadavg(),
            pipeline_reference: PIPELINE_REFERENCE.into(),
            ..Default::default()
        },
    };
    let mut lab = Lab::new(opts.tollway.clone(), lab_name);
    let result = run::run(opts, &mut lab, &progress, &mut r.report);
    r.report.loadavg_end = loadavg();
    progress.step("taking the lab down");
    lab.down();
    progress.finish();
    match result {
        Ok(()) => {
            r.report.complete = true;
            r.finalize();
            r.write()?;
            Ok(r.report)
        }
        Err(e) => {
            r.report.error = Some(e.to_string());
            r.finalize();
            if let Err(w) = r.write() {
                eprintln!("warning: {w}");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> FlowsOptions {
        FlowsOptions {
            tollway: "tollway".into(),
            rr: Duration::from_secs(5),
            stream: Duration::from_secs(5),
            rounds: 5,
            storm: Duration::from_secs(6),
            storm_rounds: 3,
            storm_ports: 256,
            storm_senders: vec![1, 2],
            warmup: Duration::from_millis(100),
            cpu: Some(1),
            agents_cpu: None,
            same_node: true,
            quick: false,
            out: default_out().into(),
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(opts().check().is_ok());
        let mut o = opts();
        o.rounds = 0;
        assert!(o.check().is_err());
        let mut o = opts();
        o.rounds = 1_000;
        assert!(o.check().is_err());
        let mut o = opts();
        o.storm_rounds = 20;
        assert!(o.check().is_err());
        o.storm = Duration::ZERO;
        assert!(o.check().is_ok(), "no storm");
        let mut o = opts();
        o.storm_ports = 0;
        assert!(o.check().is_err());
        let (rr, st, rounds, storm, sr) = QUICK;
        let mut o = opts();
        o.rr = Duration::from_secs_f64(rr);
        o.stream = Duration::from_secs_f64(st);
        o.rounds = rounds;
        o.storm = Duration::from_secs_f64(storm);
        o.storm_rounds = sr;
        assert!(o.check().is_ok(), "--quick is valid");
        assert_eq!(notes(&opts()).len(), 4);
    }
}
