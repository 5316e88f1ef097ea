//! Incremental vs full recomputation for one change among many services.
//!
//! ```text
//! cargo run -p tollway-lb --release --example scoped_timing [services] [namespaces] [maglev-every]
//! ```
//!
//! Builds `services` (default 10,000) ClusterIP services (every 5th also a
//! NodePort, every `maglev-every`th, default none, with the Maglev
//! algorithm) with three pods each, spread over `namespaces` (default 10),
//! converges the maps with a full plan,
//! then for a series of single changes (a pod turning unready, a pod
//! deleted, a service's port changed, a service added and removed) times:
//!
//! - full: `desired_services` (all services and pods) + `plan` (all);
//! - incremental: `DesiredState` update + `pending` + `plan_scoped`;
//! - subset desired: `desired_services_indexed` of just the affected
//!   services (part of the update above; shown alone);
//!
//! checking that both give the same ops.

// A measuring tool: bad arguments or a failed plan end it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tollway_api::{
    Container, ContainerPort, IntOrString, ObjectMeta, Pod, PodCondition, PodSpec, PodStatus,
    Service, ServicePort, ServiceSpec, ServiceType,
};
use tollway_lb::{
    Applied, BackendDemand, DesiredState, LbConfig, NodeContext, PodIndex, apply_to,
    desired_services, desired_services_indexed, plan, plan_scoped,
};

const PODS_PER_SERVICE: usize = 3;
static NAMESPACES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(10);

fn node() -> NodeContext {
    NodeContext {
        node_name: "node-0".into(),
        node_ip: Ipv4Addr::new(192, 168, 0, 1),
    }
}

fn ns(i: usize) -> String {
    format!(
        "ns-{}",
        i % NAMESPACES.load(std::sync::atomic::Ordering::Relaxed)
    )
}

fn service(i: usize, port: i64, maglev: bool) -> Service {
    let mut annotations = BTreeMap::new();
    if maglev {
        annotations.insert("tollway.io/lb-algorithm".into(), "maglev".into());
    }
    let node_port = i.is_multiple_of(5);
    let ip = Ipv4Addr::from(0x0a60_0000 + u32::try_from(i).unwrap() + 10);
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: ObjectMeta {
            name: format!("svc-{i}"),
            namespace: Some(ns(i)),
            annotations,
            ..ObjectMeta::default()
        },
        status: None,
        spec: ServiceSpec {
            type_: node_port.then_some(ServiceType::NodePort),
            selector: BTreeMap::from([("app".into(), format!("app-{i}"))]),
            ports: vec![ServicePort {
                name: Some("http".into()),
                port,
                target_port: Some(IntOrString::String("http".into())),
                node_port: node_port.then(|| 30000 + i64::try_from(i / 5).unwrap()),
                ..ServicePort::default()
            }],
            cluster_ip: Some(ip.to_string()),
            ..ServiceSpec::default()
        },
    }
}

fn pod(svc: usize, n: usize, ready: bool) -> Pod {
    let k = svc * PODS_PER_SERVICE + n;
    let ip = Ipv4Addr::from(0x0af4_0000 + u32::try_from(k).unwrap() + 2);
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: ObjectMeta {
            name: format!("svc-{svc}-{n}"),
            namespace: Some(ns(svc)),
            labels: BTreeMap::from([
                ("app".into(), format!("app-{svc}")),
                ("pod-template-hash".into(), "abc".into()),
            ]),
            ..ObjectMeta::default()
        },
        spec: PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    protocol: None,
                }],
                ..Container::default()
            }],
            node_name: Some(format!("node-{}", k % 100)),
            ..PodSpec::default()
        },
        status: Some(PodStatus {
            phase: "Running".into(),
            pod_ip: Some(ip.to_string()),
            conditions: vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: None,
            }],
            ..PodStatus::default()
        }),
    }
}

/// The cluster as the agent's snapshot has it.
struct Cluster {
    services: BTreeMap<(String, String), Service>,
    pods: BTreeMap<(String, String), Pod>,
}

fn key(m: &ObjectMeta) -> (String, String) {
    (m.namespace_or_default().to_string(), m.name.clone())
}

enum Change {
    UpsertPod(Box<Pod>),
    RemovePod(String, String),
    UpsertService(Box<Service>),
    RemoveService(String, String),
}

#[derive(Default)]
struct Times {
    full_desired: Vec<Duration>,
    full_plan: Vec<Duration>,
    inc_update: Vec<Duration>,
    subset_desired: Vec<Duration>,
    inc_plan: Vec<Duration>,
    apply: Vec<Duration>,
    ops: Vec<usize>,
}

/// The service a round's change of a kind is about.
fn changed(round: usize, kind: usize, n: usize, maglev_every: usize) -> usize {
    let step = maglev_every.max(1);
    ((round * 613 + kind * 97) % (n / step)) * step
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(10_000, |s| s.parse().unwrap());
    let namespaces: usize = args.get(2).map_or(10, |s| s.parse().unwrap());
    NAMESPACES.store(namespaces, std::sync::atomic::Ordering::Relaxed);
    let maglev_every: usize = args.get(3).map_or(0, |s| s.parse().unwrap());
    let cfg = LbConfig::default();

    let mut cluster = Cluster {
        services: BTreeMap::new(),
        pods: BTreeMap::new(),
    };
    for i in 0..n {
        let s = service(i, 80, maglev_every > 0 && i.is_multiple_of(maglev_every));
        cluster.services.insert(key(&s.metadata), s);
        for p in 0..PODS_PER_SERVICE {
            let p = pod(i, p, true);
            cluster.pods.insert(key(&p.metadata), p);
        }
    }

    let t = Instant::now();
    let index = PodIndex::from_pods(cluster.pods.values());
    let build_pod_index = t.elapsed();
    drop(index);
    let t = Instant::now();
    let mut state = DesiredState::from_objects(
        cluster.services.values(),
        cluster.pods.values(),
        [],
        node(),
        cfg,
    );
    let build_state = t.elapsed();
    let mut applied = Applied::default();
    for op in plan(&applied, &state.desired(), &cfg).unwrap() {
        apply_to(&mut applied, &op);
    }
    state.commit();
    let t = Instant::now();
    applied.rebuild_indexes();
    let build_indexes = t.elapsed();
    let t = Instant::now();
    let demand = BackendDemand::new(&state.desired());
    let build_demand = t.elapsed();
    drop(demand);
    println!(
        "{n} services in {namespaces} namespaces ({} Maglev), {} pods, {} frontends, {} backends",
        if maglev_every == 0 {
            0
        } else {
            n.div_ceil(maglev_every)
        },
        cluster.pods.len(),
        applied.services.len(),
        applied.backends.len()
    );
    println!(
        "one-time: PodIndex::from_pods {}, DesiredState::from_objects {} (includes a PodIndex \
         and BackendDemand), BackendDemand::new {}, Applied::rebuild_indexes {}",
        ms(build_pod_index),
        ms(build_state),
        ms(build_demand),
        ms(build_indexes)
    );

    let kinds = [
        "pod turns unready",
        "pod deleted",
        "service port changed",
        "service added",
        "service removed",
    ];
    let rounds = 15;
    let mut times: Vec<Times> = (0..kinds.len()).map(|_| Times::default()).collect();
    for round in 0..rounds {
        for (kind, t) in times.iter_mut().enumerate() {
            // With Maglev services, change only those.
            let svc = changed(round, kind, n, maglev_every);
            let maglev = maglev_every > 0;
            let change = match kind {
                0 => Change::UpsertPod(Box::new(pod(svc, 0, false))),
                1 => Change::RemovePod(ns(svc), format!("svc-{svc}-1")),
                2 => Change::UpsertService(Box::new(service(
                    svc,
                    81 + i64::try_from(round).unwrap(),
                    maglev,
                ))),
                3 => Change::UpsertService(Box::new(service(n + round, 80, maglev))),
                _ => Change::RemoveService(ns(n + round), format!("svc-{}", n + round)),
            };
            // The snapshot after the change.
            match &change {
                Change::UpsertPod(p) => {
                    cluster.pods.insert(key(&p.metadata), (**p).clone());
                }
                Change::RemovePod(ns, name) => {
                    cluster.pods.remove(&(ns.clone(), name.clone()));
                }
                Change::UpsertService(s) => {
                    cluster.services.insert(key(&s.metadata), (**s).clone());
                }
                Change::RemoveService(ns, name) => {
                    cluster.services.remove(&(ns.clone(), name.clone()));
                }
            }

            // Full: everything from the snapshot.
            let start = Instant::now();
            let services: Vec<&Service> = cluster.services.values().collect();
            let pods: Vec<&Pod> = cluster.pods.values().collect();
            let (desired, _) = desired_services(&services, &pods, &[], &node(), &cfg);
            t.full_desired.push(start.elapsed());
            let start = Instant::now();
            let full = plan(&applied, &desired, &cfg).unwrap();
            t.full_plan.push(start.elapsed());

            // The affected services, for the subset-desired column.
            let affected: Vec<Service> = match &change {
                Change::UpsertPod(p) => {
                    let old = state.pods().get(&ns(svc), &p.metadata.name);
                    let keys = state.affected_services(old, Some(&**p));
                    keys.iter()
                        .filter_map(|k| state.service(&k.namespace, &k.name).cloned())
                        .collect()
                }
                Change::RemovePod(ns, name) => {
                    let keys = state.affected_services(state.pods().get(ns, name), None);
                    keys.iter()
                        .filter_map(|k| state.service(&k.namespace, &k.name).cloned())
                        .collect()
                }
                Change::UpsertService(s) => vec![(**s).clone()],
                Change::RemoveService(..) => vec![],
            };

            // Incremental.
            let start = Instant::now();
            match change {
                Change::UpsertPod(p) => {
                    state.upsert_pod(*p);
                }
                Change::RemovePod(ns, name) => {
                    state.remove_pod(&ns, &name);
                }
                Change::UpsertService(s) => {
                    state.upsert_service(*s);
                }
                Change::RemoveService(ns, name) => {
                    state.remove_service(&ns, &name);
                }
            }
            t.inc_update.push(start.elapsed());
            let start = Instant::now();
            let refs: Vec<&Service> = affected.iter().collect();
            let subset_desired =
                desired_services_indexed(&refs, state.pods(), state.slices(), &node(), &cfg);
            t.subset_desired.push(start.elapsed());
            drop(subset_desired);
            let start = Instant::now();
            let (subset, scope) = state.pending();
            let ops = plan_scoped(&applied, &subset, &scope, state.demand(), &cfg).unwrap();
            t.inc_plan.push(start.elapsed());
            assert_eq!(ops, full, "scoped and full plans differ");
            t.ops.push(ops.len());

            let start = Instant::now();
            for op in &ops {
                apply_to(&mut applied, op);
            }
            state.commit();
            t.apply.push(start.elapsed());
        }
        // Put the pods back for the next round (not timed).
        for (kind, _) in kinds.iter().enumerate().take(2) {
            let svc = changed(round, kind, n, maglev_every);
            for p in 0..PODS_PER_SERVICE {
                let p = pod(svc, p, true);
                cluster.pods.insert(key(&p.metadata), p.clone());
                state.upsert_pod(p);
            }
        }
        let (subset, scope) = state.pending();
        for op in plan_scoped(&applied, &subset, &scope, state.demand(), &cfg).unwrap() {
            apply_to(&mut applied, &op);
        }
        state.commit();
    }

    println!("median of {rounds} rounds:");
    println!(
        "{:<22} {:>4} | {:>11} {:>11} {:>11} | {:>11} {:>11} {:>11} | {:>8} | {:>11} {:>11}",
        "change",
        "ops",
        "full desire",
        "full plan",
        "full total",
        "inc update",
        "inc plan",
        "inc total",
        "speed-up",
        "subset des.",
        "apply_to"
    );
    for (kind, t) in kinds.iter().zip(&times) {
        let full: Vec<Duration> = t
            .full_desired
            .iter()
            .zip(&t.full_plan)
            .map(|(a, b)| *a + *b)
            .collect();
        let inc: Vec<Duration> = t
            .inc_update
            .iter()
            .zip(&t.inc_plan)
            .map(|(a, b)| *a + *b)
            .collect();
        println!(
            "{:<22} {:>4} | {:>11} {:>11} {:>11} | {:>11} {:>11} {:>11} | {:>7.0}x | {:>11} {:>11}",
            kind,
            t.ops[t.ops.len() / 2],
            ms(median(&t.full_desired)),
            ms(median(&t.full_plan)),
            ms(median(&full)),
            ms(median(&t.inc_update)),
            ms(median(&t.inc_plan)),
            ms(median(&inc)),
            median(&full).as_secs_f64() / median(&inc).as_secs_f64(),
            ms(median(&t.subset_desired)),
            ms(median(&t.apply)),
        );
    }
}
