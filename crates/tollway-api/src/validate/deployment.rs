use super::{Errs, validate_labels, validate_selector};
use crate::apps::Deployment;

pub(crate) fn validate(d: &Deployment, e: &mut Errs) {
    let spec = &d.spec;
    if let Some(r) = spec.replicas
        && r < 0
    {
        e.add("spec.replicas", format!("must be >= 0, got {r}"));
    }
    if spec.selector.is_empty() {
        e.add(
            "spec.selector",
            "required: a deployment needs a non-empty selector",
        );
    } else {
        validate_selector(&spec.selector, "spec.selector", e);
        if !spec.selector.matches(&spec.template.metadata.labels) {
            e.add(
                "spec.template.metadata.labels",
                "must match spec.selector (the selector does not select the template's labels)",
            );
        }
    }
    validate_labels(
        &spec.template.metadata.labels,
        "spec.template.metadata.labels",
        e,
    );
    super::pod::validate_pod_spec(&spec.template.spec, "spec.template.spec", e);
    if let Some(rp) = &spec.template.spec.restart_policy
        && rp != "Always"
    {
        e.add(
            "spec.template.spec.restartPolicy",
            format!("must be Always for a Deployment, got {rp:?}"),
        );
    }
    if let Some(s) = &spec.strategy
        && let Some(t) = &s.type_
        && t != "RollingUpdate"
        && t != "Recreate"
    {
        e.add(
            "spec.strategy.type",
            format!("must be RollingUpdate or Recreate, got {t:?}"),
        );
    }
}
