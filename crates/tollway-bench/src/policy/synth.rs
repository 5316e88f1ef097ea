//! The synthetic cluster of `tollway bench policy`'s control-plane part:
//! namespaces, pods on two nodes and a deterministic mix of
//! NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy.
//!
//! Everything is a function of the sizes and the seed, so that two runs
//! (and the configurations of one run) are comparable. Policy `j` depends
//! only on `j`, the namespace count and the seed: the 100-policy set is the
//! first tenth of the 1,000-policy set.
//!
//! The cluster:
//! - `min(100, endpoints / 100)` namespaces `ns-000`..., labelled
//!   `team=team-<n % 20>` and `env` in {prod, staging, dev};
//! - each namespace has a pool of 20 apps (`app-<(5n + r) % 500>`, so
//!   neighbouring namespaces share app names, 500 names in all); each pod
//!   draws its app from its namespace's pool and its `tier` from {web, api,
//!   db}: about 50 distinct label sets per 100 pods, so identities are a
//!   fraction of the endpoints (as with replicated workloads) but many;
//! - pods alternate between `node-1` and `node-2`, addresses from
//!   10.244.0.0/17 and 10.244.128.0/17; named container ports by tier
//!   (`http`, `grpc`, `postgres`, `metrics`).
//!
//! The policies, by `j % 10`: 0-3 NetworkPolicy, 4-8 CiliumNetworkPolicy,
//! 9 CiliumClusterwideNetworkPolicy. CIDR peers are outside the pod CIDR
//! (172.16.0.0/12, 192.168.0.0/16, 203.0.113.0/24), as real policies' CIDR
//! rules are about the outside world.

use serde_json::{Value, json};
use tollway_api::{CiliumNetworkPolicy, Namespace, NetworkPolicy, Node, Pod};

use crate::error::BenchError;

/// Most endpoints the generator can place (two /17 pod ranges).
pub const MAX_ENDPOINTS: usize = 60_000;
/// Apps each namespace's pods draw from.
const APPS_PER_NAMESPACE: u64 = 20;
/// Distinct app names.
const APPS: u64 = 500;
/// Teams (namespace label).
const TEAMS: u64 = 20;
/// Tiers.
const TIERS: [&str; 3] = ["web", "api", "db"];
/// Namespace environments.
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
/// The nodes.
pub const NODES: [(&str, &str); 2] = [("node-1", "172.18.0.2"), ("node-2", "172.18.0.3")];

/// A small deterministic PRNG (xorshift64*, seeded through splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` and stream `stream` (each pod and each policy
    /// has its own stream).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed
            .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0; 0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // The high bits are the better ones.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Namespaces for `endpoints` pods.
pub fn namespace_count(endpoints: usize) -> usize {
    (endpoints / 100).clamp(1, 100)
}

fn ns_name(n: u64) -> String {
    format!("ns-{n:03}")
}

fn team(n: u64) -> String {
    format!("team-{:02}", n % TEAMS)
}

/// App `r` of namespace `n`'s pool.
fn app(n: u64, r: u64) -> String {
    format!("app-{}", (n * 5 + r) % APPS)
}

/// The synthetic cluster's objects.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// The two nodes.
    pub nodes: Vec<Node>,
}

/// The policies of one configuration.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// Kubernetes NetworkPolicies.
    pub network: Vec<NetworkPolicy>,
    /// CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies.
    pub cilium: Vec<CiliumNetworkPolicy>,
}

impl Policies {
    /// CiliumClusterwideNetworkPolicies among [`Policies::cilium`].
    pub fn clusterwide(&self) -> usize {
        self.cilium.iter().filter(|p| p.is_clusterwide()).count()
    }

    /// Every policy.
    pub fn len(&self) -> usize {
        self.network.len() + self.cilium.len()
    }

    /// No policy at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, BenchError> {
    serde_json::from_value(v).map_err(|e| BenchError::Synthetic(format!("{what}: {e}")))
}

/// The cluster: `endpoints` pods over [`namespace_count`] namespaces and
/// two nodes.
pub fn cluster(endpoints: usize, seed: u64) -> Result<Cluster, BenchError> {
    if endpoints == 0 || endpoints > MAX_ENDPOINTS {
        return Err(BenchError::Usage(format!(
            "--endpoints: {endpoints} is not in 1..={MAX_ENDPOINTS}"
        )));
    }
    let ns_count = namespace_count(endpoints) as u64;
    let mut out = Cluster::default();
    for n in 0..ns_count {
        out.namespaces.push(from_json(
            "namespace",
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns_name(n),
                             "labels": {"team": team(n), "env": ENVS[(n % 3) as usize]}}
            }),
        )?);
    }
    for (name, ip) in NODES {
        out.nodes.push(from_json(
            "node",
            json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
            }),
        )?);
    }
    let mut per_node = [0u32; 2];
    for i in 0..endpoints as u64 {
        let n = i % ns_count;
        let k = i / ns_count;
        let mut rng = Rng::new(seed, i);
        let app_name = app(n, rng.below(APPS_PER_NAMESPACE));
        let tier = *rng.pick(&TIERS);
        let node = ((n + k) % 2) as usize;
        let j = per_node[node];
        per_node[node] += 1;
        // 10.244.0.0/17 for node-1, 10.244.128.0/17 for node-2.
        let addr = u32::from(std::net::Ipv4Addr::new(10, 244, 0, 0)) + (node as u32) * 32_768 + j;
        let ip = std::net::Ipv4Addr::from(addr);
        let ports = match tier {
            "web" => json!([{"name": "http", "containerPort": 8080},
                            {"name": "metrics", "containerPort": 9090}]),
            "api" => json!([{"name": "http", "containerPort": 8080},
                            {"name": "grpc", "containerPort": 9000},
                            {"name": "metrics", "containerPort": 9090}]),
            _ => json!([{"name": "postgres", "containerPort": 5432},
                         {"name": "metrics", "containerPort": 9187}]),
        };
        out.pods.push(from_json(
            "pod",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod-{i:05}"), "namespace": ns_name(n),
                             "uid": format!("uid-{i:05}"),
                             "labels": {"app": app_name, "tier": tier,
                                        "pod-template-hash": format!("h{}", i % 7)}},
                "spec": {"nodeName": NODES[node].0,
                         "containers": [{"name": "main", "image": "app", "ports": ports}]},
                "status": {"phase": "Running", "podIP": ip.to_string()}
            }),
        )?);
    }
    Ok(out)
}

/// A random app of namespace `n`.
fn some_app(rng: &mut Rng, n: u64) -> String {
    app(n, rng.below(APPS_PER_NAMESPACE))
}

/// One NetworkPolicy port.
fn np_port(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=3 => json!({"protocol": "TCP", "port": 8080}),
        4..=5 => json!({"protocol": "TCP", "port": "http"}),
        6 => json!({"protocol": "TCP", "port": "postgres"}),
        7 => {
            let start = 30_000 + rng.below(50) * 100;
            json!({"protocol": "TCP", "port": start, "endPort": start + 99})
        }
        8 => json!({"protocol": "UDP", "port": 53}),
        _ => json!({"protocol": "TCP", "port": 9000 + rng.below(10)}),
    }
}

/// One NetworkPolicy ingress peer.
fn np_peer(rng: &mut Rng, n: u64, ns_count: u64) -> Value {
    match rng.below(10) {
        0..=2 => json!({"podSelector": {"matchLabels": {"tier": *rng.pick(&TIERS)}}}),
        3..=4 => json!({"podSelector": {"matchLabels": {"app": some_app(rng, n)}}}),
        5 => json!({"namespaceSelector": {"matchLabels": {"team": team(rng.below(TEAMS))}}}),
        6..=7 => {
            let m = rng.below(ns_count);
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns_name(m)}},
                   "podSelector": {"matchLabels": {"app": some_app(rng, m)}}})
        }
        8 => json!({"namespaceSelector": {"matchLabels": {"team": team(n)}},
                    "podSelector": {"matchExpressions":
                        [{"key": "tier", "operator": "In", "values": ["web", "api"]}]}}),
        _ => {
            let k = rng.below(256);
            json!({"ipBlock": {"cidr": format!("172.16.{k}.0/24"),
                               "except": [format!("172.16.{k}.0/28")]}})
        }
    }
}

fn network_policy(j: usize, rng: &mut Rng, ns_count: u64) -> Result<NetworkPolicy, BenchError> {
    let n = rng.below(ns_count);
    let pod_selector = match rng.below(10) {
        0..=1 => json!({}),
        2..=4 => json!({"matchLabels": {"tier": *rng.pick(&TIERS)}}),
        _ => json!({"matchLabels": {"app": some_app(rng, n)}}),
    };
    let types: &[&str] = match rng.below(10) {
        0..=6 => &["Ingress"],
        7..=8 => &["Ingress", "Egress"],
        _ => &["Egress"],
    };
    let mut spec = json!({"podSelector": pod_selector, "policyTypes": types});
    if types.contains(&"Ingress") {
        let rules: Vec<Value> = (0..1 + rng.below(2))
            .map(|_| {
                let from: Vec<Value> = (0..1 + rng.below(2))
                    .map(|_| np_peer(rng, n, ns_count))
                    .collect();
                let ports: Vec<Value> = (0..1 + rng.below(2)).map(|_| np_port(rng)).collect();
                json!({"from": from, "ports": ports})
            })
            .collect();
        spec["ingress"] = Value::Array(rules);
    }
    if types.contains(&"Egress") {
        let k = rng.below(256);
        spec["egress"] = json!([
            {"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}],
             "ports": [{"protocol": "TCP", "port": "postgres"}]},
            {"to": [{"namespaceSelector":
                        {"matchLabels": {"kubernetes.io/metadata.name": ns_name(0)}}}],
             "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"to": [{"ipBlock": {"cidr": format!("192.168.{k}.0/24"),
                                 "except": [format!("192.168.{k}.128/25")]}}],
             "ports": [{"protocol": "TCP", "port": 443}]}
        ]);
    }
    from_json(
        "NetworkPolicy",
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("np-{j:04}"), "namespace": ns_name(n)},
            "spec": spec
        }),
    )
}

/// `toPorts` with one or two ports.
fn cilium_ports(rng: &mut Rng) -> Value {
    let ports: Vec<Value> = (0..1 + rng.below(2))
        .map(|_| match rng.below(10) {
            0..=3 => json!({"port": "8080", "protocol": "TCP"}),
            4..=5 => json!({"port": "http", "protocol": "TCP"}),
            6 => json!({"port": "grpc"}),
            7 => {
                let start = 31_000 + rng.below(40) * 64;
                json!({"port": start.to_string(), "endPort": start + 63, "protocol": "TCP"})
            }
            8 => json!({"port": "9090", "protocol": "TCP"}),
            _ => json!({"port": (5000 + rng.below(1000)).to_string(), "protocol": "ANY"}),
        })
        .collect();
    json!([{"ports": ports}])
}

/// One CiliumNetworkPolicy ingress rule.
fn cilium_ingress(rng: &mut Rng, n: u64, ns_count: u64) -> Value {
    let ports = cilium_ports(rng);
    match rng.below(20) {
        0..=5 => json!({"fromEndpoints": [{"matchLabels": {"app": some_app(rng, n)}}],
                        "toPorts": ports}),
        6..=8 => json!({"fromEndpoints": [{"matchLabels": {"tier": *rng.pick(&TIERS)}}],
                        "toPorts": ports}),
        9..=11 => {
            let m = rng.below(ns_count);
            json!({"fromEndpoints": [{"matchLabels": {
                        "k8s:io.kubernetes.pod.namespace": ns_name(m),
                        "app": some_app(rng, m)}}],
                   "toPorts": ports})
        }
        12..=13 => json!({"fromEndpoints": [{"matchExpressions": [
                            {"key": "tier", "operator": "In", "values": ["web", "api"]}]}],
                          "toPorts": ports}),
        14 => json!({"fromEndpoints": [{"matchLabels": {
                        "k8s:io.cilium.k8s.namespace.labels.team": team(rng.below(TEAMS)),
                        "tier": "web"}}],
                     "toPorts": ports}),
        15..=16 => json!({"fromEntities": ["host", "remote-node"], "toPorts": ports}),
        17..=18 => {
            let k = rng.below(256);
            json!({"fromCIDRSet": [{"cidr": format!("172.20.{k}.0/24"),
                                    "except": [format!("172.20.{k}.0/26")]}],
                   "toPorts": ports})
        }
        // Everything from inside the cluster: one entry per identity.
        _ => json!({"fromEntities": ["cluster"]}),
    }
}

fn cilium_policy(
    j: usize,
    rng: &mut Rng,
    ns_count: u64,
) -> Result<CiliumNetworkPolicy, BenchError> {
    let n = rng.below(ns_count);
    let selector = match rng.below(10) {
        0..=3 => json!({"matchLabels": {"app": some_app(rng, n)}}),
        4..=6 => json!({"matchLabels": {"tier": *rng.pick(&TIERS)}}),
        7..=8 => json!({"matchExpressions": [{"key": "app", "operator": "In",
                         "values": [some_app(rng, n), some_app(rng, n)]}]}),
        _ => json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}),
    };
    let mut spec = json!({"endpointSelector": selector});
    let ingress: Vec<Value> = (0..1 + rng.below(3))
        .map(|_| cilium_ingress(rng, n, ns_count))
        .collect();
    spec["ingress"] = Value::Array(ingress);
    if rng.percent(10) {
        spec["ingressDeny"] = if rng.percent(50) {
            json!([{"fromEndpoints": [{"matchLabels": {"tier": "db"}}],
                    "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}])
        } else {
            json!([{"fromCIDR": [format!("203.0.113.{}/32", rng.below(256))]}])
        };
    }
    if rng.percent(20) {
        let k = rng.below(256);
        spec["egress"] = json!([
            {"toEndpoints": [{"matchLabels": {"app": some_app(rng, n)}}],
             "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]},
            {"toEntities": ["kube-apiserver"],
             "toPorts": [{"ports": [{"port": "6443", "protocol": "TCP"}]}]},
            {"toCIDRSet": [{"cidr": format!("192.168.{k}.0/24"),
                            "except": [format!("192.168.{k}.0/28")]}],
             "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}
        ]);
    }
    from_json(
        "CiliumNetworkPolicy",
        json!({
            "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": format!("cnp-{j:04}"), "namespace": ns_name(n)},
            "spec": spec
        }),
    )
}

fn clusterwide_policy(j: usize, rng: &mut Rng) -> Result<CiliumNetworkPolicy, BenchError> {
    let t = team(rng.below(TEAMS));
    let selector = match rng.below(3) {
        0 => json!({"matchLabels": {"app": format!("app-{}", rng.below(APPS))}}),
        1 => json!({"matchLabels": {"tier": "db",
                                    "k8s:io.cilium.k8s.namespace.labels.team": t}}),
        _ => json!({"matchLabels": {"tier": *rng.pick(&TIERS),
                                    "k8s:io.cilium.k8s.namespace.labels.env": *rng.pick(&ENVS),
                                    "k8s:io.cilium.k8s.namespace.labels.team": t}}),
    };
    let spec = match rng.below(4) {
        // The team's api pods may reach its databases.
        0 => json!({"endpointSelector": selector, "ingress": [
                {"fromEndpoints": [{"matchLabels": {
                    "k8s:io.cilium.k8s.namespace.labels.team": t, "tier": "api"}}],
                 "toPorts": [{"ports": [{"port": "postgres", "protocol": "TCP"}]}]}]}),
        // Monitoring: scrape the metrics port from the host.
        1 => json!({"endpointSelector": selector, "ingress": [
                {"fromEntities": ["host"],
                 "toPorts": [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]}]}),
        // No SSH from outside, whatever else allows it.
        2 => json!({"endpointSelector": selector, "ingressDeny": [
                {"fromCIDRSet": [{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}],
                 "toPorts": [{"ports": [{"port": "22", "protocol": "TCP"}]}]}]}),
        // DNS and the API server.
        _ => json!({"endpointSelector": selector, "egress": [
                {"toEndpoints": [{"matchLabels": {
                    "k8s:io.kubernetes.pod.namespace": ns_name(0), "tier": "api"}}],
                 "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}]}]},
                {"toEntities": ["kube-apiserver"],
                 "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]}),
    };
    from_json(
        "CiliumClusterwideNetworkPolicy",
        json!({
            "apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
            "metadata": {"name": format!("ccnp-{j:04}")},
            "spec": spec
        }),
    )
}

/// Policies `0..count` for a cluster of `endpoints` pods.
pub fn policies(count: usize, endpoints: usize, seed: u64) -> Result<Policies, BenchError> {
    let ns_count = namespace_count(endpoints) as u64;
    let mut out = Policies::default();
    for j in 0..count {
        // A stream of its own, apart from the pods'.
        let mut rng = Rng::new(seed ^ 0x005E_ED0F_9011_C1E5, j as u64);
        match j % 10 {
            0..=3 => out.network.push(network_policy(j, &mut rng, ns_count)?),
            4..=8 => out.cilium.push(cilium_policy(j, &mut rng, ns_count)?),
            _ => out.cilium.push(clusterwide_policy(j, &mut rng)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_rng_is_deterministic_and_spread() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7, 3);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7, 3);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, {
            let mut r = Rng::new(7, 4);
            (0..5).map(|_| r.next_u64()).collect::<Vec<_>>()
        });
        let mut r = Rng::new(1, 0);
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[r.below(10) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn the_cluster_has_the_asked_shape() {
        let c = cluster(1_000, 42).expect("cluster");
        assert_eq!(c.pods.len(), 1_000);
        assert_eq!(c.namespaces.len(), 10);
        assert_eq!(c.nodes.len(), 2);
        let on1 = c
            .pods
            .iter()
            .filter(|p| p.spec.node_name.as_deref() == Some("node-1"))
            .count();
        assert_eq!(on1, 500, "pods are spread evenly");
        let ips: BTreeSet<&str> = c.pods.iter().filter_map(|p| p.pod_ip()).collect();
        assert_eq!(ips.len(), 1_000, "addresses are unique");
        let p = &c.pods[0];
        assert_eq!(p.metadata.uid.as_deref(), Some("uid-00000"));
        assert!(p.metadata.labels.contains_key("app"));
        assert!(p.metadata.labels.contains_key("tier"));
        assert!(c.namespaces[3].metadata.labels.contains_key("team"));
        // Identities are many, but fewer than the pods.
        let sets = tollway_policy::wanted_label_sets(&c.namespaces, &c.pods);
        assert!(sets.len() > 200 && sets.len() < 900, "{}", sets.len());
        assert!(cluster(0, 1).is_err());
        assert!(cluster(MAX_ENDPOINTS + 1, 1).is_err());
    }

    #[test]
    fn generation_is_deterministic_and_prefix_stable() {
        let a = policies(100, 10_000, 9).expect("policies");
        let b = policies(1_000, 10_000, 9).expect("policies");
        assert_eq!(a.len(), 100);
        assert_eq!(b.len(), 1_000);
        assert_eq!(
            (b.network.len(), b.cilium.len(), b.clusterwide()),
            (400, 600, 100)
        );
        // The 100-policy set is the start of the 1,000-policy set.
        assert_eq!(a.network[..], b.network[..a.network.len()]);
        assert_eq!(a.cilium[..], b.cilium[..a.cilium.len()]);
        let again = policies(100, 10_000, 9).expect("policies");
        assert_eq!(a.network, again.network);
        let other = policies(100, 10_000, 10).expect("policies");
        assert_ne!(a.network, other.network);
        assert!(policies(0, 10_000, 9).expect("none").is_empty());
    }

    #[test]
    fn every_generated_policy_translates() {
        let p = policies(300, 2_000, 5).expect("policies");
        let t = tollway_policy::translate_all(&p.network, &p.cilium);
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        assert!(t.rules.len() > 300, "{}", t.rules.len());
        // The mix uses what the issue asks for.
        let text = serde_json::to_string(&(&p.network, &p.cilium)).expect("json");
        for needle in [
            "endPort",
            "\"http\"",
            "ipBlock",
            "except",
            "matchExpressions",
            "ingressDeny",
            "toEntities",
            "toCIDRSet",
            "fromEntities",
            "namespaceSelector",
            "CiliumClusterwideNetworkPolicy",
        ] {
            assert!(text.contains(needle), "no {needle}");
        }
    }
}
