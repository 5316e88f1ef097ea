//! `tollway bench service-lb | policy | flows | server | client`.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tollway_bench::client::{ClientOptions, Mode};
use tollway_bench::{Backend, FlowsOptions, PolicyOptions, ServiceLbOptions};

/// `tollway bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Service load balancing: direct vs Tollway's socket LB and tc paths
    /// vs kube-proxy's iptables mode, at several service counts, in a lab
    /// of its own (bench-<pid>, removed at the end).
    ServiceLb(ServiceLbArgs),
    /// Network policy: the control plane's time and memory to compile and
    /// apply N policies over M synthetic endpoints (against 0 and N/10
    /// policies), and TCP_CRR/TCP_RR latency with a 100-rule policy against
    /// none, in a lab of its own (bench-policy-<pid>, removed at the end).
    Policy(PolicyArgs),
    /// Flow events: TCP_RR latency and single-stream throughput with the
    /// datapath's events off, on (aggregation medium) and on (aggregation
    /// none), alternating, and the flows per second one agent decodes under
    /// a DNS storm, in a lab of its own (bench-flows-<pid>, removed at the
    /// end).
    Flows(FlowsArgs),
    /// The benchmark's request/response server (run in its server pod).
    Server {
        /// TCP port to listen on.
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Also a stream sink on this TCP port (reads to EOF, answers with
        /// the byte count).
        #[arg(long)]
        stream_port: Option<u16>,
        /// Also a UDP sink on this port (reads and discards datagrams).
        #[arg(long)]
        udp_port: Option<u16>,
        /// Pin the server to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// The benchmark's CRR/RR/stream/UDP client (run in its client pods).
    Client(ClientArgs),
}

#[derive(Args, Debug)]
struct ServiceLbArgs {
    /// Service counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000,30000")]
    sizes: Vec<usize>,
    /// Seconds measured per path and mode (CRR, RR), split over the rounds.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Rounds each measurement is split into; the paths alternate.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Warm-up of each client run, not recorded (ms).
    #[arg(long, default_value_t = 100)]
    warmup_ms: u64,
    /// iptables backends to reproduce kube-proxy with: legacy, nft, or none.
    #[arg(long, value_delimiter = ',', default_value = "legacy,nft")]
    iptables: Vec<String>,
    /// Timed one-service changes per size.
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// Longest one iptables-restore may take (s); slower ones are reported
    /// as timed out.
    #[arg(long, default_value_t = 900)]
    restore_timeout_s: u64,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results/service-lb.json")]
    out: PathBuf,
    /// CPU to pin both the client and the server to: a number, `last`, or
    /// `none` (not pinned).
    #[arg(long, default_value = "last")]
    cpu: String,
}

#[derive(Args, Debug)]
struct PolicyArgs {
    /// Endpoints (pods) of the synthetic cluster.
    #[arg(long, default_value_t = 10_000)]
    endpoints: usize,
    /// Policies of the measured configuration (0 and a tenth of it are the
    /// baselines).
    #[arg(long, default_value_t = 1_000)]
    policies: usize,
    /// Repetitions of each control-plane configuration (medians reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Seed of the synthetic cluster and policies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds measured per state (policy / none) and mode (CRR, RR),
    /// split over the rounds.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Rounds each measurement is split into; the states alternate.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Warm-up of each client run, not recorded (ms).
    #[arg(long, default_value_t = 100)]
    warmup_ms: u64,
    /// CPU to pin both the client and the server to: a number, `last`, or
    /// `none` (not pinned).
    #[arg(long, default_value = "last")]
    cpu: String,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results/policy.json")]
    out: PathBuf,
    /// Only the control-plane part (no lab).
    #[arg(long)]
    skip_datapath: bool,
}

#[derive(Args, Debug)]
struct FlowsArgs {
    /// Seconds of TCP_RR per mode and path, split over the rounds
    /// [default: 5; --quick: 1.5].
    #[arg(long)]
    duration_s: Option<f64>,
    /// Seconds of single-stream throughput per mode and path, split over
    /// the rounds [default: 5; --quick: 1.5].
    #[arg(long)]
    stream_s: Option<f64>,
    /// Rounds the RR and stream measurements are split into; the modes
    /// take turns [default: 5; --quick: 3].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds of DNS storm measured per mode, split over the storm rounds;
    /// 0: no storm [default: 6; --quick: 2].
    #[arg(long)]
    storm_s: Option<f64>,
    /// Rounds of the storm [default: 3; --quick: 1].
    #[arg(long)]
    storm_rounds: Option<usize>,
    /// Source ports (UDP sockets) of the storm.
    #[arg(long, default_value_t = tollway_bench::client::DEFAULT_UDP_PORTS)]
    storm_ports: usize,
    /// The storm is run with each of these numbers of clients sending at
    /// once (each its own process; pinned to consecutive CPUs from --cpu).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    storm_senders: Vec<usize>,
    /// Warm-up of each RR and stream client run, not recorded (ms).
    #[arg(long, default_value_t = 100)]
    warmup_ms: u64,
    /// CPU to pin the client and the servers to: a number, `last`, or
    /// `none` (not pinned).
    #[arg(long, default_value = "last")]
    cpu: String,
    /// Diagnostic: pin both agents (all their threads) to this CPU, e.g.
    /// away from --cpu, to tell the datapath's cost from the agents'.
    #[arg(long)]
    agents_cpu: Option<usize>,
    /// Only the cross-node path (no client and server on the same node).
    #[arg(long)]
    no_same_node: bool,
    /// Shorter defaults (under a minute instead of 2.5 min).
    #[arg(long)]
    quick: bool,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results/flows.json")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct ClientArgs {
    /// IP:port to connect to.
    #[arg(long)]
    target: SocketAddrV4,
    /// crr (connect, request, response, close), rr (one connection),
    /// stream (bulk writes on one connection) or udp (DNS queries from
    /// many source ports).
    #[arg(long, default_value = "crr")]
    mode: Mode,
    /// udp: source ports (sockets) to spread the datagrams over.
    #[arg(long, default_value_t = tollway_bench::client::DEFAULT_UDP_PORTS)]
    udp_ports: usize,
    /// Start at this wall-clock time (ms since the UNIX epoch), sleeping
    /// until then; the report says how late the client was for it.
    #[arg(long)]
    start_at_ms: Option<u64>,
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Warm-up before measuring (ms).
    #[arg(long, default_value_t = 100)]
    warmup_ms: u64,
    /// Socket connect/send/receive timeout (ms).
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Pin the client to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Output: json.
    #[arg(short = 'o', long)]
    output: Option<String>,
}

fn seconds(s: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{flag}: {s} is not a duration"))
}

/// `--cpu`: a number, `last` or `none`.
fn cpu_arg(s: &str) -> Result<Option<usize>> {
    Ok(match s {
        "none" => None,
        "last" => Some(
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZero::get)
                .saturating_sub(1),
        ),
        n => Some(
            n.parse::<usize>()
                .with_context(|| format!("--cpu: {n:?} is not a CPU number, last or none"))?,
        ),
    })
}

/// Run a bench command.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.command {
        BenchCommand::Server {
            port,
            stream_port,
            udp_port,
            cpu,
        } => {
            if let Some(c) = cpu {
                tollway_bench::pin_to_cpu(c)?;
            }
            tollway_bench::server::serve_all_blocking(port, stream_port, udp_port)
                .context("bench server")?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Client(a) => {
            let json = match a.output.as_deref() {
                None => false,
                Some("json") => true,
                Some(o) => bail!("unknown output format {o:?} (json)"),
            };
            if let Some(c) = a.cpu {
                tollway_bench::pin_to_cpu(c)?;
            }
            let report = tollway_bench::client::run(&ClientOptions {
                target: a.target,
                mode: a.mode,
                duration: seconds(a.duration_s, "--duration-s")?,
                warmup: Duration::from_millis(a.warmup_ms),
                io_timeout: Duration::from_millis(a.timeout_ms),
                udp_ports: a.udp_ports,
                start_at: a
                    .start_at_ms
                    .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
            });
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.render_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::ServiceLb(a) => {
            let iptables = a
                .iptables
                .iter()
                .filter(|b| b.as_str() != "none")
                .map(|b| b.parse::<Backend>().map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()?;
            let cpu = cpu_arg(&a.cpu)?;
            let opts = ServiceLbOptions {
                tollway: std::env::current_exe().context("finding the tollway binary")?,
                sizes: a.sizes,
                duration: seconds(a.duration_s, "--duration-s")?,
                rounds: a.rounds,
                warmup: Duration::from_millis(a.warmup_ms),
                iptables,
                changes: a.changes,
                restore_timeout: Duration::from_secs(a.restore_timeout_s),
                out: a.out,
                cpu,
            };
            let report = tollway_bench::service_lb(&opts).context("bench service-lb")?;
            print!("{}", report.table);
            println!();
            print!(
                "{}",
                tollway_bench::report::render_verdicts(&report.verdicts)
            );
            eprintln!("results: {}", opts.out.display());
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Flows(a) => {
            let (rr, stream, rounds, storm, storm_rounds) = if a.quick {
                tollway_bench::flows::QUICK
            } else {
                tollway_bench::flows::DEFAULTS
            };
            let opts = FlowsOptions {
                tollway: std::env::current_exe().context("finding the tollway binary")?,
                rr: seconds(a.duration_s.unwrap_or(rr), "--duration-s")?,
                stream: seconds(a.stream_s.unwrap_or(stream), "--stream-s")?,
                rounds: a.rounds.unwrap_or(rounds),
                storm: seconds(a.storm_s.unwrap_or(storm), "--storm-s")?,
                storm_rounds: a.storm_rounds.unwrap_or(storm_rounds),
                storm_ports: a.storm_ports,
                storm_senders: a.storm_senders,
                warmup: Duration::from_millis(a.warmup_ms),
                cpu: cpu_arg(&a.cpu)?,
                agents_cpu: a.agents_cpu,
                same_node: !a.no_same_node,
                quick: a.quick,
                out: a.out,
            };
            let report = tollway_bench::flows(&opts).context("bench flows")?;
            print!("{}", report.tables);
            println!();
            for line in &report.summary {
                println!("- {line}");
            }
            eprintln!("results: {}", opts.out.display());
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Policy(a) => {
            let opts = PolicyOptions {
                tollway: std::env::current_exe().context("finding the tollway binary")?,
                endpoints: a.endpoints,
                policies: a.policies,
                reps: a.reps,
                seed: a.seed,
                duration: seconds(a.duration_s, "--duration-s")?,
                rounds: a.rounds,
                warmup: Duration::from_millis(a.warmup_ms),
                cpu: cpu_arg(&a.cpu)?,
                out: a.out,
                skip_datapath: a.skip_datapath,
            };
            let report = tollway_bench::policy(&opts).context("bench policy")?;
            print!("{}", report.tables);
            println!();
            for line in &report.summary {
                println!("- {line}");
            }
            eprintln!("results: {}", opts.out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
