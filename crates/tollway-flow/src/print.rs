//! Printers: `hubble observe`'s `compact`, `json`, `table` and `dict`
//! output formats.
//!
//! Times are printed in UTC (Hubble uses the local time zone; UTC keeps
//! the output the same on every machine and in tests). The default layout
//! is Go's `StampMilli` (`Dec  1 10:00:00.123`, day padded with a space).
//!
//! ```text
//! compact: Dec  1 10:00:00.123: payments/web-1:43210 (ID:12345) -> payments/checkout-2:8080 (ID:23456) to-endpoint FORWARDED (TCP Flags: SYN)
//! drops:   ... <> ... Policy denied DROPPED (TCP Flags: SYN)
//! verdict: ... policy-verdict:L3-L4 INGRESS ALLOWED (TCP Flags: SYN)
//! ```
//!
//! The arrow is `->` for a flow that is not a reply, `<-` for a reply
//! (source and destination swapped, so the client stays on the left), and
//! `<>` when it is unknown (drops, denied verdicts). A peer is shown as
//! `namespace/pod`, else `namespace/service`, else its address; a port
//! follows with `:`. Identities: `(ID:12345)`, or the reserved name
//! (`(world)`, `(host)`).

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::Offset;
use thiserror::Error;
use tollway_abi::DropReason;

use crate::identity::reserved_name;
use crate::model::{
    Endpoint, Flow, FlowResponse, Service, SockXlatePoint, Verdict, message_type, trace_point_name,
};
use crate::relay::NodeStatus;

/// A flow that cannot be printed.
#[derive(Debug, Error)]
pub enum PrintError {
    /// JSON serialization failed.
    #[error("cannot write flow as JSON: {source}")]
    Json {
        /// serde_json's error.
        #[from]
        source: serde_json::Error,
    },
}

/// `-o`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// One line per flow.
    #[default]
    Compact,
    /// One [`FlowResponse`] JSON object per line (`-o json`, `jsonpb`).
    Json,
    /// Aligned columns.
    Table,
    /// Blocks of `KEY: value` lines.
    Dict,
}

impl OutputFormat {
    /// Parses `compact`, `json`/`jsonpb`, `table`/`tab`, `dict`.
    pub fn parse(s: &str) -> Option<OutputFormat> {
        Some(match s {
            "compact" => OutputFormat::Compact,
            "json" | "jsonpb" => OutputFormat::Json,
            "table" | "tab" => OutputFormat::Table,
            "dict" => OutputFormat::Dict,
            _ => return None,
        })
    }
}

/// `--time-format` (Go layout names, as Hubble), always in UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimeFormat {
    /// `Jan _2 15:04:05.000`.
    #[default]
    StampMilli,
    /// `2006-01-02T15:04:05Z07:00`.
    Rfc3339,
    /// With milliseconds.
    Rfc3339Milli,
    /// With microseconds.
    Rfc3339Micro,
    /// With nanoseconds, trailing zeros removed.
    Rfc3339Nano,
}

impl TimeFormat {
    /// Parses `StampMilli`, `RFC3339`, `RFC3339Milli`, `RFC3339Micro`,
    /// `RFC3339Nano`.
    pub fn parse(s: &str) -> Option<TimeFormat> {
        Some(match s {
            "StampMilli" => TimeFormat::StampMilli,
            "RFC3339" => TimeFormat::Rfc3339,
            "RFC3339Milli" => TimeFormat::Rfc3339Milli,
            "RFC3339Micro" => TimeFormat::Rfc3339Micro,
            "RFC3339Nano" => TimeFormat::Rfc3339Nano,
            _ => return None,
        })
    }
}

/// Printer options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrintOptions {
    /// The time layout.
    pub time_format: TimeFormat,
    /// Show the node name (`--print-node-name`).
    pub node_name: bool,
    /// Show pods and services instead of addresses (Hubble's default; off
    /// with `--ip-translation=false`).
    pub ip_translation: bool,
}

impl Default for PrintOptions {
    fn default() -> PrintOptions {
        PrintOptions {
            time_format: TimeFormat::StampMilli,
            node_name: false,
            ip_translation: true,
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A time in one of the layouts, in UTC.
pub fn format_time(ts: Timestamp, tf: TimeFormat) -> String {
    let dt = Offset::UTC.to_datetime(ts);
    let ns = dt.subsec_nanosecond();
    let mut s = String::with_capacity(32);
    match tf {
        TimeFormat::StampMilli => {
            let month = usize::try_from(dt.month() - 1)
                .ok()
                .and_then(|m| MONTHS.get(m))
                .copied()
                .unwrap_or("???");
            let _ = write!(
                s,
                "{month} {:>2} {:02}:{:02}:{:02}.{:03}",
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                ns / 1_000_000
            );
        }
        _ => {
            let _ = write!(
                s,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            );
            match tf {
                TimeFormat::Rfc3339Milli => {
                    let _ = write!(s, ".{:03}", ns / 1_000_000);
                }
                TimeFormat::Rfc3339Micro => {
                    let _ = write!(s, ".{:06}", ns / 1_000);
                }
                TimeFormat::Rfc3339Nano if ns != 0 => {
                    let digits = format!("{ns:09}");
                    let _ = write!(s, ".{}", digits.trim_end_matches('0'));
                }
                _ => {}
            }
            s.push('Z');
        }
    }
    s
}

/// Hubble's identity suffix: `(ID:12345)`, `(world)`.
pub fn format_identity(id: u32) -> String {
    match reserved_name(id) {
        Some(name) => format!("({name})"),
        None => format!("(ID:{id})"),
    }
}

/// `(source, destination)` as Hubble shows them.
pub fn host_names(f: &Flow, opts: &PrintOptions) -> (String, String) {
    let Some(ip) = &f.ip else {
        return (String::new(), String::new());
    };
    let (sport, dport) = match f.ports() {
        Some((s, d)) => (s.to_string(), d.to_string()),
        None => (String::new(), String::new()),
    };
    let (sns, spod, ssvc) = side(f.source.as_ref(), f.source_service.as_ref());
    let (dns, dpod, dsvc) = side(f.destination.as_ref(), f.destination_service.as_ref());
    (
        hostname(&ip.source, &sport, sns, spod, ssvc, &f.source_names, opts),
        hostname(
            &ip.destination,
            &dport,
            dns,
            dpod,
            dsvc,
            &f.destination_names,
            opts,
        ),
    )
}

/// `(namespace, pod, service)` of one side; a service's namespace wins (as
/// Hubble).
fn side<'a>(ep: Option<&'a Endpoint>, svc: Option<&'a Service>) -> (&'a str, &'a str, &'a str) {
    let mut ns = ep.map_or("", |e| e.namespace.as_str());
    let pod = ep.map_or("", |e| e.pod_name.as_str());
    let mut svc_name = "";
    if let Some(s) = svc {
        ns = &s.namespace;
        svc_name = &s.name;
    }
    (ns, pod, svc_name)
}

fn join_ns(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

fn hostname(
    ip: &str,
    port: &str,
    ns: &str,
    pod: &str,
    svc: &str,
    names: &[String],
    opts: &PrintOptions,
) -> String {
    let mut host = ip.to_string();
    if opts.ip_translation {
        if !pod.is_empty() {
            host = join_ns(ns, pod);
        } else if !svc.is_empty() {
            host = join_ns(ns, svc);
        } else if !names.is_empty() {
            host = names.join(",");
        }
    }
    if !port.is_empty() && port != "0" {
        if host.contains(':') {
            return format!("[{host}]:{port}");
        }
        return format!("{host}:{port}");
    }
    host
}

/// Hubble's `GetFlowType`: `to-endpoint`, `Policy denied`,
/// `policy-verdict:L3-L4 INGRESS`, `post-xlate-fwd`, `dns-request`, ...
pub fn flow_type(f: &Flow) -> String {
    if let Some(l7) = &f.l7 {
        let mut kind = l7.l7_type.lower_name().to_string();
        let proto = if l7.http.is_some() {
            "http"
        } else if let Some(dns) = &l7.dns {
            if !dns.observation_source.is_empty() {
                kind.push(' ');
                kind.push_str(&dns.observation_source);
            }
            "dns"
        } else {
            "l7"
        };
        return format!("{proto}-{kind}");
    }
    let Some(ev) = f.event_type else {
        return "UNKNOWN".to_string();
    };
    let sub = u8::try_from(ev.sub_type).ok();
    match ev.event_type {
        message_type::TRACE => sub
            .and_then(trace_point_name)
            .map_or_else(|| ev.sub_type.to_string(), str::to_string),
        message_type::DROP => sub
            .and_then(DropReason::from_code)
            .map_or_else(|| ev.sub_type.to_string(), |r| r.description().to_string()),
        message_type::POLICY_VERDICT => format!(
            "policy-verdict:{} {}",
            policy_match_name(f.policy_match_type),
            f.traffic_direction.name()
        ),
        message_type::TRACE_SOCK => match f.sock_xlate_point {
            SockXlatePoint::PreDirectionFwd => "pre-xlate-fwd".to_string(),
            SockXlatePoint::PostDirectionFwd => "post-xlate-fwd".to_string(),
            SockXlatePoint::PreDirectionRev => "pre-xlate-rev".to_string(),
            SockXlatePoint::PostDirectionRev => "post-xlate-rev".to_string(),
            SockXlatePoint::Unknown => "SOCK_XLATE_POINT_UNKNOWN".to_string(),
        },
        _ => "UNKNOWN".to_string(),
    }
}

/// Cilium's `PolicyMatchType` names: `none`, `L3-Only`, `L3-L4`,
/// `L4-Only`, `all`.
pub fn policy_match_name(m: u32) -> &'static str {
    match m {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        _ => "unknown",
    }
}

/// Hubble's verdict column: policy verdicts say ALLOWED, DENIED, AUDITED.
pub fn verdict_text(f: &Flow) -> &'static str {
    let pv = f.event_type_number() == message_type::POLICY_VERDICT;
    match f.verdict {
        Verdict::Forwarded | Verdict::Redirected if pv => "ALLOWED",
        Verdict::Dropped | Verdict::Error if pv => "DENIED",
        Verdict::Audit if pv => "AUDITED",
        v => v.name(),
    }
}

/// One compact line (with its newline).
pub fn compact(f: &Flow, opts: &PrintOptions) -> String {
    let (mut src, mut dst) = host_names(f, opts);
    let mut src_id = format_identity(f.source_identity());
    let mut dst_id = format_identity(f.destination_identity());
    let arrow = match f.is_reply {
        None => "<>",
        Some(true) => {
            std::mem::swap(&mut src, &mut dst);
            std::mem::swap(&mut src_id, &mut dst_id);
            "<-"
        }
        Some(false) => "->",
    };
    let node = if opts.node_name {
        format!(" [{}]", f.node_name)
    } else {
        String::new()
    };
    format!(
        "{}{node}: {src} {src_id} {arrow} {dst} {dst_id} {} {} ({})\n",
        format_time(f.time, opts.time_format),
        flow_type(f),
        verdict_text(f),
        f.summary
    )
}

/// One dict block (without the separator).
pub fn dict(f: &Flow, opts: &PrintOptions) -> String {
    let (src, dst) = host_names(f, opts);
    let mut s = format!("  TIMESTAMP: {}\n", format_time(f.time, opts.time_format));
    if opts.node_name {
        let _ = writeln!(s, "       NODE: {}", f.node_name);
    }
    let _ = write!(
        s,
        "     SOURCE: {src}\nDESTINATION: {dst}\n       TYPE: {}\n    VERDICT: {}\n    SUMMARY: {}\n",
        flow_type(f),
        verdict_text(f),
        f.summary
    );
    s
}

/// The dict format's separator line (between blocks).
pub const DICT_SEPARATOR: &str = "------------";

/// One `-o json` line (with its newline).
pub fn json_line(f: &Flow) -> Result<String, PrintError> {
    let mut s = serde_json::to_string(&FlowResponse::new(f.clone()))?;
    s.push('\n');
    Ok(s)
}

fn table_row(f: &Flow, opts: &PrintOptions) -> Vec<String> {
    let (src, dst) = host_names(f, opts);
    let mut row = vec![format_time(f.time, opts.time_format)];
    if opts.node_name {
        row.push(f.node_name.clone());
    }
    row.extend([
        src,
        dst,
        flow_type(f),
        verdict_text(f).to_string(),
        f.summary.clone(),
    ]);
    row
}

fn table_header(opts: &PrintOptions) -> Vec<String> {
    let mut h = vec!["TIMESTAMP".to_string()];
    if opts.node_name {
        h.push("NODE".to_string());
    }
    h.extend(["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"].map(String::from));
    h
}

/// Go's `tabwriter` with Hubble's settings (min width 2, padding 3): every
/// column but the last padded to its widest cell plus 3.
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let w = (widths[i] + 3).max(2);
                let pad = w.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// A whole table (header and rows).
pub fn table<'a>(flows: impl IntoIterator<Item = &'a Flow>, opts: &PrintOptions) -> String {
    let mut rows = vec![table_header(opts)];
    rows.extend(flows.into_iter().map(|f| table_row(f, opts)));
    align(&rows)
}

/// A streaming printer: call [`Printer::write`] per flow and
/// [`Printer::finish`] at the end (the table format aligns its rows only
/// then, like Hubble's tabwriter).
#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    opts: PrintOptions,
    line: usize,
    rows: Vec<Vec<String>>,
}

impl Printer {
    /// A printer.
    pub fn new(format: OutputFormat, opts: PrintOptions) -> Printer {
        Printer {
            format,
            opts,
            line: 0,
            rows: Vec::new(),
        }
    }

    /// Appends the text of one flow to `out` (nothing for tables until
    /// [`Printer::finish`]).
    pub fn write(&mut self, f: &Flow, out: &mut String) -> Result<(), PrintError> {
        match self.format {
            OutputFormat::Compact => out.push_str(&compact(f, &self.opts)),
            OutputFormat::Json => out.push_str(&json_line(f)?),
            OutputFormat::Dict => {
                if self.line > 0 {
                    out.push_str(DICT_SEPARATOR);
                    out.push('\n');
                }
                out.push_str(&dict(f, &self.opts));
            }
            OutputFormat::Table => {
                if self.rows.is_empty() {
                    self.rows.push(table_header(&self.opts));
                }
                self.rows.push(table_row(f, &self.opts));
            }
        }
        self.line += 1;
        Ok(())
    }

    /// Appends what is buffered (the table) to `out`.
    pub fn finish(&mut self, out: &mut String) {
        if !self.rows.is_empty() {
            out.push_str(&align(&self.rows));
            self.rows.clear();
        }
    }
}

/// Hubble's `joinWithCutOff`: names joined by `, ` up to about `target`
/// characters, then ` (and N more)`.
fn join_cut(names: &[&str], target: usize) -> String {
    let mut len = 0;
    let mut end = names.len();
    for (i, n) in names.iter().enumerate() {
        len += n.len() + 2;
        if len > target && i > 0 {
            end = i;
            break;
        }
    }
    let joined = names[..end].join(", ");
    match names.len() - end {
        0 => joined,
        more => format!("{joined} (and {more} more)"),
    }
}

/// The stderr line Hubble prints about unreachable nodes
/// (`Dec  1 10:00:00.000 [relay]: 2 nodes are unavailable: node-2,
/// node-3`), `None` if every node is reachable.
pub fn unavailable_nodes(
    now: Timestamp,
    relay_name: &str,
    statuses: &[NodeStatus],
    opts: &PrintOptions,
) -> Option<String> {
    let down: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.reachable)
        .map(|s| s.name.as_str())
        .collect();
    if down.is_empty() {
        return None;
    }
    Some(format!(
        "{} [{relay_name}]: {} nodes are unavailable: {}\n",
        format_time(now, opts.time_format),
        down.len(),
        join_cut(&down, 50)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CiliumEventType, Dns, FlowType, L7FlowType, Layer7, TrafficDirection};

    fn base() -> Flow {
        Flow {
            source: Some(Endpoint {
                identity: 12345,
                namespace: "payments".into(),
                pod_name: "web-frontend-6d9f-abcde".into(),
                ..Endpoint::default()
            }),
            destination: Some(Endpoint {
                identity: 23456,
                namespace: "payments".into(),
                pod_name: "checkout-7c4b-xyz12".into(),
                ..Endpoint::default()
            }),
            flow_type: FlowType::L3L4,
            node_name: "node-1".into(),
            event_type: Some(CiliumEventType {
                event_type: 4,
                sub_type: 0,
            }),
            traffic_direction: TrafficDirection::Ingress,
            is_reply: Some(false),
            summary: "TCP Flags: SYN".into(),
            ..crate::testutil::tcp_flow("2024-12-01T10:00:00.123456Z", 0x02)
        }
    }

    fn opts() -> PrintOptions {
        PrintOptions::default()
    }

    #[test]
    fn compact_forwarded() {
        assert_eq!(
            compact(&base(), &opts()),
            "Dec  1 10:00:00.123: payments/web-frontend-6d9f-abcde:43210 (ID:12345) -> payments/checkout-7c4b-xyz12:8080 (ID:23456) to-endpoint FORWARDED (TCP Flags: SYN)\n"
        );
    }

    #[test]
    fn compact_drop_reply_and_world() {
        let mut f = base();
        f.verdict = Verdict::Dropped;
        f.event_type = Some(CiliumEventType {
            event_type: 1,
            sub_type: 133,
        });
        f.is_reply = None;
        let line = compact(&f, &opts());
        assert!(
            line.ends_with("<> payments/checkout-7c4b-xyz12:8080 (ID:23456) Policy denied DROPPED (TCP Flags: SYN)\n"),
            "{line}"
        );
        let mut r = base();
        r.is_reply = Some(true);
        r.source = Some(Endpoint {
            identity: 2,
            ..Endpoint::default()
        });
        let line = compact(&r, &opts());
        assert!(
            line.contains(": payments/checkout-7c4b-xyz12:8080 (ID:23456) <- 10.0.1.5:43210 (world) to-endpoint"),
            "{line}"
        );
    }

    #[test]
    fn policy_verdicts() {
        let mut f = base();
        f.event_type = Some(CiliumEventType {
            event_type: 5,
            sub_type: 0,
        });
        f.policy_match_type = 2;
        assert!(
            compact(&f, &opts())
                .ends_with(" policy-verdict:L3-L4 INGRESS ALLOWED (TCP Flags: SYN)\n")
        );
        f.verdict = Verdict::Dropped;
        f.policy_match_type = 0;
        f.is_reply = None;
        assert!(
            compact(&f, &opts())
                .ends_with(" policy-verdict:none INGRESS DENIED (TCP Flags: SYN)\n")
        );
        f.verdict = Verdict::Audit;
        assert!(compact(&f, &opts()).contains(" AUDITED "));
    }

    #[test]
    fn services_names_and_translation() {
        let mut f = base();
        f.destination = Some(Endpoint {
            identity: 2,
            ..Endpoint::default()
        });
        f.destination_service = Some(Service {
            name: "checkout".into(),
            namespace: "payments".into(),
        });
        let (_, dst) = host_names(&f, &opts());
        assert_eq!(dst, "payments/checkout:8080");
        let no_xlate = PrintOptions {
            ip_translation: false,
            ..opts()
        };
        let (src, dst) = host_names(&f, &no_xlate);
        assert_eq!(
            (src.as_str(), dst.as_str()),
            ("10.0.1.5:43210", "10.0.2.7:8080")
        );
        // The pod wins over the service.
        let mut g = base();
        g.destination_service = f.destination_service.clone();
        assert_eq!(
            host_names(&g, &opts()).1,
            "payments/checkout-7c4b-xyz12:8080"
        );
    }

    #[test]
    fn sock_and_dns_types() {
        let mut f = base();
        f.event_type = Some(CiliumEventType {
            event_type: 7,
            sub_type: 2,
        });
        f.sock_xlate_point = SockXlatePoint::PostDirectionFwd;
        f.verdict = Verdict::Translated;
        assert!(compact(&f, &opts()).contains(" post-xlate-fwd TRANSLATED "));
        let mut d = base();
        d.l7 = Some(Layer7 {
            l7_type: L7FlowType::Request,
            dns: Some(Dns::default()),
            ..Layer7::default()
        });
        assert_eq!(flow_type(&d), "dns-request");
        d.l7 = Some(Layer7 {
            l7_type: L7FlowType::Response,
            dns: Some(Dns {
                observation_source: "proxy".into(),
                ..Dns::default()
            }),
            ..Layer7::default()
        });
        assert_eq!(flow_type(&d), "dns-response proxy");
    }

    #[test]
    fn identities_and_times() {
        assert_eq!(format_identity(1), "(host)");
        assert_eq!(format_identity(6), "(remote-node)");
        assert_eq!(format_identity(0), "(unknown)");
        assert_eq!(format_identity(256), "(ID:256)");
        let t: Timestamp = "2024-03-09T01:02:03.004005Z".parse().unwrap();
        assert_eq!(
            format_time(t, TimeFormat::StampMilli),
            "Mar  9 01:02:03.004"
        );
        assert_eq!(format_time(t, TimeFormat::Rfc3339), "2024-03-09T01:02:03Z");
        assert_eq!(
            format_time(t, TimeFormat::Rfc3339Milli),
            "2024-03-09T01:02:03.004Z"
        );
        assert_eq!(
            format_time(t, TimeFormat::Rfc3339Micro),
            "2024-03-09T01:02:03.004005Z"
        );
        assert_eq!(
            format_time(t, TimeFormat::Rfc3339Nano),
            "2024-03-09T01:02:03.004005Z"
        );
        let d: Timestamp = "2024-12-11T00:00:00Z".parse().unwrap();
        assert_eq!(
            format_time(d, TimeFormat::StampMilli),
            "Dec 11 00:00:00.000"
        );
    }

    #[test]
    fn table_aligns_columns() {
        let a = base();
        let mut b = base();
        b.source = None;
        b.summary = "UDP".into();
        let t = table([&a, &b], &opts());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TIMESTAMP             SOURCE"), "{t}");
        let col = |l: &str, name: &str| l.find(name).unwrap();
        let dst = col(lines[0], "DESTINATION");
        assert_eq!(col(lines[1], "payments/checkout"), dst);
        assert_eq!(col(lines[2], "payments/checkout"), dst);
        assert!(lines[1].ends_with("FORWARDED   TCP Flags: SYN"), "{t}");
        let mut p = Printer::new(OutputFormat::Table, opts());
        let mut out = String::new();
        p.write(&a, &mut out).unwrap();
        p.write(&b, &mut out).unwrap();
        assert!(out.is_empty());
        p.finish(&mut out);
        assert_eq!(out, t);
    }

    #[test]
    fn dict_blocks_and_json_lines() {
        let mut p = Printer::new(OutputFormat::Dict, opts());
        let mut out = String::new();
        p.write(&base(), &mut out).unwrap();
        p.write(&base(), &mut out).unwrap();
        let block = "  TIMESTAMP: Dec  1 10:00:00.123\n     SOURCE: payments/web-frontend-6d9f-abcde:43210\nDESTINATION: payments/checkout-7c4b-xyz12:8080\n       TYPE: to-endpoint\n    VERDICT: FORWARDED\n    SUMMARY: TCP Flags: SYN\n";
        assert_eq!(out, format!("{block}------------\n{block}"));
        let mut p = Printer::new(OutputFormat::Json, opts());
        let mut out = String::new();
        p.write(&base(), &mut out).unwrap();
        assert!(
            out.ends_with("\"node_name\":\"node-1\",\"time\":\"2024-12-01T10:00:00.123456Z\"}\n")
        );
        let back: FlowResponse = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(back.flow, base());
    }

    #[test]
    fn node_name_option() {
        let o = PrintOptions {
            node_name: true,
            ..opts()
        };
        assert!(compact(&base(), &o).starts_with("Dec  1 10:00:00.123 [node-1]: "));
    }

    #[test]
    fn unavailable_nodes_line() {
        let now: Timestamp = "2024-12-01T10:00:00Z".parse().unwrap();
        let st = |n: &str, up| NodeStatus {
            name: n.into(),
            reachable: up,
            error: None,
        };
        assert_eq!(
            unavailable_nodes(now, "relay", &[st("a", true)], &opts()),
            None
        );
        assert_eq!(
            unavailable_nodes(
                now,
                "relay",
                &[st("a", true), st("b", false), st("c", false)],
                &opts()
            )
            .unwrap(),
            "Dec  1 10:00:00.000 [relay]: 2 nodes are unavailable: b, c\n"
        );
        let many: Vec<String> = (0..30).map(|i| format!("node-{i:02}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            join_cut(&names, 50),
            "node-00, node-01, node-02, node-03, node-04 (and 25 more)"
        );
    }
}
