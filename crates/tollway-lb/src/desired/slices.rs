//! EndpointSlices by namespace and name, and by the Service they belong to
//! (their `kubernetes.io/service-name` label), so that a selector-less
//! service's endpoints are found without looking at every slice.

use std::collections::{BTreeMap, BTreeSet};

use tollway_api::EndpointSlice;

use crate::model::ServiceKey;

/// Slices by namespace and name, with the names of each service's slices.
/// The caller keeps it up to date with [`SliceIndex::upsert`] and
/// [`SliceIndex::remove`]; it owns copies of the slices.
///
/// A slice is identified by namespace (`default` when unset) and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceIndex {
    slices: BTreeMap<(String, String), EndpointSlice>,
    by_service: BTreeMap<ServiceKey, BTreeSet<String>>,
}

/// The service a slice belongs to: its label's name, in its namespace.
pub(crate) fn service_of(slice: &EndpointSlice) -> Option<ServiceKey> {
    Some(ServiceKey {
        namespace: slice.metadata.namespace_or_default().to_string(),
        name: slice.service_name()?.to_string(),
    })
}

impl SliceIndex {
    /// An empty index.
    pub fn new() -> SliceIndex {
        SliceIndex::default()
    }

    /// An index of copies of `slices` (a later slice with the same namespace
    /// and name replaces an earlier one).
    pub fn from_slices<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> SliceIndex {
        let mut index = SliceIndex::new();
        for s in slices {
            index.upsert(s.clone());
        }
        index
    }

    /// Add or replace a slice; returns the slice it replaces.
    pub fn upsert(&mut self, slice: EndpointSlice) -> Option<EndpointSlice> {
        let key = (
            slice.metadata.namespace_or_default().to_string(),
            slice.metadata.name.clone(),
        );
        let old = self.remove(&key.0, &key.1);
        if let Some(svc) = service_of(&slice) {
            self.by_service
                .entry(svc)
                .or_default()
                .insert(key.1.clone());
        }
        self.slices.insert(key, slice);
        old
    }

    /// Remove a slice; returns it.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<EndpointSlice> {
        let old = self
            .slices
            .remove(&(namespace.to_string(), name.to_string()))?;
        if let Some(svc) = service_of(&old)
            && let Some(names) = self.by_service.get_mut(&svc)
        {
            names.remove(name);
            if names.is_empty() {
                self.by_service.remove(&svc);
            }
        }
        Some(old)
    }

    /// The slice with this namespace and name.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&EndpointSlice> {
        self.slices.get(&(namespace.to_string(), name.to_string()))
    }

    /// Number of slices.
    pub fn len(&self) -> usize {
        self.slices.len()
    }

    /// Whether there are no slices.
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    /// Every slice, by namespace and name.
    pub fn iter(&self) -> impl Iterator<Item = &EndpointSlice> + '_ {
        self.slices.values()
    }

    /// The slices labelled with the service `name` in `namespace`, by
    /// name. Costs the service's slices, not all of them.
    pub fn of_service<'a>(&'a self, namespace: &str, name: &str) -> Vec<&'a EndpointSlice> {
        let key = ServiceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.by_service
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|n| self.slices.get(&(key.namespace.clone(), n.clone())))
            .collect()
    }
}
