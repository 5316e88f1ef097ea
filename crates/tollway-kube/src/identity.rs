//! Security identities that every node agrees on, allocated through the
//! API as Cilium does with CiliumIdentity: one cluster-scoped
//! `tollway.io/v1alpha1` `TollwayIdentity` per security label set, named by
//! its number, the labels in `security-labels`.
//!
//! Allocation ([`IdentityAllocator::allocate`]): list the identities; if
//! one carries the labels, that is the number. Otherwise create the lowest
//! free number. The API server's create is the arbiter: on `409
//! AlreadyExists` the allocator reads that object, and if it carries the
//! same labels (another agent raced us for the same set) its number wins;
//! if not, it lists again and tries the next free number. As long as no
//! identity is deleted, two allocators cannot end with two numbers for one
//! set: a number is free in a later list only if it was free in every
//! earlier one, so the allocator with the older view tries a number that
//! is either taken (409) or the same as the other's.
//!
//! Identities are not garbage-collected yet: a set no pod has any more
//! keeps its number (deleting one would reopen the race above, which needs
//! a lowest-number-wins rule for duplicates first).

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tollway_api::Kind;
use tollway_policy::LabelSet;
use tollway_policy::abi::{TW_ID_CIDR_FIRST, TW_ID_CLUSTER_FIRST};

use crate::error::KubeError;
use crate::registry::{Conversion, KindEntry};

/// The identity CRD's group.
pub const IDENTITY_GROUP: &str = "tollway.io";
/// Its version.
pub const IDENTITY_VERSION: &str = "v1alpha1";
/// Its kind.
pub const IDENTITY_KIND: &str = "TollwayIdentity";
/// Its plural.
pub const IDENTITY_PLURAL: &str = "tollwayidentities";

/// The CustomResourceDefinition (`kubectl apply -f` it once per cluster).
pub const CRD_YAML: &str = include_str!("../crd/tollwayidentities.yaml");

/// Conflicts tolerated before giving up on one label set.
const MAX_ATTEMPTS: u32 = 16;

/// Where the API serves TollwayIdentities.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: IDENTITY_GROUP.into(),
        version: IDENTITY_VERSION.into(),
        api_version: format!("{IDENTITY_GROUP}/{IDENTITY_VERSION}"),
        kind: IDENTITY_KIND.into(),
        plural: IDENTITY_PLURAL.into(),
    }
}

/// The registry's entry: TollwayIdentities land in the mirror as
/// CiliumIdentities (same shape), which is what policy reads.
pub(crate) fn entry() -> KindEntry {
    KindEntry {
        resource: api_resource(),
        namespaced: false,
        conversion: Conversion::DecodeAs(Kind::CiliumIdentity),
        prepare: None,
    }
}

/// The `security-labels` of an identity object.
fn labels_of(o: &DynamicObject) -> BTreeMap<String, String> {
    o.data
        .get("security-labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// What [`IdentityAllocator::allocate`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The number.
    pub id: u32,
    /// This call created the object (false: it existed, or another agent's
    /// create for the same labels won).
    pub created: bool,
}

/// Allocates identities through the API server.
#[derive(Clone)]
pub struct IdentityAllocator {
    api: Api<DynamicObject>,
}

impl IdentityAllocator {
    /// An allocator using `client`.
    pub fn new(client: Client) -> IdentityAllocator {
        IdentityAllocator {
            api: Api::all_with(client, &api_resource()),
        }
    }

    /// The number of `labels`: the existing identity's, or a new one.
    pub async fn allocate(&self, labels: &LabelSet) -> Result<Allocation, KubeError> {
        let want = tollway_policy::security_labels_map(labels);
        let err = |action: String, source| KubeError::Identity {
            labels: labels.to_string(),
            action,
            source,
        };
        for _ in 0..MAX_ATTEMPTS {
            let list = self
                .api
                .list(&ListParams::default())
                .await
                .map_err(|e| err("listing".into(), e))?;
            let mut used = BTreeSet::new();
            let mut found = None;
            for o in &list.items {
                let Some(id) = o
                    .metadata
                    .name
                    .as_deref()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                used.insert(id);
                if labels_of(o) == want {
                    found = Some(found.map_or(id, |f: u32| f.min(id)));
                }
            }
            if let Some(id) = found {
                return Ok(Allocation { id, created: false });
            }
            let Some(id) = lowest_free(&used) else {
                return Err(KubeError::IdentitiesExhausted {
                    labels: labels.to_string(),
                    first: TW_ID_CLUSTER_FIRST,
                    last: TW_ID_CIDR_FIRST - 1,
                });
            };
            let mut obj = DynamicObject::new(&id.to_string(), &api_resource());
            obj.data = json!({ "security-labels": want });
            match self.api.create(&PostParams::default(), &obj).await {
                Ok(_) => return Ok(Allocation { id, created: true }),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Taken: by the same labels (another agent won the
                    // race for this set), or by another set.
                    let current = self
                        .api
                        .get_opt(&id.to_string())
                        .await
                        .map_err(|e| err(format!("reading {id}"), e))?;
                    if current.as_ref().is_some_and(|o| labels_of(o) == want) {
                        return Ok(Allocation { id, created: false });
                    }
                }
                Err(e) => return Err(err(format!("creating {id}"), e)),
            }
        }
        Err(KubeError::IdentityConflicts {
            labels: labels.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// The lowest endpoint identity number `used` does not hold.
fn lowest_free(used: &BTreeSet<u32>) -> Option<u32> {
    let mut candidate = TW_ID_CLUSTER_FIRST;
    for &id in used.range(TW_ID_CLUSTER_FIRST..TW_ID_CIDR_FIRST) {
        if id != candidate {
            break;
        }
        candidate += 1;
    }
    (candidate < TW_ID_CIDR_FIRST).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_skips_taken_and_foreign_numbers() {
        assert_eq!(lowest_free(&BTreeSet::new()), Some(256));
        assert_eq!(lowest_free(&[1, 2, 256, 257, 259].into()), Some(258));
        assert_eq!(lowest_free(&[257].into()), Some(256));
    }

    #[test]
    fn the_crd_names_the_kind() {
        assert!(CRD_YAML.contains("name: tollwayidentities.tollway.io"));
        assert!(CRD_YAML.contains("kind: TollwayIdentity"));
        assert!(CRD_YAML.contains("scope: Cluster"));
    }
}
