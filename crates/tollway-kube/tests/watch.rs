//! The Kubernetes source against a fake API server serving recorded
//! responses: the initial lists, watch events and their deltas, 410 Gone
//! and relists, an expired continue token, a server that goes away and
//! comes back, a CRD that is not installed.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::FakeApi;
use tollway_api::{Kind, Object, ObjectKey};
use tollway_kube::{
    Backoff, Changes, ClientSpec, Converted, KindRegistry, KubeSource, Polled, RawKey,
    SourceOptions,
};

fn options() -> SourceOptions {
    SourceOptions {
        backoff: Backoff::Exponential {
            min: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        probe_interval: Duration::from_millis(100),
        ..SourceOptions::default()
    }
}

fn start(api: &FakeApi) -> KubeSource {
    KubeSource::start(ClientSpec::Config(Box::new(api.config())), options()).unwrap()
}

/// Poll (and wait) until `done` holds, returning every change seen.
fn pump(
    src: &mut KubeSource,
    what: &str,
    mut done: impl FnMut(&KubeSource, &Changes) -> bool,
) -> Changes {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Changes::default();
    loop {
        if let Polled::Changed(c) = src.poll() {
            all.services.extend(c.services);
            all.pods.extend(c.pods);
            all.slices.extend(c.slices);
            all.others.extend(c.others);
            all.raw.extend(c.raw);
        }
        if done(src, &all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; report: {:#?}",
            src.report()
        );
        src.wait(Duration::from_millis(50));
    }
}

/// What the mirror should hold for what the server holds: every object
/// converted by the registry (those refused left out), and the refusals.
struct Expected {
    typed: BTreeMap<ObjectKey, Object>,
    raw: BTreeMap<RawKey, Value>,
    refused: Vec<String>,
}

fn expected(api: &FakeApi) -> Expected {
    let mut e = Expected {
        typed: BTreeMap::new(),
        raw: BTreeMap::new(),
        refused: Vec::new(),
    };
    for entry in KindRegistry::standard().entries() {
        for o in api.objects_of(&entry.path()) {
            match entry.convert(o) {
                Ok(Converted::Object(o)) => {
                    e.typed.insert(o.key(), *o);
                }
                Ok(Converted::Raw { key, value }) => {
                    e.raw.insert(key, value);
                }
                Err(m) => e.refused.push(m),
            }
        }
    }
    e
}

fn matches(src: &KubeSource, api: &FakeApi) -> bool {
    let e = expected(api);
    src.snapshot().objects == e.typed && src.mirror().raw() == &e.raw
}

fn assert_mirror(src: &KubeSource, api: &FakeApi) {
    let e = expected(api);
    let got: Vec<&ObjectKey> = src.snapshot().objects.keys().collect();
    let want: Vec<&ObjectKey> = e.typed.keys().collect();
    assert_eq!(got, want, "typed keys");
    for (k, o) in &e.typed {
        assert_eq!(src.snapshot().get(k), Some(o), "{k}");
    }
    assert_eq!(src.mirror().raw(), &e.raw, "raw objects");
}

fn key(kind: Kind, ns: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey::new(kind, ns, name)
}

/// Every list request (not watches, not the health probe).
fn all_lists(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.path != "/version" && r.method == "GET" && !r.is_watch())
        .count()
}

fn lists_of(api: &FakeApi, path: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.path == path && r.method == "GET" && !r.is_watch())
        .count()
}

#[test]
fn the_mirror_after_the_initial_list_equals_the_fixtures() {
    let api = FakeApi::start();
    let mut src = start(&api);
    pump(&mut src, "the first lists", |s, _| s.synced());
    assert_mirror(&src, &api);

    let snap = src.snapshot();
    assert_eq!(snap.namespaces().count(), 3);
    assert_eq!(snap.list(Kind::ServiceAccount, None).count(), 4);
    assert_eq!(snap.nodes().count(), 2);
    assert_eq!(snap.pods().count(), 4);
    // Seven services: an ExternalName one is kept, a dual-stack one is
    // narrowed to its IPv4 cluster IP, an IPv6-only one is refused (the
    // datapath is IPv4 only).
    assert_eq!(snap.services().count(), 6);
    let Some(Object::Service(dual)) = snap.get(&key(Kind::Service, Some("shop"), "web-dual"))
    else {
        panic!("the dual-stack service is kept")
    };
    assert_eq!(dual.spec.cluster_ips, ["10.96.88.4"]);
    assert_eq!(dual.spec.ip_families, ["IPv4"]);
    let db = snap
        .get(&key(Kind::Service, Some("shop"), "payments-db"))
        .unwrap();
    let Object::Service(db) = db else { panic!() };
    assert_eq!(
        db.spec.external_name.as_deref(),
        Some("db.payments.example.com")
    );
    assert_eq!(snap.network_policies().count(), 2);
    assert_eq!(snap.cilium_policies().count(), 2);
    let ids: Vec<u32> = snap
        .cilium_identities()
        .filter_map(|i| i.number())
        .collect();
    assert_eq!(ids, [256], "TollwayIdentities land as CiliumIdentities");
    // EndpointSlices are typed: default/kubernetes has no selector, its
    // endpoints are the API server's slice.
    assert_eq!(snap.endpoint_slices().count(), 2);
    assert_eq!(src.mirror().raw().len(), 0);
    let Some(Object::EndpointSlice(apiserver)) =
        snap.get(&key(Kind::EndpointSlice, Some("default"), "kubernetes"))
    else {
        panic!("the API server's slice is in the mirror")
    };
    assert_eq!(apiserver.service_name(), Some("kubernetes"));
    assert_eq!(apiserver.endpoints[0].addresses, ["172.18.0.2"]);
    // Built-in list items come without apiVersion/kind: filled in.
    let web = snap.get(&key(Kind::Service, Some("shop"), "web")).unwrap();
    assert_eq!(web.meta().resource_version.as_deref(), Some("1240"));
    // A pod whose env comes from a Secret is kept (env is dropped).
    let Some(Object::Pod(api_pod)) = snap.get(&key(Kind::Pod, Some("shop"), "api-5f8d7b6c4-hk3vn"))
    else {
        panic!("the api pod is in the mirror")
    };
    assert_eq!(api_pod.pod_ip(), Some("10.244.1.9"));
    let node = snap.nodes().find(|n| n.metadata.name == "node-a").unwrap();
    assert_eq!(node.internal_ip(), Some("172.18.0.2"));
    assert_eq!(node.spec.pod_cidr.as_deref(), Some("10.244.1.0/24"));

    let e = expected(&api);
    assert_eq!(e.refused.len(), 1, "{:?}", e.refused);
    pump(&mut src, "the version probe", |s, _| {
        s.report().server_version.is_some()
    });
    let r = src.report();
    assert!(r.connected && r.synced, "{r:#?}");
    assert_eq!(r.server_version.as_deref(), Some("v1.31.2"));
    assert_eq!(r.rejected, 1);
    assert!(
        r.recent_rejections[0].contains("Service shop/web-v6")
            && r.recent_rejections[0].contains("spec.clusterIP"),
        "{:?}",
        r.recent_rejections
    );
    assert_eq!(r.relists, 0);
    assert!(r.last_error.is_none(), "{r:#?}");
    let pods = r.kinds.iter().find(|k| k.kind == "Pod").unwrap();
    assert_eq!((pods.objects, pods.synced, pods.served), (4, true, true));

    // Each kind: one list, then a watch from the list's version, with
    // bookmarks.
    let reqs = api.requests();
    for entry in KindRegistry::standard().entries() {
        let path = entry.path();
        let mine: Vec<_> = reqs.iter().filter(|r| r.path == path).collect();
        assert!(!mine[0].is_watch(), "{path}: list first");
        let w = mine.iter().find(|r| r.is_watch()).expect("a watch");
        assert_eq!(w.query["resourceVersion"], "48213", "{path}");
        assert_eq!(w.query["allowWatchBookmarks"], "true", "{path}");
    }
}

#[test]
fn watch_events_become_deltas() {
    let api = FakeApi::start();
    let mut src = start(&api);
    pump(&mut src, "the first lists", |s, _| s.synced());
    let lists_before = all_lists(&api);
    api.play("watch/changes.jsonl");
    let c = pump(&mut src, "the changes", |s, _| matches(s, &api));
    assert_mirror(&src, &api);

    // ADDED then MODIFIED of one pod: two pod entries, before and after.
    assert_eq!(c.pods.len(), 2, "{:?}", c.pods);
    let (b0, a0) = &c.pods[0];
    assert!(b0.is_none());
    assert_eq!(a0.as_ref().unwrap().pod_ip(), None);
    let (b1, a1) = &c.pods[1];
    assert_eq!(b1.as_ref().unwrap().metadata.name, "web-7d4b9c8f6-q8w2n");
    assert_eq!(a1.as_ref().unwrap().pod_ip(), Some("10.244.2.9"));
    assert_eq!(c.services, [key(Kind::Service, Some("shop"), "web")]);
    // Kinds are watched independently: their order is not defined.
    let mut others = c.others.clone();
    others.sort();
    assert_eq!(
        others,
        [
            key(Kind::Namespace, None, "shop"),
            key(Kind::NetworkPolicy, Some("shop"), "default-deny-egress"),
            key(Kind::CiliumIdentity, None, "257"),
        ]
    );
    assert_eq!(
        c.slices,
        [key(Kind::EndpointSlice, Some("shop"), "web-8hq2d")]
    );
    assert!(c.raw.is_empty());
    let web = src
        .snapshot()
        .services()
        .find(|s| s.metadata.name == "web")
        .unwrap();
    assert_eq!(web.spec.ports.len(), 2);
    // A bookmark is not a change, and nothing was listed again.
    assert!(matches!(src.poll(), Polled::None));
    let lists_after = all_lists(&api);
    assert_eq!(lists_before, lists_after);
    assert_eq!(src.report().relists, 0);
}

#[test]
fn a_compacted_history_forces_a_relist() {
    let api = FakeApi::start();
    let mut src = start(&api);
    pump(&mut src, "the first lists", |s, _| s.synced());
    let lists = lists_of(&api, "/api/v1/pods");
    // Every watch ends; what changes meanwhile is not in the history, so
    // resuming from 48213 gets 410 Expired and the watchers relist.
    api.play_compacted("watch/while-expired.jsonl");
    let c = pump(&mut src, "the relist", |s, _| matches(s, &api));
    assert_mirror(&src, &api);
    assert_eq!(c.pods.len(), 1, "{:?}", c.pods);
    let (before, after) = &c.pods[0];
    assert_eq!(
        before.as_ref().unwrap().metadata.name,
        "web-7d4b9c8f6-zq4mh"
    );
    assert!(after.is_none(), "seen only by the relist: a deletion");
    assert_eq!(c.services, [key(Kind::Service, Some("shop"), "cart")]);
    assert!(c.others.is_empty(), "unchanged kinds relist to no change");
    assert!(lists_of(&api, "/api/v1/pods") > lists);
    let r = src.report();
    assert!(r.relists >= 1, "{r:#?}");
    assert!(r.connected);
    assert!(r.last_error.is_none(), "410 is not an error: {r:#?}");
}

#[test]
fn an_expired_continue_token_restarts_the_list() {
    let api = FakeApi::start();
    api.set_page_size(2);
    api.expire_next_continue();
    let mut src = start(&api);
    pump(&mut src, "the lists", |s, _| s.synced() && matches(s, &api));
    assert_mirror(&src, &api);
    let reqs = api.requests();
    let gone: Vec<_> = reqs.iter().filter(|r| r.status == 410).collect();
    assert_eq!(gone.len(), 1, "one continued page expired");
    let path = &gone[0].path;
    let from_scratch = reqs
        .iter()
        .filter(|r| &r.path == path && !r.is_watch() && !r.query.contains_key("continue"))
        .count();
    assert_eq!(from_scratch, 2, "{path}: listed again from the first page");
    let r = src.report();
    assert_eq!(r.relists, 0, "the first list only completed once");
}

#[test]
fn an_unreachable_server_leaves_the_mirror_and_the_watch_resumes() {
    let api = FakeApi::start();
    let mut src = start(&api);
    pump(&mut src, "the first lists", |s, _| {
        s.synced() && s.report().connected
    });
    let before = src.snapshot().clone();
    let lists = all_lists(&api);

    api.stop();
    let c = pump(&mut src, "the disconnection", |s, _| !s.report().connected);
    assert!(c.is_empty(), "{c:?}");
    // Keep polling a while: nothing changes, the mirror stays.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert!(matches!(src.poll(), Polled::None));
        src.wait(Duration::from_millis(50));
    }
    assert_eq!(src.snapshot(), &before);
    let r = src.report();
    assert!(!r.connected && r.synced, "{r:#?}");
    let err = r.last_error.as_deref().unwrap();
    assert!(r.last_error_at.is_some());
    assert!(
        err.contains("unreachable") || err.contains("failed"),
        "{err}"
    );

    // While it is down, coredns moves; the server comes back and the
    // watches resume from where they were: no relist.
    api.play_offline("watch/during-outage.jsonl");
    api.restart();
    let c = pump(&mut src, "the resumed watch", |s, _| {
        s.report().connected && matches(s, &api)
    });
    assert_mirror(&src, &api);
    assert_eq!(c.pods.len(), 1);
    let (b, a) = &c.pods[0];
    assert_eq!(b.as_ref().unwrap().pod_ip(), Some("10.244.1.2"));
    assert_eq!(a.as_ref().unwrap().pod_ip(), Some("10.244.1.3"));
    let lists_after = all_lists(&api);
    assert_eq!(lists, lists_after, "resumed, not relisted");
    assert_eq!(src.report().relists, 0);
    // The resumed watches asked for the version they had.
    let resumed = api
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/api/v1/pods" && r.is_watch())
        .unwrap();
    assert_eq!(resumed.query["resourceVersion"], "48213");
}

#[test]
fn a_kind_that_is_not_served_counts_as_empty_until_it_is() {
    let api = FakeApi::start();
    let path = "/apis/cilium.io/v2/ciliumnetworkpolicies";
    api.unserve(path);
    let mut src = start(&api);
    pump(&mut src, "the first lists", |s, _| s.synced());
    let r = src.report();
    let cnp = r
        .kinds
        .iter()
        .find(|k| k.kind == "CiliumNetworkPolicy")
        .unwrap();
    assert!(!cnp.served && cnp.synced && cnp.objects == 0, "{cnp:?}");
    assert_eq!(
        src.snapshot().list(Kind::CiliumNetworkPolicy, None).count(),
        0
    );
    // Installed: the retried list picks it up.
    api.serve_again(path);
    let c = pump(&mut src, "the CRD's objects", |s, _| {
        s.snapshot().list(Kind::CiliumNetworkPolicy, None).count() == 1
    });
    assert_eq!(
        c.others,
        [key(Kind::CiliumNetworkPolicy, Some("shop"), "api-from-web")]
    );
    assert!(src.report().kinds.iter().all(|k| k.served));
}
