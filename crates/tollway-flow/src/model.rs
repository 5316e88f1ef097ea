//! The flow model: Hubble's `flow.Flow` and its parts, as serde structs whose
//! JSON is what `hubble observe -o json` prints (protojson with the proto
//! field names).
//!
//! protojson leaves out every field that holds its default value (0, "",
//! false, an empty list, the zeroth enum value, an absent message), so every
//! field here has a `skip_serializing_if` and a `default`: what
//! serialization writes, deserialization reads back. The exceptions that
//! protojson makes are kept too: `uint64` fields are JSON strings
//! (`"socket_cookie":"42"`, accepted as numbers too), `is_reply` is a
//! wrapped bool (absent = unknown, `false` is written), timestamps are RFC
//! 3339 in UTC with 0, 3, 6 or 9 fractional digits.

use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A flow: one observed packet or L7 message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// When the datapath saw it.
    #[serde(with = "timefmt")]
    pub time: Timestamp,
    /// A unique id (left empty by the decoder; see the crate docs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    /// What happened to it.
    #[serde(default, skip_serializing_if = "Verdict::is_unknown")]
    pub verdict: Verdict,
    /// The drop reason number (Cilium's), 0 when not dropped.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub drop_reason: u32,
    /// L3.
    #[serde(rename = "IP", default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ip>,
    /// L4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4: Option<Layer4>,
    /// The sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Endpoint>,
    /// The receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Endpoint>,
    /// L3_L4, L7 or SOCK.
    #[serde(rename = "Type", default, skip_serializing_if = "FlowType::is_unknown")]
    pub flow_type: FlowType,
    /// The node that observed it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// DNS names of the source address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_names: Vec<String>,
    /// DNS names of the destination address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_names: Vec<String>,
    /// L7 (DNS, HTTP), set if and only if `flow_type` is L7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l7: Option<Layer7>,
    /// The datapath event it came from (Cilium's monitor message types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<CiliumEventType>,
    /// The service the source address is a frontend of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_service: Option<Service>,
    /// The service the destination address is (or was, before DNAT) a
    /// frontend of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_service: Option<Service>,
    /// Ingress or egress of the local endpoint.
    #[serde(default, skip_serializing_if = "TrafficDirection::is_unknown")]
    pub traffic_direction: TrafficDirection,
    /// Policy verdicts: what kind of entry matched (0 none, 1 L3 only, 2
    /// L3+L4, 3 L4 only, 4 all).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub policy_match_type: u32,
    /// Traces: where it was seen.
    #[serde(default, skip_serializing_if = "TraceObservationPoint::is_unknown")]
    pub trace_observation_point: TraceObservationPoint,
    /// The drop reason's enum name (`POLICY_DENIED`), empty when not
    /// dropped or unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub drop_reason_desc: String,
    /// Whether it is a reply; `None` when unknown (drops, denied verdicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_reply: Option<bool>,
    /// The network interface it was seen on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<NetworkInterface>,
    /// Socket translations: at which point.
    #[serde(default, skip_serializing_if = "SockXlatePoint::is_unknown")]
    pub sock_xlate_point: SockXlatePoint,
    /// Socket translations: the socket cookie.
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_string")]
    pub socket_cookie: u64,
    /// Socket translations: the cgroup of the socket.
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_string")]
    pub cgroup_id: u64,
    /// One line of text (`TCP Flags: SYN`, `DNS Query ...`).
    #[serde(rename = "Summary", default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// Policies that allowed it on egress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_allowed_by: Vec<Policy>,
    /// Policies that allowed it on ingress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_allowed_by: Vec<Policy>,
    /// Policies that denied it on egress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_denied_by: Vec<Policy>,
    /// Policies that denied it on ingress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_denied_by: Vec<Policy>,
}

impl Default for Flow {
    fn default() -> Flow {
        Flow {
            time: Timestamp::UNIX_EPOCH,
            uuid: String::new(),
            verdict: Verdict::default(),
            drop_reason: 0,
            ip: None,
            l4: None,
            source: None,
            destination: None,
            flow_type: FlowType::default(),
            node_name: String::new(),
            source_names: Vec::new(),
            destination_names: Vec::new(),
            l7: None,
            event_type: None,
            source_service: None,
            destination_service: None,
            traffic_direction: TrafficDirection::default(),
            policy_match_type: 0,
            trace_observation_point: TraceObservationPoint::default(),
            drop_reason_desc: String::new(),
            is_reply: None,
            interface: None,
            sock_xlate_point: SockXlatePoint::default(),
            socket_cookie: 0,
            cgroup_id: 0,
            summary: String::new(),
            egress_allowed_by: Vec::new(),
            ingress_allowed_by: Vec::new(),
            egress_denied_by: Vec::new(),
            ingress_denied_by: Vec::new(),
        }
    }
}

/// What `hubble observe -o json` prints, one per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowResponse {
    /// The flow.
    pub flow: Flow,
    /// The node that observed it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// The flow's time.
    #[serde(with = "timefmt")]
    pub time: Timestamp,
}

impl FlowResponse {
    /// The response that carries `flow`.
    pub fn new(flow: Flow) -> FlowResponse {
        FlowResponse {
            node_name: flow.node_name.clone(),
            time: flow.time,
            flow,
        }
    }
}

/// Hubble's verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// No verdict.
    #[default]
    #[serde(rename = "VERDICT_UNKNOWN")]
    Unknown,
    /// Passed on to the next processing step.
    #[serde(rename = "FORWARDED")]
    Forwarded,
    /// Dropped (see `drop_reason_desc`).
    #[serde(rename = "DROPPED")]
    Dropped,
    /// An error.
    #[serde(rename = "ERROR")]
    Error,
    /// Would have been dropped by policy (audit mode).
    #[serde(rename = "AUDIT")]
    Audit,
    /// Redirected to a proxy.
    #[serde(rename = "REDIRECTED")]
    Redirected,
    /// Observed, no verdict reached yet.
    #[serde(rename = "TRACED")]
    Traced,
    /// An address was translated.
    #[serde(rename = "TRANSLATED")]
    Translated,
}

impl Verdict {
    /// Every verdict that a filter can name, in Hubble's order.
    pub const NAMED: &'static [Verdict] = &[
        Verdict::Forwarded,
        Verdict::Dropped,
        Verdict::Error,
        Verdict::Audit,
        Verdict::Redirected,
        Verdict::Traced,
        Verdict::Translated,
    ];

    /// The proto enum name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Unknown => "VERDICT_UNKNOWN",
            Verdict::Forwarded => "FORWARDED",
            Verdict::Dropped => "DROPPED",
            Verdict::Error => "ERROR",
            Verdict::Audit => "AUDIT",
            Verdict::Redirected => "REDIRECTED",
            Verdict::Traced => "TRACED",
            Verdict::Translated => "TRANSLATED",
        }
    }

    /// The verdict with this proto enum name (exact, as Hubble).
    pub fn from_name(name: &str) -> Option<Verdict> {
        [Verdict::Unknown]
            .iter()
            .chain(Verdict::NAMED)
            .copied()
            .find(|v| v.name() == name)
    }

    fn is_unknown(&self) -> bool {
        *self == Verdict::Unknown
    }
}

/// Hubble's flow types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlowType {
    /// Unknown.
    #[default]
    #[serde(rename = "UNKNOWN_TYPE")]
    Unknown,
    /// A packet.
    #[serde(rename = "L3_L4")]
    L3L4,
    /// An L7 message.
    #[serde(rename = "L7")]
    L7,
    /// A socket event.
    #[serde(rename = "SOCK")]
    Sock,
}

impl FlowType {
    fn is_unknown(&self) -> bool {
        *self == FlowType::Unknown
    }
}

/// Ingress or egress, from the local endpoint's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrafficDirection {
    /// Unknown.
    #[default]
    #[serde(rename = "TRAFFIC_DIRECTION_UNKNOWN")]
    Unknown,
    /// Towards the endpoint.
    #[serde(rename = "INGRESS")]
    Ingress,
    /// From the endpoint.
    #[serde(rename = "EGRESS")]
    Egress,
}

impl TrafficDirection {
    /// The proto enum name.
    pub fn name(self) -> &'static str {
        match self {
            TrafficDirection::Unknown => "TRAFFIC_DIRECTION_UNKNOWN",
            TrafficDirection::Ingress => "INGRESS",
            TrafficDirection::Egress => "EGRESS",
        }
    }

    fn is_unknown(&self) -> bool {
        *self == TrafficDirection::Unknown
    }
}

/// Where a trace was observed (Hubble's `TraceObservationPoint`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceObservationPoint {
    /// Unknown.
    #[default]
    UnknownPoint,
    /// Towards the L7 proxy.
    ToProxy,
    /// Towards the host namespace.
    ToHost,
    /// Towards the node's network stack.
    ToStack,
    /// Towards the tunnel device.
    ToOverlay,
    /// Towards the endpoint (pod).
    ToEndpoint,
    /// From the endpoint.
    FromEndpoint,
    /// From the L7 proxy.
    FromProxy,
    /// From the host namespace.
    FromHost,
    /// From the node's network stack.
    FromStack,
    /// From the tunnel device.
    FromOverlay,
    /// From a native device.
    FromNetwork,
    /// Towards a native device.
    ToNetwork,
}

impl TraceObservationPoint {
    /// The point of a datapath trace subtype (Cilium's `TRACE_*` numbers,
    /// which `TW_TRACE_*` reuse).
    pub fn from_datapath(subtype: u8) -> TraceObservationPoint {
        match subtype {
            0 => TraceObservationPoint::ToEndpoint,
            1 => TraceObservationPoint::ToProxy,
            2 => TraceObservationPoint::ToHost,
            3 => TraceObservationPoint::ToStack,
            4 => TraceObservationPoint::ToOverlay,
            5 => TraceObservationPoint::FromEndpoint,
            6 => TraceObservationPoint::FromProxy,
            7 => TraceObservationPoint::FromHost,
            8 => TraceObservationPoint::FromStack,
            9 => TraceObservationPoint::FromOverlay,
            10 => TraceObservationPoint::FromNetwork,
            11 => TraceObservationPoint::ToNetwork,
            _ => TraceObservationPoint::UnknownPoint,
        }
    }

    fn is_unknown(&self) -> bool {
        *self == TraceObservationPoint::UnknownPoint
    }
}

/// The datapath's names of trace subtypes (Cilium's monitor
/// `TraceObservationPoints`): `to-endpoint`, `from-network`, ...
pub fn trace_point_name(subtype: u8) -> Option<&'static str> {
    Some(match subtype {
        0 => "to-endpoint",
        1 => "to-proxy",
        2 => "to-host",
        3 => "to-stack",
        4 => "to-overlay",
        5 => "from-endpoint",
        6 => "from-proxy",
        7 => "from-host",
        8 => "from-stack",
        9 => "from-overlay",
        10 => "from-network",
        11 => "to-network",
        _ => return None,
    })
}

/// Socket translation points (Hubble's `SocketTranslationPoint`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SockXlatePoint {
    /// Unknown.
    #[default]
    #[serde(rename = "SOCK_XLATE_POINT_UNKNOWN")]
    Unknown,
    /// Before the forward translation (destination: the frontend).
    #[serde(rename = "SOCK_XLATE_POINT_PRE_DIRECTION_FWD")]
    PreDirectionFwd,
    /// After the forward translation (destination: the backend).
    #[serde(rename = "SOCK_XLATE_POINT_POST_DIRECTION_FWD")]
    PostDirectionFwd,
    /// Before the reverse translation.
    #[serde(rename = "SOCK_XLATE_POINT_PRE_DIRECTION_REV")]
    PreDirectionRev,
    /// After the reverse translation.
    #[serde(rename = "SOCK_XLATE_POINT_POST_DIRECTION_REV")]
    PostDirectionRev,
}

impl SockXlatePoint {
    /// The proto number (also the event's `sub_type`).
    pub fn number(self) -> i32 {
        match self {
            SockXlatePoint::Unknown => 0,
            SockXlatePoint::PreDirectionFwd => 1,
            SockXlatePoint::PostDirectionFwd => 2,
            SockXlatePoint::PreDirectionRev => 3,
            SockXlatePoint::PostDirectionRev => 4,
        }
    }

    fn is_unknown(&self) -> bool {
        *self == SockXlatePoint::Unknown
    }
}

/// L3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ip {
    /// Source address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Destination address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination: String,
    /// IPv4 or IPv6.
    #[serde(
        rename = "ipVersion",
        default,
        skip_serializing_if = "IpVersion::is_unknown"
    )]
    pub ip_version: IpVersion,
    /// Whether the packet was encrypted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub encrypted: bool,
}

impl Ip {
    /// The source address, parsed.
    pub fn source_addr(&self) -> Option<IpAddr> {
        self.source.parse().ok()
    }

    /// The destination address, parsed.
    pub fn destination_addr(&self) -> Option<IpAddr> {
        self.destination.parse().ok()
    }
}

/// IP versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpVersion {
    /// Not IP.
    #[default]
    #[serde(rename = "IP_NOT_USED")]
    NotUsed,
    /// IPv4.
    #[serde(rename = "IPv4")]
    V4,
    /// IPv6.
    #[serde(rename = "IPv6")]
    V6,
}

impl IpVersion {
    /// The proto enum name (`IPv4`), as the `family` label of metrics.
    pub fn name(self) -> &'static str {
        match self {
            IpVersion::NotUsed => "IP_NOT_USED",
            IpVersion::V4 => "IPv4",
            IpVersion::V6 => "IPv6",
        }
    }

    fn is_unknown(&self) -> bool {
        *self == IpVersion::NotUsed
    }
}

/// L4: one of the protocols (protojson writes the oneof as
/// `{"TCP":{...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layer4 {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp(Tcp),
    /// UDP.
    #[serde(rename = "UDP")]
    Udp(Udp),
    /// ICMP for IPv4.
    #[serde(rename = "ICMPv4")]
    Icmpv4(Icmp),
    /// ICMP for IPv6.
    #[serde(rename = "ICMPv6")]
    Icmpv6(Icmp),
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp(Udp),
}

impl Layer4 {
    /// `(source, destination)` ports of TCP, UDP and SCTP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        let (s, d) = match self {
            Layer4::Tcp(t) => (t.source_port, t.destination_port),
            Layer4::Udp(u) | Layer4::Sctp(u) => (u.source_port, u.destination_port),
            Layer4::Icmpv4(_) | Layer4::Icmpv6(_) => return None,
        };
        Some((
            u16::try_from(s).unwrap_or(u16::MAX),
            u16::try_from(d).unwrap_or(u16::MAX),
        ))
    }

    /// `TCP`, `UDP`, `ICMPv4`, `ICMPv6`, `SCTP`.
    pub fn name(&self) -> &'static str {
        match self {
            Layer4::Tcp(_) => "TCP",
            Layer4::Udp(_) => "UDP",
            Layer4::Icmpv4(_) => "ICMPv4",
            Layer4::Icmpv6(_) => "ICMPv6",
            Layer4::Sctp(_) => "SCTP",
        }
    }
}

/// TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcp {
    /// Source port.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub source_port: u32,
    /// Destination port.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub destination_port: u32,
    /// The header's flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<TcpFlags>,
}

/// UDP (and SCTP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Udp {
    /// Source port.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub source_port: u32,
    /// Destination port.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub destination_port: u32,
}

/// ICMP type and code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icmp {
    /// Type.
    #[serde(rename = "type", default, skip_serializing_if = "is_zero_u32")]
    pub icmp_type: u32,
    /// Code.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub code: u32,
}

/// TCP flags, as protojson writes them (`{"SYN":true,"ACK":true}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub struct TcpFlags {
    /// FIN.
    #[serde(rename = "FIN", default, skip_serializing_if = "is_false")]
    pub fin: bool,
    /// SYN.
    #[serde(rename = "SYN", default, skip_serializing_if = "is_false")]
    pub syn: bool,
    /// RST.
    #[serde(rename = "RST", default, skip_serializing_if = "is_false")]
    pub rst: bool,
    /// PSH.
    #[serde(rename = "PSH", default, skip_serializing_if = "is_false")]
    pub psh: bool,
    /// ACK.
    #[serde(rename = "ACK", default, skip_serializing_if = "is_false")]
    pub ack: bool,
    /// URG.
    #[serde(rename = "URG", default, skip_serializing_if = "is_false")]
    pub urg: bool,
    /// ECE.
    #[serde(rename = "ECE", default, skip_serializing_if = "is_false")]
    pub ece: bool,
    /// CWR.
    #[serde(rename = "CWR", default, skip_serializing_if = "is_false")]
    pub cwr: bool,
    /// NS.
    #[serde(rename = "NS", default, skip_serializing_if = "is_false")]
    pub ns: bool,
}

impl TcpFlags {
    /// The flags of a TCP header's flag byte (FIN 0x01, SYN 0x02, RST 0x04,
    /// PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80).
    pub fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags {
            fin: bits & 0x01 != 0,
            syn: bits & 0x02 != 0,
            rst: bits & 0x04 != 0,
            psh: bits & 0x08 != 0,
            ack: bits & 0x10 != 0,
            urg: bits & 0x20 != 0,
            ece: bits & 0x40 != 0,
            cwr: bits & 0x80 != 0,
            ns: false,
        }
    }

    /// The set flags in Hubble's order (`SYN, ACK, RST, FIN, PSH, URG, ECE,
    /// CWR, NS`), joined by `, `.
    pub fn summary(&self) -> String {
        let all = [
            (self.syn, "SYN"),
            (self.ack, "ACK"),
            (self.rst, "RST"),
            (self.fin, "FIN"),
            (self.psh, "PSH"),
            (self.urg, "URG"),
            (self.ece, "ECE"),
            (self.cwr, "CWR"),
            (self.ns, "NS"),
        ];
        let set: Vec<&str> = all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        set.join(", ")
    }

    /// Whether every flag set in `self` is set in `other`.
    pub fn is_subset_of(&self, other: &TcpFlags) -> bool {
        let pairs = [
            (self.fin, other.fin),
            (self.syn, other.syn),
            (self.rst, other.rst),
            (self.psh, other.psh),
            (self.ack, other.ack),
            (self.urg, other.urg),
            (self.ece, other.ece),
            (self.cwr, other.cwr),
            (self.ns, other.ns),
        ];
        pairs.iter().all(|(want, have)| !*want || *have)
    }
}

/// An endpoint: a pod, or an identity (world, host, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The endpoint id (local endpoints).
    #[serde(rename = "ID", default, skip_serializing_if = "is_zero_u32")]
    pub id: u32,
    /// The security identity.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub identity: u32,
    /// The cluster.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// The pod's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels, `source:key=value` (`k8s:app=web`, `reserved:world`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The pod's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
    /// The pod's owners (`Deployment`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<Workload>,
}

/// A workload that owns a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// Its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its kind (`Deployment`, `ReplicaSet`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// A service, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Service {
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// A network policy that allowed or denied a flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace (empty for cluster-wide policies).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels of the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Revision.
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_string")]
    pub revision: u64,
    /// Kind (`NetworkPolicy`, `CiliumNetworkPolicy`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// The datapath event behind a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CiliumEventType {
    /// Cilium's monitor message type (1 drop, 4 trace, 5 policy verdict, 7
    /// trace sock, 129 L7).
    #[serde(rename = "type", default, skip_serializing_if = "is_zero_i32")]
    pub event_type: i32,
    /// Trace point, drop reason, sock translation point.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub sub_type: i32,
}

/// Cilium's monitor message types, as in `event_type.type`.
pub mod message_type {
    /// Drop.
    pub const DROP: i32 = 1;
    /// Debug.
    pub const DEBUG: i32 = 2;
    /// Capture.
    pub const CAPTURE: i32 = 3;
    /// Trace.
    pub const TRACE: i32 = 4;
    /// Policy verdict.
    pub const POLICY_VERDICT: i32 = 5;
    /// Socket trace.
    pub const TRACE_SOCK: i32 = 7;
    /// L7 (access log).
    pub const ACCESS_LOG: i32 = 129;
    /// Agent event.
    pub const AGENT: i32 = 130;
}

/// A network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// ifindex.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub index: u32,
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// L7.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer7 {
    /// Request or response.
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "L7FlowType::is_unknown"
    )]
    pub l7_type: L7FlowType,
    /// Responses: the time since the request.
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_string")]
    pub latency_ns: u64,
    /// DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Http>,
}

/// L7 flow types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum L7FlowType {
    /// Unknown.
    #[default]
    #[serde(rename = "UNKNOWN_L7_TYPE")]
    Unknown,
    /// A request.
    #[serde(rename = "REQUEST")]
    Request,
    /// A response.
    #[serde(rename = "RESPONSE")]
    Response,
    /// A sample.
    #[serde(rename = "SAMPLE")]
    Sample,
}

impl L7FlowType {
    /// The proto name, lower case (`request`), as the printer writes it.
    pub fn lower_name(self) -> &'static str {
        match self {
            L7FlowType::Unknown => "unknown_l7_type",
            L7FlowType::Request => "request",
            L7FlowType::Response => "response",
            L7FlowType::Sample => "sample",
        }
    }

    fn is_unknown(&self) -> bool {
        *self == L7FlowType::Unknown
    }
}

/// A DNS message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// The name looked up, with its trailing dot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// Addresses in the answers (A, AAAA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// The smallest TTL of the answers.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    /// CNAME targets in the answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    /// Who observed it (`proxy` in Cilium; empty here: the datapath).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub observation_source: String,
    /// The response code.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub rcode: u32,
    /// Query types (`A`, `AAAA`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qtypes: Vec<String>,
    /// Types of the answer records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rrtypes: Vec<String>,
}

/// An HTTP message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Http {
    /// Status code (responses).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub code: u32,
    /// Method.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// `HTTP/1.1`, `HTTP/2`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
}

/// An HTTP header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

impl Flow {
    /// `(source, destination)` ports of TCP, UDP and SCTP flows.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.l4.as_ref().and_then(Layer4::ports)
    }

    /// The source security identity (0 when unknown).
    pub fn source_identity(&self) -> u32 {
        self.source.as_ref().map_or(0, |e| e.identity)
    }

    /// The destination security identity (0 when unknown).
    pub fn destination_identity(&self) -> u32 {
        self.destination.as_ref().map_or(0, |e| e.identity)
    }

    /// `event_type.type` (0 when absent).
    pub fn event_type_number(&self) -> i32 {
        self.event_type.map_or(0, |e| e.event_type)
    }

    /// Hubble's `FlowProtocol`: the L7 protocol if any (`DNS`, `HTTP`),
    /// else the L4 one (`TCP`, ...), else `Unknown flow`.
    pub fn protocol_name(&self) -> &'static str {
        if let Some(l7) = &self.l7 {
            if l7.dns.is_some() {
                return "DNS";
            }
            if l7.http.is_some() {
                return "HTTP";
            }
            return "Unknown flow";
        }
        self.l4.as_ref().map_or("Unknown flow", Layer4::name)
    }
}

pub(crate) fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

pub(crate) fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// protojson's `google.protobuf.Timestamp`: RFC 3339 in UTC (`Z`), with 0,
/// 3, 6 or 9 fractional digits.
pub mod timefmt {
    use std::fmt::Write as _;

    use jiff::Timestamp;
    use jiff::tz::Offset;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `2024-12-01T10:00:00.123Z`.
    pub fn format(ts: Timestamp) -> String {
        let dt = Offset::UTC.to_datetime(ts);
        let mut s = String::with_capacity(30);
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
        let ns = dt.subsec_nanosecond();
        if ns != 0 {
            if ns % 1_000_000 == 0 {
                let _ = write!(s, ".{:03}", ns / 1_000_000);
            } else if ns % 1_000 == 0 {
                let _ = write!(s, ".{:06}", ns / 1_000);
            } else {
                let _ = write!(s, ".{ns:09}");
            }
        }
        s.push('Z');
        s
    }

    /// Parses RFC 3339 (any offset).
    pub fn parse(s: &str) -> Result<Timestamp, jiff::Error> {
        s.parse::<Timestamp>()
    }

    /// serde: serialize.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ts))
    }

    /// serde: deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// The same, for `Option<Timestamp>` (`None` is skipped by the caller).
    pub mod option {
        use jiff::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        /// serde: serialize.
        pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match ts {
                Some(ts) => s.serialize_str(&super::format(*ts)),
                None => s.serialize_none(),
            }
        }

        /// serde: deserialize.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            match s {
                Some(s) => super::parse(&s).map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

/// protojson's `uint64`: a JSON string (numbers are accepted too).
pub mod u64_string {
    use serde::{Deserialize, Deserializer, Serializer};

    /// serde: serialize.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Num(u64),
        Str(String),
    }

    /// serde: deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Either::deserialize(d)? {
            Either::Num(n) => Ok(n),
            Either::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Flow {
        Flow {
            source: Some(Endpoint {
                id: 12,
                identity: 12345,
                namespace: "payments".into(),
                labels: vec!["k8s:app=web".into()],
                pod_name: "web-1".into(),
                workloads: vec![Workload {
                    name: "web".into(),
                    kind: "Deployment".into(),
                }],
                ..Endpoint::default()
            }),
            flow_type: FlowType::L3L4,
            node_name: "node-1".into(),
            event_type: Some(CiliumEventType {
                event_type: 4,
                sub_type: 0,
            }),
            traffic_direction: TrafficDirection::Ingress,
            trace_observation_point: TraceObservationPoint::ToEndpoint,
            is_reply: Some(false),
            socket_cookie: 1 << 40,
            summary: "TCP Flags: SYN, ACK".into(),
            ..crate::testutil::tcp_flow("2024-12-01T10:00:00.123456789Z", 0x12)
        }
    }

    #[test]
    fn json_is_hubbles_protojson() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"time":"2024-12-01T10:00:00.123456789Z","verdict":"FORWARDED","#,
                r#""IP":{"source":"10.0.1.5","destination":"10.0.2.7","ipVersion":"IPv4"},"#,
                r#""l4":{"TCP":{"source_port":43210,"destination_port":8080,"flags":{"SYN":true,"ACK":true}}},"#,
                r#""source":{"ID":12,"identity":12345,"namespace":"payments","labels":["k8s:app=web"],"#,
                r#""pod_name":"web-1","workloads":[{"name":"web","kind":"Deployment"}]},"#,
                r#""Type":"L3_L4","node_name":"node-1","event_type":{"type":4},"#,
                r#""traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","#,
                r#""is_reply":false,"socket_cookie":"1099511627776","Summary":"TCP Flags: SYN, ACK"}"#
            )
        );
    }

    #[test]
    fn json_round_trips() {
        let f = sample();
        let back: Flow = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        let resp = FlowResponse::new(f);
        let line = serde_json::to_string(&resp).unwrap();
        assert!(line.starts_with(r#"{"flow":{"time":"#), "{line}");
        assert!(line.ends_with(r#""node_name":"node-1","time":"2024-12-01T10:00:00.123456789Z"}"#));
        let back: FlowResponse = serde_json::from_str(&line).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn defaults_are_left_out() {
        let json = serde_json::to_string(&Flow::default()).unwrap();
        assert_eq!(json, r#"{"time":"1970-01-01T00:00:00Z"}"#);
        let back: Flow = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Flow::default());
    }

    #[test]
    fn timestamps_use_3_6_or_9_digits() {
        let f = |s: &str| timefmt::format(s.parse().unwrap());
        assert_eq!(f("2024-01-02T03:04:05Z"), "2024-01-02T03:04:05Z");
        assert_eq!(f("2024-01-02T03:04:05.1Z"), "2024-01-02T03:04:05.100Z");
        assert_eq!(
            f("2024-01-02T03:04:05.1234Z"),
            "2024-01-02T03:04:05.123400Z"
        );
        assert_eq!(
            f("2024-01-02T03:04:05.0000001Z"),
            "2024-01-02T03:04:05.000000100Z"
        );
        assert_eq!(f("2024-01-02T05:04:05+02:00"), "2024-01-02T03:04:05Z");
    }

    #[test]
    fn u64_accepts_numbers_and_strings() {
        let f: Flow = serde_json::from_str(
            r#"{"time":"2024-01-01T00:00:00Z","socket_cookie":7,"cgroup_id":"9"}"#,
        )
        .unwrap();
        assert_eq!((f.socket_cookie, f.cgroup_id), (7, 9));
    }

    #[test]
    fn tcp_flag_summary_in_hubbles_order() {
        assert_eq!(TcpFlags::from_bits(0x11).summary(), "ACK, FIN");
        assert_eq!(TcpFlags::from_bits(0x12).summary(), "SYN, ACK");
        assert_eq!(
            TcpFlags::from_bits(0xff).summary(),
            "SYN, ACK, RST, FIN, PSH, URG, ECE, CWR"
        );
        assert_eq!(TcpFlags::from_bits(0).summary(), "");
    }

    #[test]
    fn verdict_names() {
        for v in Verdict::NAMED {
            assert_eq!(Verdict::from_name(v.name()), Some(*v));
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.name()));
        }
        assert_eq!(Verdict::from_name("forwarded"), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn arb_endpoint() -> impl Strategy<Value = Option<Endpoint>> {
            proptest::option::of(
                (
                    any::<u32>(),
                    any::<u32>(),
                    "[a-z]{0,5}",
                    proptest::collection::vec("[a-z:=]{1,8}", 0..3),
                    "[a-z0-9-]{0,8}",
                )
                    .prop_map(|(id, identity, namespace, labels, pod_name)| {
                        Endpoint {
                            id,
                            identity,
                            namespace,
                            labels,
                            pod_name,
                            ..Endpoint::default()
                        }
                    }),
            )
        }

        fn arb_l4() -> impl Strategy<Value = Option<Layer4>> {
            proptest::option::of(prop_oneof![
                (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(s, d, f)| Layer4::Tcp(Tcp {
                    source_port: s.into(),
                    destination_port: d.into(),
                    flags: Some(TcpFlags::from_bits(f)),
                })),
                (any::<u16>(), any::<u16>()).prop_map(|(s, d)| Layer4::Udp(Udp {
                    source_port: s.into(),
                    destination_port: d.into(),
                })),
                (any::<u8>(), any::<u8>()).prop_map(|(t, c)| Layer4::Icmpv4(Icmp {
                    icmp_type: t.into(),
                    code: c.into(),
                })),
            ])
        }

        proptest! {
            #[test]
            fn any_flow_round_trips(
                secs in 0i64..4_000_000_000,
                nanos in 0i32..1_000_000_000,
                verdict in prop::sample::select(Verdict::NAMED.to_vec()),
                drop_reason in any::<u32>(),
                source in arb_endpoint(),
                destination in arb_endpoint(),
                l4 in arb_l4(),
                is_reply in proptest::option::of(any::<bool>()),
                cookie in any::<u64>(),
                summary in ".{0,20}",
            ) {
                let f = Flow {
                    time: Timestamp::new(secs, nanos).unwrap(),
                    verdict,
                    drop_reason,
                    source,
                    destination,
                    l4,
                    is_reply,
                    socket_cookie: cookie,
                    summary,
                    ..Flow::default()
                };
                let json = serde_json::to_string(&f).unwrap();
                let back: Flow = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, f);
            }
        }
    }
}
