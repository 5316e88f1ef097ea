//! Services, Pods and EndpointSlices → the frontends this node serves
//! ([`DesiredService`]), following Kubernetes' endpoint and traffic-policy
//! rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use tollway_api::{
    AddressType, EndpointSlice, IntOrString, Ipv4Cidr, Pod, Protocol, Service, ServiceType,
    SessionAffinity, TrafficPolicy,
};

use crate::model::{
    Algorithm, BackendAddr, DesiredService, Frontend, FrontendKind, LbConfig, NodeContext, Proto,
    Scope, ServiceName, SourceRange,
};

mod index;
mod slices;

pub use index::{PodIndex, affected_services};
pub use slices::SliceIndex;
pub(crate) use slices::service_of;

/// The annotations that choose a service's algorithm; the first present one
/// wins.
const ALGORITHM_ANNOTATIONS: [&str; 2] =
    ["tollway.io/lb-algorithm", "service.cilium.io/lb-algorithm"];

/// Default `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// Something in the desired state worth telling the user; the affected
/// service is still served as well as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesiredWarning {
    /// An algorithm annotation has a value other than `maglev` or `random`;
    /// the default algorithm is used.
    BadAlgorithm {
        /// `namespace/name`.
        service: String,
        /// The annotation key.
        annotation: &'static str,
        /// Its value.
        value: String,
        /// The algorithm used instead.
        used: Algorithm,
    },
    /// The cluster IP is not an IPv4 address; the service is skipped.
    BadClusterIp {
        /// `namespace/name`.
        service: String,
        /// The cluster IP as given.
        value: String,
    },
    /// A port's protocol is not TCP or UDP; the port is skipped.
    UnsupportedProtocol {
        /// `namespace/name`.
        service: String,
        /// The service port.
        port: i64,
        /// Its protocol.
        protocol: Protocol,
    },
    /// Two services claim the same frontend; the first (by namespace and
    /// name) keeps it.
    DuplicateFrontend {
        /// The frontend.
        frontend: Frontend,
        /// The service that keeps it.
        kept: ServiceName,
        /// The service that does not get it.
        dropped: ServiceName,
    },
}

impl fmt::Display for DesiredWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DesiredWarning::BadAlgorithm {
                service,
                annotation,
                value,
                used,
            } => write!(
                f,
                "service {service}: annotation {annotation}: {value:?} is not \"maglev\" or \"random\"; using {used}"
            ),
            DesiredWarning::BadClusterIp { service, value } => write!(
                f,
                "service {service}: cluster IP {value:?} is not an IPv4 address; not load balanced"
            ),
            DesiredWarning::UnsupportedProtocol {
                service,
                port,
                protocol,
            } => write!(
                f,
                "service {service}: port {port}/{protocol} is not supported (TCP or UDP); skipped"
            ),
            DesiredWarning::DuplicateFrontend {
                frontend,
                kept,
                dropped,
            } => write!(
                f,
                "frontend {frontend} is claimed by {kept} and {dropped}; {kept} keeps it"
            ),
        }
    }
}

/// The frontends this node serves, sorted by frontend, and warnings.
///
/// Rules (Kubernetes', as kube-proxy and Cilium apply them):
/// - headless services (`clusterIP: None`), ExternalName services and
///   services without a cluster IP are skipped;
/// - a service with a selector: endpoints are the pods of the service's
///   namespace whose labels contain every selector pair, that have a node,
///   an IPv4 pod IP and are not `Succeeded`/`Failed`; terminating pods
///   (`deletionTimestamp` set) go to [`DesiredService::terminating`]
///   (established flows only); other pods are active when ready, or always
///   with `publishNotReadyAddresses: true`; `targetPort` is a number, or the
///   name of a pod's container port of the same protocol (pods without one
///   are left out for that port), or the service port when unset;
/// - a service without a selector: endpoints come from the IPv4
///   EndpointSlices of its namespace labelled `kubernetes.io/service-name:
///   <service>` (others are ignored): a slice port serves the service port
///   of the same name (both may be empty) and protocol, at the slice port's
///   `port`; an endpoint is active when `ready` (unset: ready), terminating
///   (established flows only) when not ready but `serving` and
///   `terminating`, else left out; an address in several slices counts once
///   (active if it is active in any); `nodeName` equal to this node makes it
///   local; with no slice a service has frontends without backends (they
///   reject);
/// - each port gets a ClusterIP frontend (only this node's endpoints with
///   `internalTrafficPolicy: Local`); NodePort and LoadBalancer services
///   also get one on `node.node_ip` and each node port; LoadBalancer
///   services one on each IPv4 `status.loadBalancer.ingress[].ip` (not the
///   `ipMode: Proxy` ones), and any service but ExternalName one on each
///   IPv4 `spec.externalIPs` entry, at the service port (an address used
///   twice by one service counts once);
///   with `externalTrafficPolicy: Local` each of these external-scope
///   frontends keeps only this node's endpoints and an internal-scope twin
///   (for in-cluster sources) has all of them;
/// - the algorithm comes from the `tollway.io/lb-algorithm` or
///   `service.cilium.io/lb-algorithm` annotation (`maglev`, `random`),
///   else `cfg.default_algorithm`;
/// - `sessionAffinity: ClientIP` sets the affinity timeout (default 10800 s);
/// - a LoadBalancer service's `loadBalancerSourceRanges` restrict its
///   external-scope LoadBalancer frontends to the clients in one of its IPv4
///   ranges ([`DesiredService::source_ranges`]; a list of IPv6 ranges only
///   admits no IPv4 client); node ports, cluster IPs and external IPs are
///   not restricted (Cilium's default), nor is the internal-scope twin
///   in-cluster clients use.
pub fn desired_services(
    services: &[&Service],
    pods: &[&Pod],
    slices: &[&EndpointSlice],
    node: &NodeContext,
    cfg: &LbConfig,
) -> (Vec<DesiredService>, Vec<DesiredWarning>) {
    let mut by_ns: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        by_ns
            .entry(p.metadata.namespace_or_default())
            .or_default()
            .push(p);
    }
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if let Some(name) = s.service_name() {
            by_service
                .entry((s.metadata.namespace_or_default(), name))
                .or_default()
                .push(s);
        }
    }
    collect(
        services,
        &|svc| {
            let ns_pods = by_ns
                .get(svc.metadata.namespace_or_default())
                .map_or(&[][..], Vec::as_slice);
            select(&svc.spec.selector, ns_pods.iter().copied())
        },
        &|svc| {
            by_service
                .get(&(
                    svc.metadata.namespace_or_default(),
                    svc.metadata.name.as_str(),
                ))
                .cloned()
                .unwrap_or_default()
        },
        node,
        cfg,
    )
}

/// [`desired_services`] with the pods taken from a [`PodIndex`] and the
/// slices from a [`SliceIndex`]: the same result as
/// `desired_services(services, all pods, all slices, ..)`, at a cost
/// proportional to the given services and the pods (found through the
/// index's label postings) and slices they use, not to all of them.
///
/// For a subset of the services (the ones that changed, or those
/// [`affected_services`] names for a changed pod) the result is exactly the
/// subset's part of the full result *unless* a frontend is contested by a
/// service outside the subset: [`DesiredWarning::DuplicateFrontend`]
/// resolution needs every claimant. [`DesiredState`](crate::DesiredState)
/// keeps the claims and resolves that for you.
pub fn desired_services_indexed(
    services: &[&Service],
    pods: &PodIndex,
    slices: &SliceIndex,
    node: &NodeContext,
    cfg: &LbConfig,
) -> (Vec<DesiredService>, Vec<DesiredWarning>) {
    collect(
        services,
        &|svc| pods.selected(svc.metadata.namespace_or_default(), &svc.spec.selector),
        &|svc| slices.of_service(svc.metadata.namespace_or_default(), &svc.metadata.name),
        node,
        cfg,
    )
}

/// Where a service's endpoints come from: the pods its selector selects,
/// and (for a service without a selector) its EndpointSlices.
pub(crate) type PodSource<'a, 'p> = &'a dyn Fn(&Service) -> Vec<&'p Pod>;
/// The EndpointSlices of a service (see [`PodSource`]).
pub(crate) type SliceSource<'a, 'p> = &'a dyn Fn(&Service) -> Vec<&'p EndpointSlice>;

/// The pods `selector` selects: every pair must be among the labels; an
/// empty selector selects nothing (selector-less services' endpoints are not
/// managed here).
fn select<'p>(
    selector: &BTreeMap<String, String>,
    pods: impl Iterator<Item = &'p Pod>,
) -> Vec<&'p Pod> {
    if selector.is_empty() {
        return Vec::new();
    }
    pods.filter(|p| selector_matches(selector, &p.metadata.labels))
        .collect()
}

/// Whether a non-empty `selector` selects an object with `labels`.
pub(crate) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn collect<'p>(
    services: &[&Service],
    select: PodSource<'_, 'p>,
    slices: SliceSource<'_, 'p>,
    node: &NodeContext,
    cfg: &LbConfig,
) -> (Vec<DesiredService>, Vec<DesiredWarning>) {
    let mut services = services.to_vec();
    services.sort_by(|a, b| {
        (a.metadata.namespace_or_default(), &a.metadata.name)
            .cmp(&(b.metadata.namespace_or_default(), &b.metadata.name))
    });

    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for svc in services {
        service_frontends(svc, select, slices, node, cfg, &mut out, &mut warnings);
    }

    // Stable: among equal frontends the first service (by name) stays first.
    out.sort_by_key(|d| d.frontend);
    let mut deduped: Vec<DesiredService> = Vec::with_capacity(out.len());
    for d in out {
        match deduped.last() {
            Some(last) if last.frontend == d.frontend => {
                warnings.push(DesiredWarning::DuplicateFrontend {
                    frontend: d.frontend,
                    kept: last.service.clone(),
                    dropped: d.service,
                });
            }
            _ => deduped.push(d),
        }
    }
    (deduped, warnings)
}

/// The endpoints of one service port.
#[derive(Debug, Clone, Default)]
struct Endpoints {
    backends: Vec<BackendAddr>,
    terminating: Vec<BackendAddr>,
    local: BTreeSet<BackendAddr>,
}

impl Endpoints {
    fn only_local(&self) -> Endpoints {
        let keep = |v: &[BackendAddr]| -> Vec<BackendAddr> {
            v.iter()
                .filter(|b| self.local.contains(b))
                .copied()
                .collect()
        };
        Endpoints {
            backends: keep(&self.backends),
            terminating: keep(&self.terminating),
            local: self.local.clone(),
        }
    }
}

/// What every frontend of one service shares.
struct Common {
    algorithm: Algorithm,
    affinity_timeout: Option<u32>,
    /// For its external-scope LoadBalancer frontends.
    source_ranges: Option<Vec<SourceRange>>,
}

/// The frontends of one service, before duplicates across services are
/// resolved, in port order; `select` gives the pods its selector selects,
/// `slices` its EndpointSlices (used when it has no selector).
pub(crate) fn service_frontends<'p>(
    svc: &Service,
    select: PodSource<'_, 'p>,
    slices: SliceSource<'_, 'p>,
    node: &NodeContext,
    cfg: &LbConfig,
    out: &mut Vec<DesiredService>,
    warnings: &mut Vec<DesiredWarning>,
) {
    let ty = svc.service_type();
    if svc.is_headless() || ty == ServiceType::ExternalName {
        return;
    }
    let spec = &svc.spec;
    let namespace = svc.metadata.namespace_or_default();
    let full_name = format!("{namespace}/{}", svc.metadata.name);
    let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .or(spec.cluster_ips.first().map(String::as_str))
        .filter(|s| !s.is_empty())
    else {
        return;
    };
    let Ok(cluster_ip) = ip.parse::<Ipv4Addr>() else {
        warnings.push(DesiredWarning::BadClusterIp {
            service: full_name,
            value: ip.to_string(),
        });
        return;
    };

    let common = Common {
        algorithm: algorithm_of(svc, &full_name, cfg, warnings),
        affinity_timeout: affinity_of(svc),
        source_ranges: source_ranges_of(svc),
    };
    let itp_local = spec.internal_traffic_policy == Some(TrafficPolicy::Local);
    let node_port = matches!(ty, ServiceType::NodePort | ServiceType::LoadBalancer);
    let etp_local = svc.is_externally_accessible()
        && spec.external_traffic_policy == Some(TrafficPolicy::Local);
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    // A selector makes the pods the source, as today on a real cluster
    // too (its EndpointSlice controller derives the same from them).
    let from_slices = spec.selector.is_empty();
    let selected = if from_slices { Vec::new() } else { select(svc) };
    let own_slices = if from_slices { slices(svc) } else { Vec::new() };
    // The load balancer's IPs, then the external IPs (IPv4: the others
    // are warned about at apply time), each once.
    let mut seen = BTreeSet::from([cluster_ip]);
    let lb_ips = svc
        .load_balancer_ips()
        .filter(|_| ty == ServiceType::LoadBalancer)
        .map(|ip| (ip, FrontendKind::LoadBalancer));
    let external_ips = spec
        .external_ips
        .iter()
        .map(|ip| (ip.as_str(), FrontendKind::ExternalIps));
    let external: Vec<(Ipv4Addr, FrontendKind)> = lb_ips
        .chain(external_ips)
        .filter_map(|(ip, kind)| Some((ip.parse::<Ipv4Addr>().ok()?, kind)))
        .filter(|(ip, _)| seen.insert(*ip))
        .collect();

    for port in &spec.ports {
        let Some(proto) = Proto::from_protocol(port.protocol()) else {
            warnings.push(DesiredWarning::UnsupportedProtocol {
                service: full_name.clone(),
                port: port.port,
                protocol: port.protocol(),
            });
            continue;
        };
        // Validation guarantees 1-65535.
        let Some(svc_port) = valid_port(port.port) else {
            continue;
        };
        let eps = if from_slices {
            slice_endpoints(&own_slices, port.name.as_deref().unwrap_or(""), proto, node)
        } else {
            endpoints(
                &selected,
                port.target_port.as_ref(),
                svc_port,
                proto,
                node,
                publish_not_ready,
            )
        };
        let name = ServiceName {
            namespace: namespace.to_string(),
            name: svc.metadata.name.clone(),
            port_name: port.name.clone(),
        };
        let frontend = |address, port, scope| Frontend {
            address,
            port,
            proto,
            scope,
        };
        let cluster_eps = if itp_local {
            eps.only_local()
        } else {
            eps.clone()
        };
        out.push(make(
            frontend(cluster_ip, svc_port, Scope::External),
            FrontendKind::ClusterIp,
            &name,
            cluster_eps,
            &common,
            false,
            false,
        ));
        let np = port.node_port.and_then(valid_port).filter(|_| node_port);
        let addresses = np
            .map(|np| (node.node_ip, np, FrontendKind::NodePort))
            .into_iter()
            .chain(external.iter().map(|(ip, kind)| (*ip, svc_port, *kind)));
        for (address, port, kind) in addresses {
            if etp_local {
                out.push(make(
                    frontend(address, port, Scope::External),
                    kind,
                    &name,
                    eps.only_local(),
                    &common,
                    true,
                    true,
                ));
                out.push(make(
                    frontend(address, port, Scope::Internal),
                    kind,
                    &name,
                    eps.clone(),
                    &common,
                    false,
                    true,
                ));
            } else {
                out.push(make(
                    frontend(address, port, Scope::External),
                    kind,
                    &name,
                    eps.clone(),
                    &common,
                    false,
                    false,
                ));
            }
        }
    }
}

fn make(
    frontend: Frontend,
    kind: FrontendKind,
    service: &ServiceName,
    eps: Endpoints,
    common: &Common,
    etp_local: bool,
    two_scopes: bool,
) -> DesiredService {
    DesiredService {
        frontend,
        kind,
        service: service.clone(),
        backends: eps.backends,
        terminating: eps.terminating,
        local: eps.local,
        algorithm: common.algorithm,
        affinity_timeout: common.affinity_timeout,
        etp_local,
        two_scopes,
        source_ranges: (kind == FrontendKind::LoadBalancer && frontend.scope == Scope::External)
            .then(|| common.source_ranges.clone())
            .flatten(),
    }
}

/// `spec.loadBalancerSourceRanges`: `None` when the list is empty (or the
/// service no LoadBalancer), else its IPv4 ranges, host bits cleared,
/// sorted and deduplicated. Entries that are no IPv4 CIDR (IPv6 ones:
/// validation refuses anything else) admit nobody, so they are left out,
/// not dropped with the restriction.
fn source_ranges_of(svc: &Service) -> Option<Vec<SourceRange>> {
    let mut listed = false;
    let mut out: Vec<SourceRange> = svc
        .load_balancer_source_ranges()
        .inspect(|_| listed = true)
        .filter_map(|r| Ipv4Cidr::parse(r).ok())
        .filter_map(|c| SourceRange::new(c.addr, c.prefix_len))
        .collect();
    out.sort();
    out.dedup();
    listed.then_some(out)
}

fn valid_port(p: i64) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

fn algorithm_of(
    svc: &Service,
    full_name: &str,
    cfg: &LbConfig,
    warnings: &mut Vec<DesiredWarning>,
) -> Algorithm {
    let annotations = &svc.metadata.annotations;
    let Some((key, value)) = ALGORITHM_ANNOTATIONS
        .iter()
        .find_map(|k| annotations.get(*k).map(|v| (*k, v)))
    else {
        return cfg.default_algorithm;
    };
    Algorithm::parse(value).unwrap_or_else(|| {
        warnings.push(DesiredWarning::BadAlgorithm {
            service: full_name.to_string(),
            annotation: key,
            value: value.clone(),
            used: cfg.default_algorithm,
        });
        cfg.default_algorithm
    })
}

fn affinity_of(svc: &Service) -> Option<u32> {
    if svc.spec.session_affinity != Some(SessionAffinity::ClientIP) {
        return None;
    }
    let t = svc
        .spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .and_then(|t| u32::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_AFFINITY_TIMEOUT);
    Some(t)
}

fn endpoints(
    pods: &[&Pod],
    target: Option<&IntOrString>,
    svc_port: u16,
    proto: Proto,
    node: &NodeContext,
    publish_not_ready: bool,
) -> Endpoints {
    let mut eps = Endpoints::default();
    for pod in pods {
        let Some(node_name) = pod.spec.node_name.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let Some(ip) = pod.pod_ip().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        if matches!(pod.phase(), "Succeeded" | "Failed") {
            continue;
        }
        let terminating = pod.metadata.is_terminating();
        if !terminating && !pod.is_ready() && !publish_not_ready {
            continue;
        }
        let Some(port) = target_port(pod, target, svc_port, proto) else {
            continue;
        };
        let addr = BackendAddr {
            address: ip,
            port,
            proto,
        };
        if terminating {
            eps.terminating.push(addr);
        } else {
            eps.backends.push(addr);
        }
        if node_name == node.node_name {
            eps.local.insert(addr);
        }
    }
    eps.terminating.sort();
    eps.terminating.dedup();
    // The flag describes the pod behind the address: terminating wins.
    eps.backends
        .retain(|b| eps.terminating.binary_search(b).is_err());
    eps.backends.sort();
    eps.backends.dedup();
    eps
}

/// The endpoints of one service port from the service's EndpointSlices
/// (the rules of [`desired_services`]).
fn slice_endpoints(
    slices: &[&EndpointSlice],
    port_name: &str,
    proto: Proto,
    node: &NodeContext,
) -> Endpoints {
    let mut eps = Endpoints::default();
    for slice in slices {
        if slice.address_type != AddressType::IPv4 {
            continue;
        }
        let ports = slice
            .ports
            .iter()
            .filter(|p| p.name() == port_name && Proto::from_protocol(p.protocol()) == Some(proto));
        for sp in ports {
            // No port number: nothing to send to.
            let Some(port) = sp.port.and_then(valid_port) else {
                continue;
            };
            for ep in &slice.endpoints {
                let c = ep.conditions;
                let active = c.is_ready();
                let draining = c.is_serving() && c.is_terminating();
                if !(active || draining) {
                    continue;
                }
                let local = !node.node_name.is_empty()
                    && ep.node_name.as_deref() == Some(node.node_name.as_str());
                for a in &ep.addresses {
                    let Ok(address) = a.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    let addr = BackendAddr {
                        address,
                        port,
                        proto,
                    };
                    if active {
                        eps.backends.push(addr);
                    } else {
                        eps.terminating.push(addr);
                    }
                    if local {
                        eps.local.insert(addr);
                    }
                }
            }
        }
    }
    eps.backends.sort();
    eps.backends.dedup();
    // The same endpoint in two slices (while it moves): active wins.
    eps.terminating
        .retain(|b| eps.backends.binary_search(b).is_err());
    eps.terminating.sort();
    eps.terminating.dedup();
    eps
}

fn target_port(
    pod: &Pod,
    target: Option<&IntOrString>,
    svc_port: u16,
    proto: Proto,
) -> Option<u16> {
    match target {
        None => Some(svc_port),
        Some(IntOrString::Int(n)) => valid_port(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && Proto::from_protocol(p.protocol.unwrap_or(Protocol::Tcp)) == Some(proto)
            })
            .and_then(|p| valid_port(p.container_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollway_api::{Object, PodCondition, PodStatus, decode, parse_documents};

    fn node() -> NodeContext {
        NodeContext {
            node_name: "node-a".into(),
            node_ip: Ipv4Addr::new(192, 168, 10, 2),
        }
    }

    fn object(yaml: &str) -> Object {
        let docs = parse_documents("t.yaml", yaml).unwrap();
        decode(&docs[0]).unwrap().object
    }

    fn service(yaml: &str) -> Service {
        match object(yaml) {
            Object::Service(s) => s,
            o => panic!("not a service: {o:?}"),
        }
    }

    /// A pod with the given labels and container ports, placed on `node`
    /// with `ip`, ready or not.
    fn pod(name: &str, extra_meta: &str, ports: &str, node: &str, ip: &str, ready: bool) -> Pod {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  labels:\n    app: web\n{extra_meta}spec:\n  containers:\n  - name: c\n    image: x\n{ports}"
        );
        let Object::Pod(mut p) = object(&yaml) else {
            panic!("not a pod")
        };
        p.spec.node_name = Some(node.into());
        p.status = Some(PodStatus {
            phase: "Running".into(),
            pod_ip: Some(ip.into()),
            conditions: vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: None,
            }],
            ..PodStatus::default()
        });
        p
    }

    const HTTP_PORTS: &str = "    ports:\n    - name: http\n      containerPort: 8080\n";
    const TERMINATING: &str = "  deletionTimestamp: \"2024-05-01T10:00:00Z\"\n";

    fn svc_yaml(extra_spec: &str, ports: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  clusterIP: 10.96.0.20\n  selector:\n    app: web\n{extra_spec}  ports:\n{ports}"
        )
    }

    const ONE_PORT: &str = "  - name: http\n    port: 80\n    targetPort: 8080\n";

    fn run(svc: &Service, pods: &[Pod]) -> (Vec<DesiredService>, Vec<DesiredWarning>) {
        let pods: Vec<&Pod> = pods.iter().collect();
        desired_services(&[svc], &pods, &[], &node(), &LbConfig::default())
    }

    fn be(ip: &str, port: u16) -> BackendAddr {
        BackendAddr {
            address: ip.parse().unwrap(),
            port,
            proto: Proto::Tcp,
        }
    }

    fn fe(ip: &str, port: u16, scope: Scope) -> Frontend {
        Frontend {
            address: ip.parse().unwrap(),
            port,
            proto: Proto::Tcp,
            scope,
        }
    }

    #[test]
    fn cluster_ip_with_ready_backends() {
        let s = service(&svc_yaml("", ONE_PORT));
        let pods = [
            pod("b", "", HTTP_PORTS, "node-b", "10.244.2.5", true),
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
        ];
        let (d, w) = run(&s, &pods);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(d.len(), 1);
        let d = &d[0];
        assert_eq!(d.frontend, fe("10.96.0.20", 80, Scope::External));
        assert_eq!(d.kind, FrontendKind::ClusterIp);
        assert_eq!(d.service.to_string(), "shop/web:http");
        assert_eq!(d.backends, [be("10.244.1.5", 8080), be("10.244.2.5", 8080)]);
        assert!(d.terminating.is_empty());
        assert_eq!(d.local, BTreeSet::from([be("10.244.1.5", 8080)]));
        assert_eq!(d.algorithm, Algorithm::Random);
        assert_eq!(d.affinity_timeout, None);
        assert!(!d.etp_local && !d.two_scopes);
        assert_eq!(d.flags(), crate::flags::TW_SVC_F_CLUSTERIP);
    }

    #[test]
    fn selector_must_match_in_the_same_namespace() {
        let s = service(&svc_yaml("", ONE_PORT));
        let mut other_ns = pod("p-x", "", HTTP_PORTS, "node-a", "10.244.1.7", true);
        other_ns.metadata.namespace = Some("other".into());
        let mut other_labels = pod("p-y", "", HTTP_PORTS, "node-a", "10.244.1.8", true);
        other_labels
            .metadata
            .labels
            .insert("app".into(), "db".into());
        let mut extra_labels = pod("p-z", "", HTTP_PORTS, "node-a", "10.244.1.9", true);
        extra_labels
            .metadata
            .labels
            .insert("tier".into(), "fe".into());
        let (d, _) = run(&s, &[other_ns, other_labels, extra_labels]);
        assert_eq!(d[0].backends, [be("10.244.1.9", 8080)]);
    }

    #[test]
    fn pods_without_ip_or_node_or_finished_are_left_out() {
        let s = service(&svc_yaml("", ONE_PORT));
        let mut no_ip = pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true);
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let mut no_node = pod("b", "", HTTP_PORTS, "node-a", "10.244.1.6", true);
        no_node.spec.node_name = None;
        let mut done = pod("c", "", HTTP_PORTS, "node-a", "10.244.1.7", true);
        done.status.as_mut().unwrap().phase = "Succeeded".into();
        let (d, _) = run(&s, &[no_ip, no_node, done]);
        assert!(d[0].backends.is_empty() && d[0].terminating.is_empty());
    }

    #[test]
    fn named_target_port() {
        let ports = "  - name: http\n    port: 80\n    targetPort: http\n  - name: dns\n    port: 53\n    protocol: UDP\n    targetPort: dns\n";
        let s = service(&svc_yaml("", ports));
        let with_dns = "    ports:\n    - name: http\n      containerPort: 8080\n    - name: dns\n      containerPort: 5353\n      protocol: UDP\n";
        let tcp_dns = "    ports:\n    - name: http\n      containerPort: 9090\n    - name: dns\n      containerPort: 5353\n";
        let pods = [
            pod("a", "", with_dns, "node-a", "10.244.1.5", true),
            pod("b", "", tcp_dns, "node-a", "10.244.1.6", true),
            pod("c", "", "", "node-a", "10.244.1.7", true),
        ];
        let (d, _) = run(&s, &pods);
        assert_eq!(d.len(), 2);
        // Sorted by frontend: port 53 first.
        assert_eq!(d[0].frontend.port, 53);
        assert_eq!(d[0].frontend.proto, Proto::Udp);
        let udp = |ip: &str, port| BackendAddr {
            proto: Proto::Udp,
            ..be(ip, port)
        };
        // Pod b's "dns" port is TCP: it does not serve the UDP port.
        assert_eq!(d[0].backends, [udp("10.244.1.5", 5353)]);
        assert_eq!(
            d[1].backends,
            [be("10.244.1.5", 8080), be("10.244.1.6", 9090)]
        );
    }

    #[test]
    fn numeric_and_default_target_port() {
        let ports = "  - name: a\n    port: 80\n    targetPort: 8080\n  - name: b\n    port: 81\n";
        let mut s = service(&svc_yaml("", ports));
        let (d, _) = run(&s, &[pod("a", "", "", "node-a", "10.244.1.5", true)]);
        assert_eq!(d[0].backends, [be("10.244.1.5", 8080)]);
        assert_eq!(d[1].backends, [be("10.244.1.5", 81)]);
        // Without defaulting (as the agent may get it), unset means `port`.
        s.spec.ports[1].target_port = None;
        let (d, _) = run(&s, &[pod("a", "", "", "node-a", "10.244.1.5", true)]);
        assert_eq!(d[1].backends, [be("10.244.1.5", 81)]);
    }

    #[test]
    fn not_ready_pods_are_excluded() {
        let s = service(&svc_yaml("", ONE_PORT));
        let mut no_status = pod("c", "", HTTP_PORTS, "node-a", "10.244.1.7", true);
        no_status.status.as_mut().unwrap().conditions.clear();
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", "", HTTP_PORTS, "node-a", "10.244.1.6", false),
            no_status,
        ];
        let (d, _) = run(&s, &pods);
        assert_eq!(d[0].backends, [be("10.244.1.5", 8080)]);
        assert!(d[0].terminating.is_empty());
    }

    #[test]
    fn publish_not_ready_addresses() {
        let s = service(&svc_yaml("  publishNotReadyAddresses: true\n", ONE_PORT));
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", "", HTTP_PORTS, "node-a", "10.244.1.6", false),
            pod("c", TERMINATING, HTTP_PORTS, "node-a", "10.244.1.7", true),
        ];
        let (d, _) = run(&s, &pods);
        assert_eq!(
            d[0].backends,
            [be("10.244.1.5", 8080), be("10.244.1.6", 8080)]
        );
        assert_eq!(d[0].terminating, [be("10.244.1.7", 8080)]);
    }

    #[test]
    fn terminating_pods_keep_established_flows_only() {
        let s = service(&svc_yaml("", ONE_PORT));
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", TERMINATING, HTTP_PORTS, "node-a", "10.244.1.6", true),
            pod("c", TERMINATING, HTTP_PORTS, "node-b", "10.244.2.6", false),
        ];
        let (d, _) = run(&s, &pods);
        assert_eq!(d[0].backends, [be("10.244.1.5", 8080)]);
        assert_eq!(
            d[0].terminating,
            [be("10.244.1.6", 8080), be("10.244.2.6", 8080)]
        );
        assert_eq!(
            d[0].local,
            BTreeSet::from([be("10.244.1.5", 8080), be("10.244.1.6", 8080)])
        );
    }

    #[test]
    fn internal_traffic_policy_local() {
        let s = service(&svc_yaml("  internalTrafficPolicy: Local\n", ONE_PORT));
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", "", HTTP_PORTS, "node-b", "10.244.2.5", true),
            pod("c", TERMINATING, HTTP_PORTS, "node-b", "10.244.2.6", true),
        ];
        let (d, _) = run(&s, &pods);
        assert_eq!(d[0].backends, [be("10.244.1.5", 8080)]);
        assert!(d[0].terminating.is_empty());
        assert!(!d[0].etp_local);
    }

    const NODE_PORT: &str =
        "  - name: http\n    port: 80\n    targetPort: 8080\n    nodePort: 30080\n";

    #[test]
    fn node_port_cluster_policy() {
        let s = service(&svc_yaml("  type: NodePort\n", NODE_PORT));
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", "", HTTP_PORTS, "node-b", "10.244.2.5", true),
        ];
        let (d, _) = run(&s, &pods);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].frontend, fe("10.96.0.20", 80, Scope::External));
        assert_eq!(d[1].frontend, fe("192.168.10.2", 30080, Scope::External));
        assert_eq!(d[1].kind, FrontendKind::NodePort);
        assert_eq!(d[1].backends.len(), 2);
        assert_eq!(d[1].flags(), crate::flags::TW_SVC_F_NODEPORT);
    }

    #[test]
    fn external_traffic_policy_local() {
        let s = service(&svc_yaml(
            "  type: NodePort\n  externalTrafficPolicy: Local\n",
            NODE_PORT,
        ));
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", "", HTTP_PORTS, "node-b", "10.244.2.5", true),
            pod("c", TERMINATING, HTTP_PORTS, "node-b", "10.244.2.6", true),
        ];
        let (d, _) = run(&s, &pods);
        assert_eq!(d.len(), 3);
        // The cluster IP is not affected by the external policy.
        assert_eq!(d[0].frontend, fe("10.96.0.20", 80, Scope::External));
        assert_eq!(d[0].backends.len(), 2);
        assert!(!d[0].etp_local && !d[0].two_scopes);
        let ext = &d[1];
        assert_eq!(ext.frontend, fe("192.168.10.2", 30080, Scope::External));
        assert_eq!(ext.backends, [be("10.244.1.5", 8080)]);
        assert!(ext.terminating.is_empty());
        assert!(ext.etp_local && ext.two_scopes);
        use crate::flags::{TW_SVC_F_ETP_LOCAL, TW_SVC_F_NODEPORT, TW_SVC_F_TWO_SCOPES};
        assert_eq!(
            ext.flags(),
            TW_SVC_F_NODEPORT | TW_SVC_F_ETP_LOCAL | TW_SVC_F_TWO_SCOPES
        );
        let int = &d[2];
        assert_eq!(int.frontend, fe("192.168.10.2", 30080, Scope::Internal));
        assert_eq!(
            int.backends,
            [be("10.244.1.5", 8080), be("10.244.2.5", 8080)]
        );
        assert_eq!(int.terminating, [be("10.244.2.6", 8080)]);
        assert!(!int.etp_local && int.two_scopes);
        assert_eq!(int.flags(), TW_SVC_F_NODEPORT | TW_SVC_F_TWO_SCOPES);
    }

    #[test]
    fn session_affinity_default_and_explicit() {
        let s = service(&svc_yaml("  sessionAffinity: ClientIP\n", ONE_PORT));
        let (d, _) = run(&s, &[]);
        assert_eq!(d[0].affinity_timeout, Some(10800));
        assert_ne!(d[0].flags() & crate::flags::TW_SVC_F_AFFINITY, 0);
        // Undefaulted input gets the same default.
        let mut raw = s.clone();
        raw.spec.session_affinity_config = None;
        let (d, _) = run(&raw, &[]);
        assert_eq!(d[0].affinity_timeout, Some(10800));
        let s = service(&svc_yaml(
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 60\n",
            ONE_PORT,
        ));
        let (d, _) = run(&s, &[]);
        assert_eq!(d[0].affinity_timeout, Some(60));
        let s = service(&svc_yaml("  sessionAffinity: None\n", ONE_PORT));
        assert_eq!(run(&s, &[]).0[0].affinity_timeout, None);
    }

    fn annotated(key: &str, value: &str) -> Service {
        let mut s = service(&svc_yaml("", ONE_PORT));
        s.metadata.annotations.insert(key.into(), value.into());
        s
    }

    #[test]
    fn algorithm_annotation() {
        let (d, w) = run(&annotated("service.cilium.io/lb-algorithm", "maglev"), &[]);
        assert_eq!(d[0].algorithm, Algorithm::Maglev);
        assert!(w.is_empty());
        let (d, _) = run(&annotated("tollway.io/lb-algorithm", "maglev"), &[]);
        assert_eq!(d[0].algorithm, Algorithm::Maglev);
        // The default algorithm applies to unannotated services.
        let s = service(&svc_yaml("", ONE_PORT));
        let cfg = LbConfig {
            default_algorithm: Algorithm::Maglev,
            ..LbConfig::default()
        };
        let (d, _) = desired_services(&[&s], &[], &[], &node(), &cfg);
        assert_eq!(d[0].algorithm, Algorithm::Maglev);
        let (d, _) = desired_services(
            &[&annotated("tollway.io/lb-algorithm", "random")],
            &[],
            &[],
            &node(),
            &cfg,
        );
        assert_eq!(d[0].algorithm, Algorithm::Random);
    }

    #[test]
    fn bad_algorithm_annotation_warns_and_uses_the_default() {
        let (d, w) = run(&annotated("tollway.io/lb-algorithm", "round-robin"), &[]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].algorithm, Algorithm::Random);
        assert_eq!(w.len(), 1);
        let msg = w[0].to_string();
        assert!(
            msg.contains("shop/web")
                && msg.contains("\"round-robin\"")
                && msg.contains("tollway.io/lb-algorithm"),
            "{msg}"
        );
    }

    #[test]
    fn headless_and_ip_less_services_are_skipped() {
        let headless = service(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  clusterIP: None\n  selector:\n    app: web\n  ports:\n  - port: 5432\n",
        );
        let unallocated = service(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: db2\n  namespace: shop\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 5432\n",
        );
        let pods = [pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true)];
        let pods: Vec<&Pod> = pods.iter().collect();
        let (d, w) = desired_services(
            &[&headless, &unallocated],
            &pods,
            &[],
            &node(),
            &LbConfig::default(),
        );
        assert!(d.is_empty() && w.is_empty(), "{d:?} {w:?}");
    }

    #[test]
    fn selectorless_service_has_a_frontend_without_backends() {
        let s = service(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\n  namespace: shop\nspec:\n  clusterIP: 10.96.0.30\n  ports:\n  - port: 443\n",
        );
        let (d, _) = run(&s, &[pod("a", "", "", "node-a", "10.244.1.5", true)]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].frontend, fe("10.96.0.30", 443, Scope::External));
        assert!(d[0].backends.is_empty() && d[0].terminating.is_empty());
    }

    #[test]
    fn duplicate_frontends_keep_the_first_service() {
        let a = service(&svc_yaml("", ONE_PORT));
        let mut b = a.clone();
        b.metadata.name = "aaa".into();
        let (d, w) = desired_services(&[&a, &b], &[], &[], &node(), &LbConfig::default());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].service.name, "aaa");
        assert!(
            matches!(&w[..], [DesiredWarning::DuplicateFrontend { dropped, .. }] if dropped.name == "web")
        );
    }

    fn slice(yaml: &str) -> EndpointSlice {
        match object(yaml) {
            Object::EndpointSlice(s) => s,
            o => panic!("not a slice: {o:?}"),
        }
    }

    /// A slice of `service` in `shop` with these ports and endpoints.
    fn slice_of(name: &str, service: &str, ports: &str, endpoints: &str) -> EndpointSlice {
        slice(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports:\n{ports}endpoints:\n{endpoints}"
        ))
    }

    const EXT: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\n  namespace: shop\nspec:\n  clusterIP: 10.96.0.30\n  ports:\n  - {name: http, port: 80}\n  - {name: dns, port: 53, protocol: UDP}\n";

    fn run_slices(
        svc: &Service,
        pods: &[Pod],
        slices: &[EndpointSlice],
    ) -> (Vec<DesiredService>, Vec<DesiredWarning>) {
        let pods: Vec<&Pod> = pods.iter().collect();
        let slices: Vec<&EndpointSlice> = slices.iter().collect();
        desired_services(&[svc], &pods, &slices, &node(), &LbConfig::default())
    }

    #[test]
    fn selectorless_service_takes_its_endpoints_from_its_slices() {
        let s = service(EXT);
        let ports = "- {name: http, port: 8443}\n- {name: dns, port: 5353, protocol: UDP}\n";
        let a = slice_of(
            "ext-a",
            "ext",
            ports,
            "- addresses: [10.0.1.1]\n  conditions: {ready: true}\n  nodeName: node-a\n\
             - addresses: [10.0.1.2]\n  nodeName: node-b\n\
             - addresses: [10.0.1.3]\n  conditions: {ready: false, serving: true, terminating: true}\n  nodeName: node-a\n\
             - addresses: [10.0.1.4]\n  conditions: {ready: false, serving: false, terminating: true}\n\
             - addresses: [10.0.1.5]\n  conditions: {ready: false}\n\
             - addresses: [10.0.1.6]\n  conditions: {ready: false, terminating: true}\n",
        );
        // A second slice of the same service: the same address counts once,
        // and an address active in one slice is active.
        let b = slice_of(
            "ext-b",
            "ext",
            "- {name: http, port: 8443}\n",
            "- addresses: [10.0.1.1, 10.0.1.7]\n- addresses: [10.0.1.3]\n  conditions: {ready: true}\n",
        );
        // Slices of another service, another namespace, and IPv6: ignored.
        let other = slice_of("other-a", "other", ports, "- addresses: [10.0.9.1]\n");
        let mut elsewhere = slice_of("ext-x", "ext", ports, "- addresses: [10.0.9.2]\n");
        elsewhere.metadata.namespace = Some("default".into());
        let v6 = slice(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ext-v6\n  namespace: shop\n  labels: {kubernetes.io/service-name: ext}\naddressType: IPv6\nports:\n- {name: http, port: 8443}\nendpoints:\n- addresses: ['fd00::5']\n",
        );
        let (d, w) = run_slices(&s, &[], &[a.clone(), other, elsewhere, v6]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(d.len(), 2);
        let udp = |ip: &str, port| BackendAddr {
            proto: Proto::Udp,
            ..be(ip, port)
        };
        // Port 53/UDP first (sorted by frontend).
        assert_eq!(d[0].frontend.proto, Proto::Udp);
        assert_eq!(
            d[0].backends,
            [udp("10.0.1.1", 5353), udp("10.0.1.2", 5353)]
        );
        let http = &d[1];
        assert_eq!(http.frontend, fe("10.96.0.30", 80, Scope::External));
        // ready (or unset: ready) → active; serving and terminating →
        // established flows only; the rest left out.
        assert_eq!(http.backends, [be("10.0.1.1", 8443), be("10.0.1.2", 8443)]);
        assert_eq!(http.terminating, [be("10.0.1.3", 8443)]);
        assert_eq!(
            http.local,
            BTreeSet::from([be("10.0.1.1", 8443), be("10.0.1.3", 8443)])
        );

        let (d, _) = run_slices(&s, &[], &[a, b]);
        assert_eq!(
            d[1].backends,
            [
                be("10.0.1.1", 8443),
                be("10.0.1.2", 8443),
                be("10.0.1.3", 8443),
                be("10.0.1.7", 8443)
            ]
        );
        assert!(d[1].terminating.is_empty());
        // Only http is in slice b: dns keeps slice a's two.
        assert_eq!(d[0].backends.len(), 2);
    }

    #[test]
    fn slice_ports_match_by_name_and_protocol() {
        // default/kubernetes: one named port, the API server's slice.
        let k = service(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: kubernetes\n  namespace: shop\nspec:\n  clusterIP: 10.96.0.1\n  ports:\n  - {name: https, port: 443, targetPort: 6443}\n",
        );
        let api = slice_of(
            "kubernetes",
            "kubernetes",
            "- {name: https, port: 6443, protocol: TCP}\n- {name: https-alt, port: 7443}\n",
            "- addresses: [172.18.0.2]\n  conditions: {ready: true}\n",
        );
        // The same name, another protocol: not this port.
        let udp = slice_of(
            "kubernetes-udp",
            "kubernetes",
            "- {name: https, port: 9443, protocol: UDP}\n",
            "- addresses: [172.18.0.3]\n",
        );
        let (d, _) = run_slices(&k, &[], &[api, udp]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].frontend, fe("10.96.0.1", 443, Scope::External));
        // The slice's port, not the service's targetPort.
        assert_eq!(d[0].backends, [be("172.18.0.2", 6443)]);
        assert!(d[0].local.is_empty(), "no nodeName: not local");

        // An unnamed service port matches an unnamed slice port only.
        let unnamed = service(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  clusterIP: 10.96.0.31\n  ports:\n  - port: 5432\n",
        );
        let named = slice_of(
            "db-a",
            "db",
            "- {name: pg, port: 5432}\n",
            "- addresses: [10.0.2.1]\n",
        );
        let (d, _) = run_slices(&unnamed, &[], &[named]);
        assert!(d[0].backends.is_empty(), "{:?}", d[0].backends);
        let anon = slice_of(
            "db-b",
            "db",
            "- {port: 6432}\n",
            "- addresses: [10.0.2.1]\n",
        );
        let (d, _) = run_slices(&unnamed, &[], &[anon]);
        assert_eq!(d[0].backends, [be("10.0.2.1", 6432)]);
        // A slice port without a number ("all ports") gives no backend.
        let portless = slice_of("db-c", "db", "- {name: ''}\n", "- addresses: [10.0.2.1]\n");
        let (d, _) = run_slices(&unnamed, &[], &[portless]);
        assert!(d[0].backends.is_empty());
    }

    #[test]
    fn services_with_a_selector_ignore_slices() {
        let s = service(&svc_yaml("", ONE_PORT));
        let sl = slice_of(
            "web-a",
            "web",
            "- {name: http, port: 9999}\n",
            "- addresses: [10.0.3.1]\n",
        );
        let pods = [pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true)];
        let (d, _) = run_slices(&s, &pods, &[sl]);
        assert_eq!(d[0].backends, [be("10.244.1.5", 8080)]);
    }

    #[test]
    fn slice_endpoints_follow_traffic_policies() {
        let s = service(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\n  namespace: shop\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.30\n  internalTrafficPolicy: Local\n  externalTrafficPolicy: Local\n  ports:\n  - {name: http, port: 80, nodePort: 30080}\n",
        );
        let sl = slice_of(
            "ext-a",
            "ext",
            "- {name: http, port: 8443}\n",
            "- addresses: [10.0.1.1]\n  nodeName: node-a\n- addresses: [10.0.1.2]\n  nodeName: node-b\n",
        );
        let (d, _) = run_slices(&s, &[], &[sl]);
        assert_eq!(d.len(), 3);
        // ClusterIP with internalTrafficPolicy: Local: this node's only.
        assert_eq!(d[0].backends, [be("10.0.1.1", 8443)]);
        // The node port: local only outside, all inside.
        assert_eq!(d[1].frontend, fe("192.168.10.2", 30080, Scope::External));
        assert_eq!(d[1].backends, [be("10.0.1.1", 8443)]);
        assert!(d[1].etp_local);
        assert_eq!(d[2].frontend, fe("192.168.10.2", 30080, Scope::Internal));
        assert_eq!(d[2].backends.len(), 2);
    }

    const LB: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.20\n  selector:\n    app: web\n  externalIPs: [192.168.50.10, 'fd00::10', 10.96.0.20]\n  ports:\n  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: 203.0.113.7\n    - ip: 192.168.50.10\n    - hostname: lb.example.com\n    - {ip: 198.51.100.9, ipMode: Proxy}\n";

    #[test]
    fn load_balancer_frontends() {
        use crate::flags::{TW_SVC_F_LOADBALANCER, TW_SVC_F_NODEPORT};
        let s = service(LB);
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", "", HTTP_PORTS, "node-b", "10.244.2.5", true),
        ];
        let (d, w) = run(&s, &pods);
        assert!(w.is_empty(), "{w:?}");
        let got: Vec<(Frontend, FrontendKind)> = d.iter().map(|d| (d.frontend, d.kind)).collect();
        // ClusterIP, the node port, and each IPv4 ingress and external IP
        // once (an ingress IP that is an external IP too is the load
        // balancer's; the cluster IP is not an external frontend again;
        // an `ipMode: Proxy` one is the load balancer's to serve).
        assert_eq!(
            got,
            [
                (
                    fe("10.96.0.20", 80, Scope::External),
                    FrontendKind::ClusterIp
                ),
                (
                    fe("192.168.10.2", 30080, Scope::External),
                    FrontendKind::NodePort
                ),
                (
                    fe("192.168.50.10", 80, Scope::External),
                    FrontendKind::LoadBalancer
                ),
                (
                    fe("203.0.113.7", 80, Scope::External),
                    FrontendKind::LoadBalancer
                ),
            ]
        );
        for x in &d {
            assert_eq!(x.backends.len(), 2, "{}", x.frontend);
            assert!(!x.etp_local && !x.two_scopes);
        }
        assert_eq!(d[1].flags(), TW_SVC_F_NODEPORT);
        assert_eq!(d[3].flags(), TW_SVC_F_LOADBALANCER);
        assert_eq!(d[3].kind.to_string(), "LoadBalancer");
        assert_eq!(d[3].service.to_string(), "shop/web:http");

        // The same status on a NodePort service is not a load balancer's.
        let mut np = s.clone();
        np.spec.type_ = Some(ServiceType::NodePort);
        let (d, _) = run(&np, &pods);
        let kinds: Vec<FrontendKind> = d.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [
                FrontendKind::ClusterIp,
                FrontendKind::NodePort,
                FrontendKind::ExternalIps
            ]
        );
        // Without node ports (`allocateLoadBalancerNodePorts: false`): none.
        let mut no_np = s.clone();
        no_np.spec.ports[0].node_port = None;
        let (d, _) = run(&no_np, &pods);
        assert!(d.iter().all(|d| d.kind != FrontendKind::NodePort), "{d:?}");
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn external_ips_of_a_cluster_ip_service() {
        use crate::flags::TW_SVC_F_EXTERNAL_IP;
        let s = service(&svc_yaml("  externalIPs: [192.168.50.11]\n", ONE_PORT));
        let pods = [pod("a", "", HTTP_PORTS, "node-b", "10.244.2.5", true)];
        let (d, _) = run(&s, &pods);
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].frontend, fe("192.168.50.11", 80, Scope::External));
        assert_eq!(d[1].kind, FrontendKind::ExternalIps);
        assert_eq!(d[1].kind.to_string(), "ExternalIPs");
        assert_eq!(d[1].flags(), TW_SVC_F_EXTERNAL_IP);
        assert_eq!(d[1].backends, [be("10.244.2.5", 8080)]);
    }

    #[test]
    fn external_traffic_policy_local_on_load_balancer_and_external_ips() {
        use crate::flags::{TW_SVC_F_ETP_LOCAL, TW_SVC_F_LOADBALANCER, TW_SVC_F_TWO_SCOPES};
        let s = service(&LB.replace(
            "  type: LoadBalancer\n",
            "  type: LoadBalancer\n  externalTrafficPolicy: Local\n",
        ));
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", "", HTTP_PORTS, "node-b", "10.244.2.5", true),
        ];
        let (d, _) = run(&s, &pods);
        // ClusterIP once; the node port and both load balancer IPs twice.
        assert_eq!(d.len(), 7);
        assert_eq!(d[0].kind, FrontendKind::ClusterIp);
        assert_eq!(d[0].backends.len(), 2);
        for pair in d[1..].chunks(2) {
            let (ext, int) = (&pair[0], &pair[1]);
            assert_eq!(ext.frontend.scope, Scope::External);
            assert_eq!(int.frontend.scope, Scope::Internal);
            assert_eq!(ext.frontend.address, int.frontend.address);
            assert_eq!(ext.backends, [be("10.244.1.5", 8080)], "{}", ext.frontend);
            assert_eq!(int.backends.len(), 2);
            assert!(ext.etp_local && ext.two_scopes && !int.etp_local && int.two_scopes);
        }
        let lb = &d[5];
        assert_eq!(lb.frontend, fe("203.0.113.7", 80, Scope::External));
        assert_eq!(
            lb.flags(),
            TW_SVC_F_LOADBALANCER | TW_SVC_F_ETP_LOCAL | TW_SVC_F_TWO_SCOPES
        );
        // On a ClusterIP service, the external IPs only.
        let c = service(&svc_yaml(
            "  externalIPs: [192.168.50.11]\n  externalTrafficPolicy: Local\n",
            ONE_PORT,
        ));
        let (d, _) = run(&c, &pods);
        assert_eq!(d.len(), 3);
        assert!(!d[0].etp_local && d[0].backends.len() == 2);
        assert!(d[1].etp_local && d[1].kind == FrontendKind::ExternalIps);
    }

    #[test]
    fn load_balancer_source_ranges_restrict_the_external_lb_frontends_only() {
        use crate::flags::{
            TW_SVC_F_CLUSTERIP, TW_SVC_F_ETP_LOCAL, TW_SVC_F_EXTERNAL_IP, TW_SVC_F_LOADBALANCER,
            TW_SVC_F_NODEPORT, TW_SVC_F_SRC_RANGE, TW_SVC_F_TWO_SCOPES,
        };
        let range = |a: [u8; 4], n| SourceRange::new(Ipv4Addr::from(a), n).unwrap();
        let with = |ranges: &str, etp: &str| {
            service(&LB.replace(
                "  type: LoadBalancer
",
                &format!(
                    "  type: LoadBalancer
{etp}  loadBalancerSourceRanges: {ranges}
"
                ),
            ))
        };
        let pods = [
            pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true),
            pod("b", "", HTTP_PORTS, "node-b", "10.244.2.5", true),
        ];
        // Host bits cleared, sorted, deduplicated; the IPv6 one is left out.
        let s = with(
            "[' 203.0.113.0/24', 10.1.2.3/8, '2001:db8::/64', 10.0.0.0/8]",
            "",
        );
        let (d, w) = run(&s, &pods);
        assert!(w.is_empty(), "{w:?}");
        let want = Some(vec![range([10, 0, 0, 0], 8), range([203, 0, 113, 0], 24)]);
        let got: Vec<(FrontendKind, Option<Vec<SourceRange>>, u16)> = d
            .iter()
            .map(|d| (d.kind, d.source_ranges.clone(), d.flags()))
            .collect();
        let lb = TW_SVC_F_LOADBALANCER | TW_SVC_F_SRC_RANGE;
        assert_eq!(
            got,
            [
                (FrontendKind::ClusterIp, None, TW_SVC_F_CLUSTERIP),
                (FrontendKind::NodePort, None, TW_SVC_F_NODEPORT),
                (FrontendKind::LoadBalancer, want.clone(), lb),
                (FrontendKind::LoadBalancer, want.clone(), lb),
            ]
        );
        assert_eq!(d[3].src_ranges(), want.as_deref().unwrap());
        // The external IPs of a LoadBalancer are not restricted (the one
        // that is an ingress IP too is the load balancer's, above).
        let mut ext = s.clone();
        ext.status = None;
        let (d, _) = run(&ext, &pods);
        let e = d
            .iter()
            .find(|d| d.kind == FrontendKind::ExternalIps)
            .unwrap();
        assert_eq!(
            (e.source_ranges.clone(), e.flags()),
            (None, TW_SVC_F_EXTERNAL_IP)
        );

        // Only IPv6 ranges: still restricted, and no IPv4 client is admitted.
        let (d, _) = run(&with("['2001:db8::/64']", ""), &pods);
        assert_eq!(d[3].source_ranges, Some(vec![]));
        assert_eq!(d[3].flags(), lb);
        assert!(d[3].src_ranges().is_empty());
        // An empty list admits everyone.
        let (d, _) = run(&with("[]", ""), &pods);
        assert!(d.iter().all(|d| d.source_ranges.is_none()), "{d:?}");

        // externalTrafficPolicy: Local: the external scope (the uplink's) is
        // restricted, the internal twin (in-cluster clients) is not.
        let (d, _) = run(
            &with(
                "[192.0.2.0/24]",
                "  externalTrafficPolicy: Local
",
            ),
            &pods,
        );
        let lbs: Vec<(Scope, Option<Vec<SourceRange>>, u16)> = d
            .iter()
            .filter(|d| d.kind == FrontendKind::LoadBalancer)
            .map(|d| (d.frontend.scope, d.source_ranges.clone(), d.flags()))
            .collect();
        let ext = TW_SVC_F_LOADBALANCER | TW_SVC_F_ETP_LOCAL | TW_SVC_F_TWO_SCOPES;
        let only = Some(vec![range([192, 0, 2, 0], 24)]);
        assert_eq!(
            lbs,
            [
                (Scope::External, only.clone(), ext | TW_SVC_F_SRC_RANGE),
                (
                    Scope::Internal,
                    None,
                    TW_SVC_F_LOADBALANCER | TW_SVC_F_TWO_SCOPES
                ),
                (Scope::External, only, ext | TW_SVC_F_SRC_RANGE),
                (
                    Scope::Internal,
                    None,
                    TW_SVC_F_LOADBALANCER | TW_SVC_F_TWO_SCOPES
                ),
            ]
        );
    }

    #[test]
    fn external_name_services_and_sctp_ports_get_no_frontends() {
        let mut ext = service(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  type: ExternalName\n  externalName: db.example.com\n  ports: [{port: 5432}]\n",
        );
        // Even with an address (the store never gives it one).
        ext.spec.cluster_ip = Some("10.96.0.40".into());
        let (d, w) = run(&ext, &[]);
        assert!(d.is_empty() && w.is_empty(), "{d:?} {w:?}");

        let s = service(&svc_yaml(
            "",
            "  - {name: http, port: 80, targetPort: 8080}\n  - {name: sig, port: 9000, protocol: SCTP}\n",
        ));
        let (d, w) = run(
            &s,
            &[pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true)],
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].frontend.port, 80);
        assert_eq!(
            w,
            [DesiredWarning::UnsupportedProtocol {
                service: "shop/web".into(),
                port: 9000,
                protocol: Protocol::Sctp,
            }]
        );
        assert!(
            w[0].to_string().contains("9000/SCTP is not supported"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn serializes_to_json() {
        let s = service(&svc_yaml("", ONE_PORT));
        let (d, _) = run(
            &s,
            &[pod("a", "", HTTP_PORTS, "node-a", "10.244.1.5", true)],
        );
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j[0]["frontend"]["address"], "10.96.0.20");
        assert_eq!(j[0]["backends"][0]["proto"], "TCP");
        assert_eq!(j[0]["algorithm"], "random");
    }
}
