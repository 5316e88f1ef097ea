//! Garbage collection of unused TollwayIdentities, against the fake API
//! server: mark, then delete after the grace; a mark removed by the
//! allocator (or by the next pass) saves the identity; a reclaim racing a
//! sweep has exactly one winner; only the lowest-named node's agent
//! collects; nothing happens while the source is not synced or the API
//! server is unreachable.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use support::FakeApi;
use tollway_api::{Namespace, Pod};
use tollway_kube::identity::{Allocation, GcPass, IdentityAllocator, IdentityGc, UNUSED_SINCE};
use tollway_kube::{Backoff, ClientSpec, IdentityGcReport, KubeSource, SourceOptions};
use tollway_policy::LabelSet;

const PATH: &str = "/apis/tollway.io/v1alpha1/tollwayidentities";
/// A mark far older than any grace of these tests.
const OLD_MARK: &str = "2024-11-02T13:00:00Z";

fn options(node: Option<&str>, interval_ms: u64, grace_ms: u64) -> SourceOptions {
    SourceOptions {
        backoff: Backoff::Exponential {
            min: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        probe_interval: Duration::from_millis(100),
        node: node.map(str::to_string),
        identity_gc_interval: Duration::from_millis(interval_ms),
        identity_gc_grace: Duration::from_millis(grace_ms),
        ..SourceOptions::default()
    }
}

fn start(api: &FakeApi, options: SourceOptions) -> KubeSource {
    KubeSource::start(ClientSpec::Config(Box::new(api.config())), options).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Poll every source (as the agents' loops do) until `done` holds.
fn pump(
    srcs: &mut [&mut KubeSource],
    what: &str,
    mut done: impl FnMut(&[&mut KubeSource]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for s in srcs.iter_mut() {
            s.poll();
        }
        if done(srcs) {
            return;
        }
        let reports: Vec<_> = srcs.iter().map(|s| s.report()).collect();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {reports:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Poll every source for `d`.
fn pump_for(srcs: &mut [&mut KubeSource], d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        for s in srcs.iter_mut() {
            s.poll();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn gc(src: &KubeSource) -> IdentityGcReport {
    src.report().identity_gc.expect("garbage collection is on")
}

/// The `shop` namespace of the fixtures.
fn shop() -> Namespace {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop",
                     "labels": {"kubernetes.io/metadata.name": "shop", "team": "storefront"}}
    }))
    .unwrap()
}

/// A pod of `shop` with label `app`.
fn pod(name: &str, app: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "labels": {"app": app}},
        "spec": {"nodeName": node, "serviceAccountName": "default",
                 "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        "status": {"phase": "Running", "podIP": "10.244.2.40"}
    })
}

/// The security labels policy computes for a `pod(_, app, _)`.
fn set(app: &str) -> LabelSet {
    let p: Pod = serde_json::from_value(pod("x", app, "node-a")).unwrap();
    tollway_policy::pod_labels(&p, &tollway_policy::namespace_labels(&shop()))
}

/// A TollwayIdentity object for `labels`, with the mark `mark`.
fn identity(id: u32, labels: &LabelSet, mark: Option<&str>) -> Value {
    let mut o = json!({
        "apiVersion": "tollway.io/v1alpha1", "kind": "TollwayIdentity",
        "metadata": {"name": id.to_string(), "uid": format!("uid-identity-{id}"),
                     "creationTimestamp": "2024-11-02T12:00:00Z", "generation": 1},
        "security-labels": tollway_policy::security_labels_map(labels),
    });
    if let Some(m) = mark {
        o["metadata"]["annotations"] = json!({ UNUSED_SINCE: m });
    }
    o
}

/// The server's identity `id`, if it exists.
fn server_identity(api: &FakeApi, id: u32) -> Option<Value> {
    api.object(PATH, &id.to_string())
}

fn mark_on(o: &Value) -> Option<String> {
    o["metadata"]["annotations"][UNUSED_SINCE]
        .as_str()
        .map(str::to_string)
}

/// The statuses of the `method` requests to identity `id`.
fn writes(api: &FakeApi, method: &str, id: u32) -> Vec<u16> {
    let path = format!("{PATH}/{id}");
    api.requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .map(|r| r.status)
        .collect()
}

fn all_writes(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| matches!(r.method.as_str(), "PATCH" | "DELETE" | "POST"))
        .count()
}

fn in_mirror(src: &KubeSource, id: u32) -> bool {
    src.snapshot()
        .cilium_identities()
        .any(|i| i.number() == Some(id))
}

#[test]
fn an_unused_identity_is_marked_then_deleted_after_the_grace() {
    let api = FakeApi::start();
    let ghost = set("ghost");
    api.write("ADDED", identity(300, &ghost, None));
    // coredns's identity, used, but marked (a pass that saw the cluster
    // without coredns): the pass removes the mark, it never deletes it.
    let mut coredns = api.object(PATH, "256").unwrap();
    coredns["metadata"]["annotations"] = json!({ UNUSED_SINCE: OLD_MARK });
    api.write("MODIFIED", coredns);
    let grace = Duration::from_millis(800);
    let mut src = start(&api, options(Some("node-a"), 50, 800));

    pump(&mut [&mut src], "the mark", |_| {
        server_identity(&api, 300)
            .as_ref()
            .and_then(mark_on)
            .is_some()
    });
    let marked: Timestamp = mark_on(&server_identity(&api, 300).unwrap())
        .unwrap()
        .parse()
        .unwrap();
    pump(&mut [&mut src], "the delete", |_| {
        server_identity(&api, 300).is_none()
    });
    let delete = api
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE" && r.path == format!("{PATH}/300") && r.status == 200)
        .unwrap();
    let deleted_at = Timestamp::try_from(delete.at).unwrap();
    assert!(
        deleted_at.duration_since(marked) >= jiff::SignedDuration::try_from(grace).unwrap(),
        "deleted at {deleted_at}, marked at {marked}: before the grace"
    );
    assert_eq!(writes(&api, "PATCH", 300), [200], "one mark, no more");

    // The used identity: unmarked, never deleted.
    let c = server_identity(&api, 256).unwrap();
    assert_eq!(mark_on(&c), None);
    assert!(writes(&api, "DELETE", 256).is_empty());
    assert_eq!(writes(&api, "PATCH", 256), [200]);

    pump(&mut [&mut src], "the deletion in the mirror", |s| {
        !in_mirror(s[0], 300) && in_mirror(s[0], 256)
    });
    let g = gc(&src);
    assert_eq!(g.collector.as_deref(), Some("node-a"));
    assert_eq!((g.marked, g.unmarked, g.deleted), (1, 1, 1));
    assert!(g.passes >= 2 && g.last_pass.is_some(), "{g:#?}");
    assert_eq!(g.last_error, None);
}

#[test]
fn an_identity_reclaimed_between_mark_and_sweep_survives() {
    let api = FakeApi::start();
    let ghost = set("ghost");
    api.write("ADDED", identity(300, &ghost, None));
    let grace = Duration::from_millis(1500);
    let mut src = start(&api, options(Some("node-a"), 50, 1500));
    pump(&mut [&mut src], "the mark", |_| {
        server_identity(&api, 300)
            .as_ref()
            .and_then(mark_on)
            .is_some()
    });

    // An agent schedules a ghost pod: its allocator finds 300, marked,
    // and takes the mark off before using the number.
    let rt = runtime();
    let a = rt
        .block_on(async {
            let client = kube::Client::try_from(api.config()).unwrap();
            IdentityAllocator::new(client).allocate(&ghost).await
        })
        .unwrap();
    assert_eq!(
        a,
        Allocation {
            id: 300,
            created: false,
            reclaimed: true
        }
    );
    assert_eq!(mark_on(&server_identity(&api, 300).unwrap()), None);
    api.write("ADDED", pod("ghost-1", "ghost", "node-b"));

    // Well past the grace: the passes see the pod, the identity stays.
    pump_for(&mut [&mut src], grace * 2);
    let o = server_identity(&api, 300).expect("the reclaimed identity survives");
    assert_eq!(mark_on(&o), None);
    assert!(!writes(&api, "DELETE", 300).contains(&200));
    let g = gc(&src);
    assert_eq!(g.deleted, 0);
    assert!(g.passes >= 10, "{g:#?}");
    assert!(in_mirror(&src, 300));
}

#[test]
fn a_source_reclaims_a_marked_identity_its_pods_use() {
    let api = FakeApi::start();
    let mut coredns = api.object(PATH, "256").unwrap();
    coredns["metadata"]["annotations"] = json!({ UNUSED_SINCE: OLD_MARK });
    api.write("MODIFIED", coredns);
    // No node name: this source collects nothing, it only allocates.
    let mut src = start(&api, options(None, 50, 100));
    pump(&mut [&mut src], "the marked identity in the mirror", |s| {
        s[0].synced()
            && s[0]
                .snapshot()
                .cilium_identities()
                .any(|i| i.metadata.annotations.contains_key(UNUSED_SINCE))
    });
    // coredns's set has an identity, but a marked one: asked for, as web's
    // and api's (none yet).
    assert_eq!(src.request_missing_identities("node-a"), 3);
    pump(&mut [&mut src], "every identity, unmarked", |s| {
        s[0].request_missing_identities("node-a") == 0
    });
    assert_eq!(mark_on(&server_identity(&api, 256).unwrap()), None);
    let r = src.report();
    assert_eq!((r.identities_reclaimed, r.identities_created), (1, 2));
    assert_eq!(r.identity_gc, None);
    assert!(writes(&api, "DELETE", 256).is_empty());
    // node-b's pods have no marked identity.
    assert_eq!(src.request_missing_identities("node-b"), 0);
}

/// A marked, long-unused identity (the only one); an allocator and a
/// collector read it at the same version, then write: the server holds
/// writes of method `held_back` back, so that the other write lands first.
fn race(held_back: &str) -> (FakeApi, Allocation, GcPass) {
    let api = FakeApi::start();
    let coredns = api.object(PATH, "256").unwrap();
    api.write("DELETED", coredns);
    let ghost = set("ghost");
    api.write("ADDED", identity(300, &ghost, Some(OLD_MARK)));
    api.set_list_delay(Duration::from_millis(100));
    api.set_write_delay(held_back, Duration::from_millis(300));
    let rt = runtime();
    let (a, pass) = rt.block_on(async {
        let alloc = IdentityAllocator::new(kube::Client::try_from(api.config()).unwrap());
        let gc = IdentityGc::new(
            kube::Client::try_from(api.config()).unwrap(),
            Duration::from_secs(1),
        );
        // No pod has the ghost's labels, as far as the collector knows.
        let none = BTreeSet::new();
        tokio::join!(alloc.allocate(&ghost), gc.pass(&none, Timestamp::now()))
    });
    let (a, pass) = (a.unwrap(), pass.unwrap());
    // Exactly one of the two writes on the version both read succeeded.
    let patched = writes(&api, "PATCH", 300).first() == Some(&200);
    let deleted = writes(&api, "DELETE", 300) == [200];
    assert!(
        patched ^ deleted,
        "patch ok: {patched}, delete ok: {deleted}"
    );
    // Either way the allocator ends with an existing, unmarked identity
    // carrying the labels.
    let o = server_identity(&api, a.id).expect("the allocated identity exists");
    assert_eq!(
        o["security-labels"],
        json!(tollway_policy::security_labels_map(&ghost))
    );
    assert_eq!(mark_on(&o), None);
    (api, a, pass)
}

#[test]
fn a_reclaim_racing_a_sweep_has_exactly_one_winner() {
    // The un-mark lands first: the delete's precondition fails.
    let (api, a, pass) = race("DELETE");
    assert_eq!(writes(&api, "PATCH", 300), [200]);
    assert_eq!(writes(&api, "DELETE", 300), [409]);
    assert_eq!(
        a,
        Allocation {
            id: 300,
            created: false,
            reclaimed: true
        }
    );
    assert_eq!((pass.deleted, pass.conflicts), (0, 1));

    // The delete lands first: the un-mark finds nothing (404), the
    // allocator lists again and creates the lowest free number.
    let (api, a, pass) = race("PATCH");
    assert_eq!(writes(&api, "DELETE", 300), [200]);
    assert_eq!(writes(&api, "PATCH", 300), [404]);
    assert!(server_identity(&api, 300).is_none());
    assert_eq!(
        a,
        Allocation {
            id: 256,
            created: true,
            reclaimed: false
        }
    );
    assert_eq!((pass.deleted, pass.conflicts), (1, 0));
}

#[test]
fn duplicates_keep_the_lowest_number() {
    let api = FakeApi::start();
    let web = set("web");
    // Two identities for one set (allocators that raced across a delete),
    // the lower one marked.
    api.write("ADDED", identity(300, &web, None));
    api.write("ADDED", identity(280, &web, Some(OLD_MARK)));
    let rt = runtime();
    let _in_runtime = rt.enter();
    let client = kube::Client::try_from(api.config()).unwrap();
    let a = rt
        .block_on(IdentityAllocator::new(client.clone()).allocate(&web))
        .unwrap();
    assert_eq!(
        a,
        Allocation {
            id: 280,
            created: false,
            reclaimed: true
        }
    );
    // The fixtures' web pods use the set: the collector keeps 280, and
    // marks the higher duplicate, which no pod resolves to.
    let gc = IdentityGc::new(client, Duration::from_millis(200));
    let wanted: BTreeSet<LabelSet> = [web.clone()].into();
    let first = rt.block_on(gc.pass(&wanted, Timestamp::now())).unwrap();
    assert_eq!(
        (first.marked, first.deleted),
        (2, 0),
        "300 and coredns's 256"
    );
    assert!(mark_on(&server_identity(&api, 300).unwrap()).is_some());
    assert_eq!(mark_on(&server_identity(&api, 280).unwrap()), None);
    std::thread::sleep(Duration::from_millis(250));
    let second = rt.block_on(gc.pass(&wanted, Timestamp::now())).unwrap();
    assert_eq!(second.deleted, 2);
    assert!(server_identity(&api, 300).is_none());
    assert!(server_identity(&api, 280).is_some());
}

#[test]
fn only_the_lowest_named_nodes_agent_collects() {
    let api = FakeApi::start();
    api.write("ADDED", identity(300, &set("ghost"), None));
    let mut a = start(&api, options(Some("node-a"), 50, 300));
    let mut b = start(&api, options(Some("node-b"), 50, 300));
    pump(&mut [&mut a, &mut b], "node-a's agent deleting 300", |_| {
        server_identity(&api, 300).is_none()
    });
    let (ga, gb) = (gc(&a), gc(&b));
    assert_eq!((ga.marked, ga.deleted), (1, 1));
    assert_eq!(ga.collector.as_deref(), Some("node-a"));
    assert_eq!(gb.collector.as_deref(), Some("node-a"));
    assert_eq!((gb.passes, gb.marked, gb.deleted), (0, 0, 0));
    assert_eq!(gb.last_pass, None);

    // node-a leaves the cluster: node-b's agent takes over.
    let node_a = api.object("/api/v1/nodes", "node-a").unwrap();
    api.write("DELETED", node_a);
    pump(&mut [&mut a, &mut b], "both agents seeing node-a go", |s| {
        s.iter()
            .all(|s| gc(s).collector.as_deref() == Some("node-b"))
    });
    api.write("ADDED", identity(301, &set("ghost-2"), None));
    pump(&mut [&mut a, &mut b], "node-b's agent deleting 301", |_| {
        server_identity(&api, 301).is_none()
    });
    let (ga, gb) = (gc(&a), gc(&b));
    assert_eq!(gb.collector.as_deref(), Some("node-b"));
    assert_eq!((gb.marked, gb.deleted), (1, 1));
    assert_eq!(ga.collector.as_deref(), Some("node-b"));
    assert_eq!(ga.deleted, 1, "node-a's agent stopped collecting");
}

#[test]
fn nothing_is_collected_while_not_synced_or_unreachable() {
    let api = FakeApi::start();
    api.write("ADDED", identity(300, &set("ghost"), None));
    // Services cannot be listed: the source never syncs.
    api.fail_lists("/api/v1/services", Some(500));
    let mut src = start(&api, options(Some("node-a"), 50, 300));
    pump_for(&mut [&mut src], Duration::from_secs(1));
    assert!(!src.synced());
    assert!(src.report().connected, "the server answers, with errors");
    assert_eq!(gc(&src).passes, 0);
    assert_eq!(gc(&src).last_error, None);
    assert_eq!(all_writes(&api), 0);
    assert_eq!(mark_on(&server_identity(&api, 300).unwrap()), None);

    // Synced: the next pass marks.
    api.fail_lists("/api/v1/services", None);
    pump(&mut [&mut src], "the mark", |_| {
        server_identity(&api, 300)
            .as_ref()
            .and_then(mark_on)
            .is_some()
    });

    // Unreachable: once the source knows, no pass is even tried (a try
    // would fail and leave its error), however long the mark waits.
    api.stop();
    pump(&mut [&mut src], "the outage noticed", |s| {
        !s[0].report().connected
    });
    // (A pass begun before that has failed by now.)
    pump_for(&mut [&mut src], Duration::from_millis(200));
    let before = gc(&src);
    pump_for(&mut [&mut src], Duration::from_millis(1500));
    let during = gc(&src);
    assert_eq!(
        (during.passes, &during.last_error_at),
        (before.passes, &before.last_error_at),
        "{during:#?}"
    );
    assert!(!src.report().connected);

    // Back: the mark is older than the grace, and the identity goes.
    let writes_before = all_writes(&api);
    api.restart();
    pump(&mut [&mut src], "the delete after the outage", |_| {
        server_identity(&api, 300).is_none()
    });
    assert!(all_writes(&api) > writes_before);
    let g = gc(&src);
    assert_eq!((g.marked, g.deleted), (1, 1));
    assert_eq!(g.last_error, None, "cleared by the pass that worked");
}
