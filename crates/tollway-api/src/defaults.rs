//! Kubernetes' defaulting, applied before validation (as the API server does).

use crate::cilium::{CiliumNetworkPolicy, L4Proto, PortRule};
use crate::core::{PodSpec, Protocol};
use crate::intstr::IntOrString;
use crate::netpol::{NetworkPolicySpec, PolicyType};
use crate::object::Object;
use crate::service::{
    ClientIpConfig, ServiceType, SessionAffinity, SessionAffinityConfig, TrafficPolicy,
};

/// The label Kubernetes puts on every namespace: its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Fill in the defaults Kubernetes would.
pub fn apply_defaults(o: &mut Object) {
    let kind = o.kind();
    let meta = o.meta_mut();
    if kind.namespaced() {
        if meta.namespace.is_none() {
            meta.namespace = Some("default".into());
        }
    } else {
        meta.namespace = None;
    }
    if kind == crate::object::Kind::Namespace {
        // Kubernetes labels every namespace with its name (immutable).
        let name = meta.name.clone();
        meta.labels.insert(NAMESPACE_NAME_LABEL.into(), name);
    }
    match o {
        Object::Pod(p) => default_pod_spec(&mut p.spec),
        Object::Deployment(d) => {
            d.spec.replicas.get_or_insert(1);
            let s = d.spec.strategy.get_or_insert_with(Default::default);
            s.type_.get_or_insert_with(|| "RollingUpdate".into());
            d.spec.template.metadata.namespace = None;
            default_pod_spec(&mut d.spec.template.spec);
        }
        Object::Service(s) => {
            let external = s.is_externally_accessible();
            let spec = &mut s.spec;
            let ty = *spec.type_.get_or_insert(ServiceType::ClusterIP);
            for p in &mut spec.ports {
                p.protocol.get_or_insert(Protocol::Tcp);
                // An out-of-range port is reported once, on `port`.
                if p.target_port.is_none() && (1..=65535).contains(&p.port) {
                    p.target_port = Some(IntOrString::Int(p.port));
                }
            }
            let aff = *spec.session_affinity.get_or_insert(SessionAffinity::None);
            if aff == SessionAffinity::ClientIP {
                let cfg = spec
                    .session_affinity_config
                    .get_or_insert_with(SessionAffinityConfig::default);
                cfg.client_ip
                    .get_or_insert_with(ClientIpConfig::default)
                    .timeout_seconds
                    .get_or_insert(10800);
            }
            // `SetDefaults_Service`: externally accessible services get
            // `externalTrafficPolicy: Cluster`, LoadBalancers their node
            // ports.
            if external {
                spec.external_traffic_policy
                    .get_or_insert(TrafficPolicy::Cluster);
            }
            if ty == ServiceType::LoadBalancer {
                spec.allocate_load_balancer_node_ports.get_or_insert(true);
            }
            if ty != ServiceType::ExternalName {
                spec.internal_traffic_policy
                    .get_or_insert(TrafficPolicy::Cluster);
            }
        }
        Object::EndpointSlice(es) => {
            // `SetDefaults_EndpointPort`: an unnamed port is named "", the
            // protocol is TCP.
            for p in &mut es.ports {
                p.name.get_or_insert_with(String::new);
                p.protocol.get_or_insert(Protocol::Tcp);
            }
        }
        Object::NetworkPolicy(np) => default_network_policy(&mut np.spec),
        Object::CiliumNetworkPolicy(p) | Object::CiliumClusterwideNetworkPolicy(p) => {
            default_cilium_policy(p);
        }
        Object::Namespace(_)
        | Object::ServiceAccount(_)
        | Object::Node(_)
        | Object::CiliumIdentity(_) => {}
    }
}

/// `SetDefaults_NetworkPolicy`: ports are TCP unless given; without
/// `policyTypes`, a policy isolates ingress, and egress too when it has
/// egress rules.
fn default_network_policy(spec: &mut NetworkPolicySpec) {
    let ports = spec
        .ingress
        .iter_mut()
        .flat_map(|r| r.ports.iter_mut())
        .chain(spec.egress.iter_mut().flat_map(|r| r.ports.iter_mut()));
    for p in ports {
        p.protocol.get_or_insert(Protocol::Tcp);
    }
    if spec.policy_types.is_empty() {
        spec.policy_types.push(PolicyType::Ingress);
        if !spec.egress.is_empty() {
            spec.policy_types.push(PolicyType::Egress);
        }
    }
}

/// What Cilium's `Sanitize` fills in: a port's protocol is `ANY` unless
/// given, and port names are lower-cased (they compare case-insensitively).
fn default_cilium_policy(p: &mut CiliumNetworkPolicy) {
    for rule in p.rules_mut() {
        let port_rules = rule
            .ingress
            .iter_mut()
            .chain(rule.ingress_deny.iter_mut())
            .flat_map(|r| r.to_ports.iter_mut())
            .chain(
                rule.egress
                    .iter_mut()
                    .chain(rule.egress_deny.iter_mut())
                    .flat_map(|r| r.to_ports.iter_mut()),
            );
        for pr in port_rules {
            default_port_rule(pr);
        }
    }
}

fn default_port_rule(pr: &mut PortRule) {
    for pp in &mut pr.ports {
        pp.protocol.get_or_insert(L4Proto::Any);
        if let Some(port) = &mut pp.port
            && port.bytes().any(|b| b.is_ascii_uppercase())
        {
            *port = port.to_ascii_lowercase();
        }
    }
}

fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    if spec.service_account_name.is_none() {
        spec.service_account_name = Some(
            spec.service_account
                .clone()
                .unwrap_or_else(|| "default".into()),
        );
    }
    spec.service_account = None;
    for c in &mut spec.containers {
        for p in &mut c.ports {
            p.protocol.get_or_insert(Protocol::Tcp);
        }
    }
}
