//! `tollway workload serve | probe`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
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
