//! Part 1 of `tollway bench policy`: the control plane's pipeline on a
//! synthetic cluster, from the objects to one node's kernel tries, timed
//! phase by phase, with its memory.
//!
//! One pass (`pipeline`) does what the lab's identity allocator and one
//! node's agent do on a full sync:
//! 1. `identities`: the wanted label sets of every pod, an
//!    [`IdentityAllocator`] and the CiliumIdentity objects (the lab
//!    daemon's identity controller);
//! 2. `translate`: [`translate_all`] alone (also part of 3, shown apart);
//! 3. `cluster_policy`: [`cluster_policy`] for node-1 (translation, CIDR
//!    identities, ipcache, the compiler's context);
//! 4. `compile_local`: [`compile`] for the identities of node-1's pods;
//! 5. `trie_entries`: the ABI entries of every node-1 endpoint
//!    ([`trie_entries`](tollway_agent::policy::trie_entries), once per
//!    endpoint as the agent does);
//! 6. `build_tries`: one complete kernel LPM trie per node-1 endpoint
//!    ([`PolicyMaps::build_policy`], what the agent swaps in), kept open;
//! 7. `compile_all`: the worst case, [`compile`] for the identities of
//!    every pod of the cluster (after the memory is read, so it does not
//!    count there).
//!
//! `node_total` is 1 + 3 + 4 + 5 + 6.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use tollway_api::{CiliumIdentity, ObjectMeta};
use tollway_datapath::lb::{PolicyMaps, PolicyTable};
use tollway_policy::{
    CidrIdentities, ClusterObjects, EndpointPolicy, IdentityAllocator, TW_ID_CIDR_FIRST,
    cluster_policy, compile, security_labels_map, translate_all, wanted_label_sets,
};

use crate::error::BenchError;
use crate::policy::report::{
    ControlCounts, ControlPart, ControlRun, KernelTries, PhaseStat, thousands,
};
use crate::policy::synth::{self, Cluster, Policies};
use crate::progress::{Progress, interrupted};

/// The node whose agent pipeline is measured.
pub const NODE: &str = "node-1";

/// What to run.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Pods of the synthetic cluster.
    pub endpoints: usize,
    /// Policy counts, ascending (baselines first, the measured one last).
    pub configurations: Vec<usize>,
    /// Repetitions of each.
    pub reps: usize,
    /// The generator's seed.
    pub seed: u64,
}

/// The timings of one pass.
#[derive(Debug, Clone, Default)]
struct Times {
    identities: Duration,
    translate: Duration,
    cluster_policy: Duration,
    compile_local: Duration,
    trie_entries: Duration,
    build_tries: Option<Duration>,
    compile_all: Duration,
}

/// One pass's results.
#[derive(Debug, Clone, Default)]
struct Pass {
    times: Times,
    counts: ControlCounts,
    peak_growth_kib: u64,
    retained_growth_kib: u64,
    kernel: Option<KernelTries>,
    kernel_error: Option<String>,
}

/// `VmRSS` and `VmHWM` of this process, KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Give freed memory back to the kernel and reset the peak RSS to the
/// current RSS, so that the next pass's peak is its own.
fn reset_peak() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it takes no
    // pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
    // "5" resets VmHWM (Linux ≥ 4.0); without it the growth is an upper
    // bound.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The kernel's `memlock:` of a map fd, bytes.
fn memlock(table: &PolicyTable) -> Option<u64> {
    let fd = table.as_fd().as_raw_fd();
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of open files (`/proc/self/limits`), if readable.
fn open_files_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One pass of the pipeline over `cluster` with `policies`; `build` says
/// whether to build the kernel tries.
fn pipeline(cluster: &Cluster, policies: &Policies, build: bool) -> Result<Pass, BenchError> {
    let mut pass = Pass::default();
    reset_peak();
    let (rss_before, _) = rss_kib();

    // 1. Identities, as the lab's identity controller allocates them.
    let t = Instant::now();
    let wanted = wanted_label_sets(&cluster.namespaces, &cluster.pods);
    let mut alloc = IdentityAllocator::new();
    let mut identities = Vec::with_capacity(wanted.len());
    for set in &wanted {
        let id = alloc.allocate(set)?;
        identities.push(CiliumIdentity {
            api_version: "cilium.io/v2".into(),
            kind: "CiliumIdentity".into(),
            metadata: ObjectMeta {
                name: id.to_string(),
                ..Default::default()
            },
            security_labels: security_labels_map(set),
        });
    }
    pass.times.identities = t.elapsed();

    // 2. Translation alone.
    let t = Instant::now();
    let translated = translate_all(&policies.network, &policies.cilium);
    pass.times.translate = t.elapsed();
    pass.counts.translate_errors = translated.errors.len();
    drop(translated);

    // 3. The cluster's policy state as node-1 sees it.
    let objects = ClusterObjects {
        namespaces: cluster.namespaces.iter().collect(),
        pods: cluster.pods.iter().collect(),
        identities: identities.iter().collect(),
        nodes: cluster.nodes.iter().collect(),
        network_policies: policies.network.iter().collect(),
        cilium_policies: policies.cilium.iter().collect(),
    };
    let mut cidrs = CidrIdentities::new();
    let t = Instant::now();
    let cp = cluster_policy(&objects, NODE, &mut cidrs);
    pass.times.cluster_policy = t.elapsed();
    if let Some((name, e)) = cp.errors.first() {
        return Err(BenchError::Synthetic(format!(
            "{} policies did not translate, e.g. {name}: {e}",
            cp.errors.len()
        )));
    }

    // node-1's endpoints and their identities.
    let local: Vec<u32> = cluster
        .pods
        .iter()
        .filter(|p| p.spec.node_name.as_deref() == Some(NODE))
        .filter_map(|p| cp.pods.get(p.metadata.uid.as_deref()?))
        .filter(|p| p.ip.is_some())
        .map(|p| p.identity)
        .collect();
    let local_ids: BTreeSet<u32> = local.iter().copied().collect();
    let all_ids: BTreeSet<u32> = cp.pods.values().map(|p| p.identity).collect();

    // 4. Compile for node-1's identities.
    let t = Instant::now();
    let compiled = compile(&cp.rules, &cp.ctx, &local_ids)?;
    pass.times.compile_local = t.elapsed();

    // 5. The ABI entries of each endpoint.
    let empty = EndpointPolicy::default();
    let t = Instant::now();
    let entries: Vec<_> = local
        .iter()
        .map(|id| tollway_agent::policy::trie_entries(compiled.get(id).unwrap_or(&empty)))
        .collect();
    pass.times.trie_entries = t.elapsed();

    // 6. One kernel trie per endpoint.
    if build {
        let keep_open = open_files_limit().is_none_or(|l| l > entries.len() + 256);
        let mut tables = Vec::with_capacity(if keep_open { entries.len() } else { 0 });
        let mut bytes = 0u64;
        let mut built = Ok(());
        let t = Instant::now();
        for e in &entries {
            match PolicyMaps::build_policy(e) {
                Ok(table) if keep_open => tables.push(table),
                Ok(table) => bytes += memlock(&table).unwrap_or(0),
                Err(err) => {
                    built = Err(err);
                    break;
                }
            }
        }
        let took = t.elapsed();
        match built {
            Ok(()) => {
                pass.times.build_tries = Some(took);
                bytes += tables.iter().filter_map(memlock).sum::<u64>();
                let n: usize = entries.iter().map(Vec::len).sum();
                pass.kernel = Some(KernelTries {
                    tries: entries.len(),
                    entries: n,
                    memlock_bytes: bytes,
                    bytes_per_entry: if n > 0 {
                        (bytes as f64 / n as f64 * 10.0).round() / 10.0
                    } else {
                        0.0
                    },
                    all_open_at_once: keep_open,
                });
            }
            Err(e) => pass.kernel_error = Some(e.to_string()),
        }
        let (rss, hwm) = rss_kib();
        pass.peak_growth_kib = hwm.saturating_sub(rss_before);
        pass.retained_growth_kib = rss.saturating_sub(rss_before);
        drop(tables);
    } else {
        let (rss, hwm) = rss_kib();
        pass.peak_growth_kib = hwm.saturating_sub(rss_before);
        pass.retained_growth_kib = rss.saturating_sub(rss_before);
    }

    // 7. The worst case: every endpoint's identity.
    let t = Instant::now();
    let compiled_all = compile(&cp.rules, &cp.ctx, &all_ids)?;
    pass.times.compile_all = t.elapsed();

    let c = &mut pass.counts;
    c.pods = cluster.pods.len();
    c.namespaces = cluster.namespaces.len();
    c.network_policies = policies.network.len();
    c.cilium_policies = policies.cilium.len() - policies.clusterwide();
    c.clusterwide_policies = policies.clusterwide();
    c.endpoint_identities = identities.len();
    c.cidr_identities = cp
        .ctx
        .identities
        .keys()
        .filter(|id| **id >= TW_ID_CIDR_FIRST)
        .count();
    c.identities_total = cp.ctx.identities.len();
    c.rules = cp.rules.len();
    c.ipcache_prefixes = cp.ipcache.len();
    c.local_endpoints = local.len();
    c.local_identities = local_ids.len();
    c.all_identities = all_ids.len();
    c.entries_total = entries.iter().map(Vec::len).sum();
    c.entries_max_per_endpoint = entries.iter().map(Vec::len).max().unwrap_or(0);
    c.entries_mean_per_endpoint = if entries.is_empty() {
        0.0
    } else {
        (c.entries_total as f64 / entries.len() as f64 * 10.0).round() / 10.0
    };
    c.enforcing_ingress = local
        .iter()
        .filter(|id| compiled.get(id).is_some_and(|p| p.ingress_default_deny))
        .count();
    c.enforcing_egress = local
        .iter()
        .filter(|id| compiled.get(id).is_some_and(|p| p.egress_default_deny))
        .count();
    c.compiled_all_entries_total = compiled_all.values().map(|p| p.entries.len()).sum();
    c.compiled_all_entries_max = compiled_all
        .values()
        .map(|p| p.entries.len())
        .max()
        .unwrap_or(0);
    Ok(pass)
}

/// The phases of a configuration from its passes.
fn phases(passes: &[Pass]) -> Vec<PhaseStat> {
    let Some(first) = passes.first() else {
        return Vec::new();
    };
    let c = &first.counts;
    let samples = |f: &dyn Fn(&Times) -> Option<Duration>| -> Vec<f64> {
        passes.iter().filter_map(|p| f(&p.times)).map(ms).collect()
    };
    let mut out = vec![
        PhaseStat::from_samples(
            "identities",
            format!(
                "identity allocation ({} label sets)",
                thousands(c.endpoint_identities)
            ),
            samples(&|t| Some(t.identities)),
        ),
        PhaseStat::from_samples(
            "translate",
            "translate_all".into(),
            samples(&|t| Some(t.translate)),
        ),
        PhaseStat::from_samples(
            "cluster_policy",
            format!("cluster_policy ({NODE}; includes translation)"),
            samples(&|t| Some(t.cluster_policy)),
        ),
        PhaseStat::from_samples(
            "compile_local",
            format!(
                "compile: {NODE}'s {} identities",
                thousands(c.local_identities)
            ),
            samples(&|t| Some(t.compile_local)),
        ),
        PhaseStat::from_samples(
            "trie_entries",
            format!(
                "trie_entries: {} {NODE} endpoints",
                thousands(c.local_endpoints)
            ),
            samples(&|t| Some(t.trie_entries)),
        ),
    ];
    let build = samples(&|t| t.build_tries);
    if !build.is_empty() {
        out.push(PhaseStat::from_samples(
            "build_tries",
            format!(
                "kernel tries built: {} (one per endpoint)",
                thousands(c.local_endpoints)
            ),
            build,
        ));
    }
    out.push(PhaseStat::from_samples(
        "node_total",
        format!("{NODE} total (identities → tries)"),
        samples(&|t| {
            Some(
                t.identities
                    + t.cluster_policy
                    + t.compile_local
                    + t.trie_entries
                    + t.build_tries.unwrap_or_default(),
            )
        }),
    ));
    out.push(PhaseStat::from_samples(
        "compile_all",
        format!(
            "worst case, compile: every endpoint's {} identities",
            thousands(c.all_identities)
        ),
        samples(&|t| Some(t.compile_all)),
    ));
    out
}

/// Run the control-plane part: every configuration `reps` times, the
/// configurations interleaved (rep 1 of each, then rep 2 of each, ...), so
/// that drift of the machine hits them alike.
pub fn run(opts: &ControlOptions, progress: &Progress) -> Result<ControlPart, BenchError> {
    progress.step(format!(
        "control plane: generating {} endpoints",
        thousands(opts.endpoints)
    ));
    let cluster = synth::cluster(opts.endpoints, opts.seed)?;
    let mut inputs = Vec::new();
    for &n in &opts.configurations {
        inputs.push(synth::policies(n, opts.endpoints, opts.seed)?);
    }
    let mut passes: Vec<Vec<Pass>> = vec![Vec::new(); inputs.len()];
    let mut build = true;
    let mut kernel_error: Option<String> = None;
    for rep in 0..opts.reps {
        for k in 0..inputs.len() {
            let i = (k + rep) % inputs.len();
            if interrupted() {
                return Err(BenchError::Interrupted);
            }
            progress.step(format!(
                "control plane: {} policies, repetition {}/{}",
                thousands(opts.configurations[i]),
                rep + 1,
                opts.reps
            ));
            let pass = pipeline(&cluster, &inputs[i], build)?;
            if let Some(e) = &pass.kernel_error {
                // Not root, or no BPF: the rest is still worth having.
                progress.line(format!("  kernel tries not built: {e}"));
                kernel_error = Some(e.clone());
                build = false;
            }
            passes[i].push(pass);
        }
    }
    let mut runs = Vec::new();
    for (i, ps) in passes.iter().enumerate() {
        let Some(first) = ps.first() else { continue };
        let med = |f: fn(&Pass) -> u64| {
            let v: Vec<f64> = ps.iter().map(|p| f(p) as f64 / 1024.0).collect();
            (crate::stats::median(&v).unwrap_or(0.0) * 10.0).round() / 10.0
        };
        let run = ControlRun {
            policies: opts.configurations[i],
            counts: first.counts.clone(),
            phases: phases(ps),
            peak_rss_growth_mib: med(|p| p.peak_growth_kib),
            retained_rss_growth_mib: med(|p| p.retained_growth_kib),
            kernel: if kernel_error.is_some() {
                None
            } else {
                first.kernel.clone()
            },
            kernel_error: kernel_error.clone(),
        };
        progress.line(format!(
            "  {:>6} policies: {} rules, {} identities, {} trie entries on {NODE} (max {} per endpoint); {NODE} total {:.1} ms, compile of every identity {:.1} ms",
            thousands(run.policies),
            thousands(run.counts.rules),
            thousands(run.counts.endpoint_identities + run.counts.cidr_identities),
            thousands(run.counts.entries_total),
            thousands(run.counts.entries_max_per_endpoint),
            run.phase("node_total").unwrap_or(0.0),
            run.phase("compile_all").unwrap_or(0.0),
        ));
        runs.push(run);
    }
    let ratios = crate::policy::report::control_ratios(&runs);
    Ok(ControlPart {
        endpoints: opts.endpoints,
        reps: opts.reps,
        seed: opts.seed,
        node: NODE.into(),
        runs,
        ratios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_pipeline_counts_what_it_compiles() {
        let cluster = synth::cluster(1_000, 3).expect("cluster");
        let none = synth::policies(0, 1_000, 3).expect("policies");
        let some = synth::policies(100, 1_000, 3).expect("policies");
        let a = pipeline(&cluster, &none, false).expect("pipeline");
        let b = pipeline(&cluster, &some, false).expect("pipeline");
        assert_eq!(a.counts.pods, 1_000);
        assert_eq!(a.counts.local_endpoints, 500);
        assert_eq!(a.counts.rules, 0);
        // No policy: the two allow-everything entries per endpoint.
        assert_eq!(a.counts.entries_total, 2 * 500);
        assert_eq!(a.counts.enforcing_ingress, 0);
        assert_eq!(b.counts.translate_errors, 0);
        assert!(b.counts.rules > 100);
        assert!(b.counts.cidr_identities > 0);
        assert!(b.counts.entries_total > a.counts.entries_total);
        assert!(b.counts.enforcing_ingress > 0);
        assert!(b.counts.local_identities <= b.counts.all_identities);
        assert_eq!(
            (
                b.counts.network_policies,
                b.counts.cilium_policies,
                b.counts.clusterwide_policies
            ),
            (40, 50, 10)
        );
        assert!(b.kernel.is_none() && b.times.build_tries.is_none());
        let ph = phases(&[b.clone(), b]);
        assert!(ph.iter().any(|p| p.phase == "node_total"));
        assert!(!ph.iter().any(|p| p.phase == "build_tries"));
    }

    #[test]
    fn memory_figures_are_read() {
        let (rss, hwm) = rss_kib();
        assert!(rss > 0 && hwm >= rss);
        assert!(open_files_limit().is_some_and(|l| l > 0));
    }
}
