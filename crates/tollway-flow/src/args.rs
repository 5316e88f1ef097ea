//! `tollway observe` arguments into a [`FlowRequest`], with `hubble
//! observe`'s rules (independent of clap).
//!
//! Filter flags are kept as an ordered list of [`FilterArg`]s, because
//! `--not` negates the one filter flag that follows it (as in Hubble;
//! `--not --not` is an error). The CLI builds the list in one of two ways:
//!
//! * from clap's argument indices ([`filters_from_indices`]): for every
//!   filter flag id, zip `matches.indices_of(id)` with
//!   `matches.get_many::<String>(id)` and parse each value with
//!   [`FilterFlag::parse`]`(id, value)`; take `matches.indices_of("not")`
//!   (declare `--not` with `ArgAction::Count` or `Append` so every
//!   occurrence has an index); pass both;
//! * or from the raw argv ([`filters_from_argv`]), after clap has accepted
//!   it: only the filter flags and `--not` are read, everything else is
//!   skipped.
//!
//! How filters combine (Hubble's `filterTracker`):
//!
//! * an "either side" flag (`--pod`, `--ip`, `--label`, `--port`,
//!   `--identity`, `--service`) puts its value on the source side of one
//!   filter and on the destination side of a second one: the request
//!   matches flows from it OR to it;
//! * every other flag (`--from-pod`, `--to-ip`, `--verdict`, `--protocol`,
//!   ...) goes into both filters (AND);
//! * `--namespace N` makes the first filter's source pods (and services)
//!   `N/...` and the second filter's destination pods `N/...` (a `--pod`
//!   value without a namespace gets `N`); `--from-namespace` and
//!   `--to-namespace` apply to both filters' source or destination;
//! * two equal filters are sent as one;
//! * negated flags are gathered the same way into the blacklist: `--not
//!   --verdict DROPPED --not --pod x` excludes dropped flows from or to x.

use jiff::{SignedDuration, Timestamp};
use thiserror::Error;
use tollway_abi::DropReason;

use crate::filter::{
    EventTypeFilter, FilterError, FlowFilter, FlowRequest, LabelSelector, check_http_status,
    check_ip, check_name, check_protocol, parse_port, parse_regex,
};
use crate::identity::reserved_number;
use crate::model::{
    IpVersion, TcpFlags, TrafficDirection, Verdict, message_type, trace_point_name,
};

/// Arguments that do not make a request.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ArgsError {
    /// A value a flag does not accept.
    #[error("--{flag} {value}: expected {expected}")]
    InvalidValue {
        /// The flag, without dashes.
        flag: &'static str,
        /// The value.
        value: String,
        /// What it accepts.
        expected: String,
    },
    /// A filter value that does not parse (the field is the flag).
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Two filter flags that Hubble refuses together.
    #[error("filters --{a} and --{b} cannot be combined")]
    Conflict {
        /// One flag.
        a: &'static str,
        /// The other.
        b: &'static str,
    },
    /// A pod or service in another namespace than `--namespace`.
    #[error("namespace conflict: --{flag} {namespace:?} does not contain {name:?}")]
    NamespaceConflict {
        /// `namespace`, `from-namespace` or `to-namespace`.
        flag: &'static str,
        /// The namespace.
        namespace: String,
        /// The pod or service.
        name: String,
    },
    /// `--not --not`.
    #[error("consecutive --not statements")]
    ConsecutiveNot,
    /// `--not` with no filter flag after it.
    #[error("--not must be followed by a filter flag")]
    DanglingNot,
    /// A flag at the end of the arguments without its value.
    #[error("--{flag} needs a value")]
    MissingValue {
        /// The flag.
        flag: &'static str,
    },
    /// Not a time.
    #[error(
        "--{flag} {value:?}: expected an RFC 3339 time (2024-12-01T10:00:00Z), a date-time in UTC (2024-12-01T10:00:00, 2024-12-01) or a duration before now (30s, 5m, 1h30m)"
    )]
    InvalidTime {
        /// `since` or `until`.
        flag: &'static str,
        /// The value.
        value: String,
    },
    /// `--since` after `--until`.
    #[error("--since {since} is after --until {until}")]
    EmptyRange {
        /// Since.
        since: Timestamp,
        /// Until.
        until: Timestamp,
    },
    /// Two options that exclude each other (`--first` and `--last`, ...).
    #[error("--{a} and --{b} cannot be combined")]
    Exclusive {
        /// One option.
        a: &'static str,
        /// The other.
        b: &'static str,
    },
}

/// One filter flag with its parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterFlag {
    /// `--namespace N`: from or to pods of N.
    Namespace(String),
    /// `--from-namespace N`.
    FromNamespace(String),
    /// `--to-namespace N`.
    ToNamespace(String),
    /// `--pod [ns/]prefix`: from or to.
    Pod(String),
    /// `--from-pod`.
    FromPod(String),
    /// `--to-pod`.
    ToPod(String),
    /// `--service [ns/]name`: from or to.
    Service(String),
    /// `--from-service`.
    FromService(String),
    /// `--to-service`.
    ToService(String),
    /// `--label selector`: from or to.
    Label(String),
    /// `--from-label`.
    FromLabel(String),
    /// `--to-label`.
    ToLabel(String),
    /// `--ip addr|cidr`: from or to.
    Ip(String),
    /// `--from-ip`.
    FromIp(String),
    /// `--to-ip`.
    ToIp(String),
    /// `--port n`: from or to.
    Port(String),
    /// `--from-port`.
    FromPort(String),
    /// `--to-port`.
    ToPort(String),
    /// `--identity n|name`: from or to.
    Identity(u32),
    /// `--from-identity`.
    FromIdentity(u32),
    /// `--to-identity`.
    ToIdentity(u32),
    /// `--protocol tcp|udp|icmp|...|dns|http`.
    Protocol(String),
    /// `--verdict FORWARDED|...`.
    Verdict(Verdict),
    /// `--type trace[:to-endpoint]|drop|policy-verdict|trace-sock|l7|N[:M]`.
    Type(EventTypeFilter),
    /// `--http-method GET`.
    HttpMethod(String),
    /// `--http-path regex`.
    HttpPath(String),
    /// `--http-status 200|5+`.
    HttpStatus(String),
    /// `--traffic-direction ingress|egress`.
    TrafficDirection(TrafficDirection),
    /// `--node-name pattern`.
    NodeName(String),
    /// `--drop-reason-desc POLICY_DENIED`.
    DropReasonDesc(String),
    /// `--uuid`.
    Uuid(String),
    /// `--tcp-flags SYN,ACK`.
    TcpFlags(TcpFlags),
    /// `--ip-version 4|6`.
    IpVersion(IpVersion),
}

/// A filter flag and whether `--not` came just before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterArg {
    /// Preceded by `--not`: goes to the blacklist.
    pub negated: bool,
    /// The flag.
    pub flag: FilterFlag,
}

/// Every filter flag name (without dashes), for the CLI to declare and
/// for [`filters_from_argv`].
pub const FILTER_FLAGS: &[&str] = &[
    "namespace",
    "from-namespace",
    "to-namespace",
    "pod",
    "from-pod",
    "to-pod",
    "service",
    "from-service",
    "to-service",
    "label",
    "from-label",
    "to-label",
    "ip",
    "from-ip",
    "to-ip",
    "port",
    "from-port",
    "to-port",
    "identity",
    "from-identity",
    "to-identity",
    "protocol",
    "verdict",
    "type",
    "http-method",
    "http-path",
    "http-status",
    "traffic-direction",
    "node-name",
    "drop-reason-desc",
    "uuid",
    "tcp-flags",
    "ip-version",
];

const DASHED: &[&str] = &[
    "--namespace",
    "--from-namespace",
    "--to-namespace",
    "--pod",
    "--from-pod",
    "--to-pod",
    "--service",
    "--from-service",
    "--to-service",
    "--label",
    "--from-label",
    "--to-label",
    "--ip",
    "--from-ip",
    "--to-ip",
    "--port",
    "--from-port",
    "--to-port",
    "--identity",
    "--from-identity",
    "--to-identity",
    "--protocol",
    "--verdict",
    "--type",
    "--http-method",
    "--http-path",
    "--http-status",
    "--traffic-direction",
    "--node-name",
    "--drop-reason-desc",
    "--uuid",
    "--tcp-flags",
    "--ip-version",
];

fn static_name(name: &str) -> Option<(&'static str, &'static str)> {
    FILTER_FLAGS
        .iter()
        .zip(DASHED)
        .find(|(n, _)| **n == name)
        .map(|(n, d)| (*n, *d))
}

impl FilterFlag {
    /// Parses the value of the filter flag `name` (without dashes);
    /// `Ok(None)` if `name` is not a filter flag.
    pub fn parse(name: &str, value: &str) -> Result<Option<FilterFlag>, ArgsError> {
        let Some((flag, dashed)) = static_name(name) else {
            return Ok(None);
        };
        let v = value.to_string();
        let invalid = |expected: &str| ArgsError::InvalidValue {
            flag,
            value: value.to_string(),
            expected: expected.to_string(),
        };
        Ok(Some(match flag {
            "namespace" | "from-namespace" | "to-namespace" => {
                if value.is_empty() || value.contains('/') {
                    return Err(invalid("a namespace name"));
                }
                match flag {
                    "namespace" => FilterFlag::Namespace(v),
                    "from-namespace" => FilterFlag::FromNamespace(v),
                    _ => FilterFlag::ToNamespace(v),
                }
            }
            "pod" | "from-pod" | "to-pod" | "service" | "from-service" | "to-service" => {
                check_name(dashed, value)?;
                match flag {
                    "pod" => FilterFlag::Pod(v),
                    "from-pod" => FilterFlag::FromPod(v),
                    "to-pod" => FilterFlag::ToPod(v),
                    "service" => FilterFlag::Service(v),
                    "from-service" => FilterFlag::FromService(v),
                    _ => FilterFlag::ToService(v),
                }
            }
            "label" | "from-label" | "to-label" => {
                LabelSelector::parse_for(dashed, value)?;
                match flag {
                    "label" => FilterFlag::Label(v),
                    "from-label" => FilterFlag::FromLabel(v),
                    _ => FilterFlag::ToLabel(v),
                }
            }
            "ip" | "from-ip" | "to-ip" => {
                check_ip(dashed, value)?;
                match flag {
                    "ip" => FilterFlag::Ip(v),
                    "from-ip" => FilterFlag::FromIp(v),
                    _ => FilterFlag::ToIp(v),
                }
            }
            "port" | "from-port" | "to-port" => {
                parse_port(dashed, value)?;
                match flag {
                    "port" => FilterFlag::Port(v),
                    "from-port" => FilterFlag::FromPort(v),
                    _ => FilterFlag::ToPort(v),
                }
            }
            "identity" | "from-identity" | "to-identity" => {
                let id = parse_identity(value).ok_or_else(|| {
                    invalid("a numeric identity or one of host, world, unmanaged, health, init, remote-node, kube-apiserver, ingress, world-ipv4, world-ipv6")
                })?;
                match flag {
                    "identity" => FilterFlag::Identity(id),
                    "from-identity" => FilterFlag::FromIdentity(id),
                    _ => FilterFlag::ToIdentity(id),
                }
            }
            "protocol" => {
                check_protocol(dashed, value)?;
                FilterFlag::Protocol(v)
            }
            "verdict" => {
                let verdict = Verdict::from_name(value)
                    .filter(|v| *v != Verdict::Unknown)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Verdict::NAMED.iter().map(|v| v.name()).collect();
                        invalid(&format!("one of {}", names.join(", ")))
                    })?;
                FilterFlag::Verdict(verdict)
            }
            "type" => FilterFlag::Type(parse_type(value).ok_or_else(|| {
                invalid("trace[:to-endpoint|to-stack|from-endpoint|from-network|to-network|...], drop, policy-verdict, trace-sock, l7, capture, debug, agent, or a number[:number]")
            })?),
            "http-method" => {
                if value.is_empty() {
                    return Err(invalid("an HTTP method"));
                }
                FilterFlag::HttpMethod(v)
            }
            "http-path" => {
                parse_regex(dashed, value)?;
                FilterFlag::HttpPath(v)
            }
            "http-status" => {
                check_http_status(dashed, value)?;
                FilterFlag::HttpStatus(v)
            }
            "traffic-direction" => match value.to_ascii_lowercase().as_str() {
                "ingress" => FilterFlag::TrafficDirection(TrafficDirection::Ingress),
                "egress" => FilterFlag::TrafficDirection(TrafficDirection::Egress),
                _ => return Err(invalid("ingress or egress")),
            },
            "node-name" => FilterFlag::NodeName(v),
            "drop-reason-desc" => {
                // Hubble's names (what flows carry); Cilium's datapath
                // names are taken too, as their Hubble names.
                let Some(r) = DropReason::ALL
                    .iter()
                    .find(|r| r.hubble_name() == value || r.name() == value)
                else {
                    let names: Vec<&str> =
                        DropReason::ALL.iter().map(|r| r.hubble_name()).collect();
                    return Err(invalid(&format!("one of {}", names.join(", "))));
                };
                FilterFlag::DropReasonDesc(r.hubble_name().to_string())
            }
            "uuid" => FilterFlag::Uuid(v),
            "tcp-flags" => FilterFlag::TcpFlags(parse_tcp_flags(value).ok_or_else(|| {
                invalid("a comma-separated list of SYN, FIN, RST, PSH, ACK, URG, ECE, CWR, NS")
            })?),
            "ip-version" => match value.to_ascii_lowercase().as_str() {
                "4" | "v4" | "ipv4" | "ip4" => FilterFlag::IpVersion(IpVersion::V4),
                "6" | "v6" | "ipv6" | "ip6" => FilterFlag::IpVersion(IpVersion::V6),
                _ => return Err(invalid("4 or 6")),
            },
            _ => return Ok(None),
        }))
    }

    /// The flag's name, without dashes.
    pub fn name(&self) -> &'static str {
        match self {
            FilterFlag::Namespace(_) => "namespace",
            FilterFlag::FromNamespace(_) => "from-namespace",
            FilterFlag::ToNamespace(_) => "to-namespace",
            FilterFlag::Pod(_) => "pod",
            FilterFlag::FromPod(_) => "from-pod",
            FilterFlag::ToPod(_) => "to-pod",
            FilterFlag::Service(_) => "service",
            FilterFlag::FromService(_) => "from-service",
            FilterFlag::ToService(_) => "to-service",
            FilterFlag::Label(_) => "label",
            FilterFlag::FromLabel(_) => "from-label",
            FilterFlag::ToLabel(_) => "to-label",
            FilterFlag::Ip(_) => "ip",
            FilterFlag::FromIp(_) => "from-ip",
            FilterFlag::ToIp(_) => "to-ip",
            FilterFlag::Port(_) => "port",
            FilterFlag::FromPort(_) => "from-port",
            FilterFlag::ToPort(_) => "to-port",
            FilterFlag::Identity(_) => "identity",
            FilterFlag::FromIdentity(_) => "from-identity",
            FilterFlag::ToIdentity(_) => "to-identity",
            FilterFlag::Protocol(_) => "protocol",
            FilterFlag::Verdict(_) => "verdict",
            FilterFlag::Type(_) => "type",
            FilterFlag::HttpMethod(_) => "http-method",
            FilterFlag::HttpPath(_) => "http-path",
            FilterFlag::HttpStatus(_) => "http-status",
            FilterFlag::TrafficDirection(_) => "traffic-direction",
            FilterFlag::NodeName(_) => "node-name",
            FilterFlag::DropReasonDesc(_) => "drop-reason-desc",
            FilterFlag::Uuid(_) => "uuid",
            FilterFlag::TcpFlags(_) => "tcp-flags",
            FilterFlag::IpVersion(_) => "ip-version",
        }
    }
}

fn parse_identity(v: &str) -> Option<u32> {
    v.parse::<u32>()
        .ok()
        .or_else(|| reserved_number(v.strip_prefix("reserved:").unwrap_or(v)))
}

fn parse_type(v: &str) -> Option<EventTypeFilter> {
    let (t, sub) = match v.split_once(':') {
        Some((t, s)) => (t, Some(s)),
        None => (v, None),
    };
    let event_type = match t {
        "drop" => message_type::DROP,
        "debug" => message_type::DEBUG,
        "capture" => message_type::CAPTURE,
        "trace" => message_type::TRACE,
        "policy-verdict" => message_type::POLICY_VERDICT,
        "trace-sock" | "sock" => message_type::TRACE_SOCK,
        "l7" => message_type::ACCESS_LOG,
        "agent" => message_type::AGENT,
        n => n.parse::<i32>().ok().filter(|n| *n >= 0)?,
    };
    let mut f = EventTypeFilter {
        event_type,
        match_sub_type: false,
        sub_type: 0,
    };
    if let Some(s) = sub {
        let named = (event_type == message_type::TRACE)
            .then(|| (0u8..=11).find(|p| trace_point_name(*p) == Some(s)))
            .flatten()
            .map(i32::from);
        f.match_sub_type = true;
        f.sub_type = match named {
            Some(n) => n,
            None => s.parse::<i32>().ok().filter(|n| *n >= 0)?,
        };
    }
    Some(f)
}

fn parse_tcp_flags(v: &str) -> Option<TcpFlags> {
    let mut f = TcpFlags::default();
    for part in v.split(',') {
        match part.trim().to_ascii_uppercase().as_str() {
            "SYN" => f.syn = true,
            "FIN" => f.fin = true,
            "RST" => f.rst = true,
            "PSH" => f.psh = true,
            "ACK" => f.ack = true,
            "URG" => f.urg = true,
            "ECE" => f.ece = true,
            "CWR" => f.cwr = true,
            "NS" => f.ns = true,
            _ => return None,
        }
    }
    Some(f)
}

/// The filter flags of an argv, in order, each with whether `--not`
/// preceded it. Reads `--name value` and `--name=value` for the names in
/// [`FILTER_FLAGS`] (and `short` aliases such as `("-n", "namespace")`),
/// and `--not`; skips every other argument; stops at `--`.
pub fn filters_from_argv<S: AsRef<str>>(
    argv: &[S],
    short: &[(&str, &str)],
) -> Result<Vec<FilterArg>, ArgsError> {
    let mut out = Vec::new();
    let mut not = false;
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_ref();
        i += 1;
        if arg == "--" {
            break;
        }
        if arg == "--not" {
            if not {
                return Err(ArgsError::ConsecutiveNot);
            }
            not = true;
            continue;
        }
        let (name, inline) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            }
        } else if let Some((_, long)) = short.iter().find(|(s, _)| *s == arg) {
            (*long, None)
        } else {
            continue;
        };
        let Some((flag, _)) = static_name(name) else {
            continue;
        };
        let value = match inline {
            Some(v) => v,
            None => {
                let v = argv
                    .get(i)
                    .ok_or(ArgsError::MissingValue { flag })?
                    .as_ref();
                i += 1;
                v
            }
        };
        if let Some(parsed) = FilterFlag::parse(flag, value)? {
            out.push(FilterArg {
                negated: std::mem::take(&mut not),
                flag: parsed,
            });
        }
    }
    if not {
        return Err(ArgsError::DanglingNot);
    }
    Ok(out)
}

/// The filter flags from clap's indices: `nots` are the indices of
/// `--not`, `flags` the index and parsed value of every filter flag
/// occurrence (any order). A `--not` negates the first flag after it.
pub fn filters_from_indices(
    nots: &[usize],
    mut flags: Vec<(usize, FilterFlag)>,
) -> Result<Vec<FilterArg>, ArgsError> {
    flags.sort_by_key(|(i, _)| *i);
    let mut nots = nots.to_vec();
    nots.sort_unstable();
    let mut out = Vec::with_capacity(flags.len());
    let mut n = 0;
    for (idx, flag) in flags {
        let mut negated = false;
        while n < nots.len() && nots[n] < idx {
            if negated {
                return Err(ArgsError::ConsecutiveNot);
            }
            negated = true;
            n += 1;
        }
        out.push(FilterArg { negated, flag });
    }
    if n < nots.len() {
        return Err(ArgsError::DanglingNot);
    }
    Ok(out)
}

/// What `tollway observe` was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObserveArgs {
    /// Filter flags in command-line order.
    pub filters: Vec<FilterArg>,
    /// `--since`: RFC 3339, or a duration before now (`5m`).
    pub since: Option<String>,
    /// `--until`: likewise.
    pub until: Option<String>,
    /// `--last N` (default 20 when neither `--first`, `--all`,
    /// `--follow` nor a time range is given).
    pub last: Option<u64>,
    /// `--first N`.
    pub first: Option<u64>,
    /// `--all`: every stored flow.
    pub all: bool,
    /// `--follow`.
    pub follow: bool,
}

/// `--last`'s default.
pub const DEFAULT_LAST: u64 = 20;

impl ObserveArgs {
    /// The request, times relative to `now`.
    pub fn to_request(&self, now: Timestamp) -> Result<FlowRequest, ArgsError> {
        let exclusive = [
            ("first", self.first.is_some()),
            ("last", self.last.is_some()),
            ("all", self.all),
        ];
        for (i, (a, on_a)) in exclusive.iter().enumerate() {
            for (b, on_b) in &exclusive[i + 1..] {
                if *on_a && *on_b {
                    return Err(ArgsError::Exclusive { a, b });
                }
            }
        }
        if self.first.is_some() && self.follow {
            return Err(ArgsError::Exclusive {
                a: "first",
                b: "follow",
            });
        }
        let since = self
            .since
            .as_deref()
            .map(|v| parse_time("since", v, now))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|v| parse_time("until", v, now))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(ArgsError::EmptyRange { since: s, until: u });
        }
        let (number, first) = if self.all {
            (None, false)
        } else if let Some(n) = self.first {
            (Some(n), true)
        } else if let Some(n) = self.last {
            (Some(n), false)
        } else if since.is_some() || until.is_some() {
            (None, false)
        } else if self.follow {
            (Some(0), false)
        } else {
            (Some(DEFAULT_LAST), false)
        };

        let mut white = Tracker::default();
        let mut black = Tracker::default();
        for arg in &self.filters {
            let t = if arg.negated { &mut black } else { &mut white };
            t.add(&arg.flag)?;
        }
        Ok(FlowRequest {
            whitelist: white.filters(),
            blacklist: black.filters(),
            number,
            first,
            follow: self.follow,
            since,
            until,
        })
    }
}

/// Parses `--since`/`--until`.
pub fn parse_time(flag: &'static str, v: &str, now: Timestamp) -> Result<Timestamp, ArgsError> {
    let err = || ArgsError::InvalidTime {
        flag,
        value: v.to_string(),
    };
    if let Ok(ts) = v.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(dt) = v.parse::<jiff::civil::DateTime>() {
        return jiff::tz::Offset::UTC.to_timestamp(dt).map_err(|_| err());
    }
    if let Ok(d) = v.parse::<jiff::civil::Date>() {
        return jiff::tz::Offset::UTC
            .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|_| err());
    }
    let d = parse_go_duration(v).ok_or_else(err)?;
    now.checked_sub(d).map_err(|_| err())
}

/// Go's `time.ParseDuration` syntax: `300ms`, `1.5h`, `2h45m` (units ns,
/// us, µs, ms, s, m, h).
pub fn parse_go_duration(v: &str) -> Option<SignedDuration> {
    if v == "0" {
        return Some(SignedDuration::ZERO);
    }
    let mut rest = v;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ns_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += num * ns_per;
    }
    if !total.is_finite() || total > 1e18 {
        return None;
    }
    // Whole nanoseconds; the value is bounded above.
    #[allow(clippy::cast_possible_truncation)]
    let ns = total.round() as i64;
    Some(SignedDuration::from_nanos(ns))
}

/// Hubble's conflict groups: two flags of one group may not be combined
/// (in the whitelist, or in the blacklist).
const CONFLICTS: &[&[&str]] = &[
    &["from-ip", "ip", "from-namespace", "namespace"],
    &["from-ip", "ip", "from-pod", "pod"],
    &["to-ip", "ip", "to-namespace", "namespace"],
    &["to-ip", "ip", "to-pod", "pod"],
    &["to-pod", "namespace"],
    &["from-pod", "namespace"],
    &["to-service", "namespace"],
    &["from-service", "namespace"],
    &["label", "from-label"],
    &["label", "to-label"],
    &["service", "from-service"],
    &["service", "to-service"],
    &["port", "to-port"],
    &["port", "from-port"],
    &["identity", "to-identity"],
    &["identity", "from-identity"],
];

/// `(flag, its namespaces, the pod and service lists they must contain)`.
type NsCheck<'a> = (&'static str, &'a [String], &'a [&'a [String]]);

/// Hubble's `filterTracker`: the filter pair `left OR right`.
#[derive(Debug, Default)]
struct Tracker {
    left: Option<FlowFilter>,
    right: Option<FlowFilter>,
    ns: Vec<String>,
    src_ns: Vec<String>,
    dst_ns: Vec<String>,
    changed: Vec<&'static str>,
}

impl Tracker {
    fn both(&mut self, f: impl Fn(&mut FlowFilter)) {
        f(self.left.get_or_insert_with(FlowFilter::default));
        f(self.right.get_or_insert_with(FlowFilter::default));
    }

    fn either(&mut self, l: impl FnOnce(&mut FlowFilter), r: impl FnOnce(&mut FlowFilter)) {
        l(self.left.get_or_insert_with(FlowFilter::default));
        r(self.right.get_or_insert_with(FlowFilter::default));
    }

    fn add(&mut self, flag: &FilterFlag) -> Result<(), ArgsError> {
        let name = flag.name();
        if !self.changed.contains(&name) {
            self.changed.push(name);
        }
        for group in CONFLICTS {
            if !group.contains(&name) {
                continue;
            }
            if let Some(other) = group
                .iter()
                .find(|o| **o != name && self.changed.contains(o))
            {
                return Err(ArgsError::Conflict { a: other, b: name });
            }
        }
        use FilterFlag as F;
        match flag {
            F::Namespace(n) => self.ns.push(n.clone()),
            F::FromNamespace(n) => self.src_ns.push(n.clone()),
            F::ToNamespace(n) => self.dst_ns.push(n.clone()),
            F::Pod(v) => self.either(
                |f| f.source_pod.push(v.clone()),
                |f| f.destination_pod.push(v.clone()),
            ),
            F::FromPod(v) => self.both(|f| f.source_pod.push(v.clone())),
            F::ToPod(v) => self.both(|f| f.destination_pod.push(v.clone())),
            F::Service(v) => self.either(
                |f| f.source_service.push(v.clone()),
                |f| f.destination_service.push(v.clone()),
            ),
            F::FromService(v) => self.both(|f| f.source_service.push(v.clone())),
            F::ToService(v) => self.both(|f| f.destination_service.push(v.clone())),
            F::Label(v) => self.either(
                |f| f.source_label.push(v.clone()),
                |f| f.destination_label.push(v.clone()),
            ),
            F::FromLabel(v) => self.both(|f| f.source_label.push(v.clone())),
            F::ToLabel(v) => self.both(|f| f.destination_label.push(v.clone())),
            F::Ip(v) => self.either(
                |f| f.source_ip.push(v.clone()),
                |f| f.destination_ip.push(v.clone()),
            ),
            F::FromIp(v) => self.both(|f| f.source_ip.push(v.clone())),
            F::ToIp(v) => self.both(|f| f.destination_ip.push(v.clone())),
            F::Port(v) => self.either(
                |f| f.source_port.push(v.clone()),
                |f| f.destination_port.push(v.clone()),
            ),
            F::FromPort(v) => self.both(|f| f.source_port.push(v.clone())),
            F::ToPort(v) => self.both(|f| f.destination_port.push(v.clone())),
            F::Identity(v) => self.either(
                |f| f.source_identity.push(*v),
                |f| f.destination_identity.push(*v),
            ),
            F::FromIdentity(v) => self.both(|f| f.source_identity.push(*v)),
            F::ToIdentity(v) => self.both(|f| f.destination_identity.push(*v)),
            F::Protocol(v) => self.both(|f| f.protocol.push(v.clone())),
            F::Verdict(v) => self.both(|f| f.verdict.push(*v)),
            F::Type(t) => self.both(|f| f.event_type.push(*t)),
            F::HttpMethod(v) => self.both(|f| f.http_method.push(v.clone())),
            F::HttpPath(v) => self.both(|f| f.http_path.push(v.clone())),
            F::HttpStatus(v) => self.both(|f| f.http_status_code.push(v.clone())),
            F::TrafficDirection(d) => self.both(|f| f.traffic_direction.push(*d)),
            F::NodeName(v) => self.both(|f| f.node_name.push(v.clone())),
            F::DropReasonDesc(v) => self.both(|f| f.drop_reason_desc.push(v.clone())),
            F::Uuid(v) => self.both(|f| f.uuid.push(v.clone())),
            F::TcpFlags(t) => self.both(|f| f.tcp_flags.push(*t)),
            F::IpVersion(v) => self.both(|f| f.ip_version.push(*v)),
        }
        self.check_namespaces()
    }

    fn check_namespaces(&self) -> Result<(), ArgsError> {
        for ff in self.left.iter().chain(self.right.iter()) {
            let checks: [NsCheck<'_>; 3] = [
                (
                    "namespace",
                    &self.ns,
                    &[
                        &ff.source_pod,
                        &ff.source_service,
                        &ff.destination_pod,
                        &ff.destination_service,
                    ],
                ),
                (
                    "from-namespace",
                    &self.src_ns,
                    &[&ff.source_pod, &ff.source_service],
                ),
                (
                    "to-namespace",
                    &self.dst_ns,
                    &[&ff.destination_pod, &ff.destination_service],
                ),
            ];
            for (flag, namespaces, lists) in checks {
                for ns in namespaces {
                    for name in lists.iter().flat_map(|l| l.iter()) {
                        if let Some((n, _)) = name.split_once('/')
                            && n != ns
                        {
                            return Err(ArgsError::NamespaceConflict {
                                flag,
                                namespace: ns.clone(),
                                name: name.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn filters(mut self) -> Vec<FlowFilter> {
        if self.left.is_none()
            && self.right.is_none()
            && self.ns.is_empty()
            && self.src_ns.is_empty()
            && self.dst_ns.is_empty()
        {
            return Vec::new();
        }
        let mut left = self.left.take().unwrap_or_default();
        let mut right = self.right.take().unwrap_or_default();
        if !self.dst_ns.is_empty() {
            apply_dst(&mut left, &self.dst_ns);
            apply_dst(&mut right, &self.dst_ns);
        }
        if !self.src_ns.is_empty() {
            apply_src(&mut left, &self.src_ns);
            apply_src(&mut right, &self.src_ns);
        }
        if !self.ns.is_empty() {
            apply_src(&mut left, &self.ns);
            apply_dst(&mut right, &self.ns);
        }
        if left == right {
            vec![left]
        } else {
            vec![left, right]
        }
    }
}

fn apply_src(ff: &mut FlowFilter, ns: &[String]) {
    if ff.source_pod.is_empty() && ff.source_service.is_empty() {
        ff.source_pod = vec![String::new()];
    }
    add_namespaces(&mut ff.source_pod, ns);
    add_namespaces(&mut ff.source_service, ns);
}

fn apply_dst(ff: &mut FlowFilter, ns: &[String]) {
    if ff.destination_pod.is_empty() && ff.destination_service.is_empty() {
        ff.destination_pod = vec![String::new()];
    }
    add_namespaces(&mut ff.destination_pod, ns);
    add_namespaces(&mut ff.destination_service, ns);
}

fn add_namespaces(values: &mut Vec<String>, ns: &[String]) {
    if ns.is_empty() || values.is_empty() {
        return;
    }
    let mut out = Vec::new();
    for v in values.iter() {
        if v.contains('/') {
            out.push(v.clone());
        } else {
            out.extend(ns.iter().map(|n| format!("{n}/{v}")));
        }
    }
    *values = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-12-01T10:00:00Z".parse().unwrap()
    }

    fn req(argv: &[&str]) -> Result<FlowRequest, ArgsError> {
        let filters = filters_from_argv(argv, &[("-n", "namespace"), ("-t", "type")])?;
        ObserveArgs {
            filters,
            ..ObserveArgs::default()
        }
        .to_request(now())
    }

    fn ff(f: impl FnOnce(&mut FlowFilter)) -> FlowFilter {
        let mut x = FlowFilter::default();
        f(&mut x);
        x
    }

    #[test]
    fn pod_means_from_or_to() {
        let r = req(&["--pod", "payments/web"]).unwrap();
        assert_eq!(
            r.whitelist,
            vec![
                ff(|f| f.source_pod = vec!["payments/web".into()]),
                ff(|f| f.destination_pod = vec!["payments/web".into()]),
            ]
        );
        assert!(r.blacklist.is_empty());
        assert_eq!(r.number, Some(20));
    }

    #[test]
    fn namespace_alone_and_with_pod() {
        let r = req(&["--namespace", "payments"]).unwrap();
        assert_eq!(
            r.whitelist,
            vec![
                ff(|f| f.source_pod = vec!["payments/".into()]),
                ff(|f| f.destination_pod = vec!["payments/".into()]),
            ]
        );
        let r = req(&["-n", "payments", "--pod", "web"]).unwrap();
        assert_eq!(
            r.whitelist,
            vec![
                ff(|f| f.source_pod = vec!["payments/web".into()]),
                ff(|f| f.destination_pod = vec!["payments/web".into()]),
            ]
        );
        assert_eq!(
            req(&["--namespace", "a", "--pod", "b/web"]).unwrap_err(),
            ArgsError::NamespaceConflict {
                flag: "namespace",
                namespace: "a".into(),
                name: "b/web".into()
            }
        );
    }

    #[test]
    fn side_flags_apply_to_both_alternatives() {
        let r = req(&["--pod", "ns/web", "--verdict", "DROPPED", "--to-port", "80"]).unwrap();
        assert_eq!(
            r.whitelist,
            vec![
                ff(|f| {
                    f.source_pod = vec!["ns/web".into()];
                    f.verdict = vec![Verdict::Dropped];
                    f.destination_port = vec!["80".into()];
                }),
                ff(|f| {
                    f.destination_pod = vec!["ns/web".into()];
                    f.verdict = vec![Verdict::Dropped];
                    f.destination_port = vec!["80".into()];
                }),
            ]
        );
        // Only non-either flags: one filter.
        let r = req(&[
            "--from-pod",
            "ns/a",
            "--to-pod",
            "ns/b",
            "--protocol",
            "tcp",
        ])
        .unwrap();
        assert_eq!(
            r.whitelist,
            vec![ff(|f| {
                f.source_pod = vec!["ns/a".into()];
                f.destination_pod = vec!["ns/b".into()];
                f.protocol = vec!["tcp".into()];
            })]
        );
    }

    #[test]
    fn label_ip_port_identity_either() {
        let r = req(&[
            "--label",
            "app=web",
            "--ip",
            "10.0.0.1",
            "--port=53",
            "--identity",
            "world",
        ])
        .unwrap();
        assert_eq!(
            r.whitelist,
            vec![
                ff(|f| {
                    f.source_label = vec!["app=web".into()];
                    f.source_ip = vec!["10.0.0.1".into()];
                    f.source_port = vec!["53".into()];
                    f.source_identity = vec![2];
                }),
                ff(|f| {
                    f.destination_label = vec!["app=web".into()];
                    f.destination_ip = vec!["10.0.0.1".into()];
                    f.destination_port = vec!["53".into()];
                    f.destination_identity = vec![2];
                }),
            ]
        );
    }

    #[test]
    fn not_negates_the_next_flag_only() {
        let r = req(&[
            "--verdict",
            "FORWARDED",
            "--not",
            "--pod",
            "ns/web",
            "--protocol",
            "udp",
        ])
        .unwrap();
        assert_eq!(
            r.whitelist,
            vec![ff(|f| {
                f.verdict = vec![Verdict::Forwarded];
                f.protocol = vec!["udp".into()];
            })]
        );
        assert_eq!(
            r.blacklist,
            vec![
                ff(|f| f.source_pod = vec!["ns/web".into()]),
                ff(|f| f.destination_pod = vec!["ns/web".into()]),
            ]
        );
        assert_eq!(
            req(&["--not", "--not", "--pod", "x"]).unwrap_err(),
            ArgsError::ConsecutiveNot
        );
        assert_eq!(
            req(&["--pod", "x", "--not"]).unwrap_err(),
            ArgsError::DanglingNot
        );
    }

    #[test]
    fn indices_give_the_same_as_argv() {
        // tollway observe --verdict FORWARDED --not --pod ns/web --protocol udp
        //          0        1         2          3     4     5       6        7
        let flags = vec![
            (7, FilterFlag::parse("protocol", "udp").unwrap().unwrap()),
            (
                2,
                FilterFlag::parse("verdict", "FORWARDED").unwrap().unwrap(),
            ),
            (5, FilterFlag::parse("pod", "ns/web").unwrap().unwrap()),
        ];
        let by_index = filters_from_indices(&[3], flags).unwrap();
        let by_argv = filters_from_argv(
            &[
                "observe",
                "--verdict",
                "FORWARDED",
                "--not",
                "--pod",
                "ns/web",
                "--protocol",
                "udp",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(by_index, by_argv);
        assert!(by_index[1].negated && !by_index[0].negated && !by_index[2].negated);
        let one = || vec![(5, FilterFlag::Pod("x".into()))];
        assert_eq!(
            filters_from_indices(&[3, 4], one()),
            Err(ArgsError::ConsecutiveNot)
        );
        assert_eq!(
            filters_from_indices(&[6], one()),
            Err(ArgsError::DanglingNot)
        );
    }

    #[test]
    fn conflicts_like_hubble() {
        assert_eq!(
            req(&["--label", "a", "--from-label", "b"]).unwrap_err(),
            ArgsError::Conflict {
                a: "label",
                b: "from-label"
            }
        );
        assert!(matches!(
            req(&["--from-pod", "a", "--namespace", "x"]),
            Err(ArgsError::Conflict { .. })
        ));
        assert!(matches!(
            req(&["--ip", "1.1.1.1", "--pod", "a"]),
            Err(ArgsError::Conflict { .. })
        ));
        // A negated flag does not conflict with a whitelisted one.
        assert!(req(&["--label", "a", "--not", "--from-label", "b"]).is_ok());
    }

    #[test]
    fn errors_name_the_flag_and_value() {
        let e = req(&["--verdict", "FOO"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--verdict FOO: expected one of FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED, TRACED, TRANSLATED"
        );
        let e = req(&["--from-label", "app in (x"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--from-label \"app in (x\": invalid label selector"),
            "{e}"
        );
        let e = req(&["--http-path", "("]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--http-path \"(\": invalid regular expression"),
            "{e}"
        );
        assert!(
            req(&["--port", "http"])
                .unwrap_err()
                .to_string()
                .starts_with("--port http")
        );
        assert!(req(&["--protocol", "gopher"]).is_err());
        assert!(req(&["--type", "nope"]).is_err());
        assert!(req(&["--drop-reason-desc", "NOPE"]).is_err());
        // Hubble's name, or the datapath's, which means the same reason.
        for name in ["SERVICE_BACKEND_NOT_FOUND", "NO_SERVICE"] {
            let r = req(&["--drop-reason-desc", name]).unwrap();
            assert_eq!(
                r.whitelist[0].drop_reason_desc,
                ["SERVICE_BACKEND_NOT_FOUND"],
                "{name}"
            );
        }
        assert_eq!(
            req(&["--pod"]).unwrap_err(),
            ArgsError::MissingValue { flag: "pod" }
        );
    }

    #[test]
    fn types_by_name() {
        let t = |v: &str| parse_type(v).unwrap();
        assert_eq!(t("drop").event_type, 1);
        assert_eq!(t("policy-verdict").event_type, 5);
        assert_eq!(t("trace-sock").event_type, 7);
        assert_eq!(t("sock").event_type, 7);
        assert_eq!(t("l7").event_type, 129);
        let te = t("trace:to-endpoint");
        assert_eq!(
            (te.event_type, te.match_sub_type, te.sub_type),
            (4, true, 0)
        );
        assert_eq!(t("trace:to-stack").sub_type, 3);
        assert_eq!(t("4:11").sub_type, 11);
        assert!(parse_type("trace:nowhere").is_none());
        let r = req(&["-t", "drop", "--type", "trace"]).unwrap();
        assert_eq!(r.whitelist[0].event_type.len(), 2);
    }

    #[test]
    fn numbers_and_times() {
        let base = ObserveArgs::default();
        let r = base.to_request(now()).unwrap();
        assert_eq!((r.number, r.first, r.follow), (Some(20), false, false));
        let r = ObserveArgs {
            follow: true,
            ..base.clone()
        }
        .to_request(now())
        .unwrap();
        assert_eq!(r.number, Some(0), "follow alone: only new flows");
        let r = ObserveArgs {
            first: Some(5),
            ..base.clone()
        }
        .to_request(now())
        .unwrap();
        assert_eq!((r.number, r.first), (Some(5), true));
        let r = ObserveArgs {
            all: true,
            ..base.clone()
        }
        .to_request(now())
        .unwrap();
        assert_eq!(r.number, None);
        let r = ObserveArgs {
            since: Some("5m".into()),
            until: Some("2024-12-01T09:59:30+00:00".into()),
            ..base.clone()
        }
        .to_request(now())
        .unwrap();
        assert_eq!(r.since, Some("2024-12-01T09:55:00Z".parse().unwrap()));
        assert_eq!(r.until, Some("2024-12-01T09:59:30Z".parse().unwrap()));
        assert_eq!(r.number, None);
        assert!(matches!(
            ObserveArgs {
                since: Some("1m".into()),
                until: Some("1h".into()),
                ..base.clone()
            }
            .to_request(now()),
            Err(ArgsError::EmptyRange { .. })
        ));
        assert!(matches!(
            ObserveArgs {
                since: Some("yesterday".into()),
                ..base.clone()
            }
            .to_request(now()),
            Err(ArgsError::InvalidTime { flag: "since", .. })
        ));
        assert!(matches!(
            ObserveArgs {
                first: Some(1),
                last: Some(1),
                ..base.clone()
            }
            .to_request(now()),
            Err(ArgsError::Exclusive { .. })
        ));
        assert!(matches!(
            ObserveArgs {
                first: Some(1),
                follow: true,
                ..base
            }
            .to_request(now()),
            Err(ArgsError::Exclusive { .. })
        ));
        assert_eq!(
            parse_time("since", "2024-11-30", now()).unwrap(),
            "2024-11-30T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("30s"), Some(SignedDuration::from_secs(30)));
        assert_eq!(d("1h30m"), Some(SignedDuration::from_secs(5400)));
        assert_eq!(d("1.5h"), Some(SignedDuration::from_secs(5400)));
        assert_eq!(d("250ms"), Some(SignedDuration::from_millis(250)));
        assert_eq!(d("0"), Some(SignedDuration::ZERO));
        assert_eq!(d(""), None);
        assert_eq!(d("5"), None);
        assert_eq!(d("5d"), None);
        assert_eq!(d("m5"), None);
    }

    #[test]
    fn requests_compile() {
        let r = req(&[
            "--namespace",
            "payments",
            "--label",
            "k8s:app=web",
            "--not",
            "--verdict",
            "DROPPED",
        ])
        .unwrap();
        r.compile().unwrap();
    }

    mod props {
        use super::*;
        use crate::model::{Endpoint, Flow};
        use proptest::prelude::*;

        fn arb_flow() -> impl Strategy<Value = Flow> {
            let ep = ("(a|b)", "(web|db)-[0-9]").prop_map(|(ns, pod)| Endpoint {
                namespace: ns,
                pod_name: pod,
                ..Endpoint::default()
            });
            (
                ep.clone(),
                ep,
                prop::sample::select(vec![Verdict::Forwarded, Verdict::Dropped]),
            )
                .prop_map(|(s, d, v)| Flow {
                    source: Some(s),
                    destination: Some(d),
                    verdict: v,
                    ..Flow::default()
                })
        }

        proptest! {
            /// `--pod P` matches exactly the flows from P or to P; `--not
            /// --pod P` exactly the others (with a verdict flag ANDed).
            #[test]
            fn pod_either_side_semantics(flow in arb_flow(), ns in "(a|b)", prefix in "(web|db)", dropped in any::<bool>()) {
                let pod = format!("{ns}/{prefix}");
                let hit = |e: &Option<Endpoint>| e.as_ref().is_some_and(|e| e.namespace == ns && e.pod_name.starts_with(&prefix));
                let want_verdict = if dropped { Verdict::Dropped } else { Verdict::Forwarded };
                let expected = (hit(&flow.source) || hit(&flow.destination)) && flow.verdict == want_verdict;
                let verdict = want_verdict.name();
                let r = req(&["--pod", &pod, "--verdict", verdict]).unwrap().compile().unwrap();
                prop_assert_eq!(r.matches(&flow), expected);
                let r = req(&["--not", "--pod", &pod]).unwrap().compile().unwrap();
                prop_assert_eq!(r.matches(&flow), !(hit(&flow.source) || hit(&flow.destination)));
            }
        }
    }
}
