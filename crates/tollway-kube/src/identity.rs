//! Security identities that every node agrees on, allocated through the
//! API as Cilium does with CiliumIdentity: one cluster-scoped
//! `tollway.io/v1alpha1` `TollwayIdentity` per security label set, named by
//! its number, the labels in `security-labels`.
//!
//! # Allocation
//!
//! [`IdentityAllocator::allocate`]: list the identities; if some carry the
//! labels, the lowest of their numbers is the answer (after the allocator
//! has removed the garbage collector's mark from it, if it carries one:
//! see below). Otherwise create the lowest free number. The API server's
//! create is the arbiter: on `409 AlreadyExists` the allocator reads that
//! object, and if it carries the same labels (another agent raced us for
//! the same set) its number wins; if not, it lists again and tries the
//! next free number. As long as no identity is deleted, two allocators
//! cannot end with two numbers for one set: a number is free in a later
//! list only if it was free in every earlier one, so the allocator with
//! the older view tries a number that is either taken (409) or the same as
//! the other's.
//!
//! # Garbage collection
//!
//! [`IdentityGc::pass`] is a mark and sweep, as Cilium's operator does it
//! for CiliumIdentity (its heartbeat annotation, `identity-gc-interval`
//! and `identity-heartbeat-timeout`). The source runs one pass every
//! `identity_gc_interval` (15 min), only while it is synced and connected,
//! with the label sets of every pod in its mirror (the watches are
//! cluster-wide). An identity is *used* when some pod has its label set
//! and no lower number carries the same set. Then, each write carrying
//! the resourceVersion the pass listed (409 Conflict if the object changed
//! since):
//!
//! - an unused identity without a mark is marked: a merge patch setting
//!   [`UNUSED_SINCE`] (`tollway.io/unused-since: <RFC 3339 time>`);
//! - an unused identity whose mark is older than the grace (15 min) is
//!   deleted, with `Preconditions { resourceVersion }`;
//! - a used identity that carries the mark gets it removed.
//!
//! **A delete cannot take a number from someone who reclaimed it.** The
//! allocator never hands out a marked identity: it first removes the mark
//! by a merge patch carrying the resourceVersion it read, and returns the
//! number only once that patch succeeded (409: it reads the object again
//! and retries; 404: the object is gone, it lists again and allocates
//! anew). The API server orders the writes to one object, so of that patch
//! and a delete made against the same marked version exactly one wins: the
//! patch (the object has a new version, the delete gets 409 and the
//! identity lives, unmarked), or the delete (the patch gets 404 and the
//! allocator ends with an identity that exists, created or found again). A
//! delete therefore succeeds only on the very version the collector saw
//! marked and unused: nobody reclaimed it since.
//!
//! The agents call the allocator for a set their mirror has no identity
//! for, and also for one whose identity carries the mark
//! ([`crate::KubeSource::request_missing_identities`]): an agent whose pods
//! use a marked identity reclaims it as soon as its watch shows the mark.
//! What is left is timing, as in Cilium: an agent that took number N
//! before N was marked (its list or mirror showed N unmarked) is safe as
//! long as, within the grace, the collector's mirror shows its pod (the
//! next pass then removes the mark) or its own mirror shows the mark (it
//! reclaims). Both watches would have to lag by more than the grace for a
//! delete to hit a number in use. An agent cut off from the API server
//! keeps its last state (the mirror is never cleared), so it may keep
//! using a number that was deleted meanwhile; once back, it sees the
//! deletion and allocates again.
//!
//! **Duplicates.** With deletions, the no-duplicates argument above no
//! longer holds (a number free in a later list may have been taken in an
//! earlier one): allocator A lists while N is taken by an unused set,
//! the collector deletes N, allocator B lists, finds N free and creates N
//! for set S, then A, from its older list, creates M > N for S too (M was
//! free in both lists). The rule is then that **the lowest number wins**,
//! everywhere: the allocator returns (and reclaims) the lowest identity of
//! a set, and policy resolves a set to its lowest identity
//! (`tollway_policy::cluster_policy`). Agents may disagree only while one
//! mirror shows M and not yet N (watch lag); they agree on N once N is in
//! every mirror. The collector counts M as unused (no pod resolves to it),
//! so M is marked and, a grace later, deleted. That is safe by the same
//! argument: an agent still resolving S to M has a mirror lacking N,
//! i.e. a watch lagging by more than the grace; and no allocator reclaims
//! M while N exists (it picks N). Should N go first (all of S's pods
//! gone), M is the lowest and is treated like any other identity.
//!
//! **Who collects.** One agent: the one whose node name is the lowest
//! among the Node objects in its mirror, a choice every agent makes alone
//! (see [`crate::SourceOptions::node`]). Two agents may briefly both think
//! they are the one (a Node added or removed, a lagging watch): both pass,
//! and the preconditions keep it safe, since every write is made against
//! the version its writer listed (a second collector's mark or delete on
//! an object the first one changed gets 409, counted as a conflict; on one
//! it deleted, 404). At worst a mark is set again, which restarts the
//! grace. If the lowest-named node runs no agent (a `nodeSelector`),
//! nobody collects, which is also safe: unused identities are kept. The
//! mark is the marking agent's wall clock and its age is taken on the
//! collecting agent's: clock skew between nodes lengthens or shortens the
//! grace by as much.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
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

/// The garbage collector's mark: since when (RFC 3339) no pod has had the
/// identity's labels.
pub const UNUSED_SINCE: &str = "tollway.io/unused-since";

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

/// The number of an identity object (its name), if it is an endpoint
/// identity's.
fn number_of(o: &DynamicObject) -> Option<u32> {
    o.metadata
        .name
        .as_deref()
        .and_then(|n| n.parse::<u32>().ok())
}

/// The garbage collector's mark on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// None.
    Unmarked,
    /// Unused since then.
    Since(Timestamp),
    /// An annotation that is no RFC 3339 time (written by someone else):
    /// replaced by a proper mark, or removed.
    Invalid,
}

fn mark_of(o: &DynamicObject) -> Mark {
    match o
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(UNUSED_SINCE))
    {
        None => Mark::Unmarked,
        Some(v) => v.parse().map_or(Mark::Invalid, Mark::Since),
    }
}

/// A merge patch setting (`Some`) or removing (`None`) the mark, which
/// applies only to version `rv` (409 Conflict otherwise).
fn mark_patch(rv: &str, since: Option<Timestamp>) -> Patch<Value> {
    Patch::Merge(json!({
        "metadata": {
            "resourceVersion": rv,
            "annotations": { UNUSED_SINCE: since.map(|t| t.to_string()) },
        }
    }))
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// What [`IdentityAllocator::allocate`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The number.
    pub id: u32,
    /// This call created the object (false: it existed, or another agent's
    /// create for the same labels won).
    pub created: bool,
    /// The identity carried the garbage collector's mark, and this call
    /// removed it.
    pub reclaimed: bool,
}

/// How removing the mark from an identity ended.
enum Reclaim {
    /// The object exists unmarked (`true`: this call removed the mark).
    Held(bool),
    /// It is gone (deleted, or it carries other labels now).
    Gone,
    /// Every attempt conflicted (the object kept changing).
    Contended,
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

    /// The number of `labels`: the existing identity's (the lowest, if
    /// several carry them; its mark removed), or a new one.
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
            let mut found: Option<(u32, &DynamicObject)> = None;
            for o in &list.items {
                let Some(id) = number_of(o) else {
                    continue;
                };
                used.insert(id);
                if labels_of(o) == want && found.is_none_or(|(f, _)| id < f) {
                    found = Some((id, o));
                }
            }
            if let Some((id, o)) = found {
                match self.reclaim(o.clone(), &want).await {
                    Ok(Reclaim::Held(reclaimed)) => {
                        return Ok(Allocation {
                            id,
                            created: false,
                            reclaimed,
                        });
                    }
                    // Deleted under us: list again, allocate anew.
                    Ok(Reclaim::Gone) => continue,
                    Ok(Reclaim::Contended) => break,
                    Err(e) => return Err(err(format!("removing the mark of {id}"), e)),
                }
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
                Ok(_) => {
                    return Ok(Allocation {
                        id,
                        created: true,
                        reclaimed: false,
                    });
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Taken: by the same labels (another agent won the
                    // race for this set, or our list was older than that
                    // identity), or by another set.
                    let current = self
                        .api
                        .get_opt(&id.to_string())
                        .await
                        .map_err(|e| err(format!("reading {id}"), e))?;
                    if let Some(o) = current.filter(|o| labels_of(o) == want) {
                        match self.reclaim(o, &want).await {
                            Ok(Reclaim::Held(reclaimed)) => {
                                return Ok(Allocation {
                                    id,
                                    created: false,
                                    reclaimed,
                                });
                            }
                            Ok(Reclaim::Gone) => {}
                            Ok(Reclaim::Contended) => break,
                            Err(e) => {
                                return Err(err(format!("removing the mark of {id}"), e));
                            }
                        }
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

    /// Make sure `o` (carrying `want`) is unmarked: remove the mark with
    /// `o`'s resourceVersion as the precondition; on 409 read it again and
    /// retry; on 404 it is gone.
    async fn reclaim(
        &self,
        mut o: DynamicObject,
        want: &BTreeMap<String, String>,
    ) -> Result<Reclaim, kube::Error> {
        let name = o.metadata.name.clone().unwrap_or_default();
        for _ in 0..MAX_ATTEMPTS {
            if mark_of(&o) == Mark::Unmarked {
                return Ok(Reclaim::Held(false));
            }
            let rv = o.metadata.resource_version.clone().unwrap_or_default();
            match self
                .api
                .patch(&name, &PatchParams::default(), &mark_patch(&rv, None))
                .await
            {
                Ok(_) => {
                    tracing::info!(identity = %name, "removed the garbage collector's mark");
                    return Ok(Reclaim::Held(true));
                }
                Err(e) if status_code(&e) == Some(404) => return Ok(Reclaim::Gone),
                Err(e) if status_code(&e) == Some(409) => match self.api.get_opt(&name).await? {
                    Some(current) if labels_of(&current) == *want => o = current,
                    _ => return Ok(Reclaim::Gone),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(Reclaim::Contended)
    }
}

/// What one [`IdentityGc::pass`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcPass {
    /// Unused identities marked.
    pub marked: u64,
    /// Marks removed from used identities.
    pub unmarked: u64,
    /// Identities deleted (unused, marked longer than the grace).
    pub deleted: u64,
    /// Writes refused because the object had changed since the list (409)
    /// or was gone (404): someone reclaimed, marked or deleted it first.
    pub conflicts: u64,
    /// Marked identities whose grace has not passed yet.
    pub waiting: u64,
}

/// The garbage collection of identities no pod uses: one pass marks,
/// sweeps and unmarks (see the module's documentation).
#[derive(Clone)]
pub struct IdentityGc {
    api: Api<DynamicObject>,
    grace: Duration,
}

impl IdentityGc {
    /// A collector using `client`; identities stay marked for `grace`
    /// before they are deleted.
    pub fn new(client: Client, grace: Duration) -> IdentityGc {
        IdentityGc {
            api: Api::all_with(client, &api_resource()),
            grace,
        }
    }

    /// One pass at time `now`, given the label sets of every pod of the
    /// cluster (`wanted`).
    pub async fn pass(
        &self,
        wanted: &BTreeSet<LabelSet>,
        now: Timestamp,
    ) -> Result<GcPass, KubeError> {
        let err = |action: String, source| KubeError::IdentityGc { action, source };
        let wanted: BTreeSet<BTreeMap<String, String>> = wanted
            .iter()
            .map(tollway_policy::security_labels_map)
            .collect();
        let list = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| err("listing".into(), e))?;
        // Endpoint identities only; one being deleted already is left be.
        let identities: Vec<(u32, BTreeMap<String, String>, &DynamicObject)> = list
            .items
            .iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .filter_map(|o| {
                let id = number_of(o)?;
                (TW_ID_CLUSTER_FIRST..TW_ID_CIDR_FIRST)
                    .contains(&id)
                    .then(|| (id, labels_of(o), o))
            })
            .collect();
        let mut lowest: BTreeMap<&BTreeMap<String, String>, u32> = BTreeMap::new();
        for (id, labels, _) in &identities {
            let l = lowest.entry(labels).or_insert(*id);
            *l = (*l).min(*id);
        }
        let grace = SignedDuration::try_from(self.grace).unwrap_or(SignedDuration::MAX);
        let mut pass = GcPass::default();
        for (id, labels, o) in &identities {
            let used = wanted.contains(labels) && lowest.get(labels) == Some(id);
            let name = id.to_string();
            let rv = o.metadata.resource_version.clone().unwrap_or_default();
            let mark = mark_of(o);
            let write = match (used, mark) {
                (true, Mark::Unmarked) => continue,
                (true, Mark::Since(_) | Mark::Invalid) => {
                    let r = self
                        .api
                        .patch(&name, &PatchParams::default(), &mark_patch(&rv, None))
                        .await
                        .map(|_| pass.unmarked += 1);
                    r.map_err(|e| (format!("removing the mark of {name}"), e))
                }
                (false, Mark::Unmarked | Mark::Invalid) => {
                    let r = self
                        .api
                        .patch(&name, &PatchParams::default(), &mark_patch(&rv, Some(now)))
                        .await
                        .map(|_| pass.marked += 1);
                    if r.is_ok() {
                        tracing::info!(identity = id, "no pod uses this identity: marked");
                    }
                    r.map_err(|e| (format!("marking {name}"), e))
                }
                (false, Mark::Since(t)) if now.duration_since(t) < grace => {
                    pass.waiting += 1;
                    continue;
                }
                (false, Mark::Since(t)) => {
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            resource_version: Some(rv),
                            uid: None,
                        }),
                        ..DeleteParams::default()
                    };
                    let r = self.api.delete(&name, &dp).await.map(|_| pass.deleted += 1);
                    if r.is_ok() {
                        tracing::info!(identity = id, unused_since = %t, "deleted an unused identity");
                    }
                    r.map_err(|e| (format!("deleting {name}"), e))
                }
            };
            match write {
                Ok(()) => {}
                Err((_, e)) if matches!(status_code(&e), Some(404 | 409)) => {
                    tracing::debug!(identity = id, error = %e, "changed since the list; left to the next pass");
                    pass.conflicts += 1;
                }
                Err((action, e)) => return Err(err(action, e)),
            }
        }
        Ok(pass)
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
