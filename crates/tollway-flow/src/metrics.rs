//! Hubble's flow metrics (`hubble_*`), in the Prometheus text format.
//!
//! Names, labels and rules are Hubble's metric handlers (`flow`, `drop`,
//! `tcp`, `port-distribution`, `policy`, `dns`, `http`) without context
//! options:
//!
//! | metric | labels | counted |
//! |---|---|---|
//! | `hubble_flows_processed_total` | protocol, type, subtype, verdict | every flow; type `Trace` (subtype the point), `Drop`, `PolicyVerdict`, `L7` (subtype `DNS`/`HTTP`), else `Unknown` with the event type number as subtype (socket events: `Unknown`/`7`) |
//! | `hubble_drop_total` | reason, protocol | verdict DROPPED (drop events and denied policy verdicts, as Hubble); reason = `drop_reason_desc` |
//! | `hubble_tcp_flags_total` | flag, family | forwarded TCP flows: `FIN`, `SYN`, `SYN-ACK`, `RST` |
//! | `hubble_port_distribution_total` | protocol, port | forwarded or redirected flows known not to be replies: destination port (`0` for ICMP) |
//! | `hubble_policy_verdicts_total` | direction, match, action | policy verdict events not from the host: lower-case direction, match type, verdict |
//! | `hubble_dns_queries_total` | rcode, qtypes, ips_returned | DNS requests (rcode empty), and dropped DNS flows (rcode `Policy denied`) |
//! | `hubble_dns_responses_total` | rcode, qtypes, ips_returned | DNS responses |
//! | `hubble_dns_response_types_total` | type, qtypes | each answer type of a response |
//! | `hubble_lost_events_total` | source | set by the agent ([`FlowMetrics::set_lost_events`]) |
//! | `hubble_http_requests_total` | method, protocol, reporter | HTTP requests |
//! | `hubble_http_responses_total` | method, status, reporter | HTTP responses |
//! | `hubble_http_request_duration_seconds` | method, reporter | HTTP response latency (histogram) |

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::dns::rcode_name;
use crate::model::{Flow, Layer4, TrafficDirection, Verdict, message_type, trace_point_name};
use crate::print::policy_match_name;

/// The `Content-Type` of [`FlowMetrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Buckets of `hubble_http_request_duration_seconds` (Prometheus'
/// defaults, as Hubble).
const HTTP_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    protocol: String,
    r#type: String,
    subtype: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: String,
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TcpLabels {
    flag: String,
    family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    protocol: String,
    port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    direction: String,
    r#match: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabels {
    rcode: String,
    qtypes: String,
    ips_returned: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsTypeLabels {
    r#type: String,
    qtypes: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LostLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRequestLabels {
    method: String,
    protocol: String,
    reporter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpResponseLabels {
    method: String,
    status: String,
    reporter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpDurationLabels {
    method: String,
    reporter: String,
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// The metrics of one node's flows. `record` may be called from any
/// thread.
#[derive(Debug)]
pub struct FlowMetrics {
    node_name: String,
    registry: Registry,
    flows: Family<FlowLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    tcp_flags: Family<TcpLabels, Counter>,
    ports: Family<PortLabels, Counter>,
    policy: Family<PolicyLabels, Counter>,
    dns_queries: Family<DnsLabels, Counter>,
    dns_responses: Family<DnsLabels, Counter>,
    dns_types: Family<DnsTypeLabels, Counter>,
    lost: Family<LostLabels, Counter>,
    lost_seen: Mutex<HashMap<String, u64>>,
    http_requests: Family<HttpRequestLabels, Counter>,
    http_responses: Family<HttpResponseLabels, Counter>,
    http_duration: Family<HttpDurationLabels, Histogram, fn() -> Histogram>,
}

impl FlowMetrics {
    /// Every metric registered, all at zero. The node name is kept for the
    /// caller ([`FlowMetrics::node_name`]); like Hubble, no metric carries
    /// it as a label (the scraper adds its own target labels).
    pub fn new(node_name: &str) -> FlowMetrics {
        let mut registry = Registry::default();
        let flows = Family::<FlowLabels, Counter>::default();
        let drops = Family::<DropLabels, Counter>::default();
        let tcp_flags = Family::<TcpLabels, Counter>::default();
        let ports = Family::<PortLabels, Counter>::default();
        let policy = Family::<PolicyLabels, Counter>::default();
        let dns_queries = Family::<DnsLabels, Counter>::default();
        let dns_responses = Family::<DnsLabels, Counter>::default();
        let dns_types = Family::<DnsTypeLabels, Counter>::default();
        let lost = Family::<LostLabels, Counter>::default();
        let http_requests = Family::<HttpRequestLabels, Counter>::default();
        let http_responses = Family::<HttpResponseLabels, Counter>::default();
        let http_duration =
            Family::<HttpDurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                http_histogram,
            );
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "hubble_flows_processed",
            "Total number of flows processed",
            flows.clone(),
        );
        registry.register("hubble_drop", "Number of drops", drops.clone());
        registry.register(
            "hubble_tcp_flags",
            "TCP flag occurrences",
            tcp_flags.clone(),
        );
        registry.register(
            "hubble_port_distribution",
            "Numbers of packets distributed by destination port",
            ports.clone(),
        );
        registry.register(
            "hubble_policy_verdicts",
            "Total number of Cilium network policy verdicts",
            policy.clone(),
        );
        registry.register(
            "hubble_dns_queries",
            "Number of DNS queries observed",
            dns_queries.clone(),
        );
        registry.register(
            "hubble_dns_responses",
            "Number of DNS responses observed",
            dns_responses.clone(),
        );
        registry.register(
            "hubble_dns_response_types",
            "Number of DNS response types",
            dns_types.clone(),
        );
        registry.register("hubble_lost_events", "Number of lost events", lost.clone());
        registry.register(
            "hubble_http_requests",
            "Count of HTTP requests",
            http_requests.clone(),
        );
        registry.register(
            "hubble_http_responses",
            "Count of HTTP responses",
            http_responses.clone(),
        );
        registry.register(
            "hubble_http_request_duration_seconds",
            "Quantiles of HTTP request duration in seconds",
            http_duration.clone(),
        );
        FlowMetrics {
            node_name: node_name.to_string(),
            registry,
            flows,
            drops,
            tcp_flags,
            ports,
            policy,
            dns_queries,
            dns_responses,
            dns_types,
            lost,
            lost_seen: Mutex::new(HashMap::new()),
            http_requests,
            http_responses,
            http_duration,
        }
    }

    /// The node these metrics are about.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Counts one flow.
    pub fn record(&self, f: &Flow) {
        let protocol = f.protocol_name().to_string();
        self.record_processed(f, &protocol);
        if f.verdict == Verdict::Dropped {
            let reason = if f.drop_reason_desc.is_empty() {
                "DROP_REASON_UNKNOWN".to_string()
            } else {
                f.drop_reason_desc.clone()
            };
            self.drops
                .get_or_create(&DropLabels {
                    reason,
                    protocol: protocol.clone(),
                })
                .inc();
        }
        self.record_tcp(f);
        self.record_port(f);
        self.record_policy(f);
        self.record_dns(f);
        self.record_http(f);
    }

    fn record_processed(&self, f: &Flow, protocol: &str) {
        let ev = f.event_type.unwrap_or_default();
        let (kind, subtype) = match ev.event_type {
            message_type::ACCESS_LOG => {
                let sub = match &f.l7 {
                    Some(l7) if l7.dns.is_some() => "DNS",
                    Some(l7) if l7.http.is_some() => "HTTP",
                    _ => "",
                };
                ("L7", sub.to_string())
            }
            message_type::DROP => ("Drop", String::new()),
            message_type::CAPTURE => ("Capture", String::new()),
            message_type::TRACE => (
                "Trace",
                u8::try_from(ev.sub_type)
                    .ok()
                    .and_then(trace_point_name)
                    .unwrap_or("")
                    .to_string(),
            ),
            message_type::POLICY_VERDICT => ("PolicyVerdict", String::new()),
            other => ("Unknown", other.to_string()),
        };
        self.flows
            .get_or_create(&FlowLabels {
                protocol: protocol.to_string(),
                r#type: kind.to_string(),
                subtype,
                verdict: f.verdict.name().to_string(),
            })
            .inc();
    }

    fn record_tcp(&self, f: &Flow) {
        if f.verdict != Verdict::Forwarded {
            return;
        }
        let (Some(ip), Some(Layer4::Tcp(tcp))) = (&f.ip, &f.l4) else {
            return;
        };
        let Some(flags) = tcp.flags else {
            return;
        };
        let family = ip.ip_version.name().to_string();
        let inc = |flag: &str| {
            self.tcp_flags
                .get_or_create(&TcpLabels {
                    flag: flag.to_string(),
                    family: family.clone(),
                })
                .inc();
        };
        if flags.fin {
            inc("FIN");
        }
        if flags.syn {
            inc(if flags.ack { "SYN-ACK" } else { "SYN" });
        }
        if flags.rst {
            inc("RST");
        }
    }

    fn record_port(&self, f: &Flow) {
        if !matches!(f.verdict, Verdict::Forwarded | Verdict::Redirected)
            || f.is_reply != Some(false)
        {
            return;
        }
        let (protocol, port) = match &f.l4 {
            Some(Layer4::Tcp(t)) => ("TCP", t.destination_port),
            Some(Layer4::Udp(u)) => ("UDP", u.destination_port),
            Some(Layer4::Sctp(u)) => ("SCTP", u.destination_port),
            Some(Layer4::Icmpv4(_)) => ("ICMPv4", 0),
            Some(Layer4::Icmpv6(_)) => ("ICMPv6", 0),
            None => return,
        };
        self.ports
            .get_or_create(&PortLabels {
                protocol: protocol.to_string(),
                port: port.to_string(),
            })
            .inc();
    }

    fn record_policy(&self, f: &Flow) {
        if f.event_type_number() != message_type::POLICY_VERDICT || f.source_identity() == 1 {
            return;
        }
        self.policy
            .get_or_create(&PolicyLabels {
                direction: f.traffic_direction.name().to_ascii_lowercase(),
                r#match: policy_match_name(f.policy_match_type).to_ascii_lowercase(),
                action: f.verdict.name().to_ascii_lowercase(),
            })
            .inc();
    }

    fn record_dns(&self, f: &Flow) {
        let Some(dns) = f.l7.as_ref().and_then(|l| l.dns.as_ref()) else {
            return;
        };
        let qtypes = dns.qtypes.join(",");
        let ips_returned = dns.ips.len().to_string();
        let labels = |rcode: &str| DnsLabels {
            rcode: rcode.to_string(),
            qtypes: qtypes.clone(),
            ips_returned: ips_returned.clone(),
        };
        if f.verdict == Verdict::Dropped {
            self.dns_queries
                .get_or_create(&labels("Policy denied"))
                .inc();
        } else if f.is_reply == Some(true) {
            self.dns_responses
                .get_or_create(&labels(rcode_name(dns.rcode)))
                .inc();
            for t in &dns.rrtypes {
                self.dns_types
                    .get_or_create(&DnsTypeLabels {
                        r#type: t.clone(),
                        qtypes: qtypes.clone(),
                    })
                    .inc();
            }
        } else {
            self.dns_queries.get_or_create(&labels("")).inc();
        }
    }

    fn record_http(&self, f: &Flow) {
        let Some(l7) = &f.l7 else {
            return;
        };
        let Some(http) = &l7.http else {
            return;
        };
        let reporter = match f.traffic_direction {
            TrafficDirection::Egress => "client",
            TrafficDirection::Ingress => "server",
            TrafficDirection::Unknown => "unknown",
        }
        .to_string();
        match l7.l7_type {
            crate::model::L7FlowType::Request => {
                self.http_requests
                    .get_or_create(&HttpRequestLabels {
                        method: http.method.clone(),
                        protocol: http.protocol.clone(),
                        reporter,
                    })
                    .inc();
            }
            crate::model::L7FlowType::Response => {
                self.http_responses
                    .get_or_create(&HttpResponseLabels {
                        method: http.method.clone(),
                        status: http.code.to_string(),
                        reporter: reporter.clone(),
                    })
                    .inc();
                // Nanoseconds to seconds; precision loss is irrelevant here.
                #[allow(clippy::cast_precision_loss)]
                let secs = l7.latency_ns as f64 / 1e9;
                self.http_duration
                    .get_or_create(&HttpDurationLabels {
                        method: http.method.clone(),
                        reporter,
                    })
                    .observe(secs);
            }
            _ => {}
        }
    }

    /// Sets `hubble_lost_events_total{source}` to the agent's running total
    /// (e.g. the sum of the per-CPU `tw_events_lost` counters as
    /// `perf_event_ring_buffer`, the store's overwrites as
    /// `hubble_ring_buffer`). A total below the last one (the counter was
    /// reset) counts as new losses from zero.
    pub fn set_lost_events(&self, source: &str, total: u64) {
        let mut seen = self.lost_seen.lock().unwrap_or_else(|e| e.into_inner());
        let last = seen.entry(source.to_string()).or_insert(0);
        let delta = if total >= *last { total - *last } else { total };
        *last = total;
        let c = self.lost.get_or_create(&LostLabels {
            source: source.to_string(),
        });
        if delta > 0 {
            c.inc_by(delta);
        }
    }

    /// Every metric in the Prometheus text format (version 0.0.4, see
    /// [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        CiliumEventType, Dns, Endpoint, Http, Ip, IpVersion, L7FlowType, Layer7, Tcp, TcpFlags, Udp,
    };

    fn tcp_flow(verdict: Verdict, ev: i32, sub: i32, flags: u8, reply: Option<bool>) -> Flow {
        Flow {
            verdict,
            ip: Some(Ip {
                source: "10.0.0.1".into(),
                destination: "10.0.0.2".into(),
                ip_version: IpVersion::V4,
                encrypted: false,
            }),
            l4: Some(Layer4::Tcp(Tcp {
                source_port: 40000,
                destination_port: 8080,
                flags: Some(TcpFlags::from_bits(flags)),
            })),
            source: Some(Endpoint {
                identity: 300,
                ..Endpoint::default()
            }),
            event_type: Some(CiliumEventType {
                event_type: ev,
                sub_type: sub,
            }),
            is_reply: reply,
            ..Flow::default()
        }
    }

    fn scrape(m: &FlowMetrics) -> prometheus_parse::Scrape {
        let text = m.encode();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        s.samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    }

    #[test]
    fn flows_drops_tcp_ports_policy() {
        let m = FlowMetrics::new("node-1");
        assert_eq!(m.node_name(), "node-1");
        m.record(&tcp_flow(Verdict::Forwarded, 4, 0, 0x02, Some(false)));
        m.record(&tcp_flow(Verdict::Forwarded, 4, 0, 0x12, Some(true)));
        let mut d = tcp_flow(Verdict::Dropped, 1, 133, 0x02, None);
        d.drop_reason = 133;
        d.drop_reason_desc = "POLICY_DENIED".into();
        m.record(&d);
        let mut pv = tcp_flow(Verdict::Dropped, 5, 0, 0x02, None);
        pv.drop_reason_desc = "POLICY_DENY".into();
        pv.traffic_direction = TrafficDirection::Ingress;
        pv.policy_match_type = 2;
        m.record(&pv);
        let mut sock = tcp_flow(Verdict::Translated, 7, 2, 0, Some(false));
        sock.l4 = None;
        m.record(&sock);

        let s = scrape(&m);
        let flows = "hubble_flows_processed_total";
        assert_eq!(
            value(
                &s,
                flows,
                &[
                    ("type", "Trace"),
                    ("subtype", "to-endpoint"),
                    ("verdict", "FORWARDED"),
                    ("protocol", "TCP")
                ]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&s, flows, &[("type", "Drop"), ("verdict", "DROPPED")]),
            Some(1.0)
        );
        assert_eq!(value(&s, flows, &[("type", "PolicyVerdict")]), Some(1.0));
        assert_eq!(
            value(
                &s,
                flows,
                &[
                    ("type", "Unknown"),
                    ("subtype", "7"),
                    ("protocol", "Unknown flow")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_drop_total",
                &[("reason", "POLICY_DENIED"), ("protocol", "TCP")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "hubble_drop_total", &[("reason", "POLICY_DENY")]),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_tcp_flags_total",
                &[("flag", "SYN"), ("family", "IPv4")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "hubble_tcp_flags_total", &[("flag", "SYN-ACK")]),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_port_distribution_total",
                &[("protocol", "TCP"), ("port", "8080")]
            ),
            Some(1.0),
            "replies and unknown replies are not counted"
        );
        assert_eq!(
            value(
                &s,
                "hubble_policy_verdicts_total",
                &[
                    ("direction", "ingress"),
                    ("match", "l3-l4"),
                    ("action", "dropped")
                ]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn policy_verdicts_from_the_host_are_ignored() {
        let m = FlowMetrics::new("n");
        let mut pv = tcp_flow(Verdict::Forwarded, 5, 0, 0x02, Some(false));
        pv.source = Some(Endpoint {
            identity: 1,
            ..Endpoint::default()
        });
        m.record(&pv);
        assert_eq!(
            value(&scrape(&m), "hubble_policy_verdicts_total", &[]),
            None
        );
    }

    #[test]
    fn dns_queries_and_responses() {
        let m = FlowMetrics::new("n");
        let dns_flow = |reply: bool, dns: Dns, verdict: Verdict| Flow {
            verdict,
            l4: Some(Layer4::Udp(Udp {
                source_port: 40000,
                destination_port: 53,
            })),
            l7: Some(Layer7 {
                l7_type: if reply {
                    L7FlowType::Response
                } else {
                    L7FlowType::Request
                },
                dns: Some(dns),
                ..Layer7::default()
            }),
            event_type: Some(CiliumEventType {
                event_type: 129,
                sub_type: 0,
            }),
            is_reply: Some(reply),
            ..Flow::default()
        };
        let q = Dns {
            query: "a.".into(),
            qtypes: vec!["A".into()],
            ..Dns::default()
        };
        m.record(&dns_flow(false, q.clone(), Verdict::Forwarded));
        m.record(&dns_flow(false, q.clone(), Verdict::Dropped));
        m.record(&dns_flow(
            true,
            Dns {
                ips: vec!["1.2.3.4".into(), "1.2.3.5".into()],
                rrtypes: vec!["A".into(), "A".into()],
                ..q.clone()
            },
            Verdict::Forwarded,
        ));
        m.record(&dns_flow(true, Dns { rcode: 3, ..q }, Verdict::Forwarded));
        let s = scrape(&m);
        assert_eq!(
            value(
                &s,
                "hubble_dns_queries_total",
                &[("rcode", ""), ("qtypes", "A"), ("ips_returned", "0")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_dns_queries_total",
                &[("rcode", "Policy denied")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_dns_responses_total",
                &[("rcode", "No Error"), ("ips_returned", "2")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_dns_responses_total",
                &[("rcode", "Non-Existent Domain")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_dns_response_types_total",
                &[("type", "A"), ("qtypes", "A")]
            ),
            Some(2.0)
        );
        let l7: f64 = s
            .samples
            .iter()
            .filter(|x| {
                x.metric == "hubble_flows_processed_total"
                    && x.labels.get("type") == Some("L7")
                    && x.labels.get("subtype") == Some("DNS")
                    && x.labels.get("protocol") == Some("DNS")
            })
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => 0.0,
            })
            .sum();
        assert_eq!(l7, 4.0);
    }

    #[test]
    fn lost_events_follow_the_agents_total() {
        let m = FlowMetrics::new("n");
        m.set_lost_events("perf_event_ring_buffer", 5);
        m.set_lost_events("perf_event_ring_buffer", 12);
        m.set_lost_events("hubble_ring_buffer", 0);
        let s = scrape(&m);
        assert_eq!(
            value(
                &s,
                "hubble_lost_events_total",
                &[("source", "perf_event_ring_buffer")]
            ),
            Some(12.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_lost_events_total",
                &[("source", "hubble_ring_buffer")]
            ),
            Some(0.0)
        );
        // A reset counter: its new total is new losses.
        m.set_lost_events("perf_event_ring_buffer", 3);
        assert_eq!(
            value(
                &scrape(&m),
                "hubble_lost_events_total",
                &[("source", "perf_event_ring_buffer")]
            ),
            Some(15.0)
        );
    }

    #[test]
    fn http_metrics() {
        let m = FlowMetrics::new("n");
        // Like Go's client, a family without samples is not written.
        assert!(!m.encode().contains("hubble_http"));
        let http = |t: L7FlowType| Flow {
            verdict: Verdict::Forwarded,
            traffic_direction: TrafficDirection::Egress,
            l7: Some(Layer7 {
                l7_type: t,
                latency_ns: 30_000_000,
                http: Some(Http {
                    code: 200,
                    method: "GET".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Http::default()
                }),
                ..Layer7::default()
            }),
            event_type: Some(CiliumEventType {
                event_type: 129,
                sub_type: 0,
            }),
            ..Flow::default()
        };
        m.record(&http(L7FlowType::Request));
        m.record(&http(L7FlowType::Response));
        let text = m.encode();
        for name in [
            "hubble_http_requests_total",
            "hubble_http_responses_total",
            "hubble_http_request_duration_seconds",
        ] {
            assert!(text.contains(&format!("# TYPE {name}")), "{name}:\n{text}");
        }
        let s = scrape(&m);
        assert_eq!(
            value(
                &s,
                "hubble_http_requests_total",
                &[
                    ("method", "GET"),
                    ("protocol", "HTTP/1.1"),
                    ("reporter", "client")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &s,
                "hubble_http_responses_total",
                &[("status", "200"), ("reporter", "client")]
            ),
            Some(1.0)
        );
        let hist = s
            .samples
            .iter()
            .find(|x| x.metric == "hubble_http_request_duration_seconds")
            .expect("histogram sample");
        match &hist.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let le_50ms = buckets
                    .iter()
                    .find(|b| (b.less_than - 0.05).abs() < 1e-9)
                    .unwrap();
                assert_eq!(le_50ms.count, 1.0);
                let le_25ms = buckets
                    .iter()
                    .find(|b| (b.less_than - 0.025).abs() < 1e-9)
                    .unwrap();
                assert_eq!(le_25ms.count, 0.0);
            }
            other => panic!("not a histogram: {other:?}"),
        }
    }
}
