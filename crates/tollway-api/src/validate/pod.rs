use std::collections::BTreeSet;

use super::{Errs, port_range};
use crate::core::{ENV_FIELD_PATHS, PodSpec, Protocol};
use crate::names;

pub(crate) fn validate_pod_spec(s: &PodSpec, path: &str, e: &mut Errs) {
    if s.containers.is_empty() {
        e.add(
            format!("{path}.containers"),
            "required: a pod needs at least one container",
        );
    }
    let mut names_seen = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for (i, c) in s.containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        if c.name.is_empty() {
            e.add(format!("{p}.name"), "required");
        } else {
            e.check(format!("{p}.name"), names::dns1123_label(&c.name));
            if !names_seen.insert(c.name.as_str()) {
                e.add(
                    format!("{p}.name"),
                    format!("duplicate container name {:?}", c.name),
                );
            }
        }
        if c.command.is_empty() && !c.args.is_empty() && c.image.is_none() {
            e.add(
                format!("{p}.command"),
                "required when args are given without an image",
            );
        }
        for (j, port) in c.ports.iter().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            e.check(
                format!("{pp}.containerPort"),
                port_range(port.container_port),
            );
            if port.protocol == Some(Protocol::Sctp) {
                e.add(
                    format!("{pp}.protocol"),
                    "SCTP is not supported (TCP or UDP)",
                );
            }
            if let Some(n) = &port.name {
                e.check(format!("{pp}.name"), names::iana_svc_name(n));
                if !port_names.insert(n.as_str()) {
                    e.add(
                        format!("{pp}.name"),
                        format!("duplicate port name {n:?} in the pod"),
                    );
                }
            }
        }
        for (j, env) in c.env.iter().enumerate() {
            let ep = format!("{p}.env[{j}]");
            e.check(format!("{ep}.name"), names::env_var_name(&env.name));
            match (&env.value, &env.value_from) {
                (Some(_), Some(_)) => e.add(
                    format!("{ep}.valueFrom"),
                    "may not be specified when `value` is not empty",
                ),
                (None, Some(from)) => match &from.field_ref {
                    Some(f) if ENV_FIELD_PATHS.contains(&f.field_path.as_str()) => {}
                    Some(f) => e.add(
                        format!("{ep}.valueFrom.fieldRef.fieldPath"),
                        format!(
                            "must be one of {}, got {:?}",
                            ENV_FIELD_PATHS.join(", "),
                            f.field_path
                        ),
                    ),
                    None => e.add(
                        format!("{ep}.valueFrom"),
                        "only fieldRef is supported in the lab",
                    ),
                },
                _ => {}
            }
        }
    }
    if let Some(rp) = &s.restart_policy
        && !matches!(rp.as_str(), "Always" | "OnFailure" | "Never")
    {
        e.add(
            format!("{path}.restartPolicy"),
            format!("must be one of Always, OnFailure, Never, got {rp:?}"),
        );
    }
    if let Some(n) = &s.node_name {
        e.check(format!("{path}.nodeName"), names::dns1123_subdomain(n));
    }
    if let Some(sa) = &s.service_account_name {
        e.check(
            format!("{path}.serviceAccountName"),
            names::dns1123_subdomain(sa),
        );
    }
    if let Some(g) = s.termination_grace_period_seconds
        && g < 0
    {
        e.add(
            format!("{path}.terminationGracePeriodSeconds"),
            format!("must be >= 0, got {g}"),
        );
    }
    super::validate_labels(&s.node_selector, &format!("{path}.nodeSelector"), e);
}
