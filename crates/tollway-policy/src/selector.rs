//! Endpoint selectors: label requirements matched against the labels of an
//! identity, and the helpers that turn Kubernetes/Cilium selectors into
//! them (namespace restriction, namespace selectors).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::labels::{
    LABEL_NAMESPACE_LABELS_PREFIX, LABEL_POD_NAMESPACE, LabelKey, LabelSet, SOURCE_K8S,
    SOURCE_RESERVED,
};

/// A selector operator (Kubernetes' `matchExpressions` operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operator {
    /// The key is present with one of the values.
    In,
    /// The key is absent, or present with none of the values.
    NotIn,
    /// The key is present (values ignored).
    Exists,
    /// The key is absent (values ignored).
    DoesNotExist,
}

impl FromStr for Operator {
    type Err = PolicyError;

    /// `In`, `NotIn`, `Exists`, `DoesNotExist` (Kubernetes spelling).
    fn from_str(s: &str) -> Result<Operator, PolicyError> {
        match s {
            "In" => Ok(Operator::In),
            "NotIn" => Ok(Operator::NotIn),
            "Exists" => Ok(Operator::Exists),
            "DoesNotExist" => Ok(Operator::DoesNotExist),
            _ => Err(PolicyError::InvalidOperator {
                operator: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        })
    }
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Requirement {
    /// The label key (and source) it is about.
    pub key: LabelKey,
    /// The operator.
    pub operator: Operator,
    /// The values of `In` / `NotIn`.
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether `labels` satisfy the requirement. With an any-source key,
    /// "the key is present" means present under some source.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        let mut with_key = labels.iter().filter(|l| self.key.matches(l));
        match self.operator {
            Operator::In => with_key.any(|l| self.values.contains(&l.value)),
            Operator::NotIn => !with_key.any(|l| self.values.contains(&l.value)),
            Operator::Exists => with_key.next().is_some(),
            Operator::DoesNotExist => with_key.next().is_none(),
        }
    }
}

/// A Kubernetes `LabelSelector` as written in a manifest (keys unparsed):
/// the input of the selector helpers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`: key, operator, values.
    pub match_expressions: Vec<(String, Operator, Vec<String>)>,
}

/// Selects identities by their labels; every requirement must hold. The
/// empty selector selects every identity it is tested against.
///
/// Matching is purely by labels, over every identity the compiler knows
/// (endpoints, reserved, CIDR): as in Cilium, confining a selector to pods
/// is the translator's job ([`EndpointSelector::in_namespace`],
/// [`EndpointSelector::in_any_namespace`],
/// [`EndpointSelector::require_namespace`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointSelector {
    /// Key = value requirements (`matchLabels`).
    pub match_labels: Vec<(LabelKey, String)>,
    /// Other requirements (`matchExpressions`).
    pub match_expressions: Vec<Requirement>,
}

impl EndpointSelector {
    /// The selector that selects everything.
    pub fn all() -> EndpointSelector {
        EndpointSelector::default()
    }

    /// A selector from a manifest's selector; keys parse as [`LabelKey`]s
    /// (`k8s:app`, `any:app`, `app`, `reserved:host`).
    pub fn from_label_selector(sel: &LabelSelector) -> Result<EndpointSelector, PolicyError> {
        let mut out = EndpointSelector::all();
        for (k, v) in &sel.match_labels {
            out.match_labels.push((k.parse()?, v.clone()));
        }
        for (k, op, values) in &sel.match_expressions {
            out.match_expressions.push(Requirement {
                key: k.parse()?,
                operator: *op,
                values: values.clone(),
            });
        }
        Ok(out)
    }

    /// The pods of namespaces selected by a Kubernetes `namespaceSelector`:
    /// each key becomes `k8s:io.cilium.k8s.namespace.labels.<key>` (keys are
    /// taken verbatim), plus `k8s:io.kubernetes.pod.namespace Exists`, so
    /// that a purely negative selector (`NotIn`, `DoesNotExist`, or `{}`)
    /// still selects only pods, never reserved or CIDR identities.
    pub fn for_namespace_selector(sel: &LabelSelector) -> EndpointSelector {
        let key = |k: &str| LabelKey::k8s(&format!("{LABEL_NAMESPACE_LABELS_PREFIX}{k}"));
        let mut out = EndpointSelector::all();
        for (k, v) in &sel.match_labels {
            out.match_labels.push((key(k), v.clone()));
        }
        for (k, op, values) in &sel.match_expressions {
            out.match_expressions.push(Requirement {
                key: key(k),
                operator: *op,
                values: values.clone(),
            });
        }
        out.match_expressions
            .push(exists(LabelKey::k8s(LABEL_POD_NAMESPACE)));
        out
    }

    /// Both selectors' requirements (a NetworkPolicy peer with both
    /// `namespaceSelector` and `podSelector`).
    pub fn and(mut self, other: EndpointSelector) -> EndpointSelector {
        self.match_labels.extend(other.match_labels);
        self.match_expressions.extend(other.match_expressions);
        self
    }

    /// Adds `k8s:io.kubernetes.pod.namespace = namespace` unconditionally
    /// (a NetworkPolicy `podSelector`, or the subject of a namespaced
    /// policy: Kubernetes semantics, where the key has no special meaning).
    pub fn require_namespace(mut self, namespace: &str) -> EndpointSelector {
        self.match_labels
            .push((LabelKey::k8s(LABEL_POD_NAMESPACE), namespace.to_string()));
        self
    }

    /// Cilium's implicit namespace of a peer selector in a namespaced
    /// policy (CNP `fromEndpoints`/`toEndpoints`): adds
    /// `k8s:io.kubernetes.pod.namespace = namespace` unless the selector
    /// names the namespace key, a namespace label
    /// (`io.cilium.k8s.namespace.labels.*`) or a `reserved:` label.
    pub fn in_namespace(self, namespace: &str) -> EndpointSelector {
        if self.names_namespace() || self.names_reserved() || self.names_namespace_labels() {
            self
        } else {
            self.require_namespace(namespace)
        }
    }

    /// Cilium's implicit restriction of a peer selector in a cluster-wide
    /// policy (CCNP): adds `k8s:io.kubernetes.pod.namespace Exists` unless
    /// the selector names the namespace key or a `reserved:` label, so that
    /// `{}` means every pod, not every identity.
    pub fn in_any_namespace(mut self) -> EndpointSelector {
        if !(self.names_namespace() || self.names_reserved()) {
            self.match_expressions
                .push(exists(LabelKey::k8s(LABEL_POD_NAMESPACE)));
        }
        self
    }

    /// Every requirement's key.
    fn keys(&self) -> impl Iterator<Item = &LabelKey> {
        self.match_labels
            .iter()
            .map(|(k, _)| k)
            .chain(self.match_expressions.iter().map(|r| &r.key))
    }

    /// Whether a requirement is about `io.kubernetes.pod.namespace`.
    pub fn names_namespace(&self) -> bool {
        self.keys().any(|k| k.is_k8s_or_any(LABEL_POD_NAMESPACE))
    }

    fn names_reserved(&self) -> bool {
        self.keys()
            .any(|k| k.source.as_deref() == Some(SOURCE_RESERVED))
    }

    fn names_namespace_labels(&self) -> bool {
        self.keys().any(|k| {
            k.key.starts_with(LABEL_NAMESPACE_LABELS_PREFIX)
                && k.source.as_deref().is_none_or(|s| s == SOURCE_K8S)
        })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.iter().any(|l| key.matches(l) && l.value == *value))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

fn exists(key: LabelKey) -> Requirement {
    Requirement {
        key,
        operator: Operator::Exists,
        values: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{Label, pod_security_labels};

    fn set(s: &str) -> LabelSet {
        s.parse().unwrap()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.parse().unwrap(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn sel(labels: &[(&str, &str)], exprs: Vec<Requirement>) -> EndpointSelector {
        EndpointSelector {
            match_labels: labels
                .iter()
                .map(|(k, v)| (k.parse().unwrap(), v.to_string()))
                .collect(),
            match_expressions: exprs,
        }
    }

    #[test]
    fn match_labels_and_sources() {
        let web = set("k8s:app=web,k8s:tier=front");
        assert!(EndpointSelector::all().matches(&web));
        assert!(EndpointSelector::all().matches(&LabelSet::new()));
        assert!(sel(&[("app", "web")], vec![]).matches(&web));
        assert!(sel(&[("k8s:app", "web")], vec![]).matches(&web));
        assert!(sel(&[("any:app", "web")], vec![]).matches(&web));
        assert!(!sel(&[("container:app", "web")], vec![]).matches(&web));
        assert!(!sel(&[("app", "db")], vec![]).matches(&web));
        assert!(sel(&[("app", "web"), ("tier", "front")], vec![]).matches(&web));
        assert!(!sel(&[("app", "web"), ("tier", "back")], vec![]).matches(&web));
        let host = set("reserved:host");
        assert!(sel(&[("reserved:host", "")], vec![]).matches(&host));
        assert!(!sel(&[("k8s:host", "")], vec![]).matches(&host));
        assert!(sel(&[("host", "")], vec![]).matches(&host));
    }

    #[test]
    fn operators() {
        let web = set("k8s:app=web,k8s:tier=front");
        let none = set("k8s:other=x");
        let in_ = req("app", Operator::In, &["web", "api"]);
        assert!(in_.matches(&web));
        assert!(!in_.matches(&set("k8s:app=db")));
        assert!(!in_.matches(&none));
        let not_in = req("k8s:app", Operator::NotIn, &["web"]);
        assert!(!not_in.matches(&web));
        assert!(not_in.matches(&set("k8s:app=db")));
        assert!(not_in.matches(&none), "NotIn matches an absent key");
        let exists = req("tier", Operator::Exists, &[]);
        assert!(exists.matches(&web));
        assert!(!exists.matches(&none));
        let dne = req("any:tier", Operator::DoesNotExist, &[]);
        assert!(!dne.matches(&web));
        assert!(dne.matches(&none));
        let dne_src = req("reserved:tier", Operator::DoesNotExist, &[]);
        assert!(dne_src.matches(&web), "k8s:tier is not reserved:tier");
        let s = sel(
            &[("app", "web")],
            vec![req("tier", Operator::NotIn, &["back"])],
        );
        assert!(s.matches(&web));
        assert!(!s.matches(&set("k8s:app=web,k8s:tier=back")));
    }

    fn pod(ns: &str, labels: &[(&str, &str)], ns_labels: &[(&str, &str)]) -> LabelSet {
        let m = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        pod_security_labels(ns, &m(labels), &m(ns_labels), "default")
    }

    #[test]
    fn namespace_helpers() {
        let a = pod("a", &[("app", "web")], &[("team", "x")]);
        let b = pod("b", &[("app", "web")], &[("team", "y")]);
        let host = set("reserved:host");
        let web = sel(&[("app", "web")], vec![]);

        let in_a = web.clone().in_namespace("a");
        assert!(in_a.matches(&a) && !in_a.matches(&b));
        // A selector naming the namespace keeps it.
        let named = sel(&[("k8s:io.kubernetes.pod.namespace", "b")], vec![]).in_namespace("a");
        assert!(named.matches(&b) && !named.matches(&a));
        // Namespace labels too.
        let by_ns_label = sel(&[("io.cilium.k8s.namespace.labels.team", "y")], vec![]);
        assert!(by_ns_label.clone().in_namespace("a").matches(&b));
        // Reserved selectors are left alone.
        let h = sel(&[("reserved:host", "")], vec![]);
        assert!(h.clone().in_namespace("a").matches(&host));
        assert!(h.in_any_namespace().matches(&host));
        // {} in a cluster-wide policy: every pod, no reserved identity.
        let any = EndpointSelector::all().in_any_namespace();
        assert!(any.matches(&a) && any.matches(&b) && !any.matches(&host));
        // require_namespace ignores what the selector names.
        let strict = sel(&[("io.kubernetes.pod.namespace", "b")], vec![]).require_namespace("a");
        assert!(!strict.matches(&a) && !strict.matches(&b));

        let mut ns_sel = LabelSelector::default();
        ns_sel.match_labels.insert("team".into(), "y".into());
        let s = EndpointSelector::for_namespace_selector(&ns_sel);
        assert!(s.matches(&b) && !s.matches(&a));
        let s = s.and(web.clone());
        assert!(s.matches(&b));
        assert!(!s.matches(&pod("b", &[("app", "db")], &[("team", "y")])));
        // A negative namespace selector selects no reserved identity.
        let neg = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![("team".into(), Operator::NotIn, vec!["y".into()])],
        };
        let s = EndpointSelector::for_namespace_selector(&neg);
        assert!(s.matches(&a) && !s.matches(&b) && !s.matches(&host));
        assert!(EndpointSelector::for_namespace_selector(&LabelSelector::default()).matches(&a));
    }

    #[test]
    fn from_label_selector_parses_keys() {
        let ls = LabelSelector {
            match_labels: [("k8s:app".to_string(), "web".to_string())].into(),
            match_expressions: vec![("tier".into(), Operator::Exists, vec![])],
        };
        let s = EndpointSelector::from_label_selector(&ls).unwrap();
        assert_eq!(s.match_labels[0].0, LabelKey::k8s("app"));
        assert_eq!(s.match_expressions[0].key, LabelKey::any("tier"));
        let mut l = set("k8s:app=web");
        assert!(!s.matches(&l));
        l.insert(Label::k8s("tier", "x"));
        assert!(s.matches(&l));
        assert_eq!("NotIn".parse::<Operator>().unwrap(), Operator::NotIn);
        assert!("Nope".parse::<Operator>().is_err());
        let bad = LabelSelector {
            match_labels: [(":x".to_string(), String::new())].into(),
            match_expressions: vec![],
        };
        assert!(EndpointSelector::from_label_selector(&bad).is_err());
    }
}
