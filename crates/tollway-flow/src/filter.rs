//! Flow filters and requests, as Hubble's `FlowFilter` and `GetFlowsRequest`.
//!
//! Semantics (Hubble's): the fields of one [`FlowFilter`] are ANDed, the
//! values of one field ORed; a flow passes a request if it matches some
//! whitelist filter (or the whitelist is empty) and no blacklist filter.
//!
//! Wire types ([`FlowFilter`], [`FlowRequest`]) are plain serde structs;
//! [`FlowRequest::compile`] checks every value (IPs, ports, label
//! selectors, regular expressions, ...) and gives a [`CompiledRequest`]
//! that matches flows without allocating.

use std::net::IpAddr;

use ipnet::IpNet;
use jiff::Timestamp;
use regex::Regex;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{
    Endpoint, Flow, IpVersion, Layer4, TcpFlags, TrafficDirection, Verdict, message_type, timefmt,
};

/// A filter value that does not parse. `field` is the wire field
/// (`source_label`) or, from [`crate::args`], the flag (`--from-label`).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FilterError {
    /// Not an IP address or CIDR.
    #[error("{field} {value}: expected an IP address (1.2.3.4) or a CIDR (10.0.0.0/8)")]
    InvalidIp {
        /// Field or flag.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// Not a port.
    #[error("{field} {value}: expected a port number (0-65535)")]
    InvalidPort {
        /// Field or flag.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// Not `[namespace/][name-prefix]`.
    #[error("{field} {value:?}: expected [namespace/][name-prefix]")]
    InvalidName {
        /// Field or flag.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// Not a label selector.
    #[error("{field} {value:?}: invalid label selector: {reason}")]
    InvalidSelector {
        /// Field or flag.
        field: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Not a regular expression.
    #[error("{field} {value:?}: invalid regular expression: {reason}")]
    InvalidRegex {
        /// Field or flag.
        field: &'static str,
        /// The value.
        value: String,
        /// The regex crate's error.
        reason: String,
    },
    /// Not an HTTP status code or prefix.
    #[error("{field} {value}: expected a status code (404) or a prefix (4+, 40+)")]
    InvalidHttpStatus {
        /// Field or flag.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// An unknown protocol.
    #[error(
        "{field} {value}: expected one of tcp, udp, icmp, icmpv4, icmpv6, sctp, dns, http, kafka"
    )]
    InvalidProtocol {
        /// Field or flag.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// HTTP status filters need L7 events.
    #[error(
        "{field}: filtering by HTTP status code requires the event type filter to match only l7 events"
    )]
    HttpStatusNeedsL7 {
        /// Field or flag.
        field: &'static str,
    },
}

/// Hubble's `EventTypeFilter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventTypeFilter {
    /// The monitor message type (0: any).
    #[serde(rename = "type", default)]
    pub event_type: i32,
    /// Whether `sub_type` must match too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub match_sub_type: bool,
    /// The subtype.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub sub_type: i32,
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// One filter (Hubble's `FlowFilter`): every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowFilter {
    /// Flow uuids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uuid: Vec<String>,
    /// Source addresses or CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_ip: Vec<String>,
    /// Source pods: `namespace/name-prefix`, `name-prefix` (namespace
    /// `default`), `namespace/` (any pod of it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_pod: Vec<String>,
    /// Source label selectors (`app=web`, `k8s:app in (a, b)`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_label: Vec<String>,
    /// Source services, as `source_pod`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_service: Vec<String>,
    /// Source identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_identity: Vec<u32>,
    /// Source ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_port: Vec<String>,
    /// Destination addresses or CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_ip: Vec<String>,
    /// Destination pods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_pod: Vec<String>,
    /// Destination label selectors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_label: Vec<String>,
    /// Destination services.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_service: Vec<String>,
    /// Destination identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_identity: Vec<u32>,
    /// Destination ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_port: Vec<String>,
    /// Traffic directions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traffic_direction: Vec<TrafficDirection>,
    /// Verdicts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdict: Vec<Verdict>,
    /// Drop reasons by enum name (`POLICY_DENIED`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop_reason_desc: Vec<String>,
    /// Event types.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_type: Vec<EventTypeFilter>,
    /// HTTP status codes or prefixes (`200`, `5+`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_status_code: Vec<String>,
    /// L4 or L7 protocols (`tcp`, `dns`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protocol: Vec<String>,
    /// Whether the flow is a reply (flows whose reply state is unknown
    /// match neither).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reply: Vec<bool>,
    /// DNS query regular expressions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_query: Vec<String>,
    /// HTTP methods (case-insensitive).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_method: Vec<String>,
    /// HTTP path regular expressions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_path: Vec<String>,
    /// TCP flag sets: a flow matches one if it has all its flags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp_flags: Vec<TcpFlags>,
    /// Node name patterns (`*` is a wildcard, a `cluster/` prefix is
    /// ignored).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_name: Vec<String>,
    /// IP versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_version: Vec<IpVersion>,
}

/// Hubble's `GetFlowsRequest`, the part Tollway uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowRequest {
    /// A flow must match one of them (none: every flow does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub whitelist: Vec<FlowFilter>,
    /// A flow must match none of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blacklist: Vec<FlowFilter>,
    /// How many stored flows to return: the last ones, or the first ones
    /// with `first`. `None`: all that match. `Some(0)` with `follow`: only
    /// new flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// Return the oldest `number` flows instead of the newest.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub first: bool,
    /// Keep sending new flows.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
    /// Only flows at or after this time.
    #[serde(with = "timefmt::option", skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Only flows at or before this time.
    #[serde(with = "timefmt::option", skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

impl FlowRequest {
    /// Checks every filter value and prepares the matchers.
    pub fn compile(&self) -> Result<CompiledRequest, FilterError> {
        Ok(CompiledRequest {
            whitelist: self
                .whitelist
                .iter()
                .map(FlowFilter::compile)
                .collect::<Result<_, _>>()?,
            blacklist: self
                .blacklist
                .iter()
                .map(FlowFilter::compile)
                .collect::<Result<_, _>>()?,
            number: self.number,
            first: self.first,
            follow: self.follow,
            since: self.since,
            until: self.until,
        })
    }
}

/// A checked [`FlowRequest`].
#[derive(Debug, Clone, Default)]
pub struct CompiledRequest {
    /// Whitelist.
    pub whitelist: Vec<CompiledFilter>,
    /// Blacklist.
    pub blacklist: Vec<CompiledFilter>,
    /// As [`FlowRequest::number`].
    pub number: Option<u64>,
    /// As [`FlowRequest::first`].
    pub first: bool,
    /// As [`FlowRequest::follow`].
    pub follow: bool,
    /// As [`FlowRequest::since`].
    pub since: Option<Timestamp>,
    /// As [`FlowRequest::until`].
    pub until: Option<Timestamp>,
}

impl CompiledRequest {
    /// Whether every flow matches (no filter, no time range).
    pub fn is_unfiltered(&self) -> bool {
        self.whitelist.is_empty()
            && self.blacklist.is_empty()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// Whether `flow` passes the filters and the time range.
    pub fn matches(&self, flow: &Flow) -> bool {
        self.in_time_range(flow) && self.matches_filters(flow)
    }

    /// Whether `flow` passes the white- and blacklist (no time range).
    pub fn matches_filters(&self, flow: &Flow) -> bool {
        (self.whitelist.is_empty() || self.whitelist.iter().any(|f| f.matches(flow)))
            && !self.blacklist.iter().any(|f| f.matches(flow))
    }

    /// Whether `flow` is within `since..=until`.
    pub fn in_time_range(&self, flow: &Flow) -> bool {
        self.since.is_none_or(|s| flow.time >= s) && self.until.is_none_or(|u| flow.time <= u)
    }
}

/// A checked [`FlowFilter`].
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter {
    uuid: Vec<String>,
    source_ip: Vec<IpMatch>,
    source_pod: Vec<NameMatch>,
    source_label: Vec<LabelSelector>,
    source_service: Vec<NameMatch>,
    source_identity: Vec<u32>,
    source_port: Vec<u16>,
    destination_ip: Vec<IpMatch>,
    destination_pod: Vec<NameMatch>,
    destination_label: Vec<LabelSelector>,
    destination_service: Vec<NameMatch>,
    destination_identity: Vec<u32>,
    destination_port: Vec<u16>,
    traffic_direction: Vec<TrafficDirection>,
    verdict: Vec<Verdict>,
    drop_reason_desc: Vec<String>,
    event_type: Vec<EventTypeFilter>,
    http_status: Vec<StatusMatch>,
    protocol: Vec<Protocol>,
    reply: Vec<bool>,
    dns_query: Vec<Regex>,
    http_method: Vec<String>,
    http_path: Vec<Regex>,
    tcp_flags: Vec<TcpFlags>,
    node_name: Vec<Regex>,
    ip_version: Vec<IpVersion>,
}

impl FlowFilter {
    /// Checks every value (errors name the wire field).
    pub fn compile(&self) -> Result<CompiledFilter, FilterError> {
        if !self.http_status_code.is_empty()
            && !self.event_type.is_empty()
            && !self
                .event_type
                .iter()
                .any(|t| t.event_type == message_type::ACCESS_LOG)
        {
            return Err(FilterError::HttpStatusNeedsL7 {
                field: "http_status_code",
            });
        }
        Ok(CompiledFilter {
            uuid: self.uuid.clone(),
            source_ip: each(&self.source_ip, |v| IpMatch::parse("source_ip", v))?,
            source_pod: each(&self.source_pod, |v| NameMatch::parse("source_pod", v))?,
            source_label: each(&self.source_label, |v| {
                LabelSelector::parse_for("source_label", v)
            })?,
            source_service: each(&self.source_service, |v| {
                NameMatch::parse("source_service", v)
            })?,
            source_identity: self.source_identity.clone(),
            source_port: each(&self.source_port, |v| parse_port("source_port", v))?,
            destination_ip: each(&self.destination_ip, |v| {
                IpMatch::parse("destination_ip", v)
            })?,
            destination_pod: each(&self.destination_pod, |v| {
                NameMatch::parse("destination_pod", v)
            })?,
            destination_label: each(&self.destination_label, |v| {
                LabelSelector::parse_for("destination_label", v)
            })?,
            destination_service: each(&self.destination_service, |v| {
                NameMatch::parse("destination_service", v)
            })?,
            destination_identity: self.destination_identity.clone(),
            destination_port: each(&self.destination_port, |v| {
                parse_port("destination_port", v)
            })?,
            traffic_direction: self.traffic_direction.clone(),
            verdict: self.verdict.clone(),
            drop_reason_desc: self.drop_reason_desc.clone(),
            event_type: self.event_type.clone(),
            http_status: each(&self.http_status_code, |v| {
                StatusMatch::parse("http_status_code", v)
            })?,
            protocol: each(&self.protocol, |v| Protocol::parse("protocol", v))?,
            reply: self.reply.clone(),
            dns_query: each(&self.dns_query, |v| parse_regex("dns_query", v))?,
            http_method: self.http_method.clone(),
            http_path: each(&self.http_path, |v| parse_regex("http_path", v))?,
            tcp_flags: self.tcp_flags.clone(),
            node_name: each(&self.node_name, |v| parse_node_pattern("node_name", v))?,
            ip_version: self.ip_version.clone(),
        })
    }
}

fn each<T>(
    values: &[String],
    f: impl Fn(&str) -> Result<T, FilterError>,
) -> Result<Vec<T>, FilterError> {
    values.iter().map(|v| f(v)).collect()
}

/// `any` over a non-empty list; an empty list (field not set) passes.
fn field<T>(list: &[T], pred: impl Fn(&T) -> bool) -> bool {
    list.is_empty() || list.iter().any(pred)
}

impl CompiledFilter {
    /// Whether `flow` matches every set field.
    pub fn matches(&self, f: &Flow) -> bool {
        let ip = f.ip.as_ref();
        let src_ip = || ip.and_then(|i| i.source_addr());
        let dst_ip = || ip.and_then(|i| i.destination_addr());
        let ports = f.ports();
        let src = f.source.as_ref();
        let dst = f.destination.as_ref();
        let http = f.l7.as_ref().and_then(|l| l.http.as_ref());
        let dns = f.l7.as_ref().and_then(|l| l.dns.as_ref());
        field(&self.uuid, |u| *u == f.uuid)
            && (self.source_ip.is_empty() || {
                let a = src_ip();
                self.source_ip
                    .iter()
                    .any(|m| a.is_some_and(|a| m.matches(a)))
            })
            && (self.destination_ip.is_empty() || {
                let a = dst_ip();
                self.destination_ip
                    .iter()
                    .any(|m| a.is_some_and(|a| m.matches(a)))
            })
            && field(&self.source_pod, |m| {
                src.is_some_and(|e| m.matches(&e.namespace, &e.pod_name))
            })
            && field(&self.destination_pod, |m| {
                dst.is_some_and(|e| m.matches(&e.namespace, &e.pod_name))
            })
            && field(&self.source_service, |m| {
                f.source_service
                    .as_ref()
                    .is_some_and(|s| m.matches(&s.namespace, &s.name))
            })
            && field(&self.destination_service, |m| {
                f.destination_service
                    .as_ref()
                    .is_some_and(|s| m.matches(&s.namespace, &s.name))
            })
            && field(&self.source_label, |s| s.matches(endpoint_labels(src)))
            && field(&self.destination_label, |s| s.matches(endpoint_labels(dst)))
            && field(&self.source_identity, |i| *i == f.source_identity())
            && field(&self.destination_identity, |i| {
                *i == f.destination_identity()
            })
            && field(&self.source_port, |p| ports.is_some_and(|(s, _)| s == *p))
            && field(&self.destination_port, |p| {
                ports.is_some_and(|(_, d)| d == *p)
            })
            && field(&self.traffic_direction, |d| *d == f.traffic_direction)
            && field(&self.verdict, |v| *v == f.verdict)
            && field(&self.drop_reason_desc, |d| *d == f.drop_reason_desc)
            && field(&self.event_type, |t| event_type_matches(t, f))
            && field(&self.http_status, |s| {
                http.is_some_and(|h| s.matches(h.code))
            })
            && field(&self.protocol, |p| p.matches(f))
            && field(&self.reply, |r| f.is_reply == Some(*r))
            && field(&self.dns_query, |re| {
                dns.is_some_and(|d| re.is_match(&d.query))
            })
            && field(&self.http_method, |m| {
                http.is_some_and(|h| h.method.eq_ignore_ascii_case(m))
            })
            && field(&self.http_path, |re| {
                http.is_some_and(|h| re.is_match(url_path(&h.url)))
            })
            && field(&self.tcp_flags, |want| match &f.l4 {
                Some(Layer4::Tcp(t)) => t.flags.is_some_and(|have| want.is_subset_of(&have)),
                _ => false,
            })
            && field(&self.node_name, |re| re.is_match(&f.node_name))
            && field(&self.ip_version, |v| ip.is_some_and(|i| i.ip_version == *v))
    }
}

fn endpoint_labels(e: Option<&Endpoint>) -> &[String] {
    e.map_or(&[], |e| e.labels.as_slice())
}

fn event_type_matches(t: &EventTypeFilter, f: &Flow) -> bool {
    let Some(ev) = f.event_type else {
        return false;
    };
    (t.event_type == 0 || t.event_type == ev.event_type)
        && (!t.match_sub_type || t.sub_type == ev.sub_type)
}

/// The path of a URL (`http://h/a/b?q` → `/a/b`), or the string itself if
/// it has no scheme.
fn url_path(url: &str) -> &str {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            match after.find('/') {
                Some(j) => &after[j..],
                None => "",
            }
        }
        None => url,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

#[derive(Debug, Clone)]
enum IpMatch {
    Addr(IpAddr),
    Net(IpNet),
}

impl IpMatch {
    fn parse(field: &'static str, v: &str) -> Result<IpMatch, FilterError> {
        let err = || FilterError::InvalidIp {
            field,
            value: v.to_string(),
        };
        if v.contains('/') {
            v.parse::<IpNet>().map(IpMatch::Net).map_err(|_| err())
        } else {
            v.parse::<IpAddr>().map(IpMatch::Addr).map_err(|_| err())
        }
    }

    fn matches(&self, a: IpAddr) -> bool {
        match self {
            IpMatch::Addr(x) => *x == a,
            IpMatch::Net(n) => n.contains(&a),
        }
    }
}

/// Checks an IP address or CIDR filter value.
pub fn check_ip(field: &'static str, v: &str) -> Result<(), FilterError> {
    IpMatch::parse(field, v).map(|_| ())
}

#[derive(Debug, Clone)]
struct NameMatch {
    namespace: String,
    prefix: String,
}

impl NameMatch {
    /// Hubble's `ParseNamespaceName`: `ns/prefix`, `prefix` (namespace
    /// `default`), `ns/` (every name).
    fn parse(field: &'static str, v: &str) -> Result<NameMatch, FilterError> {
        let (namespace, prefix) = match v.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => ("default", v),
        };
        if v.is_empty() || (namespace.is_empty() && prefix.is_empty()) {
            return Err(FilterError::InvalidName {
                field,
                value: v.to_string(),
            });
        }
        Ok(NameMatch {
            namespace: namespace.to_string(),
            prefix: prefix.to_string(),
        })
    }

    fn matches(&self, namespace: &str, name: &str) -> bool {
        if namespace.is_empty() && name.is_empty() {
            return false;
        }
        self.namespace == namespace && name.starts_with(&self.prefix)
    }
}

/// Checks a `[namespace/][name-prefix]` filter value.
pub fn check_name(field: &'static str, v: &str) -> Result<(), FilterError> {
    NameMatch::parse(field, v).map(|_| ())
}

/// Parses a port.
pub fn parse_port(field: &'static str, v: &str) -> Result<u16, FilterError> {
    v.trim()
        .parse::<u16>()
        .map_err(|_| FilterError::InvalidPort {
            field,
            value: v.to_string(),
        })
}

/// Compiles a regular expression.
pub fn parse_regex(field: &'static str, v: &str) -> Result<Regex, FilterError> {
    Regex::new(v).map_err(|e| FilterError::InvalidRegex {
        field,
        value: v.to_string(),
        reason: e.to_string(),
    })
}

fn parse_node_pattern(field: &'static str, v: &str) -> Result<Regex, FilterError> {
    let node = v.split_once('/').map_or(v, |(_, n)| n);
    let mut re = String::from("^");
    for (i, part) in node.split('*').enumerate() {
        if i > 0 {
            re.push_str(".*");
        }
        re.push_str(&regex::escape(part));
    }
    if node.is_empty() {
        re.push_str(".*");
    }
    re.push('$');
    Regex::new(&re).map_err(|e| FilterError::InvalidRegex {
        field,
        value: v.to_string(),
        reason: e.to_string(),
    })
}

#[derive(Debug, Clone)]
enum StatusMatch {
    Full(u32),
    Prefix(String),
}

impl StatusMatch {
    fn parse(field: &'static str, v: &str) -> Result<StatusMatch, FilterError> {
        let err = || FilterError::InvalidHttpStatus {
            field,
            value: v.to_string(),
        };
        let b = v.as_bytes();
        let first_ok = b.first().is_some_and(|c| (b'1'..=b'5').contains(c));
        if !first_ok {
            return Err(err());
        }
        if let Some(p) = v.strip_suffix('+') {
            if p.len() <= 2 && p.bytes().all(|c| c.is_ascii_digit()) {
                return Ok(StatusMatch::Prefix(p.to_string()));
            }
            return Err(err());
        }
        if b.len() == 3 && b.iter().all(u8::is_ascii_digit) {
            return v.parse().map(StatusMatch::Full).map_err(|_| err());
        }
        Err(err())
    }

    fn matches(&self, code: u32) -> bool {
        if code == 0 {
            return false;
        }
        match self {
            StatusMatch::Full(c) => *c == code,
            StatusMatch::Prefix(p) => format!("{code:03}").starts_with(p.as_str()),
        }
    }
}

/// Checks an HTTP status filter value.
pub fn check_http_status(field: &'static str, v: &str) -> Result<(), FilterError> {
    StatusMatch::parse(field, v).map(|_| ())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Icmp,
    Icmpv4,
    Icmpv6,
    Tcp,
    Udp,
    Sctp,
    Dns,
    Http,
    Kafka,
}

impl Protocol {
    fn parse(field: &'static str, v: &str) -> Result<Protocol, FilterError> {
        Ok(match v.to_ascii_lowercase().as_str() {
            "icmp" => Protocol::Icmp,
            "icmpv4" => Protocol::Icmpv4,
            "icmpv6" => Protocol::Icmpv6,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            "dns" => Protocol::Dns,
            "http" => Protocol::Http,
            "kafka" => Protocol::Kafka,
            _ => {
                return Err(FilterError::InvalidProtocol {
                    field,
                    value: v.to_string(),
                });
            }
        })
    }

    fn matches(self, f: &Flow) -> bool {
        let l4 = f.l4.as_ref();
        let l7 = f.l7.as_ref();
        match self {
            Protocol::Icmp => matches!(l4, Some(Layer4::Icmpv4(_) | Layer4::Icmpv6(_))),
            Protocol::Icmpv4 => matches!(l4, Some(Layer4::Icmpv4(_))),
            Protocol::Icmpv6 => matches!(l4, Some(Layer4::Icmpv6(_))),
            Protocol::Tcp => matches!(l4, Some(Layer4::Tcp(_))),
            Protocol::Udp => matches!(l4, Some(Layer4::Udp(_))),
            Protocol::Sctp => matches!(l4, Some(Layer4::Sctp(_))),
            Protocol::Dns => l7.is_some_and(|l| l.dns.is_some()),
            Protocol::Http => l7.is_some_and(|l| l.http.is_some()),
            Protocol::Kafka => false,
        }
    }
}

/// Checks a protocol filter value.
pub fn check_protocol(field: &'static str, v: &str) -> Result<(), FilterError> {
    Protocol::parse(field, v).map(|_| ())
}

/// A Kubernetes label selector over Cilium labels (`k8s:app=web`).
///
/// Requirements, comma-separated and ANDed: `key`, `!key`, `key=value`,
/// `key==value`, `key!=value`, `key in (a, b)`, `key notin (a, b)`. A key
/// may carry a source prefix (`k8s:app`, `reserved:host`); without one (or
/// with `any:`) it matches a label of any source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    source: Option<String>,
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    In(Vec<String>),
    NotIn(Vec<String>),
}

impl LabelSelector {
    /// Parses a selector; errors name the filter field or flag.
    pub fn parse_for(field: &'static str, s: &str) -> Result<LabelSelector, FilterError> {
        LabelSelector::parse(s).map_err(|reason| FilterError::InvalidSelector {
            field,
            value: s.to_string(),
            reason,
        })
    }

    /// Parses a selector; the error says what is wrong.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(s)? {
            let part = part.trim();
            if part.is_empty() {
                return Err("empty requirement".to_string());
            }
            reqs.push(parse_requirement(part)?);
        }
        if reqs.is_empty() {
            return Err("empty selector".to_string());
        }
        Ok(LabelSelector { reqs })
    }

    /// Whether labels (`source:key=value`) satisfy every requirement.
    pub fn matches(&self, labels: &[String]) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }
}

fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "unbalanced ')'".to_string())?;
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".to_string());
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_requirement(s: &str) -> Result<Requirement, String> {
    if let Some(key) = s.strip_prefix('!') {
        return requirement(key.trim(), Op::NotExists);
    }
    for (word, negate) in [(" notin ", true), (" in ", false)] {
        if let Some(i) = s.find(word) {
            let key = s[..i].trim();
            let rest = s[i + word.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("expected ({}) after {}", "values", word.trim()))?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .collect::<Vec<_>>();
            for v in &values {
                check_value(v)?;
            }
            return requirement(
                key,
                if negate {
                    Op::NotIn(values)
                } else {
                    Op::In(values)
                },
            );
        }
    }
    if let Some((key, value)) = s.split_once("!=") {
        let value = value.trim();
        check_value(value)?;
        return requirement(key.trim(), Op::NotIn(vec![value.to_string()]));
    }
    if let Some((key, value)) = s.split_once("==").or_else(|| s.split_once('=')) {
        let value = value.trim();
        check_value(value)?;
        return requirement(key.trim(), Op::In(vec![value.to_string()]));
    }
    requirement(s.trim(), Op::Exists)
}

fn requirement(key: &str, op: Op) -> Result<Requirement, String> {
    let (source, key) = match key.split_once(':') {
        Some(("any", k)) => (None, k),
        Some((src, k)) => (Some(src.to_string()), k),
        None => (None, key),
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/');
    if key.is_empty() || !key.chars().all(ok) {
        return Err(format!("invalid label key {key:?}"));
    }
    if let Some(src) = &source
        && (src.is_empty() || !src.chars().all(ok))
    {
        return Err(format!("invalid label source {src:?}"));
    }
    Ok(Requirement {
        source,
        key: key.to_string(),
        op,
    })
}

fn check_value(v: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if v.chars().all(ok) {
        Ok(())
    } else {
        Err(format!("invalid label value {v:?}"))
    }
}

/// `(source, key, value)` of a Cilium label string: `k8s:app=web`,
/// `reserved:host` (value empty), `app=web` (source `unspec`).
fn split_label(l: &str) -> (&str, &str, &str) {
    let (kv_src, value) = match l.split_once('=') {
        Some((k, v)) => (k, v),
        None => (l, ""),
    };
    match kv_src.split_once(':') {
        Some((src, key)) => (src, key, value),
        None => ("unspec", kv_src, value),
    }
}

impl Requirement {
    fn matches(&self, labels: &[String]) -> bool {
        let mut values = labels.iter().filter_map(|l| {
            let (src, key, value) = split_label(l);
            (key == self.key && self.source.as_deref().is_none_or(|s| s == src)).then_some(value)
        });
        match &self.op {
            Op::Exists => values.next().is_some(),
            Op::NotExists => values.next().is_none(),
            Op::In(want) => values.any(|v| want.iter().any(|w| w == v)),
            Op::NotIn(want) => !values.any(|v| want.iter().any(|w| w == v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CiliumEventType, Dns, Http, Layer7, Service, Udp};

    fn flow() -> Flow {
        Flow {
            source: Some(Endpoint {
                identity: 12345,
                namespace: "payments".into(),
                pod_name: "web-frontend-6d9f-abcde".into(),
                labels: vec!["k8s:app=web".into(), "k8s:tier=front".into()],
                ..Endpoint::default()
            }),
            destination: Some(Endpoint {
                identity: 23456,
                namespace: "payments".into(),
                pod_name: "checkout-7c4b-xyz12".into(),
                labels: vec!["k8s:app=checkout".into()],
                ..Endpoint::default()
            }),
            destination_service: Some(Service {
                name: "checkout".into(),
                namespace: "payments".into(),
            }),
            event_type: Some(CiliumEventType {
                event_type: 4,
                sub_type: 0,
            }),
            traffic_direction: TrafficDirection::Ingress,
            is_reply: Some(false),
            node_name: "node-1".into(),
            ..crate::testutil::tcp_flow("2024-12-01T10:00:00Z", 0x12)
        }
    }

    fn m(filter: FlowFilter, f: &Flow) -> bool {
        filter.compile().unwrap().matches(f)
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(m(FlowFilter::default(), &flow()));
        assert!(m(FlowFilter::default(), &Flow::default()));
    }

    #[test]
    fn pods_by_namespace_and_prefix() {
        let f = flow();
        let pod = |v: &str| FlowFilter {
            source_pod: vec![v.into()],
            ..FlowFilter::default()
        };
        assert!(m(pod("payments/web-"), &f));
        assert!(m(pod("payments/"), &f));
        assert!(!m(pod("web-"), &f), "no namespace means default");
        assert!(!m(pod("other/web-"), &f));
        assert!(!m(pod("payments/checkout"), &f));
        // Values within a field are ORed.
        assert!(m(
            FlowFilter {
                source_pod: vec!["x/y".into(), "payments/web".into()],
                ..FlowFilter::default()
            },
            &f
        ));
        assert!(
            FlowFilter {
                source_pod: vec!["".into()],
                ..FlowFilter::default()
            }
            .compile()
            .is_err()
        );
    }

    #[test]
    fn fields_are_anded() {
        let f = flow();
        assert!(m(
            FlowFilter {
                source_pod: vec!["payments/web".into()],
                verdict: vec![Verdict::Forwarded],
                ..FlowFilter::default()
            },
            &f
        ));
        assert!(!m(
            FlowFilter {
                source_pod: vec!["payments/web".into()],
                verdict: vec![Verdict::Dropped],
                ..FlowFilter::default()
            },
            &f
        ));
    }

    #[test]
    fn ips_and_cidrs() {
        let f = flow();
        let ip = |v: &str| FlowFilter {
            destination_ip: vec![v.into()],
            ..FlowFilter::default()
        };
        assert!(m(ip("10.0.2.7"), &f));
        assert!(m(ip("10.0.0.0/16"), &f));
        assert!(!m(ip("10.0.1.5"), &f));
        assert_eq!(
            ip("10.0.0.300").compile().unwrap_err(),
            FilterError::InvalidIp {
                field: "destination_ip",
                value: "10.0.0.300".into()
            }
        );
    }

    #[test]
    fn labels_with_and_without_source() {
        let web = vec!["k8s:app=web".to_string(), "k8s:tier=front".to_string()];
        let sel = |s: &str| LabelSelector::parse(s).unwrap();
        assert!(sel("app=web").matches(&web));
        assert!(sel("k8s:app=web").matches(&web));
        assert!(sel("any:app=web").matches(&web));
        assert!(!sel("reserved:app=web").matches(&web));
        assert!(sel("app").matches(&web));
        assert!(!sel("!app").matches(&web));
        assert!(sel("!db").matches(&web));
        assert!(sel("app!=db").matches(&web));
        assert!(!sel("app!=web").matches(&web));
        assert!(sel("app=web,tier=front").matches(&web));
        assert!(!sel("app=web,tier=back").matches(&web));
        assert!(sel("app in (db, web)").matches(&web));
        assert!(!sel("app notin (db, web)").matches(&web));
        assert!(sel("k8s:app in (web),tier").matches(&web));
        assert!(sel("reserved:host").matches(&["reserved:host".to_string()]));
        assert!(sel("host").matches(&["reserved:host".to_string()]));
        assert!(LabelSelector::parse("app in (a").is_err());
        assert!(LabelSelector::parse("").is_err());
        assert!(LabelSelector::parse("a=b=c").is_err());
        assert!(LabelSelector::parse("a b").is_err());
        let f = flow();
        assert!(m(
            FlowFilter {
                destination_label: vec!["app=checkout".into()],
                ..FlowFilter::default()
            },
            &f
        ));
    }

    #[test]
    fn ports_identities_directions() {
        let f = flow();
        assert!(m(
            FlowFilter {
                destination_port: vec!["8080".into()],
                source_identity: vec![12345],
                traffic_direction: vec![TrafficDirection::Ingress],
                ..FlowFilter::default()
            },
            &f
        ));
        assert!(!m(
            FlowFilter {
                source_port: vec!["8080".into()],
                ..FlowFilter::default()
            },
            &f
        ));
        assert!(
            FlowFilter {
                source_port: vec!["http".into()],
                ..FlowFilter::default()
            }
            .compile()
            .is_err()
        );
    }

    #[test]
    fn protocols_and_event_types() {
        let f = flow();
        let proto = |p: &str| FlowFilter {
            protocol: vec![p.into()],
            ..FlowFilter::default()
        };
        assert!(m(proto("TCP"), &f));
        assert!(!m(proto("udp"), &f));
        assert!(!m(proto("dns"), &f));
        assert!(proto("gopher").compile().is_err());
        let ev = |t, sub: Option<i32>| FlowFilter {
            event_type: vec![EventTypeFilter {
                event_type: t,
                match_sub_type: sub.is_some(),
                sub_type: sub.unwrap_or(0),
            }],
            ..FlowFilter::default()
        };
        assert!(m(ev(4, None), &f));
        assert!(m(ev(4, Some(0)), &f));
        assert!(!m(ev(4, Some(3)), &f));
        assert!(!m(ev(1, None), &f));
    }

    #[test]
    fn dns_and_http() {
        let mut f = flow();
        f.l4 = Some(Layer4::Udp(Udp {
            source_port: 40000,
            destination_port: 53,
        }));
        f.l7 = Some(Layer7 {
            dns: Some(Dns {
                query: "kube-dns.kube-system.svc.cluster.local.".into(),
                ..Dns::default()
            }),
            ..Layer7::default()
        });
        assert!(m(
            FlowFilter {
                protocol: vec!["dns".into()],
                dns_query: vec![r"kube.*local\.$".into()],
                ..FlowFilter::default()
            },
            &f
        ));
        f.l7 = Some(Layer7 {
            http: Some(Http {
                code: 503,
                method: "GET".into(),
                url: "http://checkout/api/v1/pay?x=1".into(),
                ..Http::default()
            }),
            ..Layer7::default()
        });
        let http = |status: &str, method: &str, path: &str| FlowFilter {
            http_status_code: vec![status.into()],
            http_method: vec![method.into()],
            http_path: vec![path.into()],
            ..FlowFilter::default()
        };
        assert!(m(http("5+", "get", "^/api/v1/"), &f));
        assert!(m(http("503", "GET", "pay$"), &f));
        assert!(
            !m(http("50+", "GET", "x=1"), &f),
            "the query is not the path"
        );
        assert!(!m(http("4+", "GET", "/"), &f));
        assert!(http("600", "GET", "/").compile().is_err());
        assert!(http("5", "GET", "/").compile().is_err());
        assert!(http("200", "GET", "(").compile().is_err());
        let mut needs_l7 = http("200", "GET", "/");
        needs_l7.event_type = vec![EventTypeFilter {
            event_type: 4,
            ..EventTypeFilter::default()
        }];
        assert!(matches!(
            needs_l7.compile(),
            Err(FilterError::HttpStatusNeedsL7 { .. })
        ));
    }

    #[test]
    fn reply_unknown_matches_neither() {
        let mut f = flow();
        let reply = |r| FlowFilter {
            reply: vec![r],
            ..FlowFilter::default()
        };
        assert!(m(reply(false), &f));
        assert!(!m(reply(true), &f));
        f.is_reply = None;
        assert!(!m(reply(false), &f));
        assert!(!m(reply(true), &f));
    }

    #[test]
    fn node_names_and_tcp_flags() {
        let f = flow();
        let node = |p: &str| FlowFilter {
            node_name: vec![p.into()],
            ..FlowFilter::default()
        };
        assert!(m(node("node-*"), &f));
        assert!(m(node("cluster/node-1"), &f));
        assert!(m(node("cluster/"), &f));
        assert!(!m(node("node-2"), &f));
        let flags = |b| FlowFilter {
            tcp_flags: vec![TcpFlags::from_bits(b)],
            ..FlowFilter::default()
        };
        assert!(m(flags(0x02), &f));
        assert!(m(flags(0x12), &f));
        assert!(!m(flags(0x01), &f));
    }

    #[test]
    fn request_whitelist_or_blacklist_and_time() {
        let f = flow();
        let req = FlowRequest {
            whitelist: vec![
                FlowFilter {
                    verdict: vec![Verdict::Dropped],
                    ..FlowFilter::default()
                },
                FlowFilter {
                    source_pod: vec!["payments/".into()],
                    ..FlowFilter::default()
                },
            ],
            blacklist: vec![],
            ..FlowRequest::default()
        };
        assert!(req.compile().unwrap().matches(&f));
        let mut black = req.clone();
        black.blacklist = vec![FlowFilter {
            destination_port: vec!["8080".into()],
            ..FlowFilter::default()
        }];
        assert!(!black.compile().unwrap().matches(&f));
        let mut timed = req.clone();
        timed.since = Some("2024-12-01T10:00:00Z".parse().unwrap());
        timed.until = Some("2024-12-01T10:00:00Z".parse().unwrap());
        assert!(timed.compile().unwrap().matches(&f));
        timed.since = Some("2024-12-01T10:00:01Z".parse().unwrap());
        assert!(!timed.compile().unwrap().matches(&f));
    }

    #[test]
    fn request_json_round_trips() {
        let req = FlowRequest {
            whitelist: vec![FlowFilter {
                source_pod: vec!["payments/web".into()],
                verdict: vec![Verdict::Dropped],
                event_type: vec![EventTypeFilter {
                    event_type: 4,
                    match_sub_type: true,
                    sub_type: 0,
                }],
                ..FlowFilter::default()
            }],
            number: Some(20),
            follow: true,
            since: Some("2024-12-01T10:00:00.5Z".parse().unwrap()),
            ..FlowRequest::default()
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"whitelist":[{"source_pod":["payments/web"],"verdict":["DROPPED"],"event_type":[{"type":4,"match_sub_type":true}]}],"number":20,"follow":true,"since":"2024-12-01T10:00:00.500Z"}"#
        );
        let back: FlowRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, req);
        let empty: FlowRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, FlowRequest::default());
    }

    #[test]
    fn url_paths() {
        assert_eq!(url_path("http://h/a/b?q=1"), "/a/b");
        assert_eq!(url_path("http://h"), "");
        assert_eq!(url_path("/x#frag"), "/x");
    }
}
