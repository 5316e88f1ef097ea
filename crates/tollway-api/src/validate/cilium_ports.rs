//! Cilium `toPorts`: ports, protocols and L7 rules, as Cilium's
//! `PortRule.sanitize` and `L7Rules.sanitize` check them.

use super::Errs;
use super::cilium::not_supported;
use crate::cilium::{CiliumPort, L4Proto, L7Rules, PortRule, PortRuleDns, PortRuleHttp};
use crate::names;

/// Cilium's limit of ports in one port rule.
const MAX_PORTS: usize = 40;

/// Where a port rule sits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dir {
    /// In an ingress (or ingressDeny) rule.
    pub ingress: bool,
    /// In a deny rule.
    pub deny: bool,
}

pub(super) fn validate_port_rule(pr: &PortRule, p: &str, dir: Dir, e: &mut Errs) {
    for (name, v) in [
        ("listener", &pr.listener),
        ("originatingTLS", &pr.originating_tls),
        ("terminatingTLS", &pr.terminating_tls),
        ("serverNames", &pr.server_names),
    ] {
        not_supported(v, p, name, e);
    }
    if pr.ports.len() > MAX_PORTS {
        e.add(
            format!("{p}.ports"),
            format!("too many ports, the max is {MAX_PORTS}"),
        );
    }
    let l7 = pr.rules.as_ref().filter(|r| !r.is_empty());
    let dns = l7.is_some_and(|r| r.dns.is_some());
    let mut every_port = false;
    for (k, pp) in pr.ports.iter().enumerate() {
        let path = format!("{p}.ports[{k}]");
        let port = pp.port();
        match port {
            CiliumPort::All => every_port = true,
            CiliumPort::Number(n) if n > 65535 => e.add(
                format!("{path}.port"),
                format!(
                    "must be 0-65535, got {}",
                    pp.port.as_deref().unwrap_or_default()
                ),
            ),
            CiliumPort::Number(_) => {}
            CiliumPort::Named(name) => e.check(
                format!("{path}.port"),
                names::iana_svc_name(name).map_err(|r| format!("a port number or name: {r}")),
            ),
        }
        if let Some(end) = pp.end_port {
            let at = format!("{path}.endPort");
            match port {
                _ if !(0..=65535).contains(&end) => {
                    e.add(at, format!("must be 0-65535, got {end}"));
                }
                CiliumPort::Named(_) => e.add(at, "may not be specified when `port` is a name"),
                CiliumPort::All if end != 0 => e.add(
                    at,
                    "may not be specified when `port` is 0 or empty (every port)",
                ),
                CiliumPort::Number(n) if end != 0 && end.unsigned_abs() < n => e.add(
                    at,
                    format!("must be greater than or equal to `port` ({n}), got {end}"),
                ),
                CiliumPort::Number(n) if dns && end.unsigned_abs() > n => {
                    e.add(at, "DNS rules do not support port ranges");
                }
                _ => {}
            }
        }
        match pp.protocol() {
            L4Proto::Sctp => e.add(
                format!("{path}.protocol"),
                "SCTP is not supported (TCP, UDP or ANY)",
            ),
            proto if l7.is_some() && !dns && !dir.deny && proto != L4Proto::Tcp => e.add(
                format!("{path}.protocol"),
                format!("L7 rules can only apply to TCP (not {proto}) except for DNS rules"),
            ),
            _ => {}
        }
    }
    if let Some(rules) = l7 {
        validate_l7(rules, &format!("{p}.rules"), pr, every_port, dir, e);
    }
}

fn validate_l7(r: &L7Rules, p: &str, pr: &PortRule, every_port: bool, dir: Dir, e: &mut Errs) {
    if dir.deny {
        e.add(
            p,
            "L7 rules may not be used in a deny rule (deny rules are L3/L4 only)",
        );
        return;
    }
    if r.kafka.is_some() {
        e.add(format!("{p}.kafka"), "Kafka rules are not supported");
    }
    if r.l7proto.is_some() {
        e.add(
            format!("{p}.l7proto"),
            "custom L7 protocols (l7proto) are not supported",
        );
    }
    if r.l7.is_some() {
        e.add(format!("{p}.l7"), "generic L7 rules (l7) are not supported");
    }
    let types = [
        r.http.is_some(),
        r.dns.is_some(),
        r.kafka.is_some(),
        r.l7proto.is_some() || r.l7.is_some(),
    ];
    if types.iter().filter(|t| **t).count() > 1 {
        e.add(
            p,
            "multiple L7 protocol rule types specified in single rule (one of http, dns, kafka, l7proto)",
        );
    }
    if every_port {
        e.add(
            p,
            "L7 rules can not be used when a port is 0 or empty (every port)",
        );
    }
    for (k, h) in r.http.iter().flatten().enumerate() {
        http(h, &format!("{p}.http[{k}]"), e);
    }
    if let Some(dns_rules) = &r.dns {
        if dir.ingress {
            e.add(format!("{p}.dns"), "DNS rules are not allowed on ingress");
        }
        if pr.ports.is_empty() {
            e.add(
                format!("{p}.dns"),
                "DNS rules need their port (53) in `ports`",
            );
        }
        for (k, d) in dns_rules.iter().enumerate() {
            dns(d, &format!("{p}.dns[{k}]"), e);
        }
    }
}

fn http(h: &PortRuleHttp, p: &str, e: &mut Errs) {
    for (name, v) in [("path", &h.path), ("method", &h.method), ("host", &h.host)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            e.check(format!("{p}.{name}"), regex(v));
        }
    }
    not_supported(&h.header_matches, p, "headerMatches", e);
}

fn dns(d: &PortRuleDns, p: &str, e: &mut Errs) {
    let name = d.match_name.as_deref().filter(|s| !s.is_empty());
    let pattern = d.match_pattern.as_deref().filter(|s| !s.is_empty());
    match (name, pattern) {
        (None, None) => e.add(p, "must specify matchName or matchPattern"),
        (Some(_), Some(_)) => e.add(p, "may specify only one of matchName and matchPattern"),
        (Some(n), None) => {
            let ok = n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                e.add(
                    format!("{p}.matchName"),
                    format!(
                        "invalid characters in {n:?}: only 0-9, a-z, A-Z, '.', '-' and '_' are allowed"
                    ),
                );
            }
        }
        (None, Some(g)) => e.check(format!("{p}.matchPattern"), glob(g)),
    }
}

/// A DNS glob: `*` matches within one label; only name characters and `*`.
fn glob(g: &str) -> Result<(), String> {
    let ok = g
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*'));
    if !ok {
        return Err(format!(
            "invalid characters in {g:?}: only 0-9, a-z, A-Z, '.', '-', '_' and '*' are allowed"
        ));
    }
    if g == "*" {
        return Ok(());
    }
    let mut re = String::from("^");
    for c in g.trim_end_matches('.').chars() {
        match c {
            '*' => re.push_str("[-a-zA-Z0-9_]*"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push_str("\\.?$");
    regex(&re)
}

/// Cilium's path, method and host are regular expressions.
fn regex(s: &str) -> Result<(), String> {
    regex::Regex::new(s).map(|_| ()).map_err(|err| {
        let why = match &err {
            regex::Error::Syntax(msg) => msg
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(msg)
                .to_string(),
            other => other.to_string(),
        };
        format!("must be a valid regular expression, got {s:?}: {why}")
    })
}
