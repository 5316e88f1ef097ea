//! Pods grouped by namespace with label postings, so that a service's
//! endpoints are found without looking at every pod.

use std::collections::{BTreeMap, BTreeSet};

use tollway_api::{Pod, Service};

use super::selector_matches;
use crate::model::ServiceKey;

/// Pods by namespace and name, with an inverted index from each label pair
/// to the pods carrying it. The caller builds it once and keeps it up to
/// date with [`PodIndex::upsert`] and [`PodIndex::remove`]; it owns copies
/// of the pods.
///
/// A pod is identified by namespace (`default` when unset) and name: two
/// pods with the same identity cannot both be held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodIndex {
    namespaces: BTreeMap<String, NamespacePods>,
    len: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct NamespacePods {
    pods: BTreeMap<String, Pod>,
    /// label key → label value → names of the pods with that label.
    labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl NamespacePods {
    fn unlink(&mut self, pod: &Pod) {
        let name = &pod.metadata.name;
        for (k, v) in &pod.metadata.labels {
            if let Some(values) = self.labels.get_mut(k) {
                if let Some(names) = values.get_mut(v) {
                    names.remove(name);
                    if names.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.labels.remove(k);
                }
            }
        }
    }

    fn link(&mut self, pod: &Pod) {
        for (k, v) in &pod.metadata.labels {
            self.labels
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(pod.metadata.name.clone());
        }
    }
}

impl PodIndex {
    /// An empty index.
    pub fn new() -> PodIndex {
        PodIndex::default()
    }

    /// An index of copies of `pods` (a later pod with the same namespace and
    /// name replaces an earlier one).
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> PodIndex {
        let mut index = PodIndex::new();
        for p in pods {
            index.upsert(p.clone());
        }
        index
    }

    /// Add or replace a pod; returns the pod it replaces.
    pub fn upsert(&mut self, pod: Pod) -> Option<Pod> {
        let ns = self
            .namespaces
            .entry(pod.metadata.namespace_or_default().to_string())
            .or_default();
        let old = ns.pods.remove(&pod.metadata.name);
        if let Some(o) = &old {
            ns.unlink(o);
        } else {
            self.len += 1;
        }
        ns.link(&pod);
        ns.pods.insert(pod.metadata.name.clone(), pod);
        old
    }

    /// Remove a pod; returns it.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<Pod> {
        let ns = self.namespaces.get_mut(namespace)?;
        let old = ns.pods.remove(name)?;
        ns.unlink(&old);
        if ns.pods.is_empty() {
            self.namespaces.remove(namespace);
        }
        self.len -= 1;
        Some(old)
    }

    /// The pod with this namespace and name.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.namespaces.get(namespace)?.pods.get(name)
    }

    /// Number of pods.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no pods.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every pod, by namespace and name.
    pub fn iter(&self) -> impl Iterator<Item = &Pod> + '_ {
        self.namespaces.values().flat_map(|ns| ns.pods.values())
    }

    /// The pods of `namespace`, by name.
    pub fn in_namespace<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|ns| ns.pods.values())
    }

    /// The pods of `namespace` whose labels contain every pair of
    /// `selector`, by name; none for an empty selector (as
    /// [`desired_services`](crate::desired_services) treats selector-less
    /// services). Costs the size of the smallest posting list of the
    /// selector's pairs, not the namespace's pod count.
    pub fn selected<'a>(
        &'a self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Vec<&'a Pod> {
        let Some(ns) = self.namespaces.get(namespace) else {
            return Vec::new();
        };
        let mut smallest: Option<&BTreeSet<String>> = None;
        for (k, v) in selector {
            let Some(names) = ns.labels.get(k).and_then(|values| values.get(v)) else {
                return Vec::new();
            };
            if smallest.is_none_or(|s| names.len() < s.len()) {
                smallest = Some(names);
            }
        }
        let Some(names) = smallest else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|n| ns.pods.get(n))
            .filter(|p| selector_matches(selector, &p.metadata.labels))
            .collect()
    }
}

/// The services whose endpoints a pod change can affect: those in the pod's
/// namespace whose (non-empty) selector matches the old or the new pod's
/// labels. `old` is the pod before the change (`None` when added), `new`
/// after it (`None` when deleted). Services without a selector are never
/// affected.
///
/// This looks at every given service; [`DesiredState`](crate::DesiredState)
/// keeps a selector index and answers the same question
/// ([`DesiredState::affected_services`](crate::DesiredState::affected_services))
/// without that.
pub fn affected_services<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    old: Option<&Pod>,
    new: Option<&Pod>,
) -> BTreeSet<ServiceKey> {
    let pods: Vec<&Pod> = old.into_iter().chain(new).collect();
    services
        .into_iter()
        .filter(|s| {
            pods.iter().any(|p| {
                p.metadata.namespace_or_default() == s.metadata.namespace_or_default()
                    && selector_matches(&s.spec.selector, &p.metadata.labels)
            })
        })
        .map(ServiceKey::of)
        .collect()
}
