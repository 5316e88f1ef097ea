//! The normalized policy model: what the agent translates NetworkPolicy and
//! CiliumNetworkPolicy manifests into, and the facts about identities the
//! compiler needs ([`PolicyContext`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::abi::{
    IPPROTO_TCP, IPPROTO_UDP, TW_ID_CIDR_FIRST, TW_ID_CLUSTER_FIRST, TW_ID_HEALTH, TW_ID_HOST,
    TW_ID_INIT, TW_ID_KUBE_APISERVER, TW_ID_REMOTE_NODE, TW_ID_UNMANAGED, TW_ID_WORLD,
    TW_POL_EGRESS, TW_POL_INGRESS,
};
use crate::identity::identity_cidr;
use crate::labels::LabelSet;
use crate::selector::EndpointSelector;

/// Which traffic of the subject a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic to the subject; the peer is the source.
    Ingress,
    /// Traffic from the subject; the peer is the destination.
    Egress,
}

impl Direction {
    /// `tw_policy_key.egress` (`TW_POL_INGRESS` / `TW_POL_EGRESS`).
    pub fn abi(self) -> u8 {
        match self {
            Direction::Ingress => TW_POL_INGRESS,
            Direction::Egress => TW_POL_EGRESS,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// What a rule does with the traffic it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allow (unless a deny rule matches too).
    Allow,
    /// Deny; always wins over allow.
    Deny,
}

/// Cilium's policy entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entity {
    /// Outside the cluster: `TW_ID_WORLD` and every CIDR identity.
    World,
    /// Inside the cluster: every endpoint identity plus host, remote-node,
    /// health, init, unmanaged and kube-apiserver.
    Cluster,
    /// The local node (`TW_ID_HOST`).
    Host,
    /// Other nodes (`TW_ID_REMOTE_NODE`).
    RemoteNode,
    /// Every peer (`TW_ID_ANY`).
    All,
    /// Health endpoints (`TW_ID_HEALTH`).
    Health,
    /// Initializing endpoints (`TW_ID_INIT`).
    Init,
    /// The API server (`TW_ID_KUBE_APISERVER`).
    KubeApiserver,
    /// Unmanaged endpoints (`TW_ID_UNMANAGED`).
    Unmanaged,
}

/// Reserved identities that belong to [`Entity::Cluster`].
pub(crate) const CLUSTER_RESERVED: [u32; 6] = [
    TW_ID_HOST,
    TW_ID_UNMANAGED,
    TW_ID_HEALTH,
    TW_ID_INIT,
    TW_ID_REMOTE_NODE,
    TW_ID_KUBE_APISERVER,
];

impl Entity {
    /// The one identity the entity stands for, for the entities that are a
    /// single reserved identity.
    pub(crate) fn reserved_identity(self) -> Option<u32> {
        match self {
            Entity::Host => Some(TW_ID_HOST),
            Entity::RemoteNode => Some(TW_ID_REMOTE_NODE),
            Entity::Health => Some(TW_ID_HEALTH),
            Entity::Init => Some(TW_ID_INIT),
            Entity::KubeApiserver => Some(TW_ID_KUBE_APISERVER),
            Entity::Unmanaged => Some(TW_ID_UNMANAGED),
            Entity::World | Entity::Cluster | Entity::All => None,
        }
    }
}

/// The other end of the traffic a rule is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// Identities whose labels the selector matches.
    Endpoints(EndpointSelector),
    /// Addresses in `cidr` but in none of `except`: the CIDR identities
    /// inside, `TW_ID_WORLD` if `cidr` is `0.0.0.0/0`, and, with `cluster`,
    /// also identities whose every known address is inside (see
    /// [`PolicyContext::addresses`]).
    Cidr {
        /// The block.
        cidr: Ipv4Net,
        /// Sub-blocks left out.
        except: Vec<Ipv4Net>,
        /// Whether pods and nodes are matched by address too. Kubernetes
        /// NetworkPolicy `ipBlock`s are (the upstream conformance tests
        /// expect pod IPs to match); Cilium's CIDR rules are not (Cilium's
        /// default: CIDR policy never selects in-cluster endpoints).
        #[serde(default)]
        cluster: bool,
    },
    /// A Cilium entity.
    Entity(Entity),
}

/// An L4 protocol of a port rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Proto {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// TCP and UDP.
    #[serde(rename = "ANY")]
    Any,
}

impl Proto {
    /// The IP protocol numbers this stands for.
    pub fn ipprotos(self) -> &'static [u8] {
        match self {
            Proto::Tcp => &[IPPROTO_TCP],
            Proto::Udp => &[IPPROTO_UDP],
            Proto::Any => &[IPPROTO_TCP, IPPROTO_UDP],
        }
    }

    /// Whether a packet of IP protocol `ipproto` is covered.
    pub fn covers(self, ipproto: u8) -> bool {
        self.ipprotos().contains(&ipproto)
    }

    /// The protocols covered by both, if any.
    pub fn intersect(self, other: Proto) -> Option<Proto> {
        match (self, other) {
            (Proto::Any, p) | (p, Proto::Any) => Some(p),
            (a, b) if a == b => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Any => "ANY",
        })
    }
}

/// The ports a rule is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortSpec {
    /// Every port of every protocol (also ICMP and the rest).
    Any,
    /// A port or an inclusive range of TCP and/or UDP. `port: 0` without
    /// `end_port` is every port of the protocol (a NetworkPolicy port with
    /// only a protocol, a CNP port `"0"`).
    Number {
        /// TCP, UDP or both.
        proto: Proto,
        /// The port, or the first of the range.
        port: u16,
        /// The last port of the range (≥ `port`).
        end_port: Option<u16>,
    },
    /// A named container port: resolved on the subject's pods for ingress
    /// and on the peer's pods for egress ([`PolicyContext::named_ports`]);
    /// a name nobody has matches nothing.
    Named {
        /// Restricts the named ports to this protocol (`Any`: no restriction).
        proto: Proto,
        /// The port name.
        name: String,
    },
}

impl PortSpec {
    /// The inclusive port range of a [`PortSpec::Number`] (`port: 0` alone
    /// is `0..=65535`); `None` for the other specs. An inverted range
    /// (`end_port < port`) is returned as is: it is empty, and
    /// [`compile`](crate::compile()) rejects it.
    pub fn range(&self) -> Option<(u16, u16)> {
        match *self {
            PortSpec::Number {
                port: 0,
                end_port: None,
                ..
            } => Some((0, u16::MAX)),
            PortSpec::Number { port, end_port, .. } => Some((port, end_port.unwrap_or(port))),
            PortSpec::Any | PortSpec::Named { .. } => None,
        }
    }
}

/// One normalized policy rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Reported in policy entries (hit counters); need not be unique.
    pub id: u32,
    /// The endpoints the rule applies to.
    pub subject: EndpointSelector,
    /// Ingress (peers are sources) or egress (peers are destinations).
    pub direction: Direction,
    /// Allow or deny.
    pub action: Action,
    /// `None`: every peer. `Some(peers)`: the union of the peers; an empty
    /// list matches no peer (the rule still counts for `default_deny`).
    pub peers: Option<Vec<Peer>>,
    /// Empty: every port and protocol. Otherwise the union of the specs.
    pub ports: Vec<PortSpec>,
    /// Whether the rule makes its subjects default-deny in its direction.
    pub default_deny: bool,
    /// Where the rule comes from, for display
    /// (`payments/checkout-api-l7-policy ingress[0]`).
    pub origin: String,
}

/// A named container port of the pods of an identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamedPort {
    /// The container port's protocol.
    pub proto: Proto,
    /// Its name.
    pub name: String,
    /// Its number.
    pub port: u16,
}

/// What the compiler knows about identities, the same for every endpoint
/// it compiles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyContext {
    /// The labels of every identity: endpoints, reserved
    /// ([`reserved_identities`](crate::reserved_identities)) and CIDR
    /// ([`CidrIdentities::identities`](crate::CidrIdentities::identities)).
    /// Selectors only match identities listed here.
    pub identities: BTreeMap<u32, LabelSet>,
    /// The addresses of identities that are not CIDR identities (pod IPs of
    /// endpoint identities across the cluster; node IPs for host and
    /// remote-node if wanted), for CIDR peers that contain pods or nodes.
    /// Identities without addresses are never matched by a CIDR peer (except
    /// `TW_ID_WORLD` by `0.0.0.0/0`).
    pub addresses: BTreeMap<u32, Vec<Ipv4Addr>>,
    /// The named container ports of each identity: the union over its pods.
    pub named_ports: BTreeMap<u32, Vec<NamedPort>>,
}

impl PolicyContext {
    /// The CIDR of a CIDR identity (a number ≥ `TW_ID_CIDR_FIRST` whose
    /// labels have a `cidr:` label).
    pub fn cidr_of(&self, id: u32) -> Option<Ipv4Net> {
        if id < TW_ID_CIDR_FIRST {
            return None;
        }
        self.identities.get(&id).and_then(identity_cidr)
    }

    /// Whether `id` is an endpoint identity this context knows.
    pub fn is_endpoint(&self, id: u32) -> bool {
        (TW_ID_CLUSTER_FIRST..TW_ID_CIDR_FIRST).contains(&id) && self.identities.contains_key(&id)
    }

    /// Whether [`Entity::World`] covers `id`.
    pub(crate) fn is_world(&self, id: u32) -> bool {
        id == TW_ID_WORLD || self.cidr_of(id).is_some()
    }

    /// Whether [`Entity::Cluster`] covers `id`.
    pub(crate) fn is_cluster(&self, id: u32) -> bool {
        CLUSTER_RESERVED.contains(&id) || self.is_endpoint(id)
    }

    /// Whether a CIDR peer (`cidr` minus `except`) covers identity `id`.
    ///
    /// - A CIDR identity is covered when its CIDR lies inside `cidr` and not
    ///   inside any `except` block. This is exact as long as every CIDR and
    ///   except block of every policy has its own CIDR identity in the
    ///   ipcache ([`policy_cidrs`]): an address resolves to the most
    ///   specific known prefix, so the addresses of an identity whose CIDR
    ///   contains an except block are exactly those outside that block.
    /// - `TW_ID_WORLD` (addresses outside every known prefix) is covered by
    ///   `0.0.0.0/0` only.
    /// - Any other identity is covered when it has addresses and *all* of
    ///   them are inside `cidr` and outside every `except` block. This is the
    ///   identity-granularity caveat: policy is per identity, so an identity
    ///   with pods both inside and outside the block is not matched at all,
    ///   not even for its pods inside.
    pub fn cidr_covers(&self, cidr: Ipv4Net, except: &[Ipv4Net], cluster: bool, id: u32) -> bool {
        if let Some(own) = self.cidr_of(id) {
            return cidr.contains(&own) && !except.iter().any(|e| e.contains(&own));
        }
        if id == TW_ID_WORLD {
            return cidr.prefix_len() == 0;
        }
        cluster
            && self.addresses.get(&id).is_some_and(|addrs| {
                !addrs.is_empty()
                    && addrs
                        .iter()
                        .all(|a| cidr.contains(a) && !except.iter().any(|e| e.contains(a)))
            })
    }

    /// The ports named `name` (restricted to `proto`) of identity `id`'s
    /// pods: `(protocol, port)` pairs.
    pub fn resolve_named(&self, id: u32, proto: Proto, name: &str) -> Vec<(Proto, u16)> {
        self.named_ports
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|np| np.name == name)
            .filter_map(|np| Some((np.proto.intersect(proto)?, np.port)))
            .collect()
    }
}

/// Every CIDR that policies mention, `cidr`s and `except` blocks alike
/// (truncated to their networks): the CIDRs to give a CIDR identity and put
/// into the ipcache. The except blocks must be there too, or their
/// addresses would resolve to the enclosing block's identity.
pub fn policy_cidrs(rules: &[Rule]) -> BTreeSet<Ipv4Net> {
    rules
        .iter()
        .flat_map(|r| r.peers.iter().flatten())
        .flat_map(|p| match p {
            Peer::Cidr { cidr, except, .. } => std::iter::once(cidr).chain(except.iter()).collect(),
            Peer::Endpoints(_) | Peer::Entity(_) => Vec::new(),
        })
        .map(Ipv4Net::trunc)
        .collect()
}
