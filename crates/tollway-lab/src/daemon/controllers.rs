//! The control plane's controllers, run inside one store transaction per
//! pass: the scheduler, the deployment controller, the garbage collector of
//! orphaned pods, the namespace finalizer and the identity allocator.

use std::collections::BTreeMap;

use tollway_api::{Kind, Node, Object, ObjectKey, ObjectMeta, OwnerReference, Pod, PodCondition};
use tollway_state::Txn;
use tollway_state::registry::{self, DeleteOptions};

/// Kubernetes' alphabet for generated names (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Run every controller once. Returns true if anything was written.
pub fn run_all(txn: &mut Txn) {
    deployments(txn);
    garbage_collect(txn);
    schedule(txn);
    registry::finalize_namespaces(txn);
    identities(txn);
}

/// Give every distinct set of pod security labels a CiliumIdentity (so
/// that every node agrees on the numbers), and delete the identities no
/// pod has any more. Runs after the scheduler in the same pass, so a pod
/// has its identity before its node starts it.
pub fn identities(txn: &mut Txn) {
    let existing: Vec<tollway_api::CiliumIdentity> =
        txn.state().cilium_identities().cloned().collect();
    let table = tollway_policy::identity_table(&existing);
    // Malformed ones (not allocated by us) are left alone but not used.
    let mut alloc = match tollway_policy::IdentityAllocator::from_existing(table) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot adopt the stored identities");
            return;
        }
    };
    let wanted = tollway_policy::wanted_label_sets(txn.state().namespaces(), txn.state().pods());
    for id in alloc.release_unused(&wanted) {
        txn.remove(&ObjectKey::new(Kind::CiliumIdentity, None, &id.to_string()));
    }
    for set in &wanted {
        if alloc.get(set).is_some() {
            continue;
        }
        match alloc.allocate(set) {
            Ok(id) => {
                txn.put(Object::CiliumIdentity(tollway_api::CiliumIdentity {
                    api_version: "cilium.io/v2".into(),
                    kind: "CiliumIdentity".into(),
                    metadata: ObjectMeta {
                        name: id.to_string(),
                        ..Default::default()
                    },
                    security_labels: tollway_policy::security_labels_map(set),
                }));
            }
            Err(e) => tracing::error!(error = %e, "cannot allocate an identity"),
        }
    }
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The `pod-template-hash` of a template, as Kubernetes encodes it.
pub fn template_hash(template: &tollway_api::PodTemplateSpec) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    fnv1a32(text.as_bytes())
        .to_string()
        .bytes()
        .map(|c| SAFE_ALPHABET[usize::from(c) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| SAFE_ALPHABET[usize::from(*b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn pod_key(p: &Pod) -> ObjectKey {
    ObjectKey::new(Kind::Pod, p.metadata.namespace.as_deref(), &p.metadata.name)
}

fn owned_by<'a>(txn: &'a Txn, uid: &str) -> Vec<&'a Pod> {
    txn.state()
        .pods()
        .filter(|p| {
            p.metadata
                .controller_of_kind("Deployment")
                .is_some_and(|o| o.uid == uid)
        })
        .collect()
}

/// Order in which surplus pods are removed (Kubernetes' ranking, roughly):
/// unscheduled before scheduled, not ready before ready, newer before older.
fn removal_rank(p: &Pod) -> (bool, bool, std::cmp::Reverse<Option<jiff::Timestamp>>) {
    (
        p.spec.node_name.is_some(),
        p.is_ready(),
        std::cmp::Reverse(p.metadata.creation_timestamp),
    )
}

/// Keep each deployment's pods in line with its spec.
pub fn deployments(txn: &mut Txn) {
    let deps: Vec<tollway_api::Deployment> = txn
        .state()
        .deployments()
        .filter(|d| !d.metadata.is_terminating())
        .cloned()
        .collect();
    for d in deps {
        let Some(uid) = d.metadata.uid.clone() else {
            continue;
        };
        let hash = template_hash(&d.spec.template);
        let want = usize::try_from(d.replicas()).unwrap_or(0);
        let owned: Vec<Pod> = owned_by(txn, &uid).into_iter().cloned().collect();
        let live: Vec<&Pod> = owned
            .iter()
            .filter(|p| !p.metadata.is_terminating())
            .collect();
        let (mut current, mut old): (Vec<&Pod>, Vec<&Pod>) = live
            .iter()
            .partition(|p| p.metadata.labels.get("pod-template-hash") == Some(&hash));
        let recreate =
            d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let mut to_delete: Vec<ObjectKey> = Vec::new();
        let mut to_create = 0usize;
        if recreate && !old.is_empty() {
            to_delete.extend(old.iter().map(|p| pod_key(p)));
        } else if recreate && owned.iter().any(|p| p.metadata.is_terminating()) {
            // Recreate: wait until the old pods are gone.
        } else {
            if current.len() < want {
                to_create = want - current.len();
            }
            if current.len() > want {
                current.sort_by_key(|p| removal_rank(p));
                to_delete.extend(current[..current.len() - want].iter().map(|p| pod_key(p)));
            }
            // Rolling update: keep old pods only while new ones are not ready.
            let ready_new = current.iter().filter(|p| p.is_ready()).count().min(want);
            let keep_old = want.saturating_sub(ready_new);
            if old.len() > keep_old {
                old.sort_by_key(|p| removal_rank(p));
                to_delete.extend(old[..old.len() - keep_old].iter().map(|p| pod_key(p)));
            }
        }
        for _ in 0..to_create {
            txn.put(Object::Pod(pod_from_template(&d, &uid, &hash)));
        }
        registry::delete_in(txn, &to_delete, DeleteOptions::default());

        // Status from what is there now.
        let owned: Vec<&Pod> = owned_by(txn, &uid)
            .into_iter()
            .filter(|p| !p.metadata.is_terminating())
            .collect();
        let updated: Vec<&&Pod> = owned
            .iter()
            .filter(|p| p.metadata.labels.get("pod-template-hash") == Some(&hash))
            .collect();
        let status = tollway_api::DeploymentStatus {
            observed_generation: d.metadata.generation.unwrap_or(1),
            replicas: owned.len() as i64,
            updated_replicas: updated.len() as i64,
            ready_replicas: owned.iter().filter(|p| p.is_ready()).count() as i64,
            available_replicas: updated.iter().filter(|p| p.is_ready()).count() as i64,
        };
        if d.status.as_ref() != Some(&status) {
            let mut d2 = d.clone();
            d2.status = Some(status);
            txn.put(Object::Deployment(d2));
        }
    }
}

fn pod_from_template(d: &tollway_api::Deployment, uid: &str, hash: &str) -> Pod {
    let t = &d.spec.template;
    let mut labels = t.metadata.labels.clone();
    labels.insert("pod-template-hash".into(), hash.into());
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: ObjectMeta {
            name: format!("{}-{hash}-{}", d.metadata.name, random_suffix()),
            namespace: d.metadata.namespace.clone(),
            labels,
            annotations: t.metadata.annotations.clone(),
            owner_references: vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: d.metadata.name.clone(),
                uid: uid.into(),
                controller: Some(true),
            }],
            ..Default::default()
        },
        spec: t.spec.clone(),
        status: None,
    }
}

/// Delete pods whose controlling deployment is gone.
pub fn garbage_collect(txn: &mut Txn) {
    let live_uids: Vec<String> = txn
        .state()
        .deployments()
        .filter_map(|d| d.metadata.uid.clone())
        .collect();
    let orphans: Vec<ObjectKey> = txn
        .state()
        .pods()
        .filter(|p| !p.metadata.is_terminating())
        .filter(|p| {
            p.metadata
                .controller_of_kind("Deployment")
                .is_some_and(|o| !live_uids.contains(&o.uid))
        })
        .map(pod_key)
        .collect();
    registry::delete_in(txn, &orphans, DeleteOptions::default());
}

fn node_ready(n: &Node) -> bool {
    n.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Bind unscheduled pods to the ready node with the fewest pods that matches
/// their nodeSelector.
pub fn schedule(txn: &mut Txn) {
    let nodes: Vec<Node> = txn
        .state()
        .nodes()
        .filter(|n| node_ready(n))
        .cloned()
        .collect();
    let mut load: BTreeMap<String, usize> =
        nodes.iter().map(|n| (n.metadata.name.clone(), 0)).collect();
    for p in txn.state().pods() {
        if let Some(n) = &p.spec.node_name
            && !p.metadata.is_terminating()
        {
            *load.entry(n.clone()).or_default() += 1;
        }
    }
    let pending: Vec<Pod> = txn
        .state()
        .pods()
        .filter(|p| p.spec.node_name.is_none() && !p.metadata.is_terminating())
        .cloned()
        .collect();
    for mut p in pending {
        let best = nodes
            .iter()
            .filter(|n| {
                p.spec
                    .node_selector
                    .iter()
                    .all(|(k, v)| n.metadata.labels.get(k) == Some(v))
            })
            .min_by_key(|n| load.get(&n.metadata.name).copied().unwrap_or(0))
            .map(|n| n.metadata.name.clone());
        match best {
            Some(node) => {
                *load.entry(node.clone()).or_default() += 1;
                p.spec.node_name = Some(node);
                let status = p.status.get_or_insert_with(Default::default);
                status.phase = "Pending".into();
                set_condition(&mut status.conditions, "PodScheduled", true);
                status.reason = None;
                status.message = None;
            }
            None => {
                let status = p.status.get_or_insert_with(Default::default);
                status.phase = "Pending".into();
                set_condition(&mut status.conditions, "PodScheduled", false);
                status.reason = Some("Unschedulable".into());
                status.message = Some(format!(
                    "0/{} nodes are available: none is ready and matches the pod's nodeSelector",
                    load.len()
                ));
            }
        }
        txn.put(Object::Pod(p));
    }
}

/// Set a condition's status, keeping its transition time when unchanged.
pub fn set_condition(conds: &mut Vec<PodCondition>, type_: &str, value: bool) {
    let status = if value { "True" } else { "False" };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => {}
        Some(c) => {
            c.status = status.into();
            c.last_transition_time = Some(tollway_state::file::now_seconds());
        }
        None => conds.push(PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(tollway_state::file::now_seconds()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_safe() {
        let t = tollway_api::PodTemplateSpec::default();
        let h = template_hash(&t);
        assert_eq!(h, template_hash(&t));
        assert!(h.len() >= 8 && h.len() <= 10, "{h}");
        assert!(h.bytes().all(|c| SAFE_ALPHABET.contains(&c)));
        let mut t2 = t.clone();
        t2.metadata.labels.insert("a".into(), "b".into());
        assert_ne!(template_hash(&t2), h);
        assert_eq!(random_suffix().len(), 5);
    }

    fn pod(name: &str, app: &str) -> Object {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap()
    }

    fn identities_in(store: &tollway_state::FileStore) -> Vec<(String, String)> {
        use tollway_state::StateSource as _;
        store
            .snapshot()
            .unwrap()
            .cilium_identities()
            .map(|i| {
                (
                    i.metadata.name.clone(),
                    i.security_labels
                        .get("k8s:app")
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn identities_follow_the_pods_label_sets() {
        let dir = tempfile::tempdir().unwrap();
        let store = tollway_state::FileStore::open(dir.path()).unwrap();
        registry::bootstrap(&store).unwrap();
        let run = |f: &dyn Fn(&mut Txn)| {
            store
                .update(|txn| {
                    f(txn);
                    identities(txn);
                    Ok::<_, tollway_state::StateError>(())
                })
                .unwrap()
        };
        run(&|txn| {
            txn.put(pod("web-1", "web"));
            txn.put(pod("web-2", "web"));
            txn.put(pod("api-1", "api"));
        });
        let ids = identities_in(&store);
        assert_eq!(ids.len(), 2, "{ids:?}");
        let web = ids.iter().find(|(_, a)| a == "web").unwrap().0.clone();
        assert!(web.parse::<u32>().unwrap() >= tollway_policy::TW_ID_CLUSTER_FIRST);
        // One web pod goes: the identity stays; api goes: its identity too.
        run(&|txn| {
            txn.remove(&ObjectKey::new(Kind::Pod, Some("default"), "web-1"));
            txn.remove(&ObjectKey::new(Kind::Pod, Some("default"), "api-1"));
        });
        assert_eq!(
            identities_in(&store),
            vec![(web.clone(), "web".to_string())]
        );
        // Stable across passes.
        run(&|_| {});
        assert_eq!(identities_in(&store), vec![(web, "web".to_string())]);
    }
}
