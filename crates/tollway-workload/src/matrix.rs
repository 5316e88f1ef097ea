//! `tollway workload probe-many`: one attempt at each of many targets, all
//! at once. Connectivity truth tables (network policy tests) need hundreds
//! of probes where the denied ones time out; one process per pod probing
//! every target concurrently keeps a whole table within one timeout.

use serde::{Deserialize, Serialize};

use crate::error::WorkloadError;
use crate::probe::{self, OutputFormat, ProbeArgs, ProbeReport};

/// Arguments of `tollway workload probe-many`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ProbeManyArgs {
    /// Targets, as for `probe` (`http://…`, `tcp://host:port`, `udp://host:port`).
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Per-target budget for connecting and getting an answer.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub timeout_ms: u64,
    /// At most this many probes in flight.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub parallel: usize,
}

/// The reports of every target, in the order given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeManyReport {
    /// One report per target.
    pub reports: Vec<ProbeReport>,
}

impl ProbeManyReport {
    /// Whether every target answered.
    pub fn success(&self) -> bool {
        self.reports.iter().all(ProbeReport::success)
    }
}

/// Probe every target once, concurrently (bounded by `parallel`).
pub async fn run(args: ProbeManyArgs) -> Result<ProbeManyReport, WorkloadError> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(args.parallel.max(1)));
    let mut tasks = Vec::with_capacity(args.targets.len());
    for t in &args.targets {
        let mut p = ProbeArgs::new(t.clone());
        p.timeout_ms = args.timeout_ms;
        p.output = OutputFormat::Json;
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            probe::run(p).await
        }));
    }
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(r) => reports.push(r?),
            Err(e) => {
                return Err(WorkloadError::InvalidOption {
                    option: "probe-many",
                    reason: format!("a probe task failed: {e}"),
                });
            }
        }
    }
    Ok(ProbeManyReport { reports })
}
