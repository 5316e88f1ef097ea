//! The results of `tollway bench service-lb`: what is written to
//! `bench/results/service-lb.json`, and the table printed from it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// A way from the client to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// The server pod's IP: no service translation (the floor).
    Direct,
    /// A Tollway ClusterIP from a default pod: translated at connect().
    TollwaySocket,
    /// A Tollway ClusterIP from a pod annotated `tollway.io/socket-lb:
    /// "false"`: translated per packet by the tc programs.
    TollwayTc,
    /// kube-proxy's iptables mode, legacy (x_tables) backend.
    IptablesLegacy,
    /// kube-proxy's iptables mode, nf_tables backend (`iptables-nft`).
    IptablesNft,
}

impl PathKind {
    /// The name in the table.
    pub fn label(self) -> &'static str {
        match self {
            PathKind::Direct => "direct (pod IP)",
            PathKind::TollwaySocket => "Tollway socket LB",
            PathKind::TollwayTc => "Tollway tc",
            PathKind::IptablesLegacy => "iptables-legacy",
            PathKind::IptablesNft => "iptables-nft",
        }
    }

    /// A Tollway ClusterIP path.
    pub fn is_tollway(self) -> bool {
        matches!(self, PathKind::TollwaySocket | PathKind::TollwayTc)
    }
}

/// One mode's measurement on one path (all rounds merged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// Transactions completed.
    pub ops: u64,
    /// Transactions failed.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Seconds measured (all rounds).
    pub duration_s: f64,
    /// `ops / duration_s`.
    pub rate_ops_s: f64,
    /// Latency.
    pub latency: Summary,
}

/// One row: a size and a path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Services in the lab (Tollway) or in the table (iptables).
    pub services: usize,
    /// Which path.
    pub path: Option<PathKind>,
    /// Connect-request-response-close.
    pub crr: Option<Measure>,
    /// Request-response on a kept connection.
    pub rr: Option<Measure>,
    /// CRR p50 / the direct path's CRR p50 at this size.
    pub crr_p50_vs_direct: Option<f64>,
    /// RR p50 / the direct path's RR p50 at this size.
    pub rr_p50_vs_direct: Option<f64>,
    /// Tollway: seconds from the start of the apply until both agents had
    /// the services in their maps. iptables: the full `iptables-restore`.
    pub load_s: Option<f64>,
    /// Tollway: milliseconds from the start of the apply of one changed
    /// service until both nodes' maps had it (median). iptables: the
    /// partial-sync `iptables-restore` (median).
    pub change_ms: Option<f64>,
    /// Tollway: the agents' own sync time for that change (median of the
    /// slower node's), milliseconds.
    pub change_agent_sync_ms: Option<f64>,
    /// Tollway: from the store's commit of the change until both nodes'
    /// maps had it (median), milliseconds: the like-for-like figure to
    /// kube-proxy's `iptables-restore` (both start once the node can know
    /// of the change).
    #[serde(default)]
    pub change_commit_ms: Option<f64>,
    /// What went wrong, or what to know.
    pub note: Option<String>,
}

/// The machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// CPUs available.
    pub nproc: usize,
    /// `/proc/cpuinfo` model name.
    pub cpu_model: String,
    /// Memory, GiB.
    pub mem_gib: f64,
    /// `iptables-legacy --version`.
    pub iptables_legacy: Option<String>,
    /// `iptables-nft --version`.
    pub iptables_nft: Option<String>,
}

/// The run's parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Service counts.
    pub sizes: Vec<usize>,
    /// Seconds measured per path and mode (split over the rounds).
    pub duration_s: f64,
    /// Rounds each measurement is split into (paths alternate).
    pub rounds: usize,
    /// Warm-up per client run, not recorded.
    pub warmup_ms: u64,
    /// iptables backends measured.
    pub iptables: Vec<String>,
    /// One-service changes timed per size.
    pub changes: usize,
    /// The lab.
    pub lab: String,
    /// The server's port (the services' targetPort).
    pub server_port: u16,
    /// The services' port.
    pub service_port: u16,
    /// Where the iptables services' VIPs are.
    pub iptables_vips: String,
    /// Bytes per request / response.
    pub request_bytes: usize,
    /// Bytes per response.
    pub response_bytes: usize,
    /// How CRR connections end.
    pub crr_close: String,
    /// CPU placement of the client and the server.
    pub cpu: String,
    /// What the iptables rules reproduce.
    pub kube_proxy_model: String,
}

/// Tollway's control plane at one size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TollwayLoad {
    /// The apply command alone, seconds.
    pub apply_s: f64,
    /// Until both agents report the services, seconds.
    pub load_s: f64,
    /// Per node.
    pub nodes: Vec<NodeLoad>,
    /// The service measured (`bench/lb-NNNNN`).
    pub measured_service: String,
    /// Its ClusterIP.
    pub cluster_ip: String,
    /// One-service changes.
    pub changes: Vec<ChangeSample>,
}

/// One node's load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Node.
    pub node: String,
    /// Seconds from the start of the apply until its agent reported them.
    pub loaded_s: f64,
    /// Frontends it reported.
    pub frontends: usize,
    /// Map operations of that sync.
    pub ops: usize,
    /// The agent's own duration of that sync, milliseconds.
    pub sync_ms: f64,
}

/// One timed change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeSample {
    /// What changed.
    pub change: String,
    /// The apply command alone, milliseconds.
    pub apply_ms: f64,
    /// From the start of the apply until both nodes' maps had it, ms.
    pub e2e_ms: Option<f64>,
    /// From the store's commit until both nodes' maps had it, ms.
    #[serde(default)]
    pub commit_to_maps_ms: Option<f64>,
    /// Per node: the agent's own sync time of that change, ms.
    pub agent_sync_ms: Vec<(String, f64)>,
}

/// kube-proxy's rules at one size with one backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IptablesLoad {
    /// `legacy` / `nft`.
    pub backend: String,
    /// The restore command.
    pub restore: String,
    /// Rules (`-A` lines) of the full sync.
    pub rules: usize,
    /// Chains of the full sync.
    pub chains: usize,
    /// Bytes of the full sync.
    pub bytes: usize,
    /// The full `iptables-restore`, seconds.
    pub full_restore_s: Option<f64>,
    /// Rules of a partial sync.
    pub partial_rules: usize,
    /// Each partial-sync `iptables-restore`, milliseconds.
    pub change_restore_ms: Vec<f64>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Everything measured at one size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SizeResult {
    /// Services.
    pub services: usize,
    /// Tollway.
    pub tollway: Option<TollwayLoad>,
    /// kube-proxy.
    pub iptables: Vec<IptablesLoad>,
    /// The datapath's drop counters after this size (cumulative since the
    /// lab came up): `[node, reason, count]`.
    pub datapath_drops: Vec<(String, String, u64)>,
}

/// One target of the issue, judged on this run's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The target.
    pub target: String,
    /// `met`, `missed` or `not measured`.
    pub result: String,
    /// The numbers behind it.
    pub detail: String,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `service-lb`.
    pub benchmark: String,
    /// When it ran (RFC 3339).
    pub date: String,
    /// `tollway` version.
    pub tollway_version: String,
    /// The machine.
    pub machine: Machine,
    /// The parameters.
    pub params: Params,
    /// One per size and path.
    pub rows: Vec<Row>,
    /// Control-plane details per size.
    pub sizes: Vec<SizeResult>,
    /// The targets.
    pub verdicts: Vec<Verdict>,
    /// Things to know when reading the numbers.
    pub notes: Vec<String>,
    /// False when the run stopped early.
    pub complete: bool,
    /// Why it stopped early.
    pub error: Option<String>,
    /// The table as printed.
    pub table: String,
}

fn num(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

fn thousands(n: usize) -> String {
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

fn load_cell(r: &Row) -> String {
    match r.load_s {
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) if s < 10.0 => format!("{s:.2} s"),
        Some(s) => format!("{s:.1} s"),
        None => "-".into(),
    }
}

fn change_cell(r: &Row) -> String {
    let ms = |v: f64| {
        if v < 0.1 {
            // Below what the harness's 100 µs polling loop can resolve.
            "<0.1 ms".to_string()
        } else if v < 10.0 {
            format!("{v:.1} ms")
        } else {
            format!("{v:.0} ms")
        }
    };
    match (r.change_commit_ms, r.change_ms) {
        (Some(c), Some(a)) => format!("{} (with apply {})", ms(c), ms(a)),
        (None, Some(c)) => ms(c),
        (_, None) => "-".into(),
    }
}

/// The table: one line per size and path (a Markdown table, aligned).
pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "services",
        "path",
        "CRR ops/s",
        "CRR p50 µs",
        "CRR p99 µs",
        "RR p50 µs",
        "RR p99 µs",
        "CRR p50 ×direct",
        "RR p50 ×direct",
        "load",
        "1 change",
    ];
    let mut cells: Vec<Vec<String>> = Vec::new();
    for r in rows {
        let crr = r.crr.as_ref();
        let rr = r.rr.as_ref();
        let mut path = r.path.map_or("?", PathKind::label).to_string();
        let errors = crr.map_or(0, |m| m.errors) + rr.map_or(0, |m| m.errors);
        if errors > 0 {
            path.push_str(&format!(" ({errors} errors)"));
        }
        cells.push(vec![
            thousands(r.services),
            path,
            num(crr.map(|m| m.rate_ops_s), 0),
            num(crr.map(|m| m.latency.p50_us), 1),
            num(crr.map(|m| m.latency.p99_us), 1),
            num(rr.map(|m| m.latency.p50_us), 1),
            num(rr.map(|m| m.latency.p99_us), 1),
            num(r.crr_p50_vs_direct, 2),
            num(r.rr_p50_vs_direct, 2),
            load_cell(r),
            change_cell(r),
        ]);
    }
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    // Text columns left-aligned, numbers right-aligned.
    let left = |i: usize| i == 1;
    let line = |vals: &[String]| {
        let mut s = String::from("|");
        for (i, v) in vals.iter().enumerate() {
            let pad = widths[i].saturating_sub(v.chars().count());
            if left(i) {
                let _ = write!(s, " {v}{} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{v} |", " ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(String::from));
    let mut sep = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        if left(i) {
            let _ = write!(sep, " {} |", "-".repeat(*w));
        } else {
            let _ = write!(sep, " {}: |", "-".repeat(w.saturating_sub(1)));
        }
    }
    out.push_str(&sep);
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
    }
    out
}

/// The targets of the issue, judged on the rows:
/// ClusterIP ≤ 1.05× direct at every size, one change < 5 ms, 10,000
/// services loaded < 1 s.
pub fn verdicts(rows: &[Row]) -> Vec<Verdict> {
    let mut out = Vec::new();
    for path in [PathKind::TollwaySocket, PathKind::TollwayTc] {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.path == Some(path)).collect();
        let worst = |f: fn(&Row) -> Option<f64>| {
            mine.iter()
                .filter_map(|r| f(r).map(|v| (v, r.services)))
                .max_by(|a, b| a.0.total_cmp(&b.0))
        };
        let crr = worst(|r| r.crr_p50_vs_direct);
        let rr = worst(|r| r.rr_p50_vs_direct);
        let measured = mine
            .iter()
            .filter(|r| r.crr_p50_vs_direct.is_some())
            .count();
        let (result, detail) = match (crr, rr) {
            (Some(c), Some(r)) => (
                if c.0 <= 1.05 && r.0 <= 1.05 {
                    "met"
                } else {
                    "missed"
                },
                format!(
                    "worst CRR p50 {:.2}× (at {} services), worst RR p50 {:.2}× (at {}), over {measured} sizes",
                    c.0,
                    thousands(c.1),
                    r.0,
                    thousands(r.1)
                ),
            ),
            _ => ("not measured", String::new()),
        };
        out.push(Verdict {
            target: format!("{} ≤ 1.05× direct at every size", path.label()),
            result: result.into(),
            detail,
        });
    }
    let at_10k = rows
        .iter()
        .find(|r| r.path == Some(PathKind::TollwaySocket) && r.services == 10_000);
    let change = at_10k.and_then(|r| r.change_commit_ms);
    let with_apply = at_10k.and_then(|r| r.change_ms);
    out.push(Verdict {
        target: "one-service change applied in < 5 ms (at 10,000 services)".into(),
        result: match change {
            Some(c) if c < 5.0 => "met",
            Some(_) => "missed",
            None => "not measured",
        }
        .into(),
        detail: {
            let mut d = match change {
                Some(c) => format!("{c:.2} ms from the store's commit to both nodes' maps (median)"),
                None => String::new(),
            };
            if let Some(a) = at_10k.and_then(|r| r.change_agent_sync_ms) {
                d.push_str(&format!(", of which the agents' own sync {a:.2} ms"));
            }
            if let Some(w) = with_apply {
                d.push_str(&format!(
                    "; {w:.0} ms counting the `tollway apply` command, which reads and rewrites the lab's whole file store"
                ));
            }
            d
        },
    });
    let load = at_10k.and_then(|r| r.load_s);
    out.push(Verdict {
        target: "10,000 services loaded in < 1 s".into(),
        result: match load {
            Some(l) if l < 1.0 => "met",
            Some(_) => "missed",
            None => "not measured",
        }
        .into(),
        detail: load.map_or(String::new(), |l| {
            format!("{l:.2} s from the start of the apply until both agents had them")
        }),
    });
    out
}

/// The verdicts as lines.
pub fn render_verdicts(v: &[Verdict]) -> String {
    let mut out = String::new();
    for x in v {
        let _ = writeln!(out, "- {}: **{}** — {}", x.target, x.result, x.detail);
    }
    out
}

/// Writes a report as pretty JSON (and a final newline) to `path`, creating
/// its directory.
pub(crate) fn write_json<T: serde::Serialize>(
    path: &std::path::Path,
    report: &T,
) -> Result<(), crate::error::BenchError> {
    use crate::error::BenchError;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| BenchError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rate: f64, p50: f64, p99: f64) -> Measure {
        Measure {
            ops: 1000,
            errors: 0,
            first_error: None,
            duration_s: 5.0,
            rate_ops_s: rate,
            latency: Summary {
                count: 1000,
                p50_us: p50,
                p99_us: p99,
                ..Default::default()
            },
        }
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                services: 10_000,
                path: Some(PathKind::Direct),
                crr: Some(m(15234.0, 60.0, 99.5)),
                rr: Some(m(30000.0, 30.0, 45.0)),
                crr_p50_vs_direct: Some(1.0),
                rr_p50_vs_direct: Some(1.0),
                ..Default::default()
            },
            Row {
                services: 10_000,
                path: Some(PathKind::TollwaySocket),
                crr: Some(m(15000.0, 61.2, 100.0)),
                rr: Some(m(30000.0, 30.0, 45.0)),
                crr_p50_vs_direct: Some(1.02),
                rr_p50_vs_direct: Some(1.0),
                load_s: Some(0.91),
                change_ms: Some(468.0),
                change_agent_sync_ms: Some(0.12),
                change_commit_ms: Some(0.31),
                ..Default::default()
            },
            Row {
                services: 10_000,
                path: Some(PathKind::TollwayTc),
                crr: Some(m(14000.0, 64.0, 110.0)),
                rr: Some({
                    let mut x = m(29000.0, 31.5, 47.0);
                    x.errors = 2;
                    x
                }),
                crr_p50_vs_direct: Some(1.07),
                rr_p50_vs_direct: Some(1.05),
                load_s: Some(0.91),
                change_ms: Some(468.0),
                change_agent_sync_ms: Some(0.12),
                change_commit_ms: Some(0.31),
                ..Default::default()
            },
            Row {
                services: 10_000,
                path: Some(PathKind::IptablesLegacy),
                crr: Some(m(9000.0, 100.0, 180.0)),
                rr: None,
                crr_p50_vs_direct: Some(1.67),
                load_s: Some(12.34),
                change_ms: Some(580.0),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn table_has_one_aligned_line_per_row() {
        let t = render_table(&rows());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 4, "{t}");
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "aligned: {t}");
        assert!(lines[0].starts_with("| services | path "), "{t}");
        assert!(lines[1].starts_with("| -------: | ----"), "{t}");
        assert!(lines[3].contains("| Tollway socket LB "), "{t}");
        assert!(lines[3].contains(" 10,000 "), "{t}");
        assert!(lines[3].contains(" 15000 "), "{t}");
        assert!(lines[3].contains(" 61.2 "), "{t}");
        assert!(lines[3].contains(" 1.02 "), "{t}");
        assert!(lines[3].contains(" 910 ms "), "{t}");
        assert!(lines[3].contains(" 0.3 ms (with apply 468 ms) "), "{t}");
        assert!(lines[4].contains("Tollway tc (2 errors)"), "{t}");
        assert!(lines[5].contains(" 12.3 s "), "{t}");
        assert!(lines[5].contains(" 580 ms "), "{t}");
        // No RR on that row: dashes.
        assert!(lines[5].contains("|         - |"), "{t}");
    }

    #[test]
    fn verdicts_judge_the_issue_targets() {
        let v = verdicts(&rows());
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].result, "met", "{:?}", v[0]);
        assert_eq!(v[1].result, "missed", "{:?}", v[1]);
        assert!(v[1].detail.contains("1.07×"), "{:?}", v[1]);
        assert_eq!(v[2].result, "met", "{:?}", v[2]);
        assert!(
            v[2].detail.contains("0.31 ms from the store's commit"),
            "{:?}",
            v[2]
        );
        assert!(v[2].detail.contains("own sync 0.12 ms"), "{:?}", v[2]);
        assert!(
            v[2].detail.contains("468 ms counting the `tollway apply`"),
            "{:?}",
            v[2]
        );
        assert_eq!(v[3].result, "met");
        // A slow commit-to-maps misses the target.
        let mut slow = rows();
        for r in &mut slow {
            if r.change_commit_ms.is_some() {
                r.change_commit_ms = Some(7.5);
            }
        }
        assert_eq!(verdicts(&slow)[2].result, "missed");
        let text = render_verdicts(&v);
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(10), "10");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(30000), "30,000");
        assert_eq!(thousands(123456789), "123,456,789");
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = Report {
            benchmark: "service-lb".into(),
            rows: rows(),
            complete: true,
            ..Default::default()
        };
        let back: Report =
            serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
        assert_eq!(back, r);
    }
}
