//! The API-server rules of the store, end to end: parse → decode → apply.
#![allow(clippy::unwrap_used)]

use tollway_api::{Kind, Object, ObjectKey, decode_all, parse_documents};
use tollway_state::registry::{self, DeleteOptions};
use tollway_state::{
    ApplyAction, ClusterConfig, DeleteOutcome, FileStore, StateSource, WriteError,
};

fn store() -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    registry::bootstrap(&store).unwrap();
    (dir, store)
}

fn apply(store: &FileStore, text: &str) -> Result<Vec<(ObjectKey, ApplyAction)>, Vec<String>> {
    let docs = parse_documents("m.yaml", text).map_err(|e| vec![e.to_string()])?;
    let decoded =
        decode_all(&docs).map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    match registry::apply(store, decoded, &ClusterConfig::default()) {
        Ok(o) => Ok(o.into_iter().map(|o| (o.key, o.action)).collect()),
        Err(WriteError::Invalid(e)) => Err(e.iter().map(ToString::to_string).collect()),
        Err(e) => panic!("{e}"),
    }
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: payments\n";

fn svc(name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: payments\nspec:\n{extra}  selector: {{app: {name}}}\n  ports:\n  - port: 8080\n"
    )
}

fn get_svc(store: &FileStore, name: &str) -> tollway_api::Service {
    match store
        .snapshot()
        .unwrap()
        .get(&ObjectKey::new(Kind::Service, Some("payments"), name))
    {
        Some(Object::Service(s)) => s.clone(),
        other => panic!("no service {name}: {other:?}"),
    }
}

#[test]
fn namespace_and_objects_in_one_file_in_any_order() {
    let (_d, s) = store();
    // The service comes first in the file; the namespace is applied first.
    let out = apply(&s, &format!("{}---\n{NS}", svc("checkout-api", ""))).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].0.kind, Kind::Namespace);
    assert!(out.iter().all(|(_, a)| *a == ApplyAction::Created));
    // The namespace got its default service account.
    let snap = s.snapshot().unwrap();
    assert!(
        snap.get(&ObjectKey::new(
            Kind::ServiceAccount,
            Some("payments"),
            "default"
        ))
        .is_some()
    );
    // Applying again changes nothing.
    let again = apply(&s, &format!("{NS}{}", svc("checkout-api", ""))).unwrap();
    assert!(
        again.iter().all(|(_, a)| *a == ApplyAction::Unchanged),
        "{again:?}"
    );
    assert_eq!(s.version().unwrap(), snap.resource_version);
}

#[test]
fn a_bad_object_rejects_the_batch_and_changes_nothing() {
    let (_d, s) = store();
    apply(&s, &format!("{NS}{}", svc("a", ""))).unwrap();
    let before = s.snapshot().unwrap();
    // A valid change to `a` plus an object in a missing namespace.
    let text = format!(
        "{}---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n  namespace: nowhere\n",
        svc("a", "  sessionAffinity: ClientIP\n")
    );
    let errs = apply(&s, &text).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("document 2 (ServiceAccount nowhere/x): metadata.namespace: namespace \"nowhere\" not found"), "{errs:?}");
    assert_eq!(s.snapshot().unwrap(), before, "nothing may change");
}

#[test]
fn cluster_ips_are_allocated_kept_and_immutable() {
    let (_d, s) = store();
    apply(&s, &format!("{NS}{}{}", svc("a", ""), svc("b", ""))).unwrap();
    let a = get_svc(&s, "a");
    let b = get_svc(&s, "b");
    assert_eq!(a.spec.cluster_ip.as_deref(), Some("10.96.0.11"));
    assert_eq!(b.spec.cluster_ip.as_deref(), Some("10.96.0.12"));
    assert_eq!(a.spec.cluster_ips, vec!["10.96.0.11".to_string()]);
    // Re-applying without clusterIP keeps it.
    apply(
        &s,
        &format!("{NS}{}", svc("a", "  sessionAffinity: ClientIP\n")),
    )
    .unwrap();
    assert_eq!(
        get_svc(&s, "a").spec.cluster_ip.as_deref(),
        Some("10.96.0.11")
    );
    // Changing it is refused.
    let e = apply(&s, &svc("a", "  clusterIP: 10.96.0.99\n")).unwrap_err();
    assert!(
        e[0].contains("spec.clusterIP: field is immutable (is 10.96.0.11, got 10.96.0.99)"),
        "{e:?}"
    );
    // Taken, outside the CIDR, and headless.
    let e = apply(&s, &svc("c", "  clusterIP: 10.96.0.12\n")).unwrap_err();
    assert!(e[0].contains("already allocated"), "{e:?}");
    let e = apply(&s, &svc("c", "  clusterIP: 192.168.0.1\n")).unwrap_err();
    assert!(
        e[0].contains("not a usable address of the service CIDR 10.96.0.0/12"),
        "{e:?}"
    );
    apply(&s, &svc("c", "  clusterIP: None\n")).unwrap();
    assert!(get_svc(&s, "c").is_headless());
    apply(&s, &svc("d", "  clusterIP: 10.96.0.10\n")).unwrap();
    assert_eq!(
        get_svc(&s, "d").spec.cluster_ip.as_deref(),
        Some("10.96.0.10")
    );
}

#[test]
fn node_ports_are_allocated_and_unique() {
    let (_d, s) = store();
    apply(&s, &format!("{NS}{}", svc("a", "  type: NodePort\n"))).unwrap();
    assert_eq!(get_svc(&s, "a").spec.ports[0].node_port, Some(30000));
    apply(&s, &svc("b", "  type: NodePort\n")).unwrap();
    assert_eq!(get_svc(&s, "b").spec.ports[0].node_port, Some(30001));
    // Re-apply keeps the allocation.
    apply(&s, &svc("a", "  type: NodePort\n")).unwrap();
    assert_eq!(get_svc(&s, "a").spec.ports[0].node_port, Some(30000));
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: c, namespace: payments}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30001\n";
    let e = apply(&s, text).unwrap_err();
    assert!(
        e[0].contains("spec.ports[0].nodePort: 30001 is already allocated"),
        "{e:?}"
    );
}

#[test]
fn load_balancers_get_node_ports_and_external_names_no_cluster_ip() {
    let (_d, s) = store();
    apply(&s, &format!("{NS}{}", svc("lb", "  type: LoadBalancer\n"))).unwrap();
    let lb = get_svc(&s, "lb");
    assert_eq!(lb.spec.ports[0].node_port, Some(30000));
    assert!(lb.spec.cluster_ip.is_some());
    // `allocateLoadBalancerNodePorts: false`: only the ones given.
    apply(
        &s,
        &svc(
            "lb2",
            "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n",
        ),
    )
    .unwrap();
    assert_eq!(get_svc(&s, "lb2").spec.ports[0].node_port, None);
    let given = "apiVersion: v1\nkind: Service\nmetadata: {name: lb3, namespace: payments}\nspec:\n  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  ports:\n  - {name: a, port: 80, nodePort: 30005}\n  - {name: b, port: 81}\n";
    apply(&s, given).unwrap();
    let lb3 = get_svc(&s, "lb3");
    assert_eq!(lb3.spec.ports[0].node_port, Some(30005));
    assert_eq!(lb3.spec.ports[1].node_port, None);
    // A taken one is refused as for a NodePort.
    let taken = given.replace("lb3", "lb4");
    let e = apply(&s, &taken).unwrap_err();
    assert!(e[0].contains("30005 is already allocated"), "{e:?}");

    // The load balancer's status belongs to its provider: not applied.
    let with_status = format!(
        "{}status:\n  loadBalancer:\n    ingress: [{{ip: 203.0.113.7}}]\n",
        svc("lb", "  type: LoadBalancer\n")
    );
    apply(&s, &with_status).unwrap();
    assert_eq!(get_svc(&s, "lb").status, None);

    // ExternalName: no cluster IP; one given up when a service becomes one.
    let ext = "apiVersion: v1\nkind: Service\nmetadata: {name: lb, namespace: payments}\nspec:\n  type: ExternalName\n  externalName: db.example.com\n";
    apply(&s, ext).unwrap();
    let e = get_svc(&s, "lb");
    assert_eq!(e.spec.cluster_ip, None);
    assert!(e.spec.cluster_ips.is_empty());
    assert_eq!(e.spec.ports, []);
    // Its node port and address are free again.
    apply(&s, &svc("np", "  type: NodePort\n")).unwrap();
    assert_eq!(get_svc(&s, "np").spec.ports[0].node_port, Some(30000));
}

#[test]
fn local_load_balancers_get_a_health_check_node_port() {
    let (_d, s) = store();
    let local = "  type: LoadBalancer\n  externalTrafficPolicy: Local\n";
    apply(&s, &format!("{NS}{}", svc("lb", local))).unwrap();
    let lb = get_svc(&s, "lb");
    assert_eq!(lb.spec.ports[0].node_port, Some(30000));
    assert_eq!(lb.spec.health_check_node_port, Some(30001));
    // Kept on re-apply; the next service's ports avoid it.
    apply(&s, &svc("lb", local)).unwrap();
    assert_eq!(get_svc(&s, "lb").spec.health_check_node_port, Some(30001));
    apply(&s, &svc("np", "  type: NodePort\n")).unwrap();
    assert_eq!(get_svc(&s, "np").spec.ports[0].node_port, Some(30002));
    // A given one that is taken is refused; Cluster policy gives it back.
    let e = apply(
        &s,
        &svc("lb2", &format!("{local}  healthCheckNodePort: 30002\n")),
    )
    .unwrap_err();
    assert!(
        e[0].contains("spec.healthCheckNodePort: 30002 is already allocated"),
        "{e:?}"
    );
    apply(&s, &svc("lb", "  type: LoadBalancer\n")).unwrap();
    assert_eq!(get_svc(&s, "lb").spec.health_check_node_port, None);
    apply(
        &s,
        &svc("lb2", &format!("{local}  healthCheckNodePort: 30001\n")),
    )
    .unwrap();
    assert_eq!(get_svc(&s, "lb2").spec.health_check_node_port, Some(30001));
    // Only for LoadBalancers with Local policy.
    let e = apply(
        &s,
        &svc("np2", "  type: NodePort\n  healthCheckNodePort: 30100\n"),
    )
    .unwrap_err();
    assert!(
        e[0].contains("spec.healthCheckNodePort: may only be set"),
        "{e:?}"
    );
}

#[test]
fn endpoint_slices_are_applied_and_deleted() {
    let (_d, s) = store();
    let es = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-1\n  namespace: payments\n  labels: {kubernetes.io/service-name: db}\naddressType: IPv4\nendpoints:\n- addresses: [10.244.1.5]\nports:\n- {name: pg, port: 5432}\n";
    let out = apply(&s, &format!("{NS}---\n{es}")).unwrap();
    let key = ObjectKey::new(Kind::EndpointSlice, Some("payments"), "db-1");
    assert!(
        out.contains(&(key.clone(), ApplyAction::Created)),
        "{out:?}"
    );
    let snap = s.snapshot().unwrap();
    let stored: Vec<&str> = snap
        .endpoint_slices()
        .map(|e| e.metadata.name.as_str())
        .collect();
    assert_eq!(stored, ["db-1"]);
    assert_eq!(
        apply(&s, es).unwrap(),
        [(key.clone(), ApplyAction::Unchanged)]
    );
    let changed = es.replace("10.244.1.5", "10.244.1.6");
    assert_eq!(
        apply(&s, &changed).unwrap(),
        [(key.clone(), ApplyAction::Configured)]
    );
    let out = registry::delete(&s, std::slice::from_ref(&key), DeleteOptions::default()).unwrap();
    assert_eq!(out, [DeleteOutcome::Deleted(key.clone())]);
    assert!(s.snapshot().unwrap().get(&key).is_none());
    // In a namespace that does not exist: refused.
    let e = apply(&s, &es.replace("payments", "nowhere")).unwrap_err();
    assert!(e[0].contains("namespace \"nowhere\" not found"), "{e:?}");
}

#[test]
fn references_must_exist() {
    let (_d, s) = store();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  serviceAccountName: web\n  nodeName: node-9\n  containers: [{name: c, image: x}]\n";
    let e = apply(&s, pod).unwrap_err();
    assert!(
        e.iter().any(|e| e.contains(
            "spec.serviceAccountName: serviceaccount \"web\" not found in namespace \"default\""
        )),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("spec.nodeName: node \"node-9\" not found")),
        "{e:?}"
    );
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
    let e = apply(&s, node).unwrap_err();
    assert!(
        e[0].contains("Node objects are registered by the lab"),
        "{e:?}"
    );
}

#[test]
fn pods_are_immutable_but_relabelable() {
    let (_d, s) = store();
    let pod = |label: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {{app: {label}}}\nspec:\n  containers: [{{name: c, image: {image}}}]\n"
        )
    };
    apply(&s, &pod("a", "x")).unwrap();
    let r = apply(&s, &pod("b", "x")).unwrap();
    assert_eq!(r[0].1, ApplyAction::Configured);
    let e = apply(&s, &pod("b", "other")).unwrap_err();
    assert!(
        e[0].contains("spec: pod updates may not change the spec"),
        "{e:?}"
    );
}

#[test]
fn deletion_is_graceful_for_scheduled_pods_and_cascades() {
    let (_d, s) = store();
    apply(&s, &format!("{NS}{}", svc("a", ""))).unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: payments}\nspec:\n  containers: [{name: c, image: x}]\n";
    apply(&s, pod).unwrap();
    // Unscheduled pods go at once.
    let pk = ObjectKey::new(Kind::Pod, Some("payments"), "p");
    let out = registry::delete(&s, std::slice::from_ref(&pk), DeleteOptions::default()).unwrap();
    assert_eq!(out, vec![DeleteOutcome::Deleted(pk.clone())]);
    // A scheduled pod is marked; its namespace waits for it.
    apply(&s, pod).unwrap();
    s.update(|t| {
        let Some(Object::Pod(mut p)) = t.get(&pk).cloned() else {
            panic!()
        };
        p.spec.node_name = Some("node-1".into());
        t.put(Object::Pod(p));
        Ok::<_, tollway_state::StateError>(())
    })
    .unwrap();
    let nk = ObjectKey::new(Kind::Namespace, None, "payments");
    let out = registry::delete(&s, std::slice::from_ref(&nk), DeleteOptions::default()).unwrap();
    assert_eq!(out, vec![DeleteOutcome::Terminating(nk.clone())]);
    let snap = s.snapshot().unwrap();
    assert!(snap.get(&pk).unwrap().meta().is_terminating());
    assert_eq!(
        snap.get(&pk).unwrap().meta().deletion_grace_period_seconds,
        Some(30)
    );
    assert!(
        snap.get(&ObjectKey::new(Kind::Service, Some("payments"), "a"))
            .is_none()
    );
    // Nothing new goes into a terminating namespace.
    let e = apply(&s, &svc("b", "")).unwrap_err();
    assert!(
        e[0].contains("namespace \"payments\" is being deleted"),
        "{e:?}"
    );
    // Once the node removes the pod, the namespace is finalized.
    s.update(|t| {
        t.remove(&pk);
        registry::finalize_namespaces(t);
        Ok::<_, tollway_state::StateError>(())
    })
    .unwrap();
    assert!(s.snapshot().unwrap().get(&nk).is_none());
    // Nodes can't be deleted.
    let e = registry::delete(
        &s,
        &[ObjectKey::new(Kind::Node, None, "node-1")],
        DeleteOptions::default(),
    );
    assert!(matches!(e, Err(WriteError::Managed { .. })));
}

#[test]
fn policies_are_stored_listed_and_deleted_with_their_namespace() {
    let (_d, s) = store();
    let np = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: payments}\nspec:\n  podSelector: {}\n";
    let cnp = "---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: payments}\nspec:\n  endpointSelector: {matchLabels: {app: api}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}]\n";
    let ccnp = "---\napiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: from-world}\nspec:\n  endpointSelector: {}\n  ingressDeny:\n  - fromEntities: [world]\n";
    // The namespace must exist (CCNPs have none).
    let e = apply(&s, &format!("{np}{cnp}")).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .all(|e| e.contains("metadata.namespace: namespace \"payments\" not found")),
        "{e:?}"
    );
    // Policies may come before their namespace in a file.
    let out = apply(&s, &format!("{np}{cnp}{ccnp}---\n{NS}")).unwrap();
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|(_, a)| *a == ApplyAction::Created));
    let snap = s.snapshot().unwrap();
    let nps: Vec<&str> = snap
        .network_policies()
        .map(|p| p.metadata.name.as_str())
        .collect();
    assert_eq!(nps, vec!["deny-all"]);
    let cps: Vec<(&str, bool)> = snap
        .cilium_policies()
        .map(|p| (p.metadata.name.as_str(), p.is_clusterwide()))
        .collect();
    assert_eq!(cps, vec![("web", false), ("from-world", true)]);
    // Re-applying is unchanged; a spec change is configured.
    let out = apply(&s, cnp).unwrap();
    assert_eq!(out[0].1, ApplyAction::Unchanged);
    let out = apply(&s, &cnp.replace("app: web", "app: admin")).unwrap();
    assert_eq!(out[0].1, ApplyAction::Configured);
    // Deleting the namespace takes its policies, not the clusterwide one.
    let nk = ObjectKey::new(Kind::Namespace, None, "payments");
    registry::delete(&s, std::slice::from_ref(&nk), DeleteOptions::default()).unwrap();
    let snap = s.snapshot().unwrap();
    assert_eq!(snap.network_policies().count(), 0);
    let cps: Vec<&str> = snap
        .cilium_policies()
        .map(|p| p.metadata.name.as_str())
        .collect();
    assert_eq!(cps, vec!["from-world"]);
    let ck = ObjectKey::new(Kind::CiliumClusterwideNetworkPolicy, None, "from-world");
    let out = registry::delete(&s, std::slice::from_ref(&ck), DeleteOptions::default()).unwrap();
    assert_eq!(out, vec![DeleteOutcome::Deleted(ck)]);
}
