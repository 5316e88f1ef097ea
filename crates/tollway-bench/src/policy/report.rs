//! The results of `tollway bench policy`: what is written to
//! `bench/results/policy.json`, and the tables printed from it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::report::{Machine, Measure};
use crate::stats::{median, ratio};

/// One timed phase of the control-plane pipeline, over the repetitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseStat {
    /// Key (`identities`, `translate`, `cluster_policy`, `compile_local`,
    /// `compile_all`, `trie_entries`, `build_tries`, `node_total`).
    pub phase: String,
    /// What it is, for the table.
    pub label: String,
    /// Median, milliseconds.
    pub median_ms: f64,
    /// Fastest, milliseconds.
    pub min_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
    /// Every repetition, milliseconds.
    pub samples_ms: Vec<f64>,
}

impl PhaseStat {
    /// A phase from its samples (milliseconds).
    pub fn from_samples(phase: &str, label: String, samples_ms: Vec<f64>) -> PhaseStat {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        PhaseStat {
            phase: phase.into(),
            label,
            median_ms: r(median(&samples_ms).unwrap_or(0.0)),
            min_ms: r(samples_ms.iter().copied().reduce(f64::min).unwrap_or(0.0)),
            max_ms: r(samples_ms.iter().copied().fold(0.0, f64::max)),
            samples_ms: samples_ms.into_iter().map(r).collect(),
        }
    }
}

/// What one configuration's cluster and policies amount to (the same in
/// every repetition).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlCounts {
    /// Pods (endpoints).
    pub pods: usize,
    /// Namespaces.
    pub namespaces: usize,
    /// NetworkPolicies.
    pub network_policies: usize,
    /// CiliumNetworkPolicies (namespaced).
    pub cilium_policies: usize,
    /// CiliumClusterwideNetworkPolicies.
    pub clusterwide_policies: usize,
    /// Endpoint identities allocated (distinct label sets).
    pub endpoint_identities: usize,
    /// CIDR identities the policies need (node-1's).
    pub cidr_identities: usize,
    /// Every identity the compiler knows (reserved, endpoint, CIDR).
    pub identities_total: usize,
    /// Normalized rules.
    pub rules: usize,
    /// Policies that did not translate.
    pub translate_errors: usize,
    /// ipcache prefixes of node-1.
    pub ipcache_prefixes: usize,
    /// Endpoints on node-1.
    pub local_endpoints: usize,
    /// Distinct identities of node-1's endpoints.
    pub local_identities: usize,
    /// Distinct identities of every endpoint.
    pub all_identities: usize,
    /// Trie entries over node-1's endpoints (what the agent installs).
    pub entries_total: usize,
    /// Most entries of one endpoint.
    pub entries_max_per_endpoint: usize,
    /// Mean entries per endpoint.
    pub entries_mean_per_endpoint: f64,
    /// node-1 endpoints whose ingress is default-deny.
    pub enforcing_ingress: usize,
    /// node-1 endpoints whose egress is default-deny.
    pub enforcing_egress: usize,
    /// Compiled entries over every endpoint identity (the worst-case
    /// compile), before `trie_entries` adds the allow-all entries.
    pub compiled_all_entries_total: usize,
    /// Most compiled entries of one identity in the worst-case compile.
    pub compiled_all_entries_max: usize,
}

/// The kernel side of node-1's tries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelTries {
    /// Tries built (one per node-1 endpoint, as the agent does).
    pub tries: usize,
    /// Entries written into them.
    pub entries: usize,
    /// Sum of the tries' `memlock:` (from `/proc/self/fdinfo`), bytes:
    /// the kernel's own accounting of the maps' memory.
    pub memlock_bytes: u64,
    /// `memlock_bytes / entries` (the per-trie overhead makes it larger
    /// for small tries).
    pub bytes_per_entry: f64,
    /// Whether all tries were open at once (else each was closed after
    /// reading its memory: the open-files limit is too low).
    pub all_open_at_once: bool,
}

/// One configuration (policy count) of the control-plane part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlRun {
    /// Policies.
    pub policies: usize,
    /// Sizes.
    pub counts: ControlCounts,
    /// Timed phases.
    pub phases: Vec<PhaseStat>,
    /// Growth of the process's peak RSS (VmHWM) over the RSS before the
    /// pipeline, MiB (median over the repetitions). The worst-case compile
    /// is not included (it runs after).
    pub peak_rss_growth_mib: f64,
    /// RSS growth while the node's results are held, MiB (median).
    pub retained_rss_growth_mib: f64,
    /// The kernel tries, if they could be built.
    pub kernel: Option<KernelTries>,
    /// Why the kernel tries could not be built.
    pub kernel_error: Option<String>,
}

impl ControlRun {
    /// The median of phase `key`, ms.
    pub fn phase(&self, key: &str) -> Option<f64> {
        self.phases
            .iter()
            .find(|p| p.phase == key)
            .map(|p| p.median_ms)
    }
}

/// The control-plane part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlPart {
    /// Endpoints.
    pub endpoints: usize,
    /// Repetitions of each configuration.
    pub reps: usize,
    /// The generator's seed.
    pub seed: u64,
    /// The node whose pipeline is measured.
    pub node: String,
    /// One per policy count, ascending; the last is the measured one, the
    /// others its baselines.
    pub runs: Vec<ControlRun>,
    /// `[phase, last ÷ first, last ÷ middle]` (medians).
    pub ratios: Vec<PhaseRatio>,
}

/// A phase's ratios between configurations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseRatio {
    /// Phase key, or `peak_rss`, `kernel_memory`, `entries`.
    pub what: String,
    /// Measured ÷ the 0-policy baseline.
    pub vs_none: Option<f64>,
    /// Measured ÷ the tenth-size baseline.
    pub vs_tenth: Option<f64>,
}

/// One state of the datapath part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateMeasure {
    /// `no policy` or `100-rule policy`.
    pub state: String,
    /// TCP_CRR.
    pub crr: Measure,
    /// TCP_RR.
    pub rr: Measure,
    /// Entries of the server's trie (`tollway bpf policy get`), each time
    /// this state was switched to.
    pub server_trie_entries: Vec<usize>,
}

/// One switch between the states.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    /// `apply` or `delete`.
    pub action: String,
    /// From the start of the command until both agents report it, ms.
    pub ms: f64,
}

/// The datapath part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatapathPart {
    /// The lab.
    pub lab: String,
    /// The server's `IP:port` (its pod IP: no service translation).
    pub target: String,
    /// The policy's name.
    pub policy: String,
    /// Ingress rules of the policy.
    pub policy_ingress_rules: usize,
    /// Normalized rules it translates to.
    pub policy_rules: usize,
    /// (a) no policy, then (b) the policy.
    pub states: Vec<StateMeasure>,
    /// `(b) ÷ (a)`: CRR p50, CRR p99, RR p50, RR p99.
    pub crr_p50_ratio: Option<f64>,
    /// See `crr_p50_ratio`.
    pub crr_p99_ratio: Option<f64>,
    /// See `crr_p50_ratio`.
    pub rr_p50_ratio: Option<f64>,
    /// See `crr_p50_ratio`.
    pub rr_p99_ratio: Option<f64>,
    /// Whether a pod the policy does not allow was refused under it (and
    /// let through without it).
    pub unrelated_pod_dropped: Option<bool>,
    /// The switches.
    pub switches: Vec<Switch>,
    /// The datapath's drop counters at the end: `[node, reason, count]`.
    pub datapath_drops: Vec<(String, String, u64)>,
}

/// The run's parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyParams {
    /// Endpoints of the synthetic cluster.
    pub endpoints: usize,
    /// Policies of the measured configuration.
    pub policies: usize,
    /// Policy counts run (the baselines and the measured one).
    pub configurations: Vec<usize>,
    /// Repetitions of the control-plane pipeline per configuration.
    pub reps: usize,
    /// The generator's seed.
    pub seed: u64,
    /// Seconds measured per state and mode (split over the rounds).
    pub duration_s: f64,
    /// Rounds (the states alternate).
    pub rounds: usize,
    /// Warm-up per client run, ms.
    pub warmup_ms: u64,
    /// CPU placement of the client and the server.
    pub cpu: String,
    /// Whether the datapath part was skipped.
    pub skip_datapath: bool,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyBenchReport {
    /// `policy`.
    pub benchmark: String,
    /// When it ran (RFC 3339).
    pub date: String,
    /// `tollway` version.
    pub tollway_version: String,
    /// The machine.
    pub machine: Machine,
    /// The parameters.
    pub params: PolicyParams,
    /// Part 1.
    pub control: Option<ControlPart>,
    /// Part 2.
    pub datapath: Option<DatapathPart>,
    /// Summary lines (no verdicts).
    pub summary: Vec<String>,
    /// Things to know when reading the numbers.
    pub notes: Vec<String>,
    /// False when the run stopped early.
    pub complete: bool,
    /// Why it stopped early.
    pub error: Option<String>,
    /// The tables as printed.
    pub tables: String,
}

/// `12,345`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms_cell(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(v) if v < 1.0 => format!("{v:.3} ms"),
        Some(v) if v < 100.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |v| format!("{v:.2}×"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

/// An aligned Markdown table; columns in `left` are left-aligned, the
/// others right-aligned.
pub fn markdown(header: &[String], rows: &[Vec<String>], left: &[usize]) -> String {
    let cols = header.len();
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
            .max(3)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let line = |vals: &[String]| {
        let mut s = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let v = vals.get(i).map_or("", String::as_str);
            let pad = w.saturating_sub(v.chars().count());
            if left.contains(&i) {
                let _ = write!(s, " {v}{} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{v} |", " ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header);
    let mut sep = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        if left.contains(&i) {
            let _ = write!(sep, " {} |", "-".repeat(*w));
        } else {
            let _ = write!(sep, " {}: |", "-".repeat(w.saturating_sub(1)));
        }
    }
    out.push_str(&sep);
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// The ratios of the last configuration to the first (0 policies) and to
/// the middle one (a tenth), for every phase and the sizes.
pub fn control_ratios(runs: &[ControlRun]) -> Vec<PhaseRatio> {
    let Some(last) = runs.last() else {
        return Vec::new();
    };
    let first = runs.first().filter(|r| r.policies == 0 && runs.len() > 1);
    let middle = (runs.len() > 2).then(|| &runs[runs.len() - 2]);
    let mut out: Vec<PhaseRatio> = last
        .phases
        .iter()
        .map(|p| PhaseRatio {
            what: p.phase.clone(),
            vs_none: ratio(Some(p.median_ms), first.and_then(|r| r.phase(&p.phase))),
            vs_tenth: ratio(Some(p.median_ms), middle.and_then(|r| r.phase(&p.phase))),
        })
        .collect();
    let by = |what: &str, f: &dyn Fn(&ControlRun) -> Option<f64>| PhaseRatio {
        what: what.into(),
        vs_none: ratio(f(last), first.and_then(f)),
        vs_tenth: ratio(f(last), middle.and_then(f)),
    };
    out.push(by("entries", &|r| Some(r.counts.entries_total as f64)));
    out.push(by("kernel_memory", &|r| {
        r.kernel.as_ref().map(|k| k.memlock_bytes as f64)
    }));
    out.push(by("peak_rss", &|r| Some(r.peak_rss_growth_mib)));
    out
}

/// The control-plane table: one row per phase or size, one column per
/// configuration, then the ratios.
pub fn render_control(part: &ControlPart) -> String {
    let runs = &part.runs;
    let Some(last) = runs.last() else {
        return String::new();
    };
    let mut header = vec!["".to_string()];
    header.extend(
        runs.iter()
            .map(|r| format!("{} policies", thousands(r.policies))),
    );
    let last_n = thousands(last.policies);
    let first = runs.first().filter(|r| r.policies == 0 && runs.len() > 1);
    let middle = (runs.len() > 2).then(|| &runs[runs.len() - 2]);
    if first.is_some() {
        header.push(format!("{last_n} ÷ 0"));
    }
    if let Some(m) = middle {
        header.push(format!("{last_n} ÷ {}", thousands(m.policies)));
    }
    let ratios = control_ratios(runs);
    let ratio_of = |what: &str| ratios.iter().find(|r| r.what == what);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut push = |label: String, cells: Vec<String>, what: Option<&str>| {
        let mut row = vec![label];
        row.extend(cells);
        let r = what.and_then(ratio_of);
        if first.is_some() {
            row.push(ratio_cell(r.and_then(|r| r.vs_none)));
        }
        if middle.is_some() {
            row.push(ratio_cell(r.and_then(|r| r.vs_tenth)));
        }
        rows.push(row);
    };
    for p in &last.phases {
        push(
            p.label.clone(),
            runs.iter().map(|r| ms_cell(r.phase(&p.phase))).collect(),
            Some(&p.phase),
        );
    }
    let count = |f: &dyn Fn(&ControlRun) -> String| runs.iter().map(f).collect::<Vec<_>>();
    push(
        "rules (normalized)".into(),
        count(&|r| thousands(r.counts.rules)),
        None,
    );
    push(
        "identities: endpoint + CIDR".into(),
        count(&|r| {
            format!(
                "{} + {}",
                thousands(r.counts.endpoint_identities),
                thousands(r.counts.cidr_identities)
            )
        }),
        None,
    );
    push(
        format!(
            "trie entries, {} node-1 endpoints",
            thousands(last.counts.local_endpoints)
        ),
        count(&|r| thousands(r.counts.entries_total)),
        Some("entries"),
    );
    push(
        "trie entries per endpoint: mean / max".into(),
        count(&|r| {
            format!(
                "{:.1} / {}",
                r.counts.entries_mean_per_endpoint,
                thousands(r.counts.entries_max_per_endpoint)
            )
        }),
        None,
    );
    push(
        "kernel memory of the tries (memlock)".into(),
        count(&|r| {
            r.kernel.as_ref().map_or_else(
                || "-".into(),
                |k| format!("{:.1} MiB", mib(k.memlock_bytes)),
            )
        }),
        Some("kernel_memory"),
    );
    push(
        "peak RSS growth of the pipeline".into(),
        count(&|r| format!("{:.1} MiB", r.peak_rss_growth_mib)),
        Some("peak_rss"),
    );
    let left: Vec<usize> = vec![0];
    markdown(&header, &rows, &left)
}

/// The datapath table: one row per mode, both states and their ratios.
pub fn render_datapath(part: &DatapathPart) -> String {
    let (Some(a), Some(b)) = (part.states.first(), part.states.get(1)) else {
        return String::new();
    };
    let header: Vec<String> = [
        "mode",
        "no policy ops/s",
        "no policy p50 µs",
        "no policy p99 µs",
        "policy ops/s",
        "policy p50 µs",
        "policy p99 µs",
        "p50 policy ÷ none",
        "p99 policy ÷ none",
    ]
    .map(String::from)
    .to_vec();
    let row = |mode: &str, x: &Measure, y: &Measure, r50: Option<f64>, r99: Option<f64>| {
        let errors = x.errors + y.errors;
        vec![
            if errors > 0 {
                format!("{mode} ({errors} errors)")
            } else {
                mode.to_string()
            },
            format!("{:.0}", x.rate_ops_s),
            format!("{:.1}", x.latency.p50_us),
            format!("{:.1}", x.latency.p99_us),
            format!("{:.0}", y.rate_ops_s),
            format!("{:.1}", y.latency.p50_us),
            format!("{:.1}", y.latency.p99_us),
            ratio_cell(r50),
            ratio_cell(r99),
        ]
    };
    let rows = vec![
        row(
            "TCP_CRR (policy looked up per connection)",
            &a.crr,
            &b.crr,
            part.crr_p50_ratio,
            part.crr_p99_ratio,
        ),
        row(
            "TCP_RR (one kept connection)",
            &a.rr,
            &b.rr,
            part.rr_p50_ratio,
            part.rr_p99_ratio,
        ),
    ];
    markdown(&header, &rows, &[0])
}

/// Summary lines: the facts, no verdicts.
pub fn summary(report: &PolicyBenchReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = &report.control
        && let Some(last) = c.runs.last()
    {
        let ratios = control_ratios(&c.runs);
        let vs = |what: &str| {
            ratios
                .iter()
                .find(|r| r.what == what)
                .and_then(|r| r.vs_none)
        };
        out.push(format!(
            "control plane, {} policies over {} endpoints ({} identities, {} rules): {} from the \
             objects to {}'s tries built ({} tries, {} entries, {} of kernel memory); \
             worst-case compile of every identity {}; peak RSS +{:.1} MiB{}",
            thousands(last.policies),
            thousands(c.endpoints),
            thousands(last.counts.endpoint_identities + last.counts.cidr_identities),
            thousands(last.counts.rules),
            ms_cell(last.phase("node_total")),
            c.node,
            thousands(last.counts.local_endpoints),
            thousands(last.counts.entries_total),
            last.kernel.as_ref().map_or_else(
                || "?".into(),
                |k| format!("{:.1} MiB", mib(k.memlock_bytes))
            ),
            ms_cell(last.phase("compile_all")),
            last.peak_rss_growth_mib,
            vs("node_total").map_or(String::new(), |r| format!(
                "; {r:.2}× the same pipeline with 0 policies"
            )),
        ));
    }
    if let Some(d) = &report.datapath {
        out.push(format!(
            "datapath, {}-rule policy vs none: TCP_CRR p50 {}, p99 {}; TCP_RR p50 {}, p99 {}{}",
            d.policy_ingress_rules,
            ratio_cell(d.crr_p50_ratio),
            ratio_cell(d.crr_p99_ratio),
            ratio_cell(d.rr_p50_ratio),
            ratio_cell(d.rr_p99_ratio),
            match d.unrelated_pod_dropped {
                Some(true) => "; an unrelated pod was refused under the policy",
                Some(false) => "; WARNING: an unrelated pod was NOT refused under the policy",
                None => "",
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    fn run(policies: usize, scale: f64) -> ControlRun {
        let phase = |k: &str, ms: f64| {
            PhaseStat::from_samples(k, format!("phase {k}"), vec![ms * 1.1, ms, ms * 0.9])
        };
        ControlRun {
            policies,
            counts: ControlCounts {
                rules: policies * 3,
                endpoint_identities: 4_800,
                cidr_identities: policies / 4,
                entries_total: 10_000 + policies * 100,
                entries_mean_per_endpoint: 2.0 + policies as f64 / 50.0,
                entries_max_per_endpoint: 2 + policies * 5,
                local_endpoints: 5_000,
                ..Default::default()
            },
            phases: vec![
                phase("compile_local", scale),
                phase("node_total", 10.0 * scale),
            ],
            peak_rss_growth_mib: 10.0 * scale,
            kernel: Some(KernelTries {
                tries: 5_000,
                entries: 10_000 + policies * 100,
                memlock_bytes: (1_048_576.0 * scale) as u64,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn part() -> ControlPart {
        ControlPart {
            endpoints: 10_000,
            reps: 3,
            node: "node-1".into(),
            runs: vec![run(0, 1.0), run(100, 4.0), run(1_000, 20.0)],
            ..Default::default()
        }
    }

    #[test]
    fn phase_stats_are_medians() {
        let p = PhaseStat::from_samples("x", "x".into(), vec![3.0, 1.0, 2.0]);
        assert_eq!((p.median_ms, p.min_ms, p.max_ms), (2.0, 1.0, 3.0));
        let empty = PhaseStat::from_samples("x", "x".into(), vec![]);
        assert_eq!(empty.median_ms, 0.0);
    }

    #[test]
    fn ratios_divide_the_last_configuration_by_the_baselines() {
        let r = control_ratios(&part().runs);
        let get = |w: &str| r.iter().find(|x| x.what == w).expect(w).clone();
        assert_eq!(get("compile_local").vs_none, Some(20.0));
        assert_eq!(get("compile_local").vs_tenth, Some(5.0));
        assert_eq!(get("kernel_memory").vs_none, Some(20.0));
        assert_eq!(get("entries").vs_none, Some(11.0));
        assert_eq!(get("peak_rss").vs_tenth, Some(5.0));
        // Without a 0-policy baseline there is no "÷ 0".
        let only = control_ratios(&[run(1_000, 1.0)]);
        assert!(
            only.iter()
                .all(|x| x.vs_none.is_none() && x.vs_tenth.is_none())
        );
    }

    #[test]
    fn the_control_table_is_aligned_with_one_column_per_configuration() {
        let t = render_control(&part());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 2 + 6, "{t}");
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "aligned:\n{t}");
        assert!(lines[0].contains("| 0 policies |"), "{t}");
        assert!(lines[0].contains("| 1,000 policies |"), "{t}");
        assert!(lines[0].contains("1,000 ÷ 0"), "{t}");
        assert!(lines[0].contains("1,000 ÷ 100"), "{t}");
        assert!(lines[2].starts_with("| phase compile_local "), "{t}");
        assert!(lines[2].contains(" 20.0 ms "), "{t}");
        assert!(lines[2].contains(" 20.00× "), "{t}");
        assert!(lines[2].contains(" 5.00× "), "{t}");
        assert!(t.contains(" 4,800 + 250 |"), "{t}");
        assert!(t.contains(" 20.0 MiB "), "{t}");
        // Sizes without a ratio get a dash.
        assert!(lines[4].ends_with(" - |"), "{t}");
    }

    #[test]
    fn the_datapath_table_has_a_row_per_mode() {
        let m = |p50: f64, p99: f64| Measure {
            ops: 100,
            rate_ops_s: 1000.0,
            latency: Summary {
                p50_us: p50,
                p99_us: p99,
                ..Default::default()
            },
            ..Default::default()
        };
        let d = DatapathPart {
            states: vec![
                StateMeasure {
                    state: "no policy".into(),
                    crr: m(60.0, 90.0),
                    rr: m(20.0, 30.0),
                    ..Default::default()
                },
                StateMeasure {
                    state: "100-rule policy".into(),
                    crr: m(61.2, 95.0),
                    rr: Measure {
                        errors: 3,
                        ..m(20.0, 30.0)
                    },
                    ..Default::default()
                },
            ],
            crr_p50_ratio: ratio(Some(61.2), Some(60.0)),
            rr_p50_ratio: Some(1.0),
            policy_ingress_rules: 100,
            unrelated_pod_dropped: Some(true),
            ..Default::default()
        };
        let t = render_datapath(&d);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[2].contains("TCP_CRR"), "{t}");
        assert!(lines[2].contains(" 61.2 "), "{t}");
        assert!(lines[2].contains(" 1.02× "), "{t}");
        assert!(lines[3].contains("(3 errors)"), "{t}");
        let report = PolicyBenchReport {
            control: Some(part()),
            datapath: Some(d),
            ..Default::default()
        };
        let s = summary(&report);
        assert_eq!(s.len(), 2);
        assert!(
            s[0].contains("1,000 policies over 10,000 endpoints"),
            "{}",
            s[0]
        );
        assert!(
            s[0].contains("20.00× the same pipeline with 0 policies"),
            "{}",
            s[0]
        );
        assert!(s[1].contains("TCP_CRR p50 1.02×"), "{}", s[1]);
        assert!(s[1].contains("unrelated pod was refused"), "{}", s[1]);
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let r = PolicyBenchReport {
            benchmark: "policy".into(),
            control: Some(part()),
            complete: true,
            ..Default::default()
        };
        let back: PolicyBenchReport =
            serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
        assert_eq!(back, r);
    }
}
