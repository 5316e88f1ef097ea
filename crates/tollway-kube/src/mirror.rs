//! The local copy of the cluster and the journal of its changes. Pure: the
//! watchers produce [`Update`]s, the mirror applies them and says what
//! changed in the shape of the agent's delta (services, pods with their
//! before and after, EndpointSlices, everything else).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use tollway_api::{Kind, Object, ObjectKey, Pod};
use tollway_state::Snapshot;

use crate::registry::{Converted, Produces};

/// The key of an object of a kind tollway-api has no type for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawKey {
    /// The kind (`HTTPRoute`).
    pub kind: String,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A key in the mirror.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnyKey {
    /// A typed object.
    Typed(ObjectKey),
    /// A raw one.
    Raw(RawKey),
}

/// One change, as the watchers report it.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// An object was added or changed.
    Put(Converted),
    /// An object is gone (deleted, or it no longer decodes).
    Remove(AnyKey),
    /// A (re)list of one kind finished: these are all its objects; the
    /// others of that kind are gone.
    Relisted {
        /// The part of the mirror the list covers.
        produces: Produces,
        /// Every object listed that converted.
        objects: Vec<Converted>,
    },
}

/// What changed, in the shape of the agent's delta.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Services created, changed or removed.
    pub services: Vec<ObjectKey>,
    /// Pods changed: (before, after).
    pub pods: Vec<(Option<Pod>, Option<Pod>)>,
    /// EndpointSlices created, changed or removed.
    pub slices: Vec<ObjectKey>,
    /// Any other typed object changed (namespaces, nodes, policies,
    /// identities, ...).
    pub others: Vec<ObjectKey>,
    /// Raw objects changed (kinds tollway-api has no type for).
    pub raw: Vec<RawKey>,
}

impl Changes {
    /// Nothing typed changed (raw objects may have).
    pub fn typed_is_empty(&self) -> bool {
        self.services.is_empty()
            && self.pods.is_empty()
            && self.slices.is_empty()
            && self.others.is_empty()
    }

    /// Nothing changed at all.
    pub fn is_empty(&self) -> bool {
        self.typed_is_empty() && self.raw.is_empty()
    }
}

/// The mirror: every typed object in a [`Snapshot`], raw ones beside it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mirror {
    snap: Snapshot,
    raw: BTreeMap<RawKey, Value>,
}

/// Equal but for `metadata.resourceVersion`.
fn same_but_version(a: &Object, b: &Object) -> bool {
    let mut b = b.clone();
    b.meta_mut().resource_version = a.meta().resource_version.clone();
    *a == b
}

fn pod_of(o: Option<&Object>) -> Option<Pod> {
    match o {
        Some(Object::Pod(p)) => Some(p.clone()),
        _ => None,
    }
}

impl Mirror {
    /// An empty mirror.
    pub fn new() -> Mirror {
        Mirror::default()
    }

    /// The typed objects.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// The typed objects, mutably (the source sets the resource version).
    pub fn snapshot_mut(&mut self) -> &mut Snapshot {
        &mut self.snap
    }

    /// Every raw object.
    pub fn raw(&self) -> &BTreeMap<RawKey, Value> {
        &self.raw
    }

    /// The raw objects of one kind.
    pub fn raw_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a RawKey, &'a Value)> {
        self.raw.iter().filter(move |(k, _)| k.kind == kind)
    }

    /// How many objects a part of the mirror holds.
    pub fn count(&self, produces: &Produces) -> usize {
        match produces {
            Produces::Typed(kind) => self.snap.list(*kind, None).count(),
            Produces::Raw(kind) => self.raw_of(kind).count(),
        }
    }

    fn put_typed(&mut self, obj: Object, changes: &mut Changes) {
        let key = obj.key();
        let old = self.snap.objects.get(&key);
        if old == Some(&obj) {
            return;
        }
        // Only the resource version moved: a change of fields Tollway does
        // not read (a node's heartbeat, a pod's container statistics).
        // Keep the new version without reporting a change.
        if let Some(o) = old
            && same_but_version(o, &obj)
        {
            self.snap.objects.insert(key, obj);
            return;
        }
        match key.kind {
            Kind::Service => changes.services.push(key.clone()),
            Kind::EndpointSlice => changes.slices.push(key.clone()),
            Kind::Pod => changes.pods.push((pod_of(old), pod_of(Some(&obj)))),
            _ => changes.others.push(key.clone()),
        }
        self.snap.objects.insert(key, obj);
    }

    fn remove_typed(&mut self, key: &ObjectKey, changes: &mut Changes) {
        let Some(old) = self.snap.objects.remove(key) else {
            return;
        };
        match key.kind {
            Kind::Service => changes.services.push(key.clone()),
            Kind::EndpointSlice => changes.slices.push(key.clone()),
            Kind::Pod => changes.pods.push((pod_of(Some(&old)), None)),
            _ => changes.others.push(key.clone()),
        }
    }

    fn put_raw(&mut self, key: RawKey, value: Value, changes: &mut Changes) {
        if self.raw.get(&key) == Some(&value) {
            return;
        }
        changes.raw.push(key.clone());
        self.raw.insert(key, value);
    }

    fn remove_raw(&mut self, key: &RawKey, changes: &mut Changes) {
        if self.raw.remove(key).is_some() {
            changes.raw.push(key.clone());
        }
    }

    fn put(&mut self, c: Converted, changes: &mut Changes) {
        match c {
            Converted::Object(o) => self.put_typed(*o, changes),
            Converted::Raw { key, value } => self.put_raw(key, value, changes),
        }
    }

    /// Apply one update, recording what changed in `changes` (an update
    /// that changes nothing records nothing).
    pub fn apply(&mut self, update: Update, changes: &mut Changes) {
        match update {
            Update::Put(c) => self.put(c, changes),
            Update::Remove(AnyKey::Typed(k)) => self.remove_typed(&k, changes),
            Update::Remove(AnyKey::Raw(k)) => self.remove_raw(&k, changes),
            Update::Relisted { produces, objects } => {
                let listed: std::collections::BTreeSet<AnyKey> =
                    objects.iter().map(Converted::key).collect();
                let gone: Vec<AnyKey> = match &produces {
                    Produces::Typed(kind) => self
                        .snap
                        .list(*kind, None)
                        .map(|o| AnyKey::Typed(o.key()))
                        .filter(|k| !listed.contains(k))
                        .collect(),
                    Produces::Raw(kind) => self
                        .raw_of(kind)
                        .map(|(k, _)| AnyKey::Raw(k.clone()))
                        .filter(|k| !listed.contains(k))
                        .collect(),
                };
                for k in gone {
                    self.apply(Update::Remove(k), changes);
                }
                for c in objects {
                    self.put(c, changes);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::KindRegistry;
    use serde_json::json;

    fn conv(kind: &str, v: Value) -> Converted {
        KindRegistry::standard()
            .get(kind)
            .unwrap()
            .convert(v)
            .unwrap()
    }

    fn pod(name: &str, ip: &str) -> Converted {
        conv(
            "Pod",
            json!({"metadata": {"name": name, "namespace": "shop", "uid": name},
                   "spec": {"containers": [{"name": "c", "image": "x"}], "nodeName": "n1"},
                   "status": {"phase": "Running", "podIP": ip}}),
        )
    }

    fn svc(name: &str, port: u16) -> Converted {
        conv(
            "Service",
            json!({"metadata": {"name": name, "namespace": "shop"},
                   "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": port}]}}),
        )
    }

    #[test]
    fn puts_and_removes_are_classified_like_the_followers_delta() {
        let mut m = Mirror::new();
        let mut c = Changes::default();
        m.apply(Update::Put(pod("a", "10.0.1.5")), &mut c);
        m.apply(Update::Put(svc("web", 80)), &mut c);
        m.apply(
            Update::Put(conv("Namespace", json!({"metadata": {"name": "shop"}}))),
            &mut c,
        );
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.others.len(), 1);
        assert_eq!(c.pods.len(), 1);
        assert!(c.pods[0].0.is_none() && c.pods[0].1.is_some());

        // The same object again changes nothing.
        let mut c = Changes::default();
        m.apply(Update::Put(pod("a", "10.0.1.5")), &mut c);
        assert!(c.is_empty());

        // A change carries before and after.
        m.apply(Update::Put(pod("a", "10.0.1.6")), &mut c);
        let (before, after) = &c.pods[0];
        assert_eq!(before.as_ref().unwrap().pod_ip(), Some("10.0.1.5"));
        assert_eq!(after.as_ref().unwrap().pod_ip(), Some("10.0.1.6"));

        let mut c = Changes::default();
        let key = ObjectKey::new(Kind::Pod, Some("shop"), "a");
        m.apply(Update::Remove(AnyKey::Typed(key.clone())), &mut c);
        assert!(c.pods[0].1.is_none());
        // Removing what is not there changes nothing.
        let mut c = Changes::default();
        m.apply(Update::Remove(AnyKey::Typed(key)), &mut c);
        assert!(c.is_empty());
    }

    fn slice(name: &str, ready: bool) -> Converted {
        conv(
            "EndpointSlice",
            json!({"metadata": {"name": name, "namespace": "default",
                                "labels": {"kubernetes.io/service-name": "kubernetes"}},
                   "addressType": "IPv4",
                   "endpoints": [{"addresses": ["172.18.0.2"], "conditions": {"ready": ready}}],
                   "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}),
        )
    }

    #[test]
    fn endpoint_slice_changes_are_slices_of_the_delta() {
        let mut m = Mirror::new();
        let mut c = Changes::default();
        m.apply(Update::Put(slice("kubernetes", true)), &mut c);
        let key = ObjectKey::new(Kind::EndpointSlice, Some("default"), "kubernetes");
        assert_eq!(c.slices, std::slice::from_ref(&key));
        assert!(c.services.is_empty() && c.others.is_empty() && c.raw.is_empty());
        assert!(!c.typed_is_empty());
        assert_eq!(m.snapshot().endpoint_slices().count(), 1);
        // Unchanged: nothing; changed: the key again.
        let mut c = Changes::default();
        m.apply(Update::Put(slice("kubernetes", true)), &mut c);
        assert!(c.is_empty(), "{c:?}");
        m.apply(Update::Put(slice("kubernetes", false)), &mut c);
        assert_eq!(c.slices, std::slice::from_ref(&key));
        let mut c = Changes::default();
        m.apply(
            Update::Relisted {
                produces: Produces::Typed(Kind::EndpointSlice),
                objects: vec![],
            },
            &mut c,
        );
        assert_eq!(c.slices, [key]);
        assert_eq!(m.snapshot().endpoint_slices().count(), 0);
    }

    #[test]
    fn a_new_resource_version_alone_is_no_change() {
        let node = |rv: &str, heartbeat: &str| {
            conv(
                "Node",
                json!({"metadata": {"name": "n1", "resourceVersion": rv},
                       "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                                  "conditions": [{"type": "Ready", "status": "True",
                                                  "lastHeartbeatTime": heartbeat}]}}),
            )
        };
        let mut m = Mirror::new();
        let mut c = Changes::default();
        m.apply(Update::Put(node("10", "2024-11-02T12:00:00Z")), &mut c);
        let mut c = Changes::default();
        m.apply(Update::Put(node("11", "2024-11-02T12:00:40Z")), &mut c);
        assert!(c.is_empty(), "{c:?}");
        let k = ObjectKey::new(Kind::Node, None, "n1");
        let stored = m.snapshot().get(&k).unwrap();
        assert_eq!(stored.meta().resource_version.as_deref(), Some("11"));
    }

    #[test]
    fn a_relist_replaces_one_kind_and_reports_the_difference() {
        let mut m = Mirror::new();
        let mut c = Changes::default();
        for u in [pod("a", "10.0.1.5"), pod("b", "10.0.1.7"), svc("web", 80)] {
            m.apply(Update::Put(u), &mut c);
        }
        let mut c = Changes::default();
        m.apply(
            Update::Relisted {
                produces: Produces::Typed(Kind::Pod),
                objects: vec![pod("a", "10.0.1.5"), pod("c", "10.0.1.9")],
            },
            &mut c,
        );
        // b gone, c new, a unchanged; the service is untouched.
        assert_eq!(c.pods.len(), 2, "{c:?}");
        assert!(c.services.is_empty());
        let names: Vec<&str> = m
            .snapshot()
            .pods()
            .map(|p| p.metadata.name.as_str())
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(m.snapshot().services().count(), 1);
    }
}
