//! Datapath events (`tollway_abi::Event` + payload) into flows.
//!
//! The event's addresses and ports are in network byte order: a `__be32`
//! read into a `u32` on the host keeps the wire bytes in memory order, so
//! the address is `Ipv4Addr::from(x.to_ne_bytes())` and a port
//! `u16::from_be(p)`.
//!
//! What each event becomes:
//!
//! | event | verdict | `event_type` | notes |
//! |---|---|---|---|
//! | `TW_EV_DROP` | DROPPED | `{1, reason}` | `drop_reason(_desc)` from the subtype; `is_reply` unknown |
//! | `TW_EV_TRACE` | FORWARDED | `{4, point}` | `trace_observation_point`; DNS messages may become L7 (below) |
//! | `TW_EV_POLICY_VERDICT` | FORWARDED / AUDIT / DROPPED | `{5, 0}` | `policy_match_type`; a denied verdict's reason is the subtype (133 if 0) |
//! | `TW_EV_TRACE_SOCK` | TRANSLATED | `{7, 2}` | Type SOCK, `SOCK_XLATE_POINT_POST_DIRECTION_FWD` (see [`Decoder::decode`]) |
//!
//! DNS: a trace of a UDP port-53 packet that carries a payload which
//! decodes as DNS becomes an L7 flow (`Type` L7, `event_type {129, 0}`,
//! `l7.dns`, `is_reply` from the QR bit, Hubble's DNS summary), but only at
//! one point per message, as the client's side sees it (see [`DnsL7`]):
//! otherwise every message would show up once per observation point. A
//! payload that does not decode gives the plain L3/L4 flow.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use jiff::Timestamp;
use tollway_abi::{
    DropReason, Event, TW_EV_DROP, TW_EV_F_ALLOWED, TW_EV_F_AUDIT, TW_EV_F_EGRESS, TW_EV_F_INGRESS,
    TW_EV_F_NEW, TW_EV_F_REPLY, TW_EV_POLICY_VERDICT, TW_EV_TRACE, TW_EV_TRACE_SOCK,
    TW_SOCK_XLATE_PRE_DIRECTION_FWD,
};

use crate::dns;
use crate::identity::reserved_labels;
use crate::model::{
    CiliumEventType, Endpoint, Flow, FlowType, Icmp, Ip, IpVersion, Layer4, NetworkInterface,
    Policy, Service, SockXlatePoint, Tcp, TcpFlags, TraceObservationPoint, TrafficDirection, Udp,
    Verdict, Workload, message_type,
};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const DNS_PORT: u16 = 53;
/// Cilium's "Policy denied" (no rule allows), for denied verdicts that
/// carry no reason.
const DROP_POLICY_DENIED: u8 = 133;

/// What the resolver knows about an endpoint (a local or remote pod).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The endpoint id (0 if none).
    pub id: u32,
    /// The security identity.
    pub identity: u32,
    /// The pod's IPv4 address (needed for socket events, which only know
    /// the cgroup).
    pub ip: Option<Ipv4Addr>,
    /// Cluster name (empty: not shown).
    pub cluster_name: String,
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod_name: String,
    /// Labels as Hubble shows them: `k8s:app=web`, sorted.
    pub labels: Vec<String>,
    /// Owners, outermost first (`Deployment web`).
    pub workloads: Vec<Workload>,
}

/// A service, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ServiceRef {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

/// What the decoder asks the agent about addresses, sockets and
/// identities. Lookups must be cheap: the decoder calls them for every
/// event.
pub trait Resolver {
    /// The pod with this address.
    fn endpoint_by_ip(&self, ip: Ipv4Addr) -> Option<EndpointInfo>;
    /// The pod whose cgroup (v2 id) this is.
    fn endpoint_by_cgroup(&self, cgroup_id: u64) -> Option<EndpointInfo>;
    /// The service with this frontend (address, port in host order,
    /// IPPROTO_*).
    fn service_by_frontend(&self, addr: Ipv4Addr, port: u16, proto: u8) -> Option<ServiceRef>;
    /// The service with this rev NAT index.
    fn service_by_rev_nat(&self, rev_nat: u16) -> Option<ServiceRef>;
    /// The labels of an identity (`k8s:app=web`, `reserved:world`).
    fn identity_labels(&self, identity: u32) -> Option<Vec<String>>;
    /// The name of an interface of this node.
    fn interface_name(&self, _ifindex: u32) -> Option<String> {
        None
    }
    /// The policy behind a policy verdict's rule id.
    fn policy_by_rule(&self, _rule_id: u32) -> Option<Policy> {
        None
    }
}

/// An in-memory [`Resolver`] (HashMaps), for tests and for the agent to
/// fill.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    /// Pods by address.
    pub endpoints_by_ip: HashMap<Ipv4Addr, EndpointInfo>,
    /// Pods by cgroup id.
    pub endpoints_by_cgroup: HashMap<u64, EndpointInfo>,
    /// Services by (frontend address, port, IPPROTO_*).
    pub services_by_frontend: HashMap<(Ipv4Addr, u16, u8), ServiceRef>,
    /// Services by rev NAT index.
    pub services_by_rev_nat: HashMap<u16, ServiceRef>,
    /// Identity labels.
    pub identities: HashMap<u32, Vec<String>>,
    /// Interface names.
    pub interfaces: HashMap<u32, String>,
    /// Policies by rule id.
    pub policies: HashMap<u32, Policy>,
}

impl StaticResolver {
    /// Empty.
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Adds a pod, by its address (if it has one) and identity labels (if
    /// the identity has none yet).
    pub fn add_endpoint(&mut self, info: EndpointInfo) -> &mut Self {
        self.identities
            .entry(info.identity)
            .or_insert_with(|| info.labels.clone());
        if let Some(ip) = info.ip {
            self.endpoints_by_ip.insert(ip, info);
        }
        self
    }

    /// Adds a pod by its cgroup id (and address, as `add_endpoint`).
    pub fn add_cgroup(&mut self, cgroup_id: u64, info: EndpointInfo) -> &mut Self {
        self.endpoints_by_cgroup.insert(cgroup_id, info.clone());
        self.add_endpoint(info)
    }

    /// Adds a service frontend (and its rev NAT index, if not 0).
    pub fn add_service(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        proto: u8,
        rev_nat: u16,
        svc: ServiceRef,
    ) -> &mut Self {
        if rev_nat != 0 {
            self.services_by_rev_nat.insert(rev_nat, svc.clone());
        }
        self.services_by_frontend.insert((addr, port, proto), svc);
        self
    }
}

impl Resolver for StaticResolver {
    fn endpoint_by_ip(&self, ip: Ipv4Addr) -> Option<EndpointInfo> {
        self.endpoints_by_ip.get(&ip).cloned()
    }
    fn endpoint_by_cgroup(&self, cgroup_id: u64) -> Option<EndpointInfo> {
        self.endpoints_by_cgroup.get(&cgroup_id).cloned()
    }
    fn service_by_frontend(&self, addr: Ipv4Addr, port: u16, proto: u8) -> Option<ServiceRef> {
        self.services_by_frontend.get(&(addr, port, proto)).cloned()
    }
    fn service_by_rev_nat(&self, rev_nat: u16) -> Option<ServiceRef> {
        self.services_by_rev_nat.get(&rev_nat).cloned()
    }
    fn identity_labels(&self, identity: u32) -> Option<Vec<String>> {
        self.identities.get(&identity).cloned()
    }
    fn interface_name(&self, ifindex: u32) -> Option<String> {
        self.interfaces.get(&ifindex).cloned()
    }
    fn policy_by_rule(&self, rule_id: u32) -> Option<Policy> {
        self.policies.get(&rule_id).cloned()
    }
}

/// The datapath's clock (CLOCK_MONOTONIC, `bpf_ktime_get_ns`) to wall
/// time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    /// `realtime_now - monotonic_now`, nanoseconds.
    pub boot_offset_ns: i128,
}

impl Clock {
    /// The clock from one reading of both clocks (`CLOCK_REALTIME` as a
    /// timestamp, `CLOCK_MONOTONIC` in ns), taken together.
    pub fn new(realtime_now: Timestamp, monotonic_now_ns: u64) -> Clock {
        Clock {
            boot_offset_ns: realtime_now.as_nanosecond() - i128::from(monotonic_now_ns),
        }
    }

    /// The wall time of a monotonic timestamp (the epoch if out of range).
    pub fn wall(&self, monotonic_ns: u64) -> Timestamp {
        Timestamp::from_nanosecond(self.boot_offset_ns + i128::from(monotonic_ns))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Which traces of DNS messages become L7 flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DnsL7 {
    /// One per message, where the client's endpoint sees it: a query
    /// leaving a local endpoint (EGRESS), a response arriving at one
    /// (INGRESS), at a `to-*` point. The other traces of the message stay
    /// L3/L4 (`UDP`). Like Hubble's DNS proxy, which sits on the client's
    /// side.
    #[default]
    ClientSide,
    /// Every trace that carries a DNS payload.
    EveryTrace,
    /// Never: DNS packets are plain UDP flows.
    Off,
}

/// Turns datapath events into flows.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    /// Monotonic to wall time.
    pub clock: Clock,
    /// DNS payloads to L7.
    pub dns_l7: DnsL7,
}

impl Decoder {
    /// A decoder with this clock.
    pub fn new(clock: Clock) -> Decoder {
        Decoder {
            clock,
            dns_l7: DnsL7::default(),
        }
    }

    /// The flow of one event, `None` for event types it does not know.
    ///
    /// `payload` is what followed the record (`Event::parse` gives both).
    ///
    /// Socket events (`TW_EV_TRACE_SOCK`) carry both the frontend
    /// (`orig_addr`) and the backend (`daddr`): that is Hubble's
    /// `SOCK_XLATE_POINT_POST_DIRECTION_FWD` event (destination: the
    /// backend, verdict TRANSLATED, printed `post-xlate-fwd`), so the
    /// datapath's `TW_SOCK_XLATE_PRE_DIRECTION_FWD` is shown as that.
    pub fn decode(
        &self,
        ev: &Event,
        payload: &[u8],
        ctx: &dyn Resolver,
        node_name: &str,
    ) -> Option<Flow> {
        match ev.ev_type {
            TW_EV_DROP | TW_EV_TRACE | TW_EV_POLICY_VERDICT => {
                Some(self.decode_packet(ev, payload, ctx, node_name))
            }
            TW_EV_TRACE_SOCK => Some(self.decode_sock(ev, ctx, node_name)),
            _ => None,
        }
    }

    fn decode_packet(&self, ev: &Event, payload: &[u8], ctx: &dyn Resolver, node: &str) -> Flow {
        let saddr = be_addr(ev.saddr);
        let daddr = be_addr(ev.daddr);
        let sport = u16::from_be(ev.sport);
        let dport = u16::from_be(ev.dport);
        let reply_flag = ev.flags & TW_EV_F_REPLY != 0;
        let mut f = Flow {
            time: self.clock.wall(ev.ts),
            ip: Some(Ip {
                source: saddr.to_string(),
                destination: daddr.to_string(),
                ip_version: IpVersion::V4,
                encrypted: false,
            }),
            source: Some(endpoint(ctx, saddr, ev.src_id)),
            destination: Some(endpoint(ctx, daddr, ev.dst_id)),
            flow_type: FlowType::L3L4,
            node_name: node.to_string(),
            traffic_direction: direction(ev.flags),
            interface: interface(ctx, ev.ifindex),
            ..Flow::default()
        };
        let (l4, summary) = l4_of(ev.proto, sport, dport, ev.tcp_flags);
        f.l4 = l4;
        f.summary = summary;
        self.services(&mut f, ev, ctx, (saddr, sport), (daddr, dport), reply_flag);

        match ev.ev_type {
            TW_EV_DROP => {
                f.verdict = Verdict::Dropped;
                set_drop_reason(&mut f, ev.subtype);
                f.event_type = Some(CiliumEventType {
                    event_type: message_type::DROP,
                    sub_type: i32::from(ev.subtype),
                });
                // A drop does not know the connection's state.
                f.is_reply = None;
            }
            TW_EV_TRACE => {
                f.verdict = Verdict::Forwarded;
                f.trace_observation_point = TraceObservationPoint::from_datapath(ev.subtype);
                f.event_type = Some(CiliumEventType {
                    event_type: message_type::TRACE,
                    sub_type: i32::from(ev.subtype),
                });
                f.is_reply = trace_is_reply(ev.subtype, ev.flags);
                if self.dns_wanted(ev, payload, sport, dport) {
                    attach_dns(&mut f, payload, ev.flags, self.dns_l7);
                }
            }
            _ => {
                // TW_EV_POLICY_VERDICT
                self.policy_verdict(&mut f, ev, ctx);
            }
        }
        f
    }

    fn policy_verdict(&self, f: &mut Flow, ev: &Event, ctx: &dyn Resolver) {
        f.event_type = Some(CiliumEventType {
            event_type: message_type::POLICY_VERDICT,
            sub_type: 0,
        });
        f.policy_match_type = u32::from(ev.match_type);
        let allowed = ev.flags & TW_EV_F_ALLOWED != 0;
        let audit = ev.flags & TW_EV_F_AUDIT != 0;
        f.verdict = if allowed {
            Verdict::Forwarded
        } else if audit {
            Verdict::Audit
        } else {
            Verdict::Dropped
        };
        if f.verdict == Verdict::Dropped {
            let reason = if ev.subtype == 0 {
                DROP_POLICY_DENIED
            } else {
                ev.subtype
            };
            set_drop_reason(f, reason);
            f.is_reply = None;
        } else {
            // Verdicts are taken on a connection's first packet.
            f.is_reply = Some(false);
        }
        if ev.rule_id != 0
            && let Some(p) = ctx.policy_by_rule(ev.rule_id)
        {
            let list = match (f.verdict == Verdict::Dropped, f.traffic_direction) {
                (false, TrafficDirection::Egress) => &mut f.egress_allowed_by,
                (false, _) => &mut f.ingress_allowed_by,
                (true, TrafficDirection::Egress) => &mut f.egress_denied_by,
                (true, _) => &mut f.ingress_denied_by,
            };
            list.push(p);
        }
    }

    fn decode_sock(&self, ev: &Event, ctx: &dyn Resolver, node: &str) -> Flow {
        let daddr = be_addr(ev.daddr);
        let dport = u16::from_be(ev.dport);
        let orig = be_addr(ev.orig_addr);
        let orig_port = u16::from_be(ev.orig_port);
        let src = ctx.endpoint_by_cgroup(ev.cgroup_id);
        let source_ip = src.as_ref().and_then(|e| e.ip);
        let point = if ev.subtype == TW_SOCK_XLATE_PRE_DIRECTION_FWD {
            SockXlatePoint::PostDirectionFwd
        } else {
            match ev.subtype {
                2 => SockXlatePoint::PostDirectionFwd,
                3 => SockXlatePoint::PreDirectionRev,
                4 => SockXlatePoint::PostDirectionRev,
                _ => SockXlatePoint::Unknown,
            }
        };
        let (l4, summary) = match ev.proto {
            IPPROTO_TCP => (
                Some(Layer4::Tcp(Tcp {
                    source_port: 0,
                    destination_port: u32::from(dport),
                    flags: None,
                })),
                "TCP",
            ),
            IPPROTO_UDP => (
                Some(Layer4::Udp(Udp {
                    source_port: 0,
                    destination_port: u32::from(dport),
                })),
                "UDP",
            ),
            _ => (None, "Unknown"),
        };
        let destination_service = if ev.orig_addr != 0 {
            ctx.service_by_frontend(orig, orig_port, ev.proto)
                .or_else(|| rev_nat_service(ctx, ev.rev_nat))
        } else {
            rev_nat_service(ctx, ev.rev_nat)
        };
        Flow {
            time: self.clock.wall(ev.ts),
            verdict: Verdict::Translated,
            ip: Some(Ip {
                source: source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                destination: daddr.to_string(),
                ip_version: IpVersion::V4,
                encrypted: false,
            }),
            l4,
            source: Some(match src {
                Some(info) => endpoint_from_info(info, 0),
                None => Endpoint::default(),
            }),
            destination: Some(endpoint(ctx, daddr, ev.dst_id)),
            flow_type: FlowType::Sock,
            node_name: node.to_string(),
            event_type: Some(CiliumEventType {
                event_type: message_type::TRACE_SOCK,
                sub_type: point.number(),
            }),
            destination_service: destination_service.map(service),
            traffic_direction: direction(ev.flags),
            is_reply: Some(matches!(
                point,
                SockXlatePoint::PreDirectionRev | SockXlatePoint::PostDirectionRev
            )),
            sock_xlate_point: point,
            cgroup_id: ev.cgroup_id,
            summary: summary.to_string(),
            ..Flow::default()
        }
    }

    /// Services: the frontend the datapath translated from (`orig_addr`)
    /// belongs to the destination of a forward packet and to the source of
    /// a reply; an untranslated address that is a frontend (a packet seen
    /// before translation) names its service too.
    fn services(
        &self,
        f: &mut Flow,
        ev: &Event,
        ctx: &dyn Resolver,
        (saddr, sport): (Ipv4Addr, u16),
        (daddr, dport): (Ipv4Addr, u16),
        reply: bool,
    ) {
        if ev.orig_addr != 0 {
            let orig = be_addr(ev.orig_addr);
            let orig_port = u16::from_be(ev.orig_port);
            let svc = ctx
                .service_by_frontend(orig, orig_port, ev.proto)
                .or_else(|| rev_nat_service(ctx, ev.rev_nat))
                .map(service);
            if reply {
                f.source_service = svc;
            } else {
                f.destination_service = svc;
            }
        } else {
            f.destination_service = ctx.service_by_frontend(daddr, dport, ev.proto).map(service);
            f.source_service = ctx.service_by_frontend(saddr, sport, ev.proto).map(service);
        }
    }

    fn dns_wanted(&self, ev: &Event, payload: &[u8], sport: u16, dport: u16) -> bool {
        if payload.is_empty() || ev.proto != IPPROTO_UDP || (sport != DNS_PORT && dport != DNS_PORT)
        {
            return false;
        }
        match self.dns_l7 {
            DnsL7::Off => false,
            DnsL7::EveryTrace => true,
            DnsL7::ClientSide => matches!(
                TraceObservationPoint::from_datapath(ev.subtype),
                TraceObservationPoint::ToEndpoint
                    | TraceObservationPoint::ToStack
                    | TraceObservationPoint::ToNetwork
                    | TraceObservationPoint::ToHost
                    | TraceObservationPoint::ToOverlay
            ),
        }
    }
}

/// Makes `f` the L7 flow of the DNS message in `payload`, if it is one and
/// (for [`DnsL7::ClientSide`]) the trace sees it from the client's side: a
/// query leaving the endpoint, a response arriving at it.
fn attach_dns(f: &mut Flow, payload: &[u8], flags: u8, mode: DnsL7) {
    let Ok(msg) = dns::parse(payload) else {
        return;
    };
    if mode == DnsL7::ClientSide {
        let wanted_dir = if msg.is_response {
            TW_EV_F_INGRESS
        } else {
            TW_EV_F_EGRESS
        };
        if flags & wanted_dir == 0 {
            return;
        }
    }
    let l7 = msg.to_layer7();
    if let Some(d) = &l7.dns {
        f.summary = dns::summary(d, l7.l7_type);
    }
    f.l7 = Some(l7);
    f.flow_type = FlowType::L7;
    f.is_reply = Some(msg.is_response);
    f.event_type = Some(CiliumEventType {
        event_type: message_type::ACCESS_LOG,
        sub_type: 0,
    });
}

fn be_addr(x: u32) -> Ipv4Addr {
    Ipv4Addr::from(x.to_ne_bytes())
}

fn direction(flags: u8) -> TrafficDirection {
    if flags & TW_EV_F_INGRESS != 0 {
        TrafficDirection::Ingress
    } else if flags & TW_EV_F_EGRESS != 0 {
        TrafficDirection::Egress
    } else {
        TrafficDirection::Unknown
    }
}

/// Hubble knows a trace's connection state at the `to-*` points (Cilium's
/// `TraceObservationPointHasConnState`). Elsewhere the reply bit is
/// trusted when set, and its absence only when the packet opened the
/// connection (TW_EV_F_NEW); otherwise unknown.
fn trace_is_reply(subtype: u8, flags: u8) -> Option<bool> {
    let reply = flags & TW_EV_F_REPLY != 0;
    let has_state = matches!(subtype, 0..=4 | 11);
    if has_state || reply {
        Some(reply)
    } else if flags & TW_EV_F_NEW != 0 {
        Some(false)
    } else {
        None
    }
}

fn set_drop_reason(f: &mut Flow, reason: u8) {
    f.drop_reason = u32::from(reason);
    f.drop_reason_desc = DropReason::from_code(reason)
        .map(|r| r.hubble_name().to_string())
        .unwrap_or_default();
}

fn interface(ctx: &dyn Resolver, ifindex: u32) -> Option<NetworkInterface> {
    (ifindex != 0).then(|| NetworkInterface {
        index: ifindex,
        name: ctx.interface_name(ifindex).unwrap_or_default(),
    })
}

fn rev_nat_service(ctx: &dyn Resolver, rev_nat: u16) -> Option<ServiceRef> {
    if rev_nat == 0 {
        None
    } else {
        ctx.service_by_rev_nat(rev_nat)
    }
}

fn service(s: ServiceRef) -> Service {
    Service {
        name: s.name,
        namespace: s.namespace,
    }
}

/// L4 and Hubble's summary of it. For ICMP the event's `tcp_flags` byte
/// carries the ICMP type (`bpf/abi/events.h`).
fn l4_of(proto: u8, sport: u16, dport: u16, tcp_flags: u8) -> (Option<Layer4>, String) {
    match proto {
        IPPROTO_TCP => {
            let flags = TcpFlags::from_bits(tcp_flags);
            let summary = format!("TCP Flags: {}", flags.summary());
            (
                Some(Layer4::Tcp(Tcp {
                    source_port: u32::from(sport),
                    destination_port: u32::from(dport),
                    flags: Some(flags),
                })),
                summary,
            )
        }
        IPPROTO_UDP => (
            Some(Layer4::Udp(Udp {
                source_port: u32::from(sport),
                destination_port: u32::from(dport),
            })),
            "UDP".to_string(),
        ),
        IPPROTO_ICMP => {
            let t = tcp_flags;
            let name = match t {
                0 => "EchoReply".to_string(),
                3 => "DestinationUnreachable".to_string(),
                5 => "Redirect".to_string(),
                8 => "EchoRequest".to_string(),
                11 => "TimeExceeded".to_string(),
                12 => "ParameterProblem".to_string(),
                n => format!("type {n}"),
            };
            (
                Some(Layer4::Icmpv4(Icmp {
                    icmp_type: u32::from(t),
                    code: 0,
                })),
                format!("ICMPv4 {name}"),
            )
        }
        _ => (None, "IPv4".to_string()),
    }
}

/// The endpoint at `ip`: the pod there, or the identity's labels.
fn endpoint(ctx: &dyn Resolver, ip: Ipv4Addr, event_identity: u32) -> Endpoint {
    if let Some(info) = ctx.endpoint_by_ip(ip) {
        return endpoint_from_info(info, event_identity);
    }
    let labels = ctx
        .identity_labels(event_identity)
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| reserved_labels(event_identity));
    Endpoint {
        identity: event_identity,
        labels,
        ..Endpoint::default()
    }
}

fn endpoint_from_info(info: EndpointInfo, event_identity: u32) -> Endpoint {
    Endpoint {
        id: info.id,
        identity: if event_identity != 0 {
            event_identity
        } else {
            info.identity
        },
        cluster_name: info.cluster_name,
        namespace: info.namespace,
        labels: info.labels,
        pod_name: info.pod_name,
        workloads: info.workloads,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::ResponseCode;
    use tollway_abi::{
        TW_EV_F_ALLOWED, TW_EV_F_AUDIT, TW_EV_F_EGRESS, TW_EV_F_INGRESS, TW_EV_F_NEW,
        TW_EV_F_REPLY, TW_TRACE_FROM_LXC, TW_TRACE_TO_LXC, TW_TRACE_TO_STACK,
    };

    use super::*;
    use crate::dns::testing;
    use crate::model::L7FlowType;

    const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 5);
    const CHECKOUT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 7);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
    const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    const COREDNS: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 3);
    const WORLD: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);

    fn be(ip: Ipv4Addr) -> u32 {
        u32::from_ne_bytes(ip.octets())
    }

    fn pod(ip: Ipv4Addr, ns: &str, name: &str, identity: u32, app: &str) -> EndpointInfo {
        EndpointInfo {
            id: identity % 1000,
            identity,
            ip: Some(ip),
            namespace: ns.into(),
            pod_name: name.into(),
            labels: vec![format!("k8s:app={app}")],
            workloads: vec![Workload {
                name: app.into(),
                kind: "Deployment".into(),
            }],
            ..EndpointInfo::default()
        }
    }

    fn resolver() -> StaticResolver {
        let mut r = StaticResolver::new();
        r.add_cgroup(77, pod(WEB, "payments", "web-1", 12345, "web"));
        r.add_endpoint(pod(CHECKOUT, "payments", "checkout-1", 23456, "checkout"));
        r.add_endpoint(pod(COREDNS, "kube-system", "coredns-1", 34567, "kube-dns"));
        r.add_service(
            VIP,
            80,
            6,
            5,
            ServiceRef {
                name: "checkout".into(),
                namespace: "payments".into(),
            },
        );
        r.add_service(
            DNS_VIP,
            53,
            17,
            6,
            ServiceRef {
                name: "kube-dns".into(),
                namespace: "kube-system".into(),
            },
        );
        r.identities
            .insert(16_777_217, vec!["cidr:1.1.1.0/24".into()]);
        r.interfaces.insert(9, "lxc-web".into());
        r
    }

    fn tcp(ev_type: u8, subtype: u8, flags: u8) -> Event {
        Event {
            ts: 5_000_000_000,
            ev_type,
            subtype,
            proto: 6,
            tcp_flags: 0x02,
            ifindex: 9,
            saddr: be(WEB),
            daddr: be(CHECKOUT),
            sport: 43210u16.to_be(),
            dport: 8080u16.to_be(),
            src_id: 12345,
            dst_id: 23456,
            flags,
            ..Event::default()
        }
    }

    fn decoder() -> Decoder {
        Decoder::new(Clock::new(
            "2024-12-01T10:00:00Z".parse().unwrap(),
            4_000_000_000,
        ))
    }

    fn decode(ev: &Event, payload: &[u8]) -> Flow {
        decoder()
            .decode(ev, payload, &resolver(), "node-1")
            .unwrap()
    }

    /// The record as the kernel writes it: addresses and ports in network
    /// byte order at their offsets.
    #[test]
    fn byte_order_of_addresses_and_ports() {
        let mut rec = vec![0u8; Event::SIZE];
        rec[8] = TW_EV_TRACE;
        rec[10] = 6;
        rec[16..20].copy_from_slice(&[10, 0, 1, 5]);
        rec[20..24].copy_from_slice(&[192, 168, 7, 9]);
        rec[24..26].copy_from_slice(&43210u16.to_be_bytes());
        rec[26..28].copy_from_slice(&8080u16.to_be_bytes());
        rec[36..40].copy_from_slice(&[10, 96, 0, 20]);
        rec[40..42].copy_from_slice(&80u16.to_be_bytes());
        let (ev, payload) = Event::parse(&rec).unwrap();
        let f = decoder().decode(&ev, payload, &resolver(), "n").unwrap();
        let ip = f.ip.unwrap();
        assert_eq!(ip.source, "10.0.1.5");
        assert_eq!(ip.destination, "192.168.7.9");
        assert_eq!(f.l4.unwrap().ports(), Some((43210, 8080)));
        // orig_addr:orig_port is the frontend of the checkout service.
        assert_eq!(f.destination_service.unwrap().name, "checkout");
        // `u32::from_be` then `Ipv4Addr::from(u32)` is the same thing; taking
        // the field as a host-order number is the mistake (on little-endian
        // hosts it reverses the address).
        assert_eq!(Ipv4Addr::from(u32::from_be(ev.saddr)), WEB);
        assert_eq!(u16::from_be(ev.sport), 43210);
        if cfg!(target_endian = "little") {
            assert_eq!(Ipv4Addr::from(ev.saddr), Ipv4Addr::new(5, 1, 0, 10));
            assert_ne!(ev.sport, 43210);
        }
    }

    #[test]
    fn trace_to_endpoint() {
        let f = decode(
            &tcp(TW_EV_TRACE, TW_TRACE_TO_LXC, TW_EV_F_INGRESS | TW_EV_F_NEW),
            &[],
        );
        assert_eq!(f.verdict, Verdict::Forwarded);
        assert_eq!(f.time, "2024-12-01T10:00:01Z".parse::<Timestamp>().unwrap());
        assert_eq!(f.flow_type, FlowType::L3L4);
        assert_eq!(f.trace_observation_point, TraceObservationPoint::ToEndpoint);
        assert_eq!(
            f.event_type,
            Some(CiliumEventType {
                event_type: 4,
                sub_type: 0
            })
        );
        assert_eq!(f.traffic_direction, TrafficDirection::Ingress);
        assert_eq!(f.is_reply, Some(false));
        assert_eq!(f.summary, "TCP Flags: SYN");
        assert_eq!(f.node_name, "node-1");
        assert_eq!(
            f.interface,
            Some(NetworkInterface {
                index: 9,
                name: "lxc-web".into()
            })
        );
        let src = f.source.unwrap();
        assert_eq!(
            (src.namespace.as_str(), src.pod_name.as_str()),
            ("payments", "web-1")
        );
        assert_eq!(src.identity, 12345);
        assert_eq!(src.labels, vec!["k8s:app=web"]);
        assert_eq!(src.workloads[0].kind, "Deployment");
        let dst = f.destination.unwrap();
        assert_eq!(dst.pod_name, "checkout-1");
        match f.l4 {
            Some(Layer4::Tcp(t)) => assert!(t.flags.unwrap().syn),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reply_state_of_traces() {
        let reply = decode(
            &tcp(
                TW_EV_TRACE,
                TW_TRACE_TO_STACK,
                TW_EV_F_EGRESS | TW_EV_F_REPLY,
            ),
            &[],
        );
        assert_eq!(reply.is_reply, Some(true));
        let unknown = decode(&tcp(TW_EV_TRACE, TW_TRACE_FROM_LXC, TW_EV_F_EGRESS), &[]);
        assert_eq!(unknown.is_reply, None);
        let new = decode(
            &tcp(TW_EV_TRACE, TW_TRACE_FROM_LXC, TW_EV_F_EGRESS | TW_EV_F_NEW),
            &[],
        );
        assert_eq!(new.is_reply, Some(false));
        assert_eq!(new.traffic_direction, TrafficDirection::Egress);
        assert_eq!(
            new.trace_observation_point,
            TraceObservationPoint::FromEndpoint
        );
    }

    #[test]
    fn drops() {
        let f = decode(&tcp(TW_EV_DROP, 133, TW_EV_F_INGRESS), &[]);
        assert_eq!(f.verdict, Verdict::Dropped);
        assert_eq!(f.drop_reason, 133);
        assert_eq!(f.drop_reason_desc, "POLICY_DENIED");
        assert_eq!(
            f.event_type,
            Some(CiliumEventType {
                event_type: 1,
                sub_type: 133
            })
        );
        assert_eq!(f.is_reply, None);
        assert_eq!(f.summary, "TCP Flags: SYN");
        let f = decode(&tcp(TW_EV_DROP, 158, 0), &[]);
        assert_eq!(f.drop_reason_desc, "SERVICE_BACKEND_NOT_FOUND");
        assert_eq!(f.traffic_direction, TrafficDirection::Unknown);
        let f = decode(&tcp(TW_EV_DROP, 200, 0), &[]);
        assert_eq!((f.drop_reason, f.drop_reason_desc.as_str()), (200, ""));
    }

    #[test]
    fn policy_verdicts() {
        let mut ev = tcp(
            TW_EV_POLICY_VERDICT,
            0,
            TW_EV_F_INGRESS | TW_EV_F_ALLOWED | TW_EV_F_NEW,
        );
        ev.match_type = 2;
        ev.rule_id = 7;
        let mut r = resolver();
        r.policies.insert(
            7,
            Policy {
                name: "allow-web".into(),
                namespace: "payments".into(),
                kind: "NetworkPolicy".into(),
                ..Policy::default()
            },
        );
        let f = decoder().decode(&ev, &[], &r, "n").unwrap();
        assert_eq!(f.verdict, Verdict::Forwarded);
        assert_eq!(f.policy_match_type, 2);
        assert_eq!(
            f.event_type,
            Some(CiliumEventType {
                event_type: 5,
                sub_type: 0
            })
        );
        assert_eq!(f.is_reply, Some(false));
        assert_eq!(f.drop_reason, 0);
        assert_eq!(f.ingress_allowed_by[0].name, "allow-web");

        let denied = tcp(TW_EV_POLICY_VERDICT, 181, TW_EV_F_EGRESS | TW_EV_F_NEW);
        let f = decoder().decode(&denied, &[], &r, "n").unwrap();
        assert_eq!(f.verdict, Verdict::Dropped);
        assert_eq!(
            (f.drop_reason, f.drop_reason_desc.as_str()),
            (181, "POLICY_DENY")
        );
        assert_eq!(f.is_reply, None);
        let f = decode(&tcp(TW_EV_POLICY_VERDICT, 0, TW_EV_F_EGRESS), &[]);
        assert_eq!(
            (f.drop_reason, f.drop_reason_desc.as_str()),
            (133, "POLICY_DENIED")
        );
        let f = decode(&tcp(TW_EV_POLICY_VERDICT, 0, TW_EV_F_AUDIT), &[]);
        assert_eq!(f.verdict, Verdict::Audit);
    }

    #[test]
    fn socket_translation() {
        let ev = Event {
            ts: 4_500_000_000,
            ev_type: TW_EV_TRACE_SOCK,
            subtype: TW_SOCK_XLATE_PRE_DIRECTION_FWD,
            proto: 6,
            daddr: be(CHECKOUT),
            dport: 8080u16.to_be(),
            dst_id: 23456,
            orig_addr: be(VIP),
            orig_port: 80u16.to_be(),
            flags: TW_EV_F_EGRESS | TW_EV_F_NEW,
            rev_nat: 5,
            cgroup_id: 77,
            ..Event::default()
        };
        let f = decode(&ev, &[]);
        assert_eq!(f.verdict, Verdict::Translated);
        assert_eq!(f.flow_type, FlowType::Sock);
        assert_eq!(f.sock_xlate_point, SockXlatePoint::PostDirectionFwd);
        assert_eq!(
            f.event_type,
            Some(CiliumEventType {
                event_type: 7,
                sub_type: 2
            })
        );
        assert_eq!(f.cgroup_id, 77);
        let ip = f.ip.unwrap();
        assert_eq!(
            (ip.source.as_str(), ip.destination.as_str()),
            ("10.0.1.5", "10.0.2.7")
        );
        assert_eq!(f.source.unwrap().pod_name, "web-1");
        assert_eq!(f.destination.unwrap().pod_name, "checkout-1");
        assert_eq!(f.destination_service.unwrap().name, "checkout");
        assert_eq!(f.l4.unwrap().ports(), Some((0, 8080)));
        assert_eq!(f.summary, "TCP");
        // An unknown cgroup: no source, still a flow.
        let mut other = ev;
        other.cgroup_id = 1;
        let f = decode(&other, &[]);
        assert_eq!(f.source, Some(Endpoint::default()));
        assert_eq!(f.ip.unwrap().source, "");
    }

    #[test]
    fn services_forward_reply_and_untranslated() {
        let mut fwd = tcp(TW_EV_TRACE, TW_TRACE_TO_STACK, TW_EV_F_EGRESS);
        fwd.orig_addr = be(VIP);
        fwd.orig_port = 80u16.to_be();
        let f = decode(&fwd, &[]);
        assert_eq!(f.destination_service.unwrap().namespace, "payments");
        assert_eq!(f.source_service, None);

        let mut reply = tcp(
            TW_EV_TRACE,
            TW_TRACE_TO_LXC,
            TW_EV_F_INGRESS | TW_EV_F_REPLY,
        );
        reply.saddr = be(CHECKOUT);
        reply.daddr = be(WEB);
        reply.orig_addr = be(VIP);
        reply.orig_port = 80u16.to_be();
        let f = decode(&reply, &[]);
        assert_eq!(f.source_service.unwrap().name, "checkout");
        assert_eq!(f.destination_service, None);

        // Unknown frontend: the rev NAT index names the service.
        let mut by_rev = fwd;
        by_rev.orig_addr = be(Ipv4Addr::new(10, 96, 9, 9));
        by_rev.rev_nat = 5;
        assert_eq!(
            decode(&by_rev, &[]).destination_service.unwrap().name,
            "checkout"
        );

        // Seen before translation: the destination is the frontend itself.
        let mut pre = tcp(TW_EV_TRACE, TW_TRACE_FROM_LXC, TW_EV_F_EGRESS);
        pre.daddr = be(VIP);
        pre.dport = 80u16.to_be();
        let f = decode(&pre, &[]);
        assert_eq!(f.destination_service.unwrap().name, "checkout");
        assert_eq!(f.destination.unwrap().pod_name, "");
    }

    #[test]
    fn identities_of_non_pods() {
        let mut ev = tcp(TW_EV_TRACE, TW_TRACE_TO_LXC, TW_EV_F_INGRESS);
        ev.saddr = be(WORLD);
        ev.src_id = 2;
        let f = decode(&ev, &[]);
        let src = f.source.unwrap();
        assert_eq!(
            (src.identity, src.labels.clone()),
            (2, vec!["reserved:world".to_string()])
        );
        assert_eq!(src.pod_name, "");
        ev.src_id = 16_777_217;
        assert_eq!(
            decode(&ev, &[]).source.unwrap().labels,
            vec!["cidr:1.1.1.0/24"]
        );
        ev.src_id = 1;
        assert_eq!(
            decode(&ev, &[]).source.unwrap().labels,
            vec!["reserved:host"]
        );
        // A pod with no identity in the event gets the resolver's.
        let mut ev = tcp(TW_EV_TRACE, TW_TRACE_TO_LXC, TW_EV_F_INGRESS);
        ev.src_id = 0;
        assert_eq!(decode(&ev, &[]).source.unwrap().identity, 12345);
    }

    #[test]
    fn udp_and_icmp() {
        let mut ev = tcp(TW_EV_TRACE, TW_TRACE_TO_LXC, TW_EV_F_INGRESS);
        ev.proto = 17;
        let f = decode(&ev, &[]);
        assert_eq!(f.summary, "UDP");
        assert!(matches!(f.l4, Some(Layer4::Udp(_))));
        ev.proto = 1;
        ev.sport = 77u16.to_be();
        ev.dport = 0;
        ev.tcp_flags = 8; // ICMP: the type
        let f = decode(&ev, &[]);
        assert_eq!(f.summary, "ICMPv4 EchoRequest");
        assert_eq!(
            f.l4,
            Some(Layer4::Icmpv4(Icmp {
                icmp_type: 8,
                code: 0
            }))
        );
        ev.flags |= TW_EV_F_REPLY;
        ev.tcp_flags = 0;
        assert_eq!(decode(&ev, &[]).summary, "ICMPv4 EchoReply");
        ev.tcp_flags = 3;
        assert_eq!(decode(&ev, &[]).summary, "ICMPv4 DestinationUnreachable");
        ev.proto = 47;
        let f = decode(&ev, &[]);
        assert_eq!((f.l4, f.summary.as_str()), (None, "IPv4"));
    }

    fn dns_event(point: u8, flags: u8, query: bool) -> Event {
        let (s, d, sp, dp) = if query {
            (WEB, COREDNS, 40000u16, 53u16)
        } else {
            (COREDNS, WEB, 53, 40000)
        };
        Event {
            ts: 4_000_000_000,
            ev_type: TW_EV_TRACE,
            subtype: point,
            proto: 17,
            saddr: be(s),
            daddr: be(d),
            sport: sp.to_be(),
            dport: dp.to_be(),
            flags,
            cap_len: 1,
            ..Event::default()
        }
    }

    #[test]
    fn dns_query_and_response_on_the_client_side() {
        let name = "kube-dns.kube-system.svc.cluster.local.";
        let q = testing::query(1, name);
        let f = decode(&dns_event(TW_TRACE_TO_STACK, TW_EV_F_EGRESS, true), &q);
        assert_eq!(f.flow_type, FlowType::L7);
        assert_eq!(
            f.event_type,
            Some(CiliumEventType {
                event_type: 129,
                sub_type: 0
            })
        );
        let l7 = f.l7.clone().unwrap();
        assert_eq!(l7.l7_type, L7FlowType::Request);
        assert_eq!(l7.dns.unwrap().query, name);
        assert_eq!(f.is_reply, Some(false));
        assert_eq!(f.summary, format!("DNS Query {name} A"));
        assert!(matches!(f.l4, Some(Layer4::Udp(_))));

        let a = testing::response(1, name, ResponseCode::NoError, None, &[(DNS_VIP, 30)]);
        let f = decode(
            &dns_event(TW_TRACE_TO_LXC, TW_EV_F_INGRESS | TW_EV_F_REPLY, false),
            &a,
        );
        assert_eq!(f.flow_type, FlowType::L7);
        assert_eq!(f.is_reply, Some(true));
        let dns = f.l7.unwrap().dns.unwrap();
        assert_eq!(dns.ips, vec!["10.96.0.10"]);
        assert_eq!(dns.ttl, 30);
        assert_eq!(
            f.summary,
            format!("DNS Answer \"10.96.0.10\" TTL: 30 (Query {name} A)")
        );
    }

    #[test]
    fn dns_elsewhere_stays_l3_l4() {
        let q = testing::query(1, "a.example.");
        // The server's side of the query.
        let f = decode(&dns_event(TW_TRACE_TO_LXC, TW_EV_F_INGRESS, true), &q);
        assert_eq!((f.flow_type, f.summary.as_str()), (FlowType::L3L4, "UDP"));
        assert_eq!(f.l7, None);
        // A from-* point.
        let f = decode(&dns_event(TW_TRACE_FROM_LXC, TW_EV_F_EGRESS, true), &q);
        assert_eq!(f.flow_type, FlowType::L3L4);
        // Garbage.
        let f = decode(
            &dns_event(TW_TRACE_TO_STACK, TW_EV_F_EGRESS, true),
            b"\x00\x01garbage",
        );
        assert_eq!((f.flow_type, f.summary.as_str()), (FlowType::L3L4, "UDP"));
        // Not port 53.
        let mut ev = dns_event(TW_TRACE_TO_STACK, TW_EV_F_EGRESS, true);
        ev.dport = 5353u16.to_be();
        assert_eq!(decode(&ev, &q).flow_type, FlowType::L3L4);
        // Drops of DNS packets are drops.
        let mut drop = dns_event(TW_TRACE_TO_STACK, TW_EV_F_EGRESS, true);
        drop.ev_type = TW_EV_DROP;
        drop.subtype = 133;
        let f = decode(&drop, &q);
        assert_eq!((f.flow_type, f.verdict), (FlowType::L3L4, Verdict::Dropped));
    }

    #[test]
    fn dns_modes() {
        let q = testing::query(1, "a.example.");
        let server_side = dns_event(TW_TRACE_TO_LXC, TW_EV_F_INGRESS, true);
        let mut d = decoder();
        d.dns_l7 = DnsL7::EveryTrace;
        let f = d.decode(&server_side, &q, &resolver(), "n").unwrap();
        assert_eq!(f.flow_type, FlowType::L7);
        d.dns_l7 = DnsL7::Off;
        let client_side = dns_event(TW_TRACE_TO_STACK, TW_EV_F_EGRESS, true);
        let f = d.decode(&client_side, &q, &resolver(), "n").unwrap();
        assert_eq!(f.flow_type, FlowType::L3L4);
    }

    #[test]
    fn unknown_events_and_clock() {
        let mut ev = tcp(TW_EV_TRACE, 0, 0);
        ev.ev_type = 42;
        assert!(decoder().decode(&ev, &[], &resolver(), "n").is_none());
        let c = Clock::new("2024-01-01T00:00:00Z".parse().unwrap(), 1_000);
        assert_eq!(
            c.wall(1_500),
            "2024-01-01T00:00:00.0000005Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            Clock {
                boot_offset_ns: i128::MAX / 2
            }
            .wall(0),
            Timestamp::UNIX_EPOCH
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_event_decodes_without_panicking_and_round_trips(
                ev_type in prop::sample::select(vec![1u8, 4, 5, 7, 9]),
                subtype in any::<u8>(),
                proto in prop::sample::select(vec![1u8, 6, 17, 47]),
                tcp_flags in any::<u8>(),
                saddr in any::<u32>(),
                daddr in any::<u32>(),
                sport in prop::sample::select(vec![53u16, 80, 40000]),
                dport in prop::sample::select(vec![53u16, 8080]),
                flags in any::<u8>(),
                match_type in any::<u8>(),
                ids in (any::<u32>(), any::<u32>()),
                orig in any::<u32>(),
                payload in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let ev = Event {
                    ts: 1, ev_type, subtype, proto, tcp_flags, saddr, daddr,
                    sport: sport.to_be(), dport: dport.to_be(), src_id: ids.0, dst_id: ids.1,
                    orig_addr: orig, flags, match_type, cap_len: u16::try_from(payload.len()).unwrap(),
                    ..Event::default()
                };
                let mut d = decoder();
                d.dns_l7 = DnsL7::EveryTrace;
                if let Some(f) = d.decode(&ev, &payload, &resolver(), "n") {
                    let json = serde_json::to_string(&f).unwrap();
                    let back: Flow = serde_json::from_str(&json).unwrap();
                    prop_assert_eq!(back, f);
                } else {
                    prop_assert_eq!(ev_type, 9);
                }
            }
        }
    }
}
