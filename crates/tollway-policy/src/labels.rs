//! Security labels: [`Label`], [`LabelSet`], selector keys ([`LabelKey`]),
//! and the labels of a pod as Cilium computes them
//! ([`pod_security_labels`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PolicyError;

/// Label source of Kubernetes labels.
pub const SOURCE_K8S: &str = "k8s";
/// Label source of reserved identities (`reserved:host`, ...).
pub const SOURCE_RESERVED: &str = "reserved";
/// Label source of CIDR identities (`cidr:10.0.0.0/8`).
pub const SOURCE_CIDR: &str = "cidr";
/// Selector source prefix that matches labels of every source.
pub const SOURCE_ANY: &str = "any";

/// The pod's namespace (`k8s:io.kubernetes.pod.namespace=<ns>`).
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The pod's service account.
pub const LABEL_SERVICE_ACCOUNT: &str = "io.cilium.k8s.policy.serviceaccount";
/// The pod's cluster.
pub const LABEL_CLUSTER: &str = "io.cilium.k8s.policy.cluster";
/// Prefix of the labels of the pod's namespace
/// (`k8s:io.cilium.k8s.namespace.labels.<key>=<value>`).
pub const LABEL_NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";
/// The cluster name every pod gets (Cilium's default).
pub const CLUSTER_NAME: &str = "default";

/// One security label: `source:key=value` (`source:key` when the value is
/// empty, like `reserved:host`).
///
/// Ordered by source, key, value; serialized as its string form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Where the label comes from: `k8s`, `reserved`, `cidr`, ...
    pub source: String,
    /// The key, without the source.
    pub key: String,
    /// The value; empty for reserved and CIDR labels.
    pub value: String,
}

impl Label {
    /// A label from its parts.
    pub fn new(source: &str, key: &str, value: &str) -> Label {
        Label {
            source: source.to_string(),
            key: key.to_string(),
            value: value.to_string(),
        }
    }

    /// A Kubernetes label, `k8s:key=value`.
    pub fn k8s(key: &str, value: &str) -> Label {
        Label::new(SOURCE_K8S, key, value)
    }

    /// A reserved label, `reserved:name`.
    pub fn reserved(name: &str) -> Label {
        Label::new(SOURCE_RESERVED, name, "")
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.key)?;
        if !self.value.is_empty() {
            write!(f, "={}", self.value)?;
        }
        Ok(())
    }
}

impl FromStr for Label {
    type Err = PolicyError;

    /// Parses `source:key=value` or `source:key`; the source is required
    /// (the text before the first `:`), the value is everything after the
    /// first `=`.
    fn from_str(s: &str) -> Result<Label, PolicyError> {
        let bad = |reason: &'static str| PolicyError::InvalidLabel {
            input: s.to_string(),
            reason,
        };
        let (source_key, value) = s.split_once('=').unwrap_or((s, ""));
        let (source, key) = source_key
            .split_once(':')
            .ok_or_else(|| bad("missing `source:`"))?;
        if source.is_empty() {
            return Err(bad("empty source"));
        }
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        Ok(Label::new(source, key, value))
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Label, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of labels: sorted, and at most one value per (source, key).
///
/// Displays as the labels joined by `,` (`k8s:app=web,k8s:tier=db`); parses
/// from that form; serializes as a list of label strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(BTreeSet<Label>);

impl LabelSet {
    /// The empty set.
    pub fn new() -> LabelSet {
        LabelSet::default()
    }

    /// Adds a label, replacing any label with the same source and key.
    pub fn insert(&mut self, label: Label) {
        let old = self
            .0
            .range(Label::new(&label.source, &label.key, "")..)
            .next()
            .filter(|l| l.source == label.source && l.key == label.key)
            .cloned();
        if let Some(old) = old {
            self.0.remove(&old);
        }
        self.0.insert(label);
    }

    /// The value of `source:key`, if present.
    pub fn get(&self, source: &str, key: &str) -> Option<&str> {
        self.0
            .range(Label::new(source, key, "")..)
            .next()
            .filter(|l| l.source == source && l.key == key)
            .map(|l| l.value.as_str())
    }

    /// The labels, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// Whether the set contains exactly this label.
    pub fn contains(&self, label: &Label) -> bool {
        self.0.contains(label)
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no label.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Label> for LabelSet {
    fn from_iter<I: IntoIterator<Item = Label>>(iter: I) -> LabelSet {
        let mut set = LabelSet::new();
        for l in iter {
            set.insert(l);
        }
        set
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSet {
    type Err = PolicyError;

    /// Parses labels separated by `,` (the [`Display`](fmt::Display) form);
    /// the empty string is the empty set.
    fn from_str(s: &str) -> Result<LabelSet, PolicyError> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl Serialize for LabelSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for LabelSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LabelSet, D::Error> {
        Ok(Vec::<Label>::deserialize(d)?.into_iter().collect())
    }
}

/// The key of a selector requirement: a label key and the source it must
/// come from (`None`: any source).
///
/// Parsed from selector keys the way Cilium does: `k8s:app` → source
/// `k8s`; `any:app` and `app` → any source; `reserved:world` → source
/// `reserved`. Kubernetes label keys cannot contain `:`, so the keys of a
/// Kubernetes NetworkPolicy selector always parse as any-source keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelKey {
    /// The required source; `None` matches every source.
    pub source: Option<String>,
    /// The key, without the source.
    pub key: String,
}

impl LabelKey {
    /// A key of the given source.
    pub fn with_source(source: &str, key: &str) -> LabelKey {
        LabelKey {
            source: Some(source.to_string()),
            key: key.to_string(),
        }
    }

    /// A `k8s:` key.
    pub fn k8s(key: &str) -> LabelKey {
        LabelKey::with_source(SOURCE_K8S, key)
    }

    /// A key of any source.
    pub fn any(key: &str) -> LabelKey {
        LabelKey {
            source: None,
            key: key.to_string(),
        }
    }

    /// Whether `label` has this key (and source, if one is required).
    pub fn matches(&self, label: &Label) -> bool {
        label.key == self.key && self.source.as_ref().is_none_or(|s| *s == label.source)
    }

    /// Whether this key is `key` of source `k8s` or of any source.
    pub(crate) fn is_k8s_or_any(&self, key: &str) -> bool {
        self.key == key && self.source.as_deref().is_none_or(|s| s == SOURCE_K8S)
    }
}

impl fmt::Display for LabelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = self.source.as_deref().unwrap_or(SOURCE_ANY);
        write!(f, "{source}:{}", self.key)
    }
}

impl FromStr for LabelKey {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<LabelKey, PolicyError> {
        let (source, key) = match s.split_once(':') {
            Some((SOURCE_ANY, key)) => (None, key),
            Some((source, key)) => (Some(source.to_string()), key),
            None => (None, s),
        };
        if key.is_empty() || source.as_deref() == Some("") {
            return Err(PolicyError::InvalidLabelKey {
                input: s.to_string(),
            });
        }
        Ok(LabelKey {
            source,
            key: key.to_string(),
        })
    }
}

impl Serialize for LabelKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LabelKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LabelKey, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A pattern of Cilium's default `--labels` configuration, matched against
/// a label key from its start (Cilium's `LabelPrefix.matches`).
enum KeyPattern {
    /// A literal prefix; the match covers the prefix.
    Prefix(&'static str),
    /// `.*literal`: the key contains the literal; the match ends after its
    /// last occurrence (greedy `.*`).
    Contains(&'static str),
    /// `literal.*`: the key starts with the literal; the match covers the
    /// whole key.
    PrefixThenAll(&'static str),
}

impl KeyPattern {
    /// The length of the matched section, if the pattern matches at the
    /// start of `key`.
    fn match_len(&self, key: &str) -> Option<usize> {
        match self {
            KeyPattern::Prefix(p) => key.starts_with(p).then_some(p.len()),
            KeyPattern::Contains(p) => key.rfind(p).map(|i| i + p.len()),
            KeyPattern::PrefixThenAll(p) => key.starts_with(p).then_some(key.len()),
        }
    }
}

/// Cilium's default identity-label filter (`pkg/labelsfilter`,
/// `defaultLabelPrefixCfg`, plus the `controller-uid` exclusions of Cilium
/// 1.16): `(ignore, pattern)`. Includes only matter where they override a
/// shorter ignore (e.g. `io.kubernetes.pod.namespace` over `io.kubernetes`).
const DEFAULT_LABEL_FILTER: &[(bool, KeyPattern)] = &[
    (false, KeyPattern::Prefix("io.kubernetes.pod.namespace")),
    (false, KeyPattern::Prefix("io.cilium.k8s.namespace.labels")),
    (false, KeyPattern::Prefix("app.kubernetes.io")),
    (false, KeyPattern::Prefix("io.cilium.k8s.policy.cluster")),
    (true, KeyPattern::Prefix("io.kubernetes")),
    (true, KeyPattern::Prefix("kubernetes.io")),
    (
        true,
        KeyPattern::Prefix("statefulset.kubernetes.io/pod-name"),
    ),
    (true, KeyPattern::Prefix("apps.kubernetes.io/pod-index")),
    (
        true,
        KeyPattern::Prefix("batch.kubernetes.io/job-completion-index"),
    ),
    (
        true,
        KeyPattern::Prefix("batch.kubernetes.io/controller-uid"),
    ),
    (true, KeyPattern::Contains("beta.kubernetes.io")),
    (true, KeyPattern::Prefix("k8s.io")),
    (true, KeyPattern::Prefix("pod-template-generation")),
    (true, KeyPattern::Prefix("pod-template-hash")),
    (true, KeyPattern::Prefix("controller-revision-hash")),
    (true, KeyPattern::PrefixThenAll("annotation")),
    (true, KeyPattern::Prefix("controller-uid")),
    (true, KeyPattern::Prefix("etcd_node")),
];

/// Whether a `k8s:` label key is identity-relevant under Cilium's default
/// label filter: a label is kept unless an exclusion matches it, or an
/// inclusion matches a longer section of the key than the shortest
/// matching exclusion.
///
/// Excluded, for example: `pod-template-hash`, `controller-revision-hash`,
/// `pod-template-generation`, `statefulset.kubernetes.io/pod-name`,
/// `apps.kubernetes.io/pod-index`, `batch.kubernetes.io/controller-uid`,
/// `controller-uid`, `batch.kubernetes.io/job-completion-index`, every
/// `io.kubernetes.*`, `kubernetes.io/*`, `k8s.io/*`, `*beta.kubernetes.io*`
/// and `annotation*` key. Kept, like Cilium: `app.kubernetes.io/*`,
/// `io.kubernetes.pod.namespace`, namespace labels, and `job-name` /
/// `batch.kubernetes.io/job-name` (Cilium does not exclude those).
pub fn is_identity_relevant(key: &str) -> bool {
    let mut included = 0;
    let mut ignored = 0;
    for (ignore, pattern) in DEFAULT_LABEL_FILTER {
        let Some(len) = pattern.match_len(key) else {
            continue;
        };
        if *ignore {
            if ignored == 0 || len < ignored {
                ignored = len;
            }
        } else if len > included {
            included = len;
        }
    }
    ignored == 0 || included > ignored
}

/// The security labels of a pod, as Cilium computes them.
///
/// Every pod label becomes `k8s:<key>=<value>`; then the pod gets
/// `k8s:io.kubernetes.pod.namespace=<namespace>`,
/// `k8s:io.cilium.k8s.policy.serviceaccount=<service_account>` (unless
/// empty), `k8s:io.cilium.k8s.policy.cluster=default`, and
/// `k8s:io.cilium.k8s.namespace.labels.<key>=<value>` for each namespace
/// label. Pod labels that would impersonate these (the namespace key,
/// `io.cilium.k8s.policy.*`, `io.cilium.k8s.namespace.labels.*`) are
/// dropped first, like Cilium's `SanitizePodLabels`; finally labels that are
/// not [identity-relevant](is_identity_relevant) are left out.
pub fn pod_security_labels(
    namespace: &str,
    pod_labels: &BTreeMap<String, String>,
    namespace_labels: &BTreeMap<String, String>,
    service_account: &str,
) -> LabelSet {
    let mut set = LabelSet::new();
    let mut add = |key: &str, value: &str| {
        if is_identity_relevant(key) {
            set.insert(Label::k8s(key, value));
        }
    };
    for (k, v) in pod_labels {
        let reserved_key = k == LABEL_POD_NAMESPACE
            || k.starts_with("io.cilium.k8s.policy.")
            || k.starts_with(LABEL_NAMESPACE_LABELS_PREFIX);
        if !reserved_key {
            add(k, v);
        }
    }
    add(LABEL_POD_NAMESPACE, namespace);
    if !service_account.is_empty() {
        add(LABEL_SERVICE_ACCOUNT, service_account);
    }
    add(LABEL_CLUSTER, CLUSTER_NAME);
    for (k, v) in namespace_labels {
        add(&format!("{LABEL_NAMESPACE_LABELS_PREFIX}{k}"), v);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_display_and_parse() {
        let l: Label = "k8s:app=web".parse().unwrap();
        assert_eq!(l, Label::k8s("app", "web"));
        assert_eq!(l.to_string(), "k8s:app=web");
        let r: Label = "reserved:host".parse().unwrap();
        assert_eq!(r, Label::reserved("host"));
        assert_eq!(r.to_string(), "reserved:host");
        let c: Label = "cidr:10.0.0.0/8".parse().unwrap();
        assert_eq!((c.source.as_str(), c.key.as_str()), ("cidr", "10.0.0.0/8"));
        let v: Label = "k8s:a=b=c".parse().unwrap();
        assert_eq!(v.value, "b=c");
        assert!("app=web".parse::<Label>().is_err());
        assert!(":app=web".parse::<Label>().is_err());
        assert!("k8s:=web".parse::<Label>().is_err());
    }

    #[test]
    fn label_set_sorted_dedup_and_replace() {
        let set: LabelSet = "k8s:tier=db,k8s:app=web,k8s:app=web".parse().unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.to_string(), "k8s:app=web,k8s:tier=db");
        let mut set = set;
        set.insert(Label::k8s("app", "api"));
        assert_eq!(set.to_string(), "k8s:app=api,k8s:tier=db");
        assert_eq!(set.get("k8s", "app"), Some("api"));
        assert_eq!(set.get("k8s", "nope"), None);
        // The same key under another source is another label.
        set.insert(Label::new("container", "app", "x"));
        assert_eq!(set.len(), 3);
        assert_eq!("".parse::<LabelSet>().unwrap(), LabelSet::new());
    }

    #[test]
    fn label_set_serde_roundtrip() {
        let set: LabelSet = "k8s:app=web,reserved:host".parse().unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["k8s:app=web","reserved:host"]"#);
        let back: LabelSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn label_key_parse() {
        assert_eq!("k8s:app".parse::<LabelKey>().unwrap(), LabelKey::k8s("app"));
        assert_eq!("any:app".parse::<LabelKey>().unwrap(), LabelKey::any("app"));
        assert_eq!("app".parse::<LabelKey>().unwrap(), LabelKey::any("app"));
        assert_eq!(
            "reserved:world".parse::<LabelKey>().unwrap(),
            LabelKey::with_source("reserved", "world")
        );
        assert_eq!(
            "app.kubernetes.io/name".parse::<LabelKey>().unwrap(),
            LabelKey::any("app.kubernetes.io/name")
        );
        assert!("".parse::<LabelKey>().is_err());
        assert!("k8s:".parse::<LabelKey>().is_err());
        assert!(":app".parse::<LabelKey>().is_err());
        assert_eq!(LabelKey::any("app").to_string(), "any:app");
    }

    #[test]
    fn identity_relevance_follows_cilium_defaults() {
        for key in [
            "pod-template-hash",
            "controller-revision-hash",
            "pod-template-generation",
            "statefulset.kubernetes.io/pod-name",
            "apps.kubernetes.io/pod-index",
            "batch.kubernetes.io/controller-uid",
            "batch.kubernetes.io/job-completion-index",
            "controller-uid",
            "io.kubernetes.container.name",
            "kubernetes.io/hostname",
            "k8s.io/foo",
            "failure-domain.beta.kubernetes.io/zone",
            "annotation.foo",
            "etcd_node",
        ] {
            assert!(!is_identity_relevant(key), "{key} should be excluded");
        }
        for key in [
            "app",
            "tier",
            "app.kubernetes.io/name",
            "io.kubernetes.pod.namespace",
            "io.cilium.k8s.policy.serviceaccount",
            "io.cilium.k8s.policy.cluster",
            "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name",
            "job-name",
            "batch.kubernetes.io/job-name",
            "topology.kubernetes.io/zone",
        ] {
            assert!(is_identity_relevant(key), "{key} should be kept");
        }
    }

    #[test]
    fn pod_labels_like_cilium() {
        let set = pod_security_labels(
            "payments",
            &map(&[
                ("app", "checkout"),
                ("pod-template-hash", "5d8f7"),
                ("io.kubernetes.pod.namespace", "kube-system"),
                ("io.cilium.k8s.policy.serviceaccount", "admin"),
            ]),
            &map(&[("kubernetes.io/metadata.name", "payments"), ("team", "pay")]),
            "checkout-sa",
        );
        assert_eq!(
            set.to_string(),
            "k8s:app=checkout,\
             k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=payments,\
             k8s:io.cilium.k8s.namespace.labels.team=pay,\
             k8s:io.cilium.k8s.policy.cluster=default,\
             k8s:io.cilium.k8s.policy.serviceaccount=checkout-sa,\
             k8s:io.kubernetes.pod.namespace=payments"
        );
    }
}
