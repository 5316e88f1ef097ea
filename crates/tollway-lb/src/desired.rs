//! Services and Pods → the frontends this node serves ([`DesiredService`]),
//! following Kubernetes' endpoint and traffic-policy rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use tollway_api::{
    IntOrString, Pod, Protocol, Service, ServiceType, SessionAffinity, TrafficPolicy,
};

use crate::model::{
    Algorithm, BackendAddr, DesiredService, Frontend, FrontendKind, LbConfig, NodeContext, Proto,
    Scope, ServiceName,
};

mod index;

pub use index::{PodIndex, affected_services};

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
/// - headless services (`clusterIP: None`) and services without a cluster IP
///   are skipped; services without a selector get frontends with no backends
///   (so that they reject), as their endpoints are not managed here;
/// - endpoints are the pods of the service's namespace whose labels contain
///   every selector pair, that have a node, an IPv4 pod IP and are not
///   `Succeeded`/`Failed`; terminating pods (`deletionTimestamp` set) go to
///   [`DesiredService::terminating`] (established flows only); other pods are
///   active when ready, or always with `publishNotReadyAddresses: true`;
/// - `targetPort` is a number, or the name of a pod's container port of the
///   same protocol (pods without one are left out for that port), or the
///   service port when unset;
/// - each port gets a ClusterIP frontend (only this node's endpoints with
///   `internalTrafficPolicy: Local`); NodePort services also get one on
///   `node.node_ip` and the node port; with `externalTrafficPolicy: Local`
///   that external-scope frontend keeps only this node's endpoints and an
///   internal-scope twin (for in-cluster sources) has all of them;
/// - the algorithm comes from the `tollway.io/lb-algorithm` or
///   `service.cilium.io/lb-algorithm` annotation (`maglev`, `random`),
///   else `cfg.default_algorithm`;
/// - `sessionAffinity: ClientIP` sets the affinity timeout (default 10800 s).
pub fn desired_services(
    services: &[&Service],
    pods: &[&Pod],
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
    collect(
        services,
        |svc| {
            let ns_pods = by_ns
                .get(svc.metadata.namespace_or_default())
                .map_or(&[][..], Vec::as_slice);
            select(&svc.spec.selector, ns_pods.iter().copied())
        },
        node,
        cfg,
    )
}

/// [`desired_services`] with the pods taken from a [`PodIndex`]: the same
/// result as `desired_services(services, all pods of the index, ..)`, at a
/// cost proportional to the given services and the pods they select (found
/// through the index's label postings), not to all pods.
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
    node: &NodeContext,
    cfg: &LbConfig,
) -> (Vec<DesiredService>, Vec<DesiredWarning>) {
    collect(
        services,
        |svc| pods.selected(svc.metadata.namespace_or_default(), &svc.spec.selector),
        node,
        cfg,
    )
}

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
    select: impl Fn(&Service) -> Vec<&'p Pod>,
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
        service_frontends(svc, &select, node, cfg, &mut out, &mut warnings);
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
}

/// The frontends of one service, before duplicates across services are
/// resolved, in port order; `select` gives the pods its selector selects.
pub(crate) fn service_frontends<'p>(
    svc: &Service,
    select: &dyn Fn(&Service) -> Vec<&'p Pod>,
    node: &NodeContext,
    cfg: &LbConfig,
    out: &mut Vec<DesiredService>,
    warnings: &mut Vec<DesiredWarning>,
) {
    if svc.is_headless() {
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
    };
    let itp_local = spec.internal_traffic_policy == Some(TrafficPolicy::Local);
    let node_port = svc.service_type() == ServiceType::NodePort;
    let etp_local = node_port && spec.external_traffic_policy == Some(TrafficPolicy::Local);
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let selected = select(svc);

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
        let eps = endpoints(
            &selected,
            port.target_port.as_ref(),
            svc_port,
            proto,
            node,
            publish_not_ready,
        );
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
        let Some(np) = port.node_port.and_then(valid_port).filter(|_| node_port) else {
            continue;
        };
        if etp_local {
            out.push(make(
                frontend(node.node_ip, np, Scope::External),
                FrontendKind::NodePort,
                &name,
                eps.only_local(),
                &common,
                true,
                true,
            ));
            out.push(make(
                frontend(node.node_ip, np, Scope::Internal),
                FrontendKind::NodePort,
                &name,
                eps,
                &common,
                false,
                true,
            ));
        } else {
            out.push(make(
                frontend(node.node_ip, np, Scope::External),
                FrontendKind::NodePort,
                &name,
                eps,
                &common,
                false,
                false,
            ));
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
    }
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
        desired_services(&[svc], &pods, &node(), &LbConfig::default())
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
        let (d, _) = desired_services(&[&s], &[], &node(), &cfg);
        assert_eq!(d[0].algorithm, Algorithm::Maglev);
        let (d, _) = desired_services(
            &[&annotated("tollway.io/lb-algorithm", "random")],
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
        let (d, w) = desired_services(&[&a, &b], &[], &node(), &LbConfig::default());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].service.name, "aaa");
        assert!(
            matches!(&w[..], [DesiredWarning::DuplicateFrontend { dropped, .. }] if dropped.name == "web")
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
