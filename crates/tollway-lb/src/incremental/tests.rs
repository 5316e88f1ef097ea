//! `DesiredState` against `desired_services` and `plan` from scratch, for
//! random sequences of Service, Pod and EndpointSlice changes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use tollway_api::{
    AddressType, ClientIpConfig, Container, ContainerPort, Endpoint, EndpointConditions,
    EndpointPort, IntOrString, LoadBalancerIngress, LoadBalancerStatus, ObjectMeta, PodCondition,
    PodSpec, PodStatus, Protocol, SERVICE_NAME_LABEL, ServicePort, ServiceSpec, ServiceStatus,
    ServiceType, SessionAffinity, SessionAffinityConfig, TrafficPolicy,
};

use super::*;
use crate::model::Algorithm;
use crate::{
    Applied, SliceIndex, affected_services, apply_to, desired_services, desired_services_indexed,
    mismatch, plan, plan_scoped,
};

fn node() -> NodeContext {
    NodeContext {
        node_name: "node-a".into(),
        node_ip: Ipv4Addr::new(192, 168, 10, 2),
    }
}

fn namespace(i: u8) -> Option<String> {
    // `None` is `default`: both spellings must land together.
    match i % 3 {
        0 => None,
        1 => Some("default".into()),
        _ => Some("b".into()),
    }
}

#[derive(Debug, Clone)]
struct PortParams {
    port: u16,
    proto: u8,
    target: u8,
    node_port: u16,
}

#[derive(Debug, Clone)]
struct SvcParams {
    ns: u8,
    ip: u8,
    selector: u8,
    ports: Vec<PortParams>,
    node_port: bool,
    etp_local: bool,
    itp_local: bool,
    affinity: Option<i64>,
    publish_not_ready: bool,
    annotation: u8,
    /// 0, 1: as `node_port` says; 2: LoadBalancer.
    lb: u8,
    /// Which `spec.externalIPs`.
    external_ips: u8,
    /// Which `status.loadBalancer.ingress` IPs.
    ingress: u8,
}

#[derive(Debug, Clone)]
struct EpParams {
    ip: u8,
    second_ip: bool,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
    node: u8,
}

#[derive(Debug, Clone)]
struct SlicePortParams {
    name: u8,
    proto: u8,
    port: Option<u16>,
}

#[derive(Debug, Clone)]
struct SliceParams {
    ns: u8,
    /// The service it is labelled with (`s<n>`), or none.
    service: Option<u8>,
    /// 0..=5: IPv4, 6: IPv6, 7: FQDN.
    address_type: u8,
    endpoints: Vec<EpParams>,
    ports: Vec<SlicePortParams>,
}

#[derive(Debug, Clone)]
struct PodParams {
    ns: u8,
    app: u8,
    tier: bool,
    node: u8,
    ip: Option<u8>,
    ready: bool,
    terminating: bool,
    finished: bool,
    http_port: u8,
    dns: bool,
}

fn port_strategy() -> impl Strategy<Value = PortParams> {
    (80u16..=81, 0u8..8, 0u8..4, 30000u16..=30001).prop_map(|(port, proto, target, node_port)| {
        PortParams {
            port,
            proto,
            target,
            node_port,
        }
    })
}

fn svc_strategy() -> impl Strategy<Value = SvcParams> {
    (
        (0u8..3, 0u8..8, 0u8..4),
        proptest::collection::vec(port_strategy(), 1..=2),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        proptest::option::of(0i64..100),
        any::<bool>(),
        0u8..5,
        (0u8..3, 0u8..5, 0u8..4),
    )
        .prop_map(
            |(
                (ns, ip, selector),
                ports,
                (node_port, etp_local, itp_local),
                affinity,
                publish_not_ready,
                annotation,
                (lb, external_ips, ingress),
            )| SvcParams {
                ns,
                ip,
                selector,
                ports,
                node_port,
                etp_local,
                itp_local,
                affinity,
                publish_not_ready,
                annotation,
                lb,
                external_ips,
                ingress,
            },
        )
}

fn ep_strategy() -> impl Strategy<Value = EpParams> {
    (
        1u8..=3,
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        0u8..3,
    )
        .prop_map(
            |(ip, second_ip, ready, serving, terminating, node)| EpParams {
                ip,
                second_ip,
                ready,
                serving,
                terminating,
                node,
            },
        )
}

fn slice_strategy() -> impl Strategy<Value = SliceParams> {
    let port = (0u8..4, 0u8..4, proptest::option::weighted(0.9, 0u16..2)).prop_map(
        |(name, proto, port)| SlicePortParams {
            name,
            proto,
            port: port.map(|p| if p == 0 { 8080 } else { 9090 }),
        },
    );
    (
        0u8..3,
        proptest::option::weighted(0.9, 0..SERVICES),
        0u8..8,
        proptest::collection::vec(ep_strategy(), 0..4),
        proptest::collection::vec(port, 0..3),
    )
        .prop_map(
            |(ns, service, address_type, endpoints, ports)| SliceParams {
                ns,
                service,
                address_type,
                endpoints,
                ports,
            },
        )
}

fn pod_strategy() -> impl Strategy<Value = PodParams> {
    (
        (0u8..3, 0u8..3, any::<bool>(), 0u8..10),
        proptest::option::weighted(0.9, 1u8..=3),
        (0u8..4, 0u8..4, 0u8..8),
        (0u8..3, any::<bool>()),
    )
        .prop_map(
            |((ns, app, tier, node), ip, (ready, terminating, finished), (http_port, dns))| {
                PodParams {
                    ns,
                    app,
                    tier,
                    node: match node {
                        0..=4 => 0,
                        5..=8 => 1,
                        _ => 2,
                    },
                    ip,
                    ready: ready > 0,
                    terminating: terminating == 0,
                    finished: finished == 0,
                    http_port,
                    dns,
                }
            },
        )
}

fn make_service(i: u8, p: &SvcParams) -> Service {
    let mut annotations = BTreeMap::new();
    let annotation = match p.annotation {
        1 => Some(("tollway.io/lb-algorithm", "maglev")),
        2 => Some(("service.cilium.io/lb-algorithm", "random")),
        3 => Some(("tollway.io/lb-algorithm", "round-robin")),
        _ => None,
    };
    if let Some((k, v)) = annotation {
        annotations.insert(k.to_string(), v.to_string());
    }
    let cluster_ip = match p.ip {
        // Few addresses: services collide on frontends.
        0..=2 => Some(format!("10.96.0.{}", p.ip + 1)),
        3 => Some("10.96.0.1".into()),
        4 => Some("None".into()),
        5 => None,
        6 => Some("fd00::1".into()),
        _ => Some("10.96.0.9".into()),
    };
    let mut selector = BTreeMap::new();
    match p.selector {
        0 => {}
        1 => {
            selector.insert("app".to_string(), "x".to_string());
        }
        2 => {
            selector.insert("app".to_string(), "y".to_string());
        }
        _ => {
            selector.insert("app".to_string(), "x".to_string());
            selector.insert("tier".to_string(), "t".to_string());
        }
    }
    let ports = p
        .ports
        .iter()
        .enumerate()
        .map(|(n, q)| ServicePort {
            name: Some(format!("p{n}")),
            protocol: Some(match q.proto {
                0..=4 => Protocol::Tcp,
                5..=6 => Protocol::Udp,
                _ => Protocol::Sctp,
            }),
            port: i64::from(q.port),
            target_port: match q.target {
                0 => None,
                1 => Some(IntOrString::Int(8080)),
                2 => Some(IntOrString::String("http".into())),
                _ => Some(IntOrString::String("dns".into())),
            },
            node_port: Some(i64::from(q.node_port)),
            app_protocol: None,
        })
        .collect();
    let external_ips = match p.external_ips {
        0 | 1 => vec![],
        2 => vec!["192.168.50.1".to_string()],
        // The cluster IP of another service: contested.
        3 => vec!["192.168.50.1".to_string(), "10.96.0.2".to_string()],
        _ => vec!["fd00::7".to_string(), "192.168.50.2".to_string()],
    };
    let ingress: Vec<&str> = match p.ingress {
        0 | 1 => vec![],
        // Also an external IP of some: counted once per service.
        2 => vec!["192.168.50.1"],
        _ => vec!["203.0.113.1", "fd00::8"],
    };
    let status = (!ingress.is_empty()).then(|| ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: ingress
                .iter()
                .map(|ip| LoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ..LoadBalancerIngress::default()
                })
                .collect(),
        }),
    });
    let type_ = match (p.lb, p.node_port) {
        (2, _) => Some(ServiceType::LoadBalancer),
        (_, true) => Some(ServiceType::NodePort),
        _ => None,
    };
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: ObjectMeta {
            name: format!("s{i}"),
            namespace: namespace(p.ns),
            annotations,
            ..ObjectMeta::default()
        },
        status,
        spec: ServiceSpec {
            type_,
            external_ips,
            selector,
            ports,
            cluster_ip,
            session_affinity: p.affinity.map(|_| SessionAffinity::ClientIP),
            session_affinity_config: p
                .affinity
                .filter(|t| *t > 0)
                .map(|t| SessionAffinityConfig {
                    client_ip: Some(ClientIpConfig {
                        timeout_seconds: Some(t),
                    }),
                }),
            external_traffic_policy: p.etp_local.then_some(TrafficPolicy::Local),
            internal_traffic_policy: p.itp_local.then_some(TrafficPolicy::Local),
            publish_not_ready_addresses: Some(p.publish_not_ready),
            ..ServiceSpec::default()
        },
    }
}

fn make_pod(i: u8, p: &PodParams) -> Pod {
    let mut labels = BTreeMap::new();
    if p.app < 2 {
        labels.insert(
            "app".to_string(),
            ["x", "y"][usize::from(p.app)].to_string(),
        );
    }
    if p.tier {
        labels.insert("tier".to_string(), "t".to_string());
    }
    let mut metadata: ObjectMeta = serde_json::from_value(serde_json::json!({
        "name": format!("p{i}"),
        "deletionTimestamp": "2024-05-01T10:00:00Z",
    }))
    .unwrap();
    if !p.terminating {
        metadata.deletion_timestamp = None;
    }
    metadata.namespace = namespace(p.ns);
    metadata.labels = labels;
    let mut ports = vec![];
    if p.http_port > 0 {
        ports.push(ContainerPort {
            name: Some("http".into()),
            container_port: if p.http_port == 1 { 8080 } else { 9090 },
            protocol: None,
        });
    }
    if p.dns {
        ports.push(ContainerPort {
            name: Some("dns".into()),
            container_port: 5353,
            protocol: Some(Protocol::Udp),
        });
    }
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata,
        spec: PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports,
                ..Container::default()
            }],
            node_name: match p.node {
                0 => Some("node-a".into()),
                1 => Some("node-b".into()),
                _ => None,
            },
            ..PodSpec::default()
        },
        status: Some(PodStatus {
            phase: if p.finished { "Succeeded" } else { "Running" }.into(),
            // Few addresses: pods share them (a terminating one and its
            // replacement).
            pod_ip: p.ip.map(|n| format!("10.244.0.{n}")),
            conditions: vec![PodCondition {
                type_: "Ready".into(),
                status: if p.ready { "True" } else { "False" }.into(),
                last_transition_time: None,
            }],
            ..PodStatus::default()
        }),
    }
}

fn make_slice(i: u8, p: &SliceParams) -> EndpointSlice {
    let address_type = match p.address_type {
        0..=5 => AddressType::IPv4,
        6 => AddressType::IPv6,
        _ => AddressType::Fqdn,
    };
    let address = |n: u8| match address_type {
        // Few addresses, shared with the pods': backends are shared too.
        AddressType::IPv4 => format!("10.244.0.{n}"),
        AddressType::IPv6 => format!("fd00::{n}"),
        AddressType::Fqdn => format!("b{n}.example.com"),
    };
    let mut labels = BTreeMap::new();
    if let Some(s) = p.service {
        labels.insert(SERVICE_NAME_LABEL.to_string(), format!("s{s}"));
    }
    EndpointSlice {
        api_version: "discovery.k8s.io/v1".into(),
        kind: "EndpointSlice".into(),
        metadata: ObjectMeta {
            name: format!("e{i}"),
            namespace: namespace(p.ns),
            labels,
            ..ObjectMeta::default()
        },
        address_type,
        endpoints: p
            .endpoints
            .iter()
            .map(|e| Endpoint {
                addresses: if e.second_ip {
                    vec![address(e.ip), address(e.ip % 3 + 1)]
                } else {
                    vec![address(e.ip)]
                },
                conditions: EndpointConditions {
                    ready: e.ready,
                    serving: e.serving,
                    terminating: e.terminating,
                },
                node_name: match e.node {
                    0 => Some("node-a".into()),
                    1 => Some("node-b".into()),
                    _ => None,
                },
                ..Endpoint::default()
            })
            .collect(),
        ports: p
            .ports
            .iter()
            .map(|q| EndpointPort {
                name: match q.name {
                    0 => None,
                    1 => Some(String::new()),
                    2 => Some("p0".into()),
                    _ => Some("p1".into()),
                },
                port: q.port.map(i64::from),
                protocol: match q.proto {
                    0 => None,
                    1 => Some(Protocol::Tcp),
                    2 => Some(Protocol::Udp),
                    _ => Some(Protocol::Sctp),
                },
                app_protocol: None,
            })
            .collect(),
    }
}

#[derive(Debug, Clone)]
enum Action {
    UpsertService(u8, SvcParams),
    RemoveService(u8),
    UpsertPod(u8, PodParams),
    RemovePod(u8),
    UpsertSlice(u8, SliceParams),
    RemoveSlice(u8),
}

const SERVICES: u8 = 6;
const PODS: u8 = 8;
const SLICES: u8 = 4;

fn action_strategy() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..SERVICES, svc_strategy()).prop_map(|(i, p)| Action::UpsertService(i, p)),
        1 => (0..SERVICES).prop_map(Action::RemoveService),
        5 => (0..PODS, pod_strategy()).prop_map(|(i, p)| Action::UpsertPod(i, p)),
        1 => (0..PODS).prop_map(Action::RemovePod),
        3 => (0..SLICES, slice_strategy()).prop_map(|(i, p)| Action::UpsertSlice(i, p)),
        1 => (0..SLICES).prop_map(Action::RemoveSlice),
    ]
}

/// The objects from scratch, as the agent's snapshot would have them.
#[derive(Default)]
struct Model {
    services: BTreeMap<u8, Service>,
    pods: BTreeMap<u8, Pod>,
    slices: BTreeMap<u8, EndpointSlice>,
}

impl Model {
    fn full(&self, cfg: &LbConfig) -> (Vec<DesiredService>, Vec<DesiredWarning>) {
        let services: Vec<&Service> = self.services.values().collect();
        let pods: Vec<&Pod> = self.pods.values().collect();
        let slices: Vec<&EndpointSlice> = self.slices.values().collect();
        desired_services(&services, &pods, &slices, &node(), cfg)
    }

    /// The selector-less services a slice change can affect, the slow way.
    fn slice_services(
        &self,
        old: Option<&EndpointSlice>,
        new: Option<&EndpointSlice>,
    ) -> BTreeSet<ServiceKey> {
        self.services
            .values()
            .filter(|s| s.spec.selector.is_empty())
            .filter(|s| {
                old.into_iter().chain(new).any(|e| {
                    e.metadata.namespace_or_default() == s.metadata.namespace_or_default()
                        && e.metadata.labels.get(SERVICE_NAME_LABEL) == Some(&s.metadata.name)
                })
            })
            .map(ServiceKey::of)
            .collect()
    }
}

fn ns_name(o: &ObjectMeta) -> (String, String) {
    (o.namespace_or_default().to_string(), o.name.clone())
}

/// Do `a` on the state and the model; check `affected_services` on the way.
fn act(state: &mut DesiredState, model: &mut Model, a: &Action) -> Result<(), TestCaseError> {
    match a {
        Action::UpsertService(i, p) => {
            let s = make_service(*i, p);
            let old = model.services.remove(i);
            if let Some(o) = &old
                && ns_name(&o.metadata) != ns_name(&s.metadata)
            {
                // Moved namespace: a delete and an add.
                let (ns, name) = ns_name(&o.metadata);
                let removed = state.remove_service(&ns, &name);
                prop_assert_eq!(removed.as_ref(), Some(o));
            }
            let changed = state.upsert_service(s.clone());
            prop_assert_eq!(changed, old.as_ref() != Some(&s));
            model.services.insert(*i, s);
        }
        Action::RemoveService(i) => {
            if let Some(old) = model.services.remove(i) {
                let (ns, name) = ns_name(&old.metadata);
                prop_assert_eq!(state.remove_service(&ns, &name), Some(old));
            }
        }
        Action::UpsertPod(i, p) => {
            let pod = make_pod(*i, p);
            let old = model.pods.remove(i);
            if let Some(o) = &old
                && ns_name(&o.metadata) != ns_name(&pod.metadata)
            {
                // Moved namespace: a delete and an add.
                let (ns, name) = ns_name(&o.metadata);
                let affected = state.affected_services(Some(o), None);
                prop_assert_eq!(
                    &affected,
                    &affected_services(model.services.values(), Some(o), None)
                );
                prop_assert!(state.remove_pod(&ns, &name).is_some());
                let affected = state.affected_services(None, Some(&pod));
                prop_assert_eq!(
                    &affected,
                    &affected_services(model.services.values(), None, Some(&pod))
                );
            } else {
                let affected = state.affected_services(old.as_ref(), Some(&pod));
                prop_assert_eq!(
                    &affected,
                    &affected_services(model.services.values(), old.as_ref(), Some(&pod))
                );
            }
            let changed = state.upsert_pod(pod.clone());
            prop_assert_eq!(changed, old.as_ref() != Some(&pod));
            model.pods.insert(*i, pod);
        }
        Action::RemovePod(i) => {
            if let Some(old) = model.pods.remove(i) {
                let (ns, name) = ns_name(&old.metadata);
                prop_assert_eq!(state.remove_pod(&ns, &name), Some(old));
            }
        }
        Action::UpsertSlice(i, p) => {
            let slice = make_slice(*i, p);
            let old = model.slices.remove(i);
            if let Some(o) = &old
                && ns_name(&o.metadata) != ns_name(&slice.metadata)
            {
                // Moved namespace: a delete and an add.
                let (ns, name) = ns_name(&o.metadata);
                prop_assert_eq!(
                    state.slice_services(Some(o), None),
                    model.slice_services(Some(o), None)
                );
                let removed = state.remove_slice(&ns, &name);
                prop_assert_eq!(removed.as_ref(), Some(o));
                prop_assert_eq!(
                    state.slice_services(None, Some(&slice)),
                    model.slice_services(None, Some(&slice))
                );
            } else {
                prop_assert_eq!(
                    state.slice_services(old.as_ref(), Some(&slice)),
                    model.slice_services(old.as_ref(), Some(&slice))
                );
            }
            let changed = state.upsert_slice(slice.clone());
            prop_assert_eq!(changed, old.as_ref() != Some(&slice));
            model.slices.insert(*i, slice);
        }
        Action::RemoveSlice(i) => {
            if let Some(old) = model.slices.remove(i) {
                let (ns, name) = ns_name(&old.metadata);
                prop_assert_eq!(state.remove_slice(&ns, &name), Some(old));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn incremental_state_and_scoped_plans_match_from_scratch(
        initial in proptest::collection::vec(action_strategy(), 0..20),
        batches in proptest::collection::vec(proptest::collection::vec(action_strategy(), 1..4), 1..8),
        maglev_default in any::<bool>(),
    ) {
        let cfg = LbConfig {
            default_algorithm: if maglev_default { Algorithm::Maglev } else { Algorithm::Random },
            maglev_m: 31,
        };
        let mut model = Model::default();
        let mut scratch = DesiredState::new(node(), cfg);
        for a in &initial {
            act(&mut scratch, &mut model, a)?;
        }
        // Built at once or change by change: the same.
        let mut state = DesiredState::from_objects(
            model.services.values(),
            model.pods.values(),
            model.slices.values(),
            node(),
            cfg,
        );
        prop_assert_eq!(state.desired(), scratch.desired());
        let (desired, warnings) = model.full(&cfg);
        prop_assert_eq!(&state.desired(), &desired);
        prop_assert_eq!(&state.warnings(), &warnings);

        // Start: a full plan, then commit.
        let mut applied = Applied::default();
        for op in plan(&applied, &state.desired(), &cfg).unwrap() {
            apply_to(&mut applied, &op);
        }
        state.commit();
        applied.rebuild_indexes();

        for batch in &batches {
            for a in batch {
                act(&mut state, &mut model, a)?;
            }
            let (desired, warnings) = model.full(&cfg);
            prop_assert_eq!(&state.desired(), &desired);
            prop_assert_eq!(&state.warnings(), &warnings);
            let services: Vec<&Service> = model.services.values().collect();
            let index = PodIndex::from_pods(model.pods.values());
            let slices = SliceIndex::from_slices(model.slices.values());
            prop_assert_eq!(
                desired_services_indexed(&services, &index, &slices, &node(), &cfg),
                (desired.clone(), warnings)
            );
            prop_assert_eq!(state.pods(), &index);
            prop_assert_eq!(state.slices(), &slices);

            let (subset, scope) = state.pending();
            let full = plan(&applied, &desired, &cfg).unwrap();
            let scoped = plan_scoped(&applied, &subset, &scope, state.demand(), &cfg).unwrap();
            prop_assert_eq!(&scoped, &full);
            for op in &scoped {
                apply_to(&mut applied, op);
                let bad = applied.inconsistencies();
                prop_assert!(bad.is_empty(), "after {}: {:?}", op, bad);
            }
            let m = mismatch(&applied, &desired, &cfg);
            prop_assert!(m.is_none(), "{:?}", m);
            state.commit();
            prop_assert!(!state.has_pending());
            let (subset, scope) = state.pending();
            prop_assert!(subset.is_empty() && scope.is_empty());
        }
    }
}

#[test]
fn a_pod_change_recomputes_only_the_services_selecting_it() {
    let cfg = LbConfig::default();
    let svc = |i: u8, selector: u8| {
        make_service(
            i,
            &SvcParams {
                ns: 2,
                ip: i,
                selector,
                ports: vec![PortParams {
                    port: 80,
                    proto: 0,
                    target: 1,
                    node_port: 30000,
                }],
                node_port: false,
                etp_local: false,
                itp_local: false,
                affinity: None,
                publish_not_ready: false,
                annotation: 0,
                lb: 0,
                external_ips: 0,
                ingress: 0,
            },
        )
    };
    let pod = |ready| PodParams {
        ns: 2,
        app: 0,
        tier: false,
        node: 0,
        ip: Some(1),
        ready,
        terminating: false,
        finished: false,
        http_port: 1,
        dns: false,
    };
    let x = svc(0, 1);
    let y = svc(1, 2);
    let mut state = DesiredState::from_objects([&x, &y], [], [], node(), cfg);
    state.commit();
    assert!(state.upsert_pod(make_pod(0, &pod(true))));
    let (desired, scope) = state.pending();
    let x_fe = Frontend {
        address: Ipv4Addr::new(10, 96, 0, 1),
        port: 80,
        proto: crate::Proto::Tcp,
        scope: crate::Scope::External,
    };
    assert_eq!(scope, BTreeSet::from([x_fe]));
    assert_eq!(desired.len(), 1);
    assert_eq!(desired[0].backends.len(), 1);
    // The same pod again: nothing.
    state.commit();
    assert!(!state.upsert_pod(make_pod(0, &pod(true))));
    assert!(!state.has_pending());
    // A label-irrelevant change to a pod no service selects recomputes none.
    let mut other = pod(true);
    other.app = 2;
    assert!(state.upsert_pod(make_pod(5, &other)));
    assert!(!state.has_pending());
    assert_eq!(
        state.affected_services(None, Some(&make_pod(0, &pod(false)))),
        BTreeSet::from([ServiceKey {
            namespace: "b".into(),
            name: "s0".into()
        }])
    );
}

/// Two pods with one IP (a terminating one and its replacement), selected
/// by different services: the replacement's service depends on the other's
/// pod, and is re-planned with it.
#[test]
fn a_shared_address_couples_services() {
    let cfg = LbConfig::default();
    let svc = |i: u8, selector: u8| {
        make_service(
            i,
            &SvcParams {
                ns: 2,
                ip: i,
                selector,
                ports: vec![PortParams {
                    port: 80,
                    proto: 0,
                    target: 1,
                    node_port: 30000,
                }],
                node_port: false,
                etp_local: false,
                itp_local: false,
                affinity: None,
                publish_not_ready: false,
                annotation: 0,
                lb: 0,
                external_ips: 0,
                ingress: 0,
            },
        )
    };
    let pod = |app, terminating| PodParams {
        ns: 2,
        app,
        tier: false,
        node: 0,
        ip: Some(1),
        ready: true,
        terminating,
        finished: false,
        http_port: 1,
        dns: false,
    };
    let (x, y) = (svc(0, 1), svc(1, 2));
    let old = make_pod(0, &pod(0, true));
    let new = make_pod(1, &pod(1, false));
    let mut state = DesiredState::from_objects([&x, &y], [&old, &new], [], node(), cfg);
    let mut applied = Applied::default();
    for op in plan(&applied, &state.desired(), &cfg).unwrap() {
        apply_to(&mut applied, &op);
    }
    state.commit();
    // The address is terminating (pod 0): service y has no slot for it.
    let y_fe = state.desired()[1].frontend;
    assert_eq!(applied.services[&y_fe].count, 0);
    // Pod 0 goes: only x changes, but y gets its slot.
    state.remove_pod("b", "p0");
    let (subset, scope) = state.pending();
    assert_eq!(scope.len(), 2, "{scope:?}");
    assert!(scope.contains(&y_fe));
    let ops = plan_scoped(&applied, &subset, &scope, state.demand(), &cfg).unwrap();
    assert_eq!(ops, plan(&applied, &state.desired(), &cfg).unwrap());
    for op in &ops {
        apply_to(&mut applied, op);
    }
    assert_eq!(applied.services[&y_fe].count, 1);
}

/// A slice change re-plans the selector-less service it names (before and
/// after), nothing else.
#[test]
fn a_slice_change_recomputes_only_the_services_it_names() {
    let cfg = LbConfig::default();
    let svc = |i: u8, selector: u8| {
        make_service(
            i,
            &SvcParams {
                ns: 2,
                ip: i,
                selector,
                ports: vec![PortParams {
                    port: 80,
                    proto: 0,
                    target: 1,
                    node_port: 30000,
                }],
                node_port: false,
                etp_local: false,
                itp_local: false,
                affinity: None,
                publish_not_ready: false,
                annotation: 0,
                lb: 0,
                external_ips: 0,
                ingress: 0,
            },
        )
    };
    let slice = |service: u8, ready: bool| SliceParams {
        ns: 2,
        service: Some(service),
        address_type: 0,
        endpoints: vec![EpParams {
            ip: 1,
            second_ip: false,
            ready: Some(ready),
            serving: None,
            terminating: None,
            node: 0,
        }],
        ports: vec![SlicePortParams {
            name: 2,
            proto: 1,
            port: Some(8080),
        }],
    };
    let fe = |n: u8| Frontend {
        address: Ipv4Addr::new(10, 96, 0, n + 1),
        port: 80,
        proto: crate::Proto::Tcp,
        scope: crate::Scope::External,
    };
    // s0 and s1 without a selector, s2 with one.
    let (x, y, z) = (svc(0, 0), svc(1, 0), svc(2, 1));
    let mut state = DesiredState::from_objects([&x, &y, &z], [], [], node(), cfg);
    state.commit();
    assert!(state.upsert_slice(make_slice(0, &slice(0, true))));
    let (desired, scope) = state.pending();
    assert_eq!(scope, BTreeSet::from([fe(0)]));
    assert_eq!(desired[0].backends.len(), 1);
    assert_eq!(desired[0].backends[0].port, 8080);
    state.commit();
    // The same slice again: nothing.
    assert!(!state.upsert_slice(make_slice(0, &slice(0, true))));
    assert!(!state.has_pending());
    // A slice of a service with a selector changes nothing.
    assert!(state.upsert_slice(make_slice(1, &slice(2, true))));
    assert!(!state.has_pending());
    // Not ready: s0 loses its backend.
    assert!(state.upsert_slice(make_slice(0, &slice(0, false))));
    let (desired, scope) = state.pending();
    assert_eq!(scope, BTreeSet::from([fe(0)]));
    assert!(desired[0].backends.is_empty());
    state.commit();
    // Relabelled (ready again) to s1: both are recomputed; only s1 changes.
    assert!(state.upsert_slice(make_slice(0, &slice(1, true))));
    let (_, scope) = state.pending();
    assert_eq!(scope, BTreeSet::from([fe(1)]), "s0 had no backend to lose");
    assert_eq!(state.desired_of(&fe(1)).unwrap().backends.len(), 1);
    state.commit();
    assert!(state.remove_slice("b", "e0").is_some());
    let (_, scope) = state.pending();
    assert_eq!(scope, BTreeSet::from([fe(1)]));
    assert!(state.desired_of(&fe(1)).unwrap().backends.is_empty());
    assert!(state.remove_slice("b", "e0").is_none());
}
