//! `tollway bench policy`: what network policy costs.
//!
//! 1. Control plane ([`control`]): the time and memory to compile and
//!    apply N policies (1,000 by default) over a synthetic cluster of M
//!    endpoints (10,000), phase by phase, from the objects to one node's
//!    kernel tries; baselines with 0 and N/10 policies in the same run.
//! 2. Datapath ([`datapath`]): TCP_CRR and TCP_RR latency to a server pod
//!    with a 100-rule ingress policy against no policy, the two states
//!    alternating round by round in a lab of its own (`bench-policy-<pid>`,
//!    taken down at the end, on error and on Ctrl-C).
//!
//! The results go to a JSON file (also when the run stops early, with
//! `complete: false`) and are printed as two tables.

pub mod control;
pub mod datapath;
pub mod report;
pub mod synth;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::BenchError;
use crate::harness::{Lab, machine};
use crate::progress::{Progress, catch_interrupts};
use report::{PolicyBenchReport, PolicyParams, render_control, render_datapath, summary};

/// What to run.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// The `tollway` binary (the datapath part drives its lab through it).
    pub tollway: PathBuf,
    /// Pods of the synthetic cluster.
    pub endpoints: usize,
    /// Policies of the measured configuration.
    pub policies: usize,
    /// Repetitions of each control-plane configuration.
    pub reps: usize,
    /// The generator's seed.
    pub seed: u64,
    /// Time measured per state and mode, split over `rounds`.
    pub duration: Duration,
    /// Rounds (the states alternate).
    pub rounds: usize,
    /// Warm-up of each client run.
    pub warmup: Duration,
    /// Pin the client and the server to this CPU.
    pub cpu: Option<usize>,
    /// Where the JSON goes.
    pub out: PathBuf,
    /// Only the control plane.
    pub skip_datapath: bool,
}

impl PolicyOptions {
    fn check(&self) -> Result<(), BenchError> {
        if self.endpoints == 0 || self.endpoints > synth::MAX_ENDPOINTS {
            return Err(BenchError::Usage(format!(
                "--endpoints: {} is not in 1..={}",
                self.endpoints,
                synth::MAX_ENDPOINTS
            )));
        }
        if self.reps == 0 {
            return Err(BenchError::Usage("--reps must be at least 1".into()));
        }
        if self.rounds == 0 {
            return Err(BenchError::Usage("--rounds must be at least 1".into()));
        }
        if !self.skip_datapath && self.duration.as_secs_f64() / (self.rounds as f64) < 0.05 {
            return Err(BenchError::Usage(
                "--duration-s / --rounds must leave at least 50 ms per round".into(),
            ));
        }
        Ok(())
    }

    /// The policy counts run: 0, a tenth, and the measured one (without
    /// duplicates).
    pub fn configurations(&self) -> Vec<usize> {
        let mut v = vec![0, self.policies / 10, self.policies];
        v.dedup();
        v
    }
}

/// Where `bench/results/policy.json` goes by default.
pub fn default_out() -> &'static Path {
    Path::new("bench/results/policy.json")
}

fn notes(opts: &PolicyOptions) -> Vec<String> {
    vec![
        format!(
            "Machine: {} CPUs; a VM, so the numbers are noisy: compare the ratios of one run, \
             not numbers across runs.",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        format!(
            "Control plane: a synthetic cluster (seed {}) of {} pods, built in memory (no \
             processes); the pipeline is the library code the lab's identity controller and a \
             node agent run on a full sync, called directly (no store, no files). Times are \
             medians of {} repetitions; the configurations are interleaved. The kernel tries are \
             real LPM tries created with bpf(2) (not attached to anything): one per node-1 \
             endpoint, as the agent builds them. Kernel memory is the tries' `memlock:` in \
             /proc/self/fdinfo, which on this kernel counts each element node (key, value, \
             trie node), not the trie's intermediate nodes or the map's own header.",
            opts.seed, opts.endpoints, opts.reps
        ),
        "Peak RSS growth: VmHWM (reset through /proc/self/clear_refs after malloc_trim) minus \
         VmRSS before the pass, over identities → tries; the worst-case compile of every \
         identity runs after and is not in it."
            .into(),
        format!(
            "Datapath: the client (node-1) connects to the server pod's IP (node-2) directly. \
             State (a): no policy, both pods' tries hold two allow-all entries. State (b): one \
             CiliumNetworkPolicy with {} ingress rules selecting the server (99 from a /32 of \
             198.18.0.0/24 each on its own port, one from the client's labels on port {}), so \
             the server's ingress is default-deny and its trie holds one entry per rule plus \
             the egress allow-all. The datapath looks a new connection up in the trie (twice: \
             the peer's identity and 'any'); packets of established connections only hit \
             conntrack, so TCP_RR is the control, TCP_CRR the case that pays the lookup. \
             The states alternate round by round ({} rounds; a switch waits until both agents \
             report the store's version and the expected rule count); the client and the \
             server are {}.",
            datapath::POLICY_RULES,
            crate::harness::SERVER_PORT,
            opts.rounds,
            opts.cpu
                .map_or("not pinned".to_string(), |c| format!("pinned to CPU {c}"))
        ),
    ]
}

struct Runner<'a> {
    opts: &'a PolicyOptions,
    report: PolicyBenchReport,
}

impl Runner<'_> {
    fn finalize(&mut self) {
        let mut tables = String::new();
        if let Some(c) = &self.report.control {
            tables.push_str(&format!(
                "Control plane: {} endpoints, {} on {} (median of {} repetitions)\n\n",
                report::thousands(c.endpoints),
                report::thousands(c.runs.last().map_or(0, |r| r.counts.local_endpoints)),
                c.node,
                c.reps
            ));
            tables.push_str(&render_control(c));
        }
        if let Some(d) = &self.report.datapath {
            if !tables.is_empty() {
                tables.push('\n');
            }
            tables.push_str(&format!(
                "Datapath: client (node-1) -> server pod {} (node-2), {}-rule policy vs none\n\n",
                d.target, d.policy_ingress_rules
            ));
            tables.push_str(&render_datapath(d));
        }
        self.report.tables = tables;
        self.report.summary = summary(&self.report);
    }

    fn write(&self) -> Result<(), BenchError> {
        crate::report::write_json(&self.opts.out, &self.report)
    }
}

/// Run the benchmark; the report is also written to `opts.out` (when the
/// run stops early too, with `complete: false`).
pub fn policy(opts: &PolicyOptions) -> Result<PolicyBenchReport, BenchError> {
    opts.check()?;
    catch_interrupts();
    let progress = Progress::new();
    let lab_name = format!("bench-policy-{}", std::process::id() % 100_000);
    let mut r = Runner {
        opts,
        report: PolicyBenchReport {
            benchmark: "policy".into(),
            date: jiff::Timestamp::now().to_string(),
            tollway_version: env!("CARGO_PKG_VERSION").into(),
            machine: machine(),
            params: PolicyParams {
                endpoints: opts.endpoints,
                policies: opts.policies,
                configurations: opts.configurations(),
                reps: opts.reps,
                seed: opts.seed,
                duration_s: opts.duration.as_secs_f64(),
                rounds: opts.rounds,
                warmup_ms: opts.warmup.as_millis() as u64,
                cpu: opts.cpu.map_or_else(
                    || "not pinned".to_string(),
                    |c| format!("client and server pinned to CPU {c}"),
                ),
                skip_datapath: opts.skip_datapath,
            },
            notes: notes(opts),
            ..Default::default()
        },
    };
    let result = (|| -> Result<(), BenchError> {
        let control = control::run(
            &control::ControlOptions {
                endpoints: opts.endpoints,
                configurations: opts.configurations(),
                reps: opts.reps,
                seed: opts.seed,
            },
            &progress,
        )?;
        r.report.control = Some(control);
        r.finalize();
        progress.line(format!("after the control plane:\n{}", r.report.tables));
        // Keep what is done even if the datapath part fails.
        r.write()?;
        if opts.skip_datapath {
            return Ok(());
        }
        let mut lab = Lab::new(opts.tollway.clone(), lab_name.clone());
        let part = datapath::run(
            &datapath::DatapathOptions {
                tollway: opts.tollway.clone(),
                duration: opts.duration,
                rounds: opts.rounds,
                warmup: opts.warmup,
                cpu: opts.cpu,
                lab: lab_name.clone(),
            },
            &mut lab,
            &progress,
        );
        progress.step("taking the lab down");
        lab.down();
        r.report.datapath = Some(part?);
        Ok(())
    })();
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

    fn opts() -> PolicyOptions {
        PolicyOptions {
            tollway: "tollway".into(),
            endpoints: 10_000,
            policies: 1_000,
            reps: 3,
            seed: 1,
            duration: Duration::from_secs(10),
            rounds: 10,
            warmup: Duration::from_millis(100),
            cpu: Some(1),
            out: default_out().into(),
            skip_datapath: false,
        }
    }

    #[test]
    fn options_are_checked() {
        let mut o = opts();
        assert!(o.check().is_ok());
        assert_eq!(o.configurations(), vec![0, 100, 1_000]);
        o.policies = 5;
        assert_eq!(o.configurations(), vec![0, 5]);
        o.policies = 0;
        assert_eq!(o.configurations(), vec![0]);
        o.endpoints = 0;
        assert!(o.check().is_err());
        o.endpoints = synth::MAX_ENDPOINTS + 1;
        assert!(o.check().is_err());
        let mut o = opts();
        o.reps = 0;
        assert!(o.check().is_err());
        let mut o = opts();
        o.rounds = 1_000;
        assert!(o.check().is_err());
        o.skip_datapath = true;
        assert!(o.check().is_ok());
    }
}
