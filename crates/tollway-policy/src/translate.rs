//! From manifests to [`Rule`]s: Kubernetes NetworkPolicy and Cilium
//! (Clusterwide)NetworkPolicy, with each API's own semantics.
//!
//! - NetworkPolicy: the `podSelector` picks pods of the policy's
//!   namespace; a policy that isolates a direction makes them default-deny
//!   there even with no rules; a rule without `from`/`to` allows every
//!   peer, a rule without `ports` every port; a peer `podSelector` is in the
//!   policy's namespace unless a `namespaceSelector` is given.
//! - CiliumNetworkPolicy: the `endpointSelector` picks endpoints of the
//!   policy's namespace, peer selectors get the implicit namespace unless
//!   they name one; a clusterwide policy's peers are any pod; a rule
//!   without L3 peers but with `toPorts` allows every peer on those ports,
//!   one without either allows nothing; `ingressDeny`/`egressDeny` always
//!   win; `enableDefaultDeny` decides default deny.
//!
//! L7 rules (`toPorts[].rules`) are not translated: the L3/L4 part of the
//! rule is enforced (the manifest gets a warning at apply time).

use std::str::FromStr;

use ipnet::Ipv4Net;
use tollway_api::{
    CidrRule, CiliumEgressRule, CiliumIngressRule, CiliumNetworkPolicy, CiliumPort, CiliumRule,
    EndpointSelector as CiliumSelector, Entity as CiliumEntity, IntOrString, L4Proto,
    LabelSelector as ApiSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, ObjectMeta,
    PolicyType, PortRule, Protocol,
};

use crate::PolicyError;
use crate::labels::LabelKey;
use crate::model::{Action, Direction, Entity, Peer, PortSpec, Proto, Rule};
use crate::selector::{EndpointSelector, LabelSelector, Operator, Requirement};

/// The rules of every policy of the cluster, numbered from 1 in the
/// order given, and the policies that could not be translated (they
/// contribute no rule; the caller reports them).
#[derive(Debug, Clone, Default)]
pub struct Translated {
    /// Every rule.
    pub rules: Vec<Rule>,
    /// `namespace/name` (or `name`) of a policy, and why it was skipped.
    pub errors: Vec<(String, PolicyError)>,
}

/// Translates every NetworkPolicy and Cilium policy; rule ids are
/// assigned in order, starting at 1.
pub fn translate_all<'a>(
    network_policies: impl IntoIterator<Item = &'a NetworkPolicy>,
    cilium_policies: impl IntoIterator<Item = &'a CiliumNetworkPolicy>,
) -> Translated {
    let mut out = Translated::default();
    let mut push = |name: String, r: Result<Vec<Rule>, PolicyError>| match r {
        Ok(rules) => out.rules.extend(rules),
        Err(e) => out.errors.push((name, e)),
    };
    for np in network_policies {
        push(policy_name(&np.metadata), network_policy_rules(np));
    }
    for p in cilium_policies {
        push(policy_name(&p.metadata), cilium_policy_rules(p));
    }
    for (i, r) in out.rules.iter_mut().enumerate() {
        r.id = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    out
}

fn policy_name(m: &ObjectMeta) -> String {
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name),
        None => m.name.clone(),
    }
}

/// A rule that allows nothing and makes its subjects default-deny in
/// `direction` (a policy that isolates a direction, even without rules).
fn isolation(subject: &EndpointSelector, direction: Direction, origin: String) -> Rule {
    Rule {
        id: 0,
        subject: subject.clone(),
        direction,
        action: Action::Allow,
        peers: Some(Vec::new()),
        ports: Vec::new(),
        default_deny: true,
        origin,
    }
}

fn untranslatable(origin: &str, field: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Untranslatable {
        origin: origin.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------
// Kubernetes NetworkPolicy

/// A NetworkPolicy rule's peers and ports.
type NpRule<'a> = (&'a [NetworkPolicyPeer], &'a [NetworkPolicyPort]);

/// The rules of one NetworkPolicy (ids 0; see [`translate_all`]).
pub fn network_policy_rules(np: &NetworkPolicy) -> Result<Vec<Rule>, PolicyError> {
    let ns = np.metadata.namespace.as_deref().unwrap_or("default");
    let name = format!("{ns}/{}", np.metadata.name);
    let subject = k8s_selector(np.pod_selector(), &name, "spec.podSelector")?.require_namespace(ns);
    let mut rules = Vec::new();
    for (direction, ty) in [
        (Direction::Ingress, PolicyType::Ingress),
        (Direction::Egress, PolicyType::Egress),
    ] {
        if !np.isolates(ty) {
            continue;
        }
        let (field, items): (&str, Vec<NpRule>) = match direction {
            Direction::Ingress => (
                "ingress",
                np.spec
                    .ingress
                    .iter()
                    .map(|r| (r.from.as_slice(), r.ports.as_slice()))
                    .collect(),
            ),
            Direction::Egress => (
                "egress",
                np.spec
                    .egress
                    .iter()
                    .map(|r| (r.to.as_slice(), r.ports.as_slice()))
                    .collect(),
            ),
        };
        // Isolation itself: default deny even without any rule.
        rules.push(isolation(&subject, direction, format!("{name} {field}")));
        for (i, (peers, ports)) in items.into_iter().enumerate() {
            let origin = format!("{name} {field}[{i}]");
            let peers = if peers.is_empty() {
                None
            } else {
                Some(
                    peers
                        .iter()
                        .enumerate()
                        .map(|(j, p)| np_peer(p, ns, &origin, j))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            };
            let ports = ports
                .iter()
                .enumerate()
                .map(|(j, p)| np_port(p, &origin, j))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule {
                id: 0,
                subject: subject.clone(),
                direction,
                action: Action::Allow,
                peers,
                ports,
                default_deny: true,
                origin,
            });
        }
    }
    Ok(rules)
}

fn np_peer(p: &NetworkPolicyPeer, ns: &str, origin: &str, j: usize) -> Result<Peer, PolicyError> {
    let field = |f: &str| format!("peers[{j}].{f}");
    if let Some(block) = &p.ip_block {
        let cidr = parse_cidr(&block.cidr, origin, &field("ipBlock.cidr"))?;
        let except = block
            .except
            .iter()
            .map(|e| parse_cidr(e, origin, &field("ipBlock.except")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Peer::Cidr {
            cidr,
            except,
            cluster: true,
        });
    }
    let pods = p
        .pod_selector
        .as_ref()
        .map(|s| k8s_selector(s, origin, &field("podSelector")))
        .transpose()?;
    let sel = match (&p.namespace_selector, pods) {
        (Some(nsel), pods) => {
            let nsel = plain_selector(nsel, origin, &field("namespaceSelector"))?;
            let out = EndpointSelector::for_namespace_selector(&nsel);
            match pods {
                Some(pods) => out.and(pods),
                None => out,
            }
        }
        (None, Some(pods)) => pods.require_namespace(ns),
        (None, None) => {
            return Err(untranslatable(
                origin,
                &format!("peers[{j}]"),
                "a peer needs podSelector, namespaceSelector or ipBlock",
            ));
        }
    };
    Ok(Peer::Endpoints(sel))
}

fn np_port(p: &NetworkPolicyPort, origin: &str, j: usize) -> Result<PortSpec, PolicyError> {
    let proto = match p.protocol() {
        Protocol::Tcp => Proto::Tcp,
        Protocol::Udp => Proto::Udp,
        Protocol::Sctp => {
            return Err(untranslatable(
                origin,
                &format!("ports[{j}].protocol"),
                "SCTP is not supported",
            ));
        }
    };
    let port_num = |n: i64, f: &str| {
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| untranslatable(origin, &format!("ports[{j}].{f}"), "must be 1-65535"))
    };
    Ok(match &p.port {
        None => PortSpec::Number {
            proto,
            port: 0,
            end_port: None,
        },
        Some(IntOrString::Int(n)) => PortSpec::Number {
            proto,
            port: port_num(*n, "port")?,
            end_port: p.end_port.map(|e| port_num(e, "endPort")).transpose()?,
        },
        Some(IntOrString::String(name)) => PortSpec::Named {
            proto,
            name: name.clone(),
        },
    })
}

/// A NetworkPolicy selector: plain Kubernetes label keys, which are the
/// `k8s:` labels of an identity.
fn k8s_selector(
    s: &ApiSelector,
    origin: &str,
    field: &str,
) -> Result<EndpointSelector, PolicyError> {
    let plain = plain_selector(s, origin, field)?;
    Ok(EndpointSelector {
        match_labels: plain
            .match_labels
            .iter()
            .map(|(k, v)| (LabelKey::k8s(k), v.clone()))
            .collect(),
        match_expressions: plain
            .match_expressions
            .into_iter()
            .map(|(k, operator, values)| Requirement {
                key: LabelKey::k8s(&k),
                operator,
                values,
            })
            .collect(),
    })
}

/// The manifest's selector with its operators parsed, keys untouched.
fn plain_selector(
    s: &ApiSelector,
    origin: &str,
    field: &str,
) -> Result<LabelSelector, PolicyError> {
    let match_expressions = s
        .match_expressions
        .iter()
        .map(|r| {
            let op = Operator::from_str(&r.operator).map_err(|e| {
                untranslatable(origin, &format!("{field}.matchExpressions"), e.to_string())
            })?;
            Ok((r.key.clone(), op, r.values.clone()))
        })
        .collect::<Result<Vec<_>, PolicyError>>()?;
    Ok(LabelSelector {
        match_labels: s.match_labels.clone(),
        match_expressions,
    })
}

fn parse_cidr(s: &str, origin: &str, field: &str) -> Result<Ipv4Net, PolicyError> {
    let s = s.trim();
    // A bare address is a /32 (Cilium accepts it in fromCIDR).
    let parsed = if s.contains('/') {
        s.parse::<Ipv4Net>().ok()
    } else {
        s.parse::<std::net::Ipv4Addr>().ok().map(Ipv4Net::from)
    };
    parsed
        .map(|n| n.trunc())
        .ok_or_else(|| untranslatable(origin, field, format!("{s:?} is not an IPv4 CIDR")))
}

// ---------------------------------------------------------------------------
// Cilium (Clusterwide)NetworkPolicy

/// The rules of one CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy
/// (ids 0; see [`translate_all`]).
pub fn cilium_policy_rules(p: &CiliumNetworkPolicy) -> Result<Vec<Rule>, PolicyError> {
    let ns = if p.is_clusterwide() {
        None
    } else {
        Some(p.metadata.namespace.as_deref().unwrap_or("default"))
    };
    let name = match ns {
        Some(ns) => format!("{ns}/{}", p.metadata.name),
        None => p.metadata.name.clone(),
    };
    let mut rules = Vec::new();
    for (path, rule) in p.rules() {
        let base = format!("{name} {path}");
        cilium_rule(rule, ns, &base, &mut rules)?;
    }
    Ok(rules)
}

/// One direction's worth of a Cilium rule, generic over ingress/egress.
struct CiliumPeers<'a> {
    endpoints: &'a [CiliumSelector],
    cidrs: &'a [String],
    cidr_sets: &'a [CidrRule],
    entities: &'a [CiliumEntity],
    to_ports: &'a [PortRule],
}

impl<'a> From<&'a CiliumIngressRule> for CiliumPeers<'a> {
    fn from(r: &'a CiliumIngressRule) -> Self {
        CiliumPeers {
            endpoints: &r.from_endpoints,
            cidrs: &r.from_cidr,
            cidr_sets: &r.from_cidr_set,
            entities: &r.from_entities,
            to_ports: &r.to_ports,
        }
    }
}

impl<'a> From<&'a CiliumEgressRule> for CiliumPeers<'a> {
    fn from(r: &'a CiliumEgressRule) -> Self {
        CiliumPeers {
            endpoints: &r.to_endpoints,
            cidrs: &r.to_cidr,
            cidr_sets: &r.to_cidr_set,
            entities: &r.to_entities,
            to_ports: &r.to_ports,
        }
    }
}

/// A list of Cilium rules of one direction: its field name, and whether
/// it allows or denies.
type CiliumList<'a> = (&'static str, Action, Vec<CiliumPeers<'a>>);

fn cilium_rule(
    rule: &CiliumRule,
    ns: Option<&str>,
    base: &str,
    out: &mut Vec<Rule>,
) -> Result<(), PolicyError> {
    if rule.node_selector.is_some() {
        return Err(untranslatable(
            base,
            "nodeSelector",
            "host policies are not supported",
        ));
    }
    let Some(sel) = &rule.endpoint_selector else {
        return Err(untranslatable(base, "endpointSelector", "required"));
    };
    let subject = cilium_selector(sel, base, "endpointSelector")?;
    let subject = match ns {
        Some(ns) => subject.require_namespace(ns),
        None => subject,
    };
    let directions: [(Direction, bool, Vec<CiliumList>); 2] = [
        (
            Direction::Ingress,
            rule.default_deny_ingress(),
            vec![
                (
                    "ingress",
                    Action::Allow,
                    rule.ingress.iter().map(CiliumPeers::from).collect(),
                ),
                (
                    "ingressDeny",
                    Action::Deny,
                    rule.ingress_deny.iter().map(CiliumPeers::from).collect(),
                ),
            ],
        ),
        (
            Direction::Egress,
            rule.default_deny_egress(),
            vec![
                (
                    "egress",
                    Action::Allow,
                    rule.egress.iter().map(CiliumPeers::from).collect(),
                ),
                (
                    "egressDeny",
                    Action::Deny,
                    rule.egress_deny.iter().map(CiliumPeers::from).collect(),
                ),
            ],
        ),
    ];
    for (direction, default_deny, lists) in directions {
        if default_deny {
            out.push(isolation(
                &subject,
                direction,
                format!("{base}.{direction}"),
            ));
        }
        for (field, action, items) in lists {
            for (i, item) in items.iter().enumerate() {
                let origin = format!("{base}.{field}[{i}]");
                let peers = cilium_peers(item, ns, &origin)?;
                let ports = cilium_ports(item.to_ports, &origin)?;
                // No L3 peer: every peer on the given ports, or nothing at
                // all when no ports are given either (Cilium: `{}` allows
                // nothing).
                let peers = match peers {
                    Some(p) => Some(p),
                    None if item.to_ports.is_empty() => Some(Vec::new()),
                    None => None,
                };
                out.push(Rule {
                    id: 0,
                    subject: subject.clone(),
                    direction,
                    action,
                    peers,
                    ports,
                    default_deny,
                    origin,
                });
            }
        }
    }
    Ok(())
}

/// `None` when the rule names no L3 peer at all.
fn cilium_peers(
    item: &CiliumPeers<'_>,
    ns: Option<&str>,
    origin: &str,
) -> Result<Option<Vec<Peer>>, PolicyError> {
    let mut peers = Vec::new();
    let mut any_l3 = false;
    for (j, s) in item.endpoints.iter().enumerate() {
        any_l3 = true;
        let sel = cilium_selector(s, origin, &format!("endpoints[{j}]"))?;
        let sel = match ns {
            Some(ns) => sel.in_namespace(ns),
            None => sel.in_any_namespace(),
        };
        peers.push(Peer::Endpoints(sel));
    }
    for (j, c) in item.cidrs.iter().enumerate() {
        any_l3 = true;
        peers.push(Peer::Cidr {
            cidr: parse_cidr(c, origin, &format!("cidr[{j}]"))?,
            except: Vec::new(),
            cluster: false,
        });
    }
    for (j, set) in item.cidr_sets.iter().enumerate() {
        any_l3 = true;
        let field = format!("cidrSet[{j}]");
        let Some(cidr) = &set.cidr else {
            return Err(untranslatable(
                origin,
                &field,
                "only `cidr` is supported (cidrGroupRef/cidrGroupSelector are not)",
            ));
        };
        peers.push(Peer::Cidr {
            cidr: parse_cidr(cidr, origin, &format!("{field}.cidr"))?,
            except: set
                .except
                .iter()
                .map(|e| parse_cidr(e, origin, &format!("{field}.except")))
                .collect::<Result<Vec<_>, _>>()?,
            cluster: false,
        });
    }
    for e in item.entities {
        any_l3 = true;
        if let Some(entity) = entity(*e) {
            peers.push(Peer::Entity(entity));
        }
    }
    Ok(any_l3.then_some(peers))
}

/// Cilium's entities; those with no identity in Tollway (IPv6 world, the
/// ingress proxy, `none`) select nothing.
fn entity(e: CiliumEntity) -> Option<Entity> {
    Some(match e {
        CiliumEntity::World | CiliumEntity::WorldIpv4 => Entity::World,
        CiliumEntity::Cluster => Entity::Cluster,
        CiliumEntity::Host => Entity::Host,
        CiliumEntity::RemoteNode => Entity::RemoteNode,
        CiliumEntity::KubeApiserver => Entity::KubeApiserver,
        CiliumEntity::Init => Entity::Init,
        CiliumEntity::Health => Entity::Health,
        CiliumEntity::Unmanaged => Entity::Unmanaged,
        CiliumEntity::All => Entity::All,
        CiliumEntity::WorldIpv6 | CiliumEntity::Ingress | CiliumEntity::None => return None,
    })
}

fn cilium_ports(to_ports: &[PortRule], origin: &str) -> Result<Vec<PortSpec>, PolicyError> {
    let mut out = Vec::new();
    for (i, pr) in to_ports.iter().enumerate() {
        if pr.ports.is_empty() {
            // A port rule without ports covers every port.
            return Ok(Vec::new());
        }
        for (j, pp) in pr.ports.iter().enumerate() {
            let field = format!("toPorts[{i}].ports[{j}]");
            let proto = match pp.protocol() {
                L4Proto::Tcp => Proto::Tcp,
                L4Proto::Udp => Proto::Udp,
                L4Proto::Any => Proto::Any,
                L4Proto::Sctp => {
                    return Err(untranslatable(
                        origin,
                        &format!("{field}.protocol"),
                        "SCTP is not supported",
                    ));
                }
            };
            out.push(match pp.port() {
                CiliumPort::All => PortSpec::Number {
                    proto,
                    port: 0,
                    end_port: None,
                },
                CiliumPort::Number(n) => {
                    let port = u16::try_from(n).map_err(|_| {
                        untranslatable(origin, &format!("{field}.port"), "must be 1-65535")
                    })?;
                    let end_port = pp
                        .end_port
                        .map(|e| {
                            u16::try_from(e).map_err(|_| {
                                untranslatable(
                                    origin,
                                    &format!("{field}.endPort"),
                                    "must be 1-65535",
                                )
                            })
                        })
                        .transpose()?
                        .filter(|e| *e != 0);
                    PortSpec::Number {
                        proto,
                        port,
                        end_port,
                    }
                }
                CiliumPort::Named(name) => PortSpec::Named {
                    proto,
                    name: name.to_string(),
                },
            });
        }
    }
    Ok(out)
}

/// A Cilium selector: keys may carry a source (`k8s:app`); without one
/// they match any source.
fn cilium_selector(
    s: &CiliumSelector,
    origin: &str,
    field: &str,
) -> Result<EndpointSelector, PolicyError> {
    let plain = plain_selector(s.selector(), origin, field)?;
    EndpointSelector::from_label_selector(&plain)
        .map_err(|e| untranslatable(origin, field, e.to_string()))
}

#[cfg(test)]
mod tests;
