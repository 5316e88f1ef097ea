//! Identity allocation through TollwayIdentity objects, against the fake
//! API server: an existing identity is reused, racing allocators end with
//! one number per label set (409 Conflict on create decides), and the
//! source allocates for its node's pods.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::FakeApi;
use tollway_kube::identity::{Allocation, IdentityAllocator};
use tollway_kube::{Backoff, ClientSpec, KubeSource, SourceOptions};
use tollway_policy::{Label, LabelSet};

const PATH: &str = "/apis/tollway.io/v1alpha1/tollwayidentities";

fn set(app: &str) -> LabelSet {
    let mut s = LabelSet::new();
    s.insert(Label::k8s("app", app));
    s.insert(Label::k8s("io.kubernetes.pod.namespace", "race"));
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The server's identities: number → security-labels.
fn identities(api: &FakeApi) -> BTreeMap<u32, BTreeMap<String, String>> {
    api.objects_of(PATH)
        .into_iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().parse().unwrap(),
                serde_json::from_value(o["security-labels"].clone()).unwrap(),
            )
        })
        .collect()
}

fn posts(api: &FakeApi) -> Vec<u16> {
    api.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == PATH)
        .map(|r| r.status)
        .collect()
}

#[test]
fn an_existing_identity_is_reused() {
    let api = FakeApi::start();
    let rt = runtime();
    // The labels of the fixtures' identity 256 (coredns).
    let mut coredns = LabelSet::new();
    for l in [
        "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=kube-system",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.cilium.k8s.policy.serviceaccount=coredns",
        "k8s:io.kubernetes.pod.namespace=kube-system",
        "k8s:k8s-app=kube-dns",
    ] {
        coredns.insert(l.parse().unwrap());
    }
    let a = rt.block_on(async {
        let client = kube::Client::try_from(api.config()).unwrap();
        IdentityAllocator::new(client).allocate(&coredns).await
    });
    assert_eq!(
        a.unwrap(),
        Allocation {
            id: 256,
            created: false,
            reclaimed: false,
        }
    );
    assert!(posts(&api).is_empty(), "no create");
}

#[test]
fn racing_allocators_end_with_one_number_per_label_set() {
    let api = FakeApi::start();
    // Both lists are answered before either create arrives.
    api.set_list_delay(Duration::from_millis(100));
    let rt = runtime();
    let (one, two) = rt.block_on(async {
        let a = IdentityAllocator::new(kube::Client::try_from(api.config()).unwrap());
        let b = IdentityAllocator::new(kube::Client::try_from(api.config()).unwrap());
        // The same set at once: one creates, the other's create conflicts,
        // it reads the object, finds its labels, and takes the number.
        let web = set("web");
        let (x, y) = tokio::join!(a.allocate(&web), b.allocate(&web));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.id, y.id);
        assert_ne!(x.created, y.created, "exactly one created it");
        // Different sets at once: both try the same free number; the
        // loser lists again and takes the next.
        let (api_set, db_set) = (set("api"), set("db"));
        let (x, y) = tokio::join!(a.allocate(&api_set), b.allocate(&db_set));
        assert_ne!(x.unwrap().id, y.unwrap().id);
        // Longer races, in opposite orders.
        let names = ["cart", "search", "auth", "mail", "queue"];
        let fa = async {
            let mut out = BTreeMap::new();
            for n in names {
                out.insert(n, a.allocate(&set(n)).await.unwrap().id);
            }
            out
        };
        let fb = async {
            let mut out = BTreeMap::new();
            for n in names.iter().rev() {
                out.insert(*n, b.allocate(&set(n)).await.unwrap().id);
            }
            out
        };
        tokio::join!(fa, fb)
    });
    assert_eq!(one, two, "both agents agree on every number");
    let ids = identities(&api);
    // One object per label set, none twice; the fixture's 256 untouched.
    let mut by_labels: BTreeMap<&BTreeMap<String, String>, Vec<u32>> = BTreeMap::new();
    for (id, labels) in &ids {
        by_labels.entry(labels).or_default().push(*id);
    }
    assert!(
        by_labels.values().all(|v| v.len() == 1),
        "duplicates: {by_labels:?}"
    );
    assert_eq!(ids.len(), 1 + 3 + 5);
    let numbers: BTreeSet<u32> = ids.keys().copied().collect();
    assert_eq!(numbers, (256..265).collect(), "the lowest free numbers");
    let statuses = posts(&api);
    assert!(
        statuses.contains(&409),
        "the races did conflict: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 8);
}

#[test]
fn the_source_allocates_identities_for_its_nodes_pods() {
    let api = FakeApi::start();
    let options = SourceOptions {
        backoff: Backoff::Exponential {
            min: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        probe_interval: Duration::from_millis(100),
        ..SourceOptions::default()
    };
    let mut src = KubeSource::start(ClientSpec::Config(Box::new(api.config())), options).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !src.synced() {
        assert!(Instant::now() < deadline);
        src.wait(Duration::from_millis(50));
        src.poll();
    }
    // node-a runs coredns (identity 256 exists: the fixture matches the
    // labels policy computes), a web and an api pod (none yet).
    assert_eq!(src.request_missing_identities("node-a"), 2);
    while src.request_missing_identities("node-a") > 0 {
        assert!(Instant::now() < deadline, "{:#?}", src.report());
        src.wait(Duration::from_millis(50));
        src.poll();
    }
    let ids: Vec<u32> = src
        .snapshot()
        .cilium_identities()
        .filter_map(|i| i.number())
        .collect();
    assert_eq!(ids, [256, 257, 258]);
    let r = src.report();
    assert_eq!(r.identities_created, 2);
    assert!(r.identity_error.is_none());
    // node-b's web pod has the same labels as node-a's: nothing to do.
    assert_eq!(src.request_missing_identities("node-b"), 0);
}
