//! Static validation: everything that can be checked from the object alone.
//! Checks that need the rest of the cluster (namespaces exist, cluster IPs
//! are free) belong to the store.

mod cilium;
mod cilium_ports;
mod deployment;
mod endpointslice;
mod netpol;
mod pod;
mod service;

use crate::meta::ObjectMeta;
use crate::names;
use crate::object::{Kind, Object};
use crate::selector::LabelSelector;

/// Field problems, as (path, reason).
#[derive(Debug, Default)]
pub(crate) struct Errs(pub Vec<(String, String)>);

impl Errs {
    pub(crate) fn add(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push((path.into(), reason.into()));
    }

    pub(crate) fn check(&mut self, path: impl Into<String>, r: Result<(), String>) {
        if let Err(reason) = r {
            self.add(path, reason);
        }
    }
}

/// Validate an object; returns every problem found.
pub(crate) fn validate(o: &Object) -> Vec<(String, String)> {
    let mut e = Errs::default();
    validate_meta(o.meta(), o.kind(), "metadata", &mut e);
    match o {
        Object::Pod(p) => pod::validate_pod_spec(&p.spec, "spec", &mut e),
        Object::Deployment(d) => deployment::validate(d, &mut e),
        Object::Service(s) => service::validate(s, &mut e),
        Object::EndpointSlice(es) => endpointslice::validate(es, &mut e),
        Object::NetworkPolicy(np) => netpol::validate(np, &mut e),
        Object::CiliumNetworkPolicy(p) | Object::CiliumClusterwideNetworkPolicy(p) => {
            cilium::validate(p, &mut e);
        }
        Object::Namespace(_)
        | Object::ServiceAccount(_)
        | Object::Node(_)
        | Object::CiliumIdentity(_) => {}
    }
    e.0
}

/// Things a valid object says that the lab does not act on (yet), as
/// (path, message).
pub(crate) fn warnings(o: &Object) -> Vec<(String, String)> {
    match o {
        Object::NetworkPolicy(np) => netpol::warnings(np),
        Object::Service(s) => service::warnings(s),
        Object::EndpointSlice(es) => endpointslice::warnings(es),
        Object::CiliumNetworkPolicy(p) | Object::CiliumClusterwideNetworkPolicy(p) => {
            cilium::warnings(p)
        }
        _ => Vec::new(),
    }
}

fn validate_meta(m: &ObjectMeta, kind: Kind, path: &str, e: &mut Errs) {
    if m.name.is_empty() {
        e.add(format!("{path}.name"), "required");
    } else {
        let r = match kind {
            Kind::Namespace => names::dns1123_label(&m.name),
            Kind::Service => names::dns1035_label(&m.name),
            _ => names::dns1123_subdomain(&m.name),
        };
        e.check(format!("{path}.name"), r);
    }
    if let Some(ns) = &m.namespace {
        e.check(format!("{path}.namespace"), names::dns1123_label(ns));
    }
    validate_labels(&m.labels, &format!("{path}.labels"), e);
    for k in m.annotations.keys() {
        e.check(format!("{path}.annotations.{k}"), names::qualified_name(k));
    }
    let total: usize = m.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > 256 * 1024 {
        e.add(
            format!("{path}.annotations"),
            format!("must have at most 262144 bytes, got {total}"),
        );
    }
}

pub(crate) fn validate_labels(
    labels: &std::collections::BTreeMap<String, String>,
    path: &str,
    e: &mut Errs,
) {
    for (k, v) in labels {
        e.check(format!("{path}.{k}"), names::qualified_name(k));
        e.check(format!("{path}.{k}"), names::label_value(v));
    }
}

pub(crate) fn validate_selector(s: &LabelSelector, path: &str, e: &mut Errs) {
    validate_selector_keyed(s, path, names::qualified_name, e);
}

/// [`validate_selector`] with another rule for keys (Cilium's keys may carry
/// a label source).
pub(crate) fn validate_selector_keyed(
    s: &LabelSelector,
    path: &str,
    key: fn(&str) -> Result<(), String>,
    e: &mut Errs,
) {
    for (k, v) in &s.match_labels {
        e.check(format!("{path}.matchLabels.{k}"), key(k));
        e.check(format!("{path}.matchLabels.{k}"), names::label_value(v));
    }
    for (i, r) in s.match_expressions.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        e.check(format!("{p}.key"), key(&r.key));
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if r.values.is_empty() {
                    e.add(
                        format!("{p}.values"),
                        format!("must be specified when operator is {}", r.operator),
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !r.values.is_empty() {
                    e.add(
                        format!("{p}.values"),
                        format!("may not be specified when operator is {}", r.operator),
                    );
                }
            }
            other => e.add(
                format!("{p}.operator"),
                format!("must be one of In, NotIn, Exists, DoesNotExist, got {other:?}"),
            ),
        }
        for (j, v) in r.values.iter().enumerate() {
            e.check(format!("{p}.values[{j}]"), names::label_value(v));
        }
    }
}

pub(crate) fn port_range(n: i64) -> Result<(), String> {
    if (1..=65535).contains(&n) {
        Ok(())
    } else {
        Err(format!("must be 1-65535, got {n}"))
    }
}
