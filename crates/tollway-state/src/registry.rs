//! The API server's rules for writes, applied inside one store transaction.
//!
//! `apply` is all-or-nothing: every object of a batch is checked against the
//! state (namespaces exist, service accounts exist, cluster IPs and node ports
//! are free, immutable fields are unchanged) and, if any check fails, all
//! errors are returned and nothing is written.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;
use tollway_api::{
    Decoded, Kind, ManifestError, Namespace, NamespaceStatus, Object, ObjectKey, ObjectMeta,
    ObjectRef, Problem, ServiceAccount, ServiceType,
};

use crate::error::StateError;
use crate::file::{FileStore, Txn, now_seconds};

/// Cluster-wide settings the registry enforces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    /// Where cluster IPs come from (default 10.96.0.0/12).
    pub service_cidr: Ipv4Net,
    /// Where node ports come from (default 30000-32767).
    pub node_port_range: RangeInclusive<u16>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            service_cidr: Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default(),
            node_port_range: 30000..=32767,
        }
    }
}

/// What `apply` did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyAction {
    /// It did not exist.
    Created,
    /// It existed and changed.
    Configured,
    /// It existed and is the same.
    Unchanged,
}

/// One object's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The object.
    pub key: ObjectKey,
    /// What happened.
    pub action: ApplyAction,
}

/// Why an apply or delete was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// One or more objects are invalid against the current state; nothing
    /// was written.
    #[error("{} error(s); nothing was applied", .0.len())]
    Invalid(Vec<ManifestError>),
    /// The object cannot be deleted by users.
    #[error("{key} is managed by the lab and cannot be deleted")]
    Managed {
        /// The object.
        key: ObjectKey,
    },
    /// The store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Addresses and ports in use, computed once per batch (so that applying
/// tens of thousands of services stays linear) and kept up to date as the
/// batch is admitted.
struct Allocations {
    cluster_ips: BTreeMap<Ipv4Addr, ObjectKey>,
    node_ports: BTreeMap<i64, ObjectKey>,
    by_owner: BTreeMap<ObjectKey, (Option<Ipv4Addr>, Vec<i64>)>,
}

impl Allocations {
    fn of(txn: &Txn) -> Self {
        let mut a = Allocations {
            cluster_ips: BTreeMap::new(),
            node_ports: BTreeMap::new(),
            by_owner: BTreeMap::new(),
        };
        for s in txn.state().services() {
            a.record(s);
        }
        a
    }

    fn key(s: &tollway_api::Service) -> ObjectKey {
        ObjectKey::new(
            Kind::Service,
            s.metadata.namespace.as_deref(),
            &s.metadata.name,
        )
    }

    fn record(&mut self, s: &tollway_api::Service) {
        let k = Self::key(s);
        self.forget(&k);
        let ip: Option<Ipv4Addr> = s.spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
        if let Some(ip) = ip {
            self.cluster_ips.insert(ip, k.clone());
        }
        let ports: Vec<i64> = s
            .spec
            .ports
            .iter()
            .filter_map(|p| p.node_port)
            .chain(s.spec.health_check_node_port)
            .collect();
        for np in &ports {
            self.node_ports.insert(*np, k.clone());
        }
        self.by_owner.insert(k, (ip, ports));
    }

    fn forget(&mut self, k: &ObjectKey) {
        if let Some((ip, ports)) = self.by_owner.remove(k) {
            if let Some(ip) = ip {
                self.cluster_ips.remove(&ip);
            }
            for p in ports {
                self.node_ports.remove(&p);
            }
        }
    }

    fn ip_taken(&self, ip: &Ipv4Addr, me: &ObjectKey) -> bool {
        self.cluster_ips.get(ip).is_some_and(|o| o != me)
    }

    fn port_taken(&self, port: i64, me: &ObjectKey) -> bool {
        self.node_ports.get(&port).is_some_and(|o| o != me)
    }
}

/// Apply a batch of decoded objects, all or nothing.
pub fn apply(
    store: &FileStore,
    batch: Vec<Decoded>,
    cfg: &ClusterConfig,
) -> Result<Vec<ApplyOutcome>, WriteError> {
    apply_with(store, batch, cfg, false)
}

/// [`apply`], or with `dry_run` every check and allocation without writing.
pub fn apply_with(
    store: &FileStore,
    mut batch: Vec<Decoded>,
    cfg: &ClusterConfig,
    dry_run: bool,
) -> Result<Vec<ApplyOutcome>, WriteError> {
    // Namespaces first, then service accounts, ... so that a file may create
    // a namespace and the objects in it in any order.
    batch.sort_by_key(|d| Kind::ALL.iter().position(|k| *k == d.object.kind()));
    store.update(|txn| {
        let mut errors = Vec::new();
        let mut outcomes = Vec::new();
        let mut alloc = Allocations::of(txn);
        for d in batch {
            match admit(txn, &d, cfg, &mut alloc) {
                Ok(obj) => {
                    let key = obj.key();
                    if let Object::Service(s) = &obj {
                        alloc.record(s);
                    }
                    let existed = txn.get(&key).is_some();
                    let changed = txn.put(obj);
                    if !existed && let Some(Object::Namespace(ns)) = txn.get(&key) {
                        let name = ns.metadata.name.clone();
                        ensure_default_service_account(txn, &name);
                    }
                    outcomes.push(ApplyOutcome {
                        key,
                        action: match (existed, changed) {
                            (false, _) => ApplyAction::Created,
                            (true, true) => ApplyAction::Configured,
                            (true, false) => ApplyAction::Unchanged,
                        },
                    });
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if dry_run {
            txn.discard();
        }
        if errors.is_empty() {
            Ok(outcomes)
        } else {
            Err(WriteError::Invalid(errors))
        }
    })
}

fn field_error(d: &Decoded, field: &str, reason: impl Into<String>) -> ManifestError {
    let m = d.object.meta();
    ManifestError {
        file: d.document.file.clone(),
        document: Some(d.document.index),
        line: d.document.line_of(field),
        object: Some(ObjectRef {
            kind: d.object.kind().to_string(),
            namespace: m.namespace.clone(),
            name: Some(m.name.clone()),
        }),
        problem: Problem::Field {
            field: format!("{}{field}", d.document.path_prefix()),
            reason: reason.into(),
        },
    }
}

/// Check one object against the transaction's state and return what to
/// store (with server-side fields carried over or allocated).
fn admit(
    txn: &Txn,
    d: &Decoded,
    cfg: &ClusterConfig,
    alloc: &mut Allocations,
) -> Result<Object, Vec<ManifestError>> {
    let mut obj = d.object.clone();
    let key = obj.key();
    let existing = txn.get(&key);
    let mut errs = Vec::new();
    if obj.kind() == Kind::Node {
        return Err(vec![field_error(
            d,
            "kind",
            "Node objects are registered by the lab (tollway lab up), not applied",
        )]);
    }
    if obj.kind() == Kind::CiliumIdentity {
        return Err(vec![field_error(
            d,
            "kind",
            "CiliumIdentity objects are allocated by Tollway from pod labels, not applied",
        )]);
    }
    if let Some(old) = existing
        && old.meta().is_terminating()
    {
        errs.push(field_error(
            d,
            "metadata.name",
            format!("{key} is being deleted; wait until it is gone"),
        ));
    }
    if let Some(ns) = &key.namespace {
        match txn.state().namespace(ns) {
            None => errs.push(field_error(
                d,
                "metadata.namespace",
                format!("namespace {ns:?} not found"),
            )),
            Some(n) if n.metadata.is_terminating() => errs.push(field_error(
                d,
                "metadata.namespace",
                format!("namespace {ns:?} is being deleted"),
            )),
            Some(_) => {}
        }
    }
    // Status belongs to the server: keep the stored one.
    match (&mut obj, existing) {
        (Object::Pod(p), Some(Object::Pod(old))) => {
            if p.spec != old.spec {
                errs.push(field_error(
                    d,
                    "spec",
                    "pod updates may not change the spec (only labels and annotations); delete and re-create the pod",
                ));
            }
            p.status = old.status.clone();
            p.metadata.owner_references = old.metadata.owner_references.clone();
        }
        (Object::Pod(p), None) => p.status = None,
        (Object::Deployment(dep), old) => {
            dep.status = match old {
                Some(Object::Deployment(o)) => o.status.clone(),
                _ => None,
            };
        }
        (Object::Namespace(n), _) => {
            n.status = Some(NamespaceStatus {
                phase: "Active".into(),
            });
        }
        // A load balancer's addresses are reported by its provider (there
        // is none in the lab), never applied.
        (Object::Service(svc), old) => {
            svc.status = match old {
                Some(Object::Service(o)) => o.status.clone(),
                _ => None,
            };
        }
        _ => {}
    }
    // References to other objects.
    let pod_spec = match &obj {
        Object::Pod(p) => Some((&p.spec, "spec")),
        Object::Deployment(dep) => Some((&dep.spec.template.spec, "spec.template.spec")),
        _ => None,
    };
    if let (Some((spec, base)), Some(ns)) = (pod_spec, &key.namespace) {
        let sa = spec.service_account_name.as_deref().unwrap_or("default");
        let sa_key = ObjectKey::new(Kind::ServiceAccount, Some(ns), sa);
        if txn.get(&sa_key).is_none() {
            errs.push(field_error(
                d,
                &format!("{base}.serviceAccountName"),
                format!("serviceaccount {sa:?} not found in namespace {ns:?}"),
            ));
        }
        if let Some(node) = &spec.node_name
            && txn.get(&ObjectKey::new(Kind::Node, None, node)).is_none()
        {
            let known: Vec<&str> = txn
                .state()
                .nodes()
                .map(|n| n.metadata.name.as_str())
                .collect();
            errs.push(field_error(
                d,
                &format!("{base}.nodeName"),
                format!("node {node:?} not found (nodes: {})", known.join(", ")),
            ));
        }
    }
    if let Object::Service(svc) = &mut obj {
        let old = match existing {
            Some(Object::Service(s)) => Some(s),
            _ => None,
        };
        allocate_service(alloc, d, svc, old, cfg, &mut errs);
    }
    if errs.is_empty() { Ok(obj) } else { Err(errs) }
}

fn allocate_service(
    alloc: &Allocations,
    d: &Decoded,
    svc: &mut tollway_api::Service,
    old: Option<&tollway_api::Service>,
    cfg: &ClusterConfig,
    errs: &mut Vec<ManifestError>,
) {
    let me = Allocations::key(svc);
    if svc.service_type() == ServiceType::ExternalName {
        // A DNS alias: no cluster IP (a former one is released), no ports.
        svc.spec.cluster_ip = None;
        svc.spec.cluster_ips.clear();
        return;
    }
    // Cluster IP: immutable once set.
    let old_ip = old.and_then(|o| o.spec.cluster_ip.clone());
    let wanted = svc.spec.cluster_ip.clone().filter(|ip| !ip.is_empty());
    let ip = match (old_ip, wanted) {
        (Some(old), Some(new)) if old != new => {
            errs.push(field_error(
                d,
                "spec.clusterIP",
                format!("field is immutable (is {old}, got {new})"),
            ));
            return;
        }
        (Some(old), _) => old,
        (None, Some(new)) if new == "None" => new,
        (None, Some(new)) => match new.parse::<Ipv4Addr>() {
            Ok(addr)
                if !cfg.service_cidr.contains(&addr)
                    || addr == cfg.service_cidr.network()
                    || addr == cfg.service_cidr.broadcast() =>
            {
                errs.push(field_error(
                    d,
                    "spec.clusterIP",
                    format!(
                        "{new} is not a usable address of the service CIDR {}",
                        cfg.service_cidr
                    ),
                ));
                return;
            }
            Ok(addr) if alloc.ip_taken(&addr, &me) => {
                errs.push(field_error(
                    d,
                    "spec.clusterIP",
                    format!("{new} is already allocated to another service"),
                ));
                return;
            }
            _ => new,
        },
        (None, None) => {
            // .1 is the `kubernetes` service and .10 the DNS service by
            // convention: dynamic allocation starts above them. The first
            // free address above the highest allocated one is found in
            // O(log n); gaps left by deletions are reused once the range
            // above is exhausted.
            let base = cfg.service_cidr.hosts().nth(10);
            let above = alloc
                .cluster_ips
                .keys()
                .next_back()
                .filter(|a| cfg.service_cidr.contains(*a))
                .map(|a| u32::from(*a) + 1);
            let last = cfg.service_cidr.hosts().last();
            let next_free = match (base, last) {
                (Some(b), Some(l)) => {
                    let start = above.unwrap_or(u32::from(b)).max(u32::from(b));
                    (start..=u32::from(l))
                        .map(Ipv4Addr::from)
                        .find(|a| !alloc.cluster_ips.contains_key(a))
                        .or_else(|| {
                            (u32::from(b)..=u32::from(l))
                                .map(Ipv4Addr::from)
                                .find(|a| !alloc.cluster_ips.contains_key(a))
                        })
                }
                _ => None,
            };
            match next_free {
                Some(a) => a.to_string(),
                None => {
                    errs.push(field_error(
                        d,
                        "spec.clusterIP",
                        format!("the service CIDR {} is full", cfg.service_cidr),
                    ));
                    return;
                }
            }
        }
    };
    svc.spec.cluster_ips = if ip == "None" {
        vec![]
    } else {
        vec![ip.clone()]
    };
    svc.spec.cluster_ip = Some(ip);

    // Node ports: NodePort services, and LoadBalancers unless
    // `allocateLoadBalancerNodePorts: false` (then only the ones given).
    if !matches!(
        svc.service_type(),
        ServiceType::NodePort | ServiceType::LoadBalancer
    ) {
        return;
    }
    let allocate = svc.allocates_node_ports();
    let range = i64::from(*cfg.node_port_range.start())..=i64::from(*cfg.node_port_range.end());
    let mut mine: BTreeSet<i64> = BTreeSet::new();
    // A health-check port asked for is not handed out to a port below.
    let asked_hc = svc
        .needs_health_check_node_port()
        .then(|| {
            svc.spec
                .health_check_node_port
                .or(old.and_then(|o| o.spec.health_check_node_port))
        })
        .flatten();
    for i in 0..svc.spec.ports.len() {
        let port = &svc.spec.ports[i];
        let old_np = old.and_then(|o| {
            o.spec
                .ports
                .iter()
                .find(|p| p.port == port.port && p.protocol() == port.protocol())
                .and_then(|p| p.node_port)
        });
        let np = match port.node_port.or(old_np) {
            Some(np) => {
                if !range.contains(&np) {
                    errs.push(field_error(
                        d,
                        &format!("spec.ports[{i}].nodePort"),
                        format!(
                            "{np} is outside the node port range {}-{}",
                            range.start(),
                            range.end()
                        ),
                    ));
                    continue;
                }
                if alloc.port_taken(np, &me) || !mine.insert(np) {
                    errs.push(field_error(
                        d,
                        &format!("spec.ports[{i}].nodePort"),
                        format!("{np} is already allocated"),
                    ));
                    continue;
                }
                np
            }
            None if !allocate => continue,
            None => {
                let free = range.clone().find(|p| {
                    !alloc.port_taken(*p, &me) && !mine.contains(p) && Some(*p) != asked_hc
                });
                match free {
                    Some(p) => {
                        mine.insert(p);
                        p
                    }
                    None => {
                        errs.push(field_error(
                            d,
                            &format!("spec.ports[{i}].nodePort"),
                            "the node port range is full",
                        ));
                        continue;
                    }
                }
            }
        };
        svc.spec.ports[i].node_port = Some(np);
    }

    // The health-check node port of a LoadBalancer with
    // externalTrafficPolicy: Local (kept across updates, as the API server
    // does).
    if !svc.needs_health_check_node_port() {
        return;
    }
    let field = "spec.healthCheckNodePort";
    match svc
        .spec
        .health_check_node_port
        .or(old.and_then(|o| o.spec.health_check_node_port))
    {
        Some(np) if !range.contains(&np) => errs.push(field_error(
            d,
            field,
            format!(
                "{np} is outside the node port range {}-{}",
                range.start(),
                range.end()
            ),
        )),
        Some(np) if alloc.port_taken(np, &me) || !mine.insert(np) => {
            errs.push(field_error(d, field, format!("{np} is already allocated")))
        }
        Some(np) => svc.spec.health_check_node_port = Some(np),
        None => {
            match range
                .clone()
                .find(|p| !alloc.port_taken(*p, &me) && !mine.contains(p))
            {
                Some(p) => svc.spec.health_check_node_port = Some(p),
                None => errs.push(field_error(d, field, "the node port range is full")),
            }
        }
    }
}

fn ensure_default_service_account(txn: &mut Txn, namespace: &str) {
    let key = ObjectKey::new(Kind::ServiceAccount, Some(namespace), "default");
    if txn.get(&key).is_none() {
        txn.put(Object::ServiceAccount(ServiceAccount {
            api_version: "v1".into(),
            kind: "ServiceAccount".into(),
            metadata: ObjectMeta {
                name: "default".into(),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
        }));
    }
}

/// Make sure the built-in namespaces exist (`default`, `kube-system`), as a
/// new cluster has them.
pub fn bootstrap(store: &FileStore) -> Result<(), StateError> {
    store.update(|txn| {
        for name in ["default", "kube-system"] {
            let key = ObjectKey::new(Kind::Namespace, None, name);
            if txn.get(&key).is_none() {
                txn.put(Object::Namespace(Namespace {
                    api_version: "v1".into(),
                    kind: "Namespace".into(),
                    metadata: ObjectMeta {
                        name: name.into(),
                        labels: [(
                            tollway_api::NAMESPACE_NAME_LABEL.to_string(),
                            name.to_string(),
                        )]
                        .into(),
                        ..Default::default()
                    },
                    status: Some(NamespaceStatus {
                        phase: "Active".into(),
                    }),
                }));
            }
            ensure_default_service_account(txn, name);
        }
        Ok::<_, StateError>(())
    })
}

/// What a delete did to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed from the store.
    Deleted(ObjectKey),
    /// Marked for deletion; its node finishes it (pods) or it goes once
    /// empty (namespaces).
    Terminating(ObjectKey),
    /// Was not there.
    NotFound(ObjectKey),
}

/// Options of a delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Override the pods' grace period.
    pub grace_period_seconds: Option<i64>,
    /// Remove pods from the store at once, without waiting for their node.
    pub force: bool,
}

/// Delete objects, as Kubernetes does: pods gracefully, a deployment's pods
/// with it, a namespace with everything in it.
pub fn delete(
    store: &FileStore,
    keys: &[ObjectKey],
    opts: DeleteOptions,
) -> Result<Vec<DeleteOutcome>, WriteError> {
    if let Some(k) = keys
        .iter()
        .find(|k| k.kind == Kind::Node || k.kind == Kind::CiliumIdentity)
    {
        return Err(WriteError::Managed { key: k.clone() });
    }
    store.update(|txn| Ok(delete_in(txn, keys, opts)))
}

/// [`delete`] inside a transaction the caller already holds (controllers
/// use it to retire pods).
pub fn delete_in(txn: &mut Txn, keys: &[ObjectKey], opts: DeleteOptions) -> Vec<DeleteOutcome> {
    let out = keys.iter().map(|k| delete_one(txn, k, opts)).collect();
    finalize_namespaces(txn);
    out
}

fn delete_one(txn: &mut Txn, key: &ObjectKey, opts: DeleteOptions) -> DeleteOutcome {
    let Some(obj) = txn.get(key).cloned() else {
        return DeleteOutcome::NotFound(key.clone());
    };
    match obj {
        Object::Pod(mut p) => {
            let scheduled = p.spec.node_name.is_some();
            if opts.force || !scheduled {
                txn.remove(key);
                return DeleteOutcome::Deleted(key.clone());
            }
            if !p.metadata.is_terminating() {
                p.metadata.deletion_timestamp = Some(now_seconds());
                p.metadata.deletion_grace_period_seconds = Some(
                    opts.grace_period_seconds
                        .or(p.spec.termination_grace_period_seconds)
                        .unwrap_or(30),
                );
                txn.put(Object::Pod(p));
            }
            DeleteOutcome::Terminating(key.clone())
        }
        Object::Deployment(dep) => {
            txn.remove(key);
            let uid = dep.metadata.uid.clone();
            let owned: Vec<ObjectKey> = txn
                .state()
                .pods()
                .filter(|p| {
                    p.metadata
                        .controller_of_kind("Deployment")
                        .is_some_and(|o| Some(&o.uid) == uid.as_ref())
                })
                .map(|p| {
                    ObjectKey::new(Kind::Pod, p.metadata.namespace.as_deref(), &p.metadata.name)
                })
                .collect();
            for k in owned {
                delete_one(txn, &k, opts);
            }
            DeleteOutcome::Deleted(key.clone())
        }
        Object::Namespace(mut ns) => {
            let name = ns.metadata.name.clone();
            let inside: Vec<ObjectKey> = txn
                .state()
                .objects
                .keys()
                .filter(|k| k.namespace.as_deref() == Some(name.as_str()))
                .cloned()
                .collect();
            for k in inside {
                delete_one(txn, &k, opts);
            }
            if !ns.metadata.is_terminating() {
                ns.metadata.deletion_timestamp = Some(now_seconds());
                ns.status = Some(NamespaceStatus {
                    phase: "Terminating".into(),
                });
                txn.put(Object::Namespace(ns));
            }
            if namespace_is_empty(txn, &name) {
                txn.remove(key);
                DeleteOutcome::Deleted(key.clone())
            } else {
                DeleteOutcome::Terminating(key.clone())
            }
        }
        Object::Service(_)
        | Object::EndpointSlice(_)
        | Object::ServiceAccount(_)
        | Object::Node(_)
        | Object::CiliumIdentity(_)
        | Object::NetworkPolicy(_)
        | Object::CiliumNetworkPolicy(_)
        | Object::CiliumClusterwideNetworkPolicy(_) => {
            txn.remove(key);
            DeleteOutcome::Deleted(key.clone())
        }
    }
}

fn namespace_is_empty(txn: &Txn, name: &str) -> bool {
    !txn.state()
        .objects
        .keys()
        .any(|k| k.namespace.as_deref() == Some(name))
}

/// Remove terminating namespaces that have become empty; returns how many.
pub fn finalize_namespaces(txn: &mut Txn) -> usize {
    let done: Vec<ObjectKey> = txn
        .state()
        .list(Kind::Namespace, None)
        .filter(|o| o.meta().is_terminating() && namespace_is_empty(txn, &o.meta().name))
        .map(Object::key)
        .collect();
    for k in &done {
        txn.remove(k);
    }
    done.len()
}
