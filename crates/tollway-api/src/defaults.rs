//! Kubernetes' defaulting, applied before validation (as the API server does).

use crate::core::{PodSpec, Protocol};
use crate::intstr::IntOrString;
use crate::object::Object;
use crate::service::{
    ClientIpConfig, ServiceType, SessionAffinity, SessionAffinityConfig, TrafficPolicy,
};

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
            if ty == ServiceType::NodePort {
                spec.external_traffic_policy
                    .get_or_insert(TrafficPolicy::Cluster);
            }
            spec.internal_traffic_policy
                .get_or_insert(TrafficPolicy::Cluster);
        }
        Object::Namespace(_) | Object::ServiceAccount(_) | Object::Node(_) => {}
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
