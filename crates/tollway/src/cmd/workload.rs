//! `tollway workload serve | probe | probe-many | dns | dig`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tollway_workload::dns::{DigArgs, DnsServeArgs};
use tollway_workload::{ProbeArgs, ProbeManyArgs, ServeArgs};

/// `tollway workload`.
#[derive(Args, Debug)]
pub struct WorkloadArgs {
    #[command(subcommand)]
    command: WorkloadCommand,
}

#[derive(Subcommand, Debug)]
enum WorkloadCommand {
    /// HTTP/1.1 + h2c, TCP and UDP echo server answering with the pod name.
    Serve(ServeArgs),
    /// Connect to http://, tcp:// or udp:// targets and report each attempt;
    /// exits 0 only if every attempt succeeded.
    Probe(ProbeArgs),
    /// One attempt at each of many targets, concurrently; prints
    /// `{"reports": [...]}` (one `probe -o json` report per target, in
    /// order); exits 0 only if every target answered.
    ProbeMany(ProbeManyArgs),
    /// The cluster DNS server (the lab's kube-dns): answers A queries for
    /// <svc>.<ns>.svc.cluster.local (and <svc>.<ns>.svc) from the lab's
    /// store, reloading when it changes, until SIGTERM.
    Dns(DnsArgs),
    /// One DNS query, printed like dig (or as JSON); exits non-zero when no
    /// answer comes in time (any response code is an answer).
    Dig(DigArgs),
}

/// `tollway workload dns`.
#[derive(Args, Debug)]
struct DnsArgs {
    /// The lab whose Services to serve (pods have TOLLWAY_LAB set).
    // Declared here too so that it reaches this command: clap propagates the
    // global --lab (given before or after `workload`) into this field.
    #[arg(long, env = "TOLLWAY_LAB", default_value = "default")]
    lab: String,
    #[command(flatten)]
    serve: DnsServeArgs,
}

/// Run a workload command.
pub fn run(args: WorkloadArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.command {
        WorkloadCommand::Serve(a) => {
            rt.block_on(tollway_workload::serve(a))?;
            Ok(ExitCode::SUCCESS)
        }
        WorkloadCommand::ProbeMany(a) => {
            let report = rt.block_on(tollway_workload::matrix::run(a))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        WorkloadCommand::Dns(a) => {
            let (_, store) = tollway_lab::lab::open_store(&a.lab)
                .with_context(|| format!("opening the store of lab {}", a.lab))?;
            rt.block_on(tollway_workload::dns::serve_store(store, &a.serve))?;
            Ok(ExitCode::SUCCESS)
        }
        WorkloadCommand::Dig(a) => {
            let answer = tollway_workload::dns::dig(&a)
                .with_context(|| format!("asking {} for {} {}", a.server, a.name, a.qtype))?;
            println!("{}", answer.render(a.output)?);
            Ok(ExitCode::SUCCESS)
        }
        WorkloadCommand::Probe(a) => {
            let format = a.output;
            let report = rt.block_on(tollway_workload::probe(a))?;
            println!("{}", report.render(format)?);
            Ok(if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
