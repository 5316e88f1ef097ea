//! Network policy, for real, on the Kubernetes upstream e2e model
//! (test/e2e/network/netpol): namespaces x, y, z labelled `ns=<name>`, pods
//! a, b, c in each labelled `pod=<name>`, every pod serving TCP and UDP on
//! 80 and 81 (named ports `serve-80-tcp` ...). Each case applies policies
//! and checks the whole from/to truth table (9 x 9 pods x 2 ports x 2
//! protocols), probed concurrently from every pod.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Lab;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [80, 81];
const PROTOS: [&str; 2] = ["tcp", "udp"];

/// `ns/pod`.
type Peer = String;
/// (from, to, port, proto) → reachable.
type Table = BTreeMap<(Peer, Peer, u16, &'static str), bool>;

fn peers() -> Vec<Peer> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

fn model_manifest() -> String {
    let mut out = String::new();
    for ns in NAMESPACES {
        out.push_str(&format!("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: '{ns}'\n  labels: {{ns: '{ns}'}}\n"));
    }
    for (i, ns) in NAMESPACES.iter().enumerate() {
        for (j, pod) in PODS.iter().enumerate() {
            // Spread over both nodes.
            let node = if (i + j) % 2 == 0 { "node-1" } else { "node-2" };
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: '{ns}'\n  labels: {{pod: '{pod}'}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: cont\n    command: [tollway, workload, serve, --name, '{ns}/{pod}', --tcp, '80', --tcp, '81', --udp, '80', --udp, '81']\n    ports:\n    - {{name: serve-80-tcp, containerPort: 80, protocol: TCP}}\n    - {{name: serve-81-tcp, containerPort: 81, protocol: TCP}}\n    - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}\n    - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}\n"
            ));
        }
    }
    out
}

struct Model {
    lab: Lab,
    ips: BTreeMap<Peer, String>,
}

impl Model {
    fn up(tag: &str) -> Model {
        let lab = Lab::up(tag, 2);
        lab.apply_ok(&model_manifest());
        for ns in NAMESPACES {
            lab.wait_ready(ns);
        }
        let mut ips = BTreeMap::new();
        for p in peers() {
            let (ns, pod) = p.split_once('/').unwrap();
            ips.insert(p.clone(), lab.pod_ip(ns, pod));
        }
        let m = Model { lab, ips };
        m.wait_synced();
        m
    }

    fn wait_synced(&self) {
        self.lab.wait_synced(&["node-1", "node-2"]);
    }

    fn apply(&self, yaml: &str) {
        self.lab.apply_ok(yaml);
        self.wait_synced();
    }

    fn delete_policies(&self) {
        for ns in NAMESPACES {
            for kind in ["networkpolicy", "ciliumnetworkpolicy"] {
                let out = self.lab.json(&["get", kind, "-n", ns, "-o", "json"]);
                for item in out["items"].as_array().cloned().unwrap_or_default() {
                    let name = item["metadata"]["name"].as_str().unwrap().to_string();
                    self.lab.ok(&["delete", kind, &name, "-n", ns]);
                }
            }
        }
        self.wait_synced();
    }

    /// The whole truth table, probed from every pod at once.
    fn probe(&self) -> Table {
        std::thread::scope(|scope| {
            let handles: Vec<_> = peers()
                .into_iter()
                .map(|from| {
                    scope.spawn(move || {
                        let (ns, pod) = from.split_once('/').unwrap();
                        let mut targets = Vec::new();
                        let mut keys = Vec::new();
                        for to in peers() {
                            for port in PORTS {
                                for proto in PROTOS {
                                    targets.push(format!("{proto}://{}:{port}", self.ips[&to]));
                                    keys.push((from.clone(), to.clone(), port, proto));
                                }
                            }
                        }
                        let ok = self.lab.reach_many(ns, pod, &targets, 700);
                        keys.into_iter().zip(ok).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        })
    }

    /// Probe and compare with `expected`; on a mismatch probe once more (a
    /// UDP datagram can be lost on a loaded machine) and report the cells
    /// that differ twice.
    fn check(&self, case: &str, expected: &Table) {
        let first = self.probe();
        let diff: Vec<_> = expected
            .iter()
            .filter(|(k, v)| first.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        if diff.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
        let second = self.probe();
        let wrong: Vec<String> = diff
            .iter()
            .filter(|k| second.get(*k) != expected.get(*k))
            .map(|(f, t, port, proto)| {
                format!(
                    "{f} -> {t} {port}/{proto}: expected {}, got {}",
                    expected[&(f.clone(), t.clone(), *port, *proto)],
                    second[&(f.clone(), t.clone(), *port, *proto)]
                )
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{case}: {} cell(s) wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}

/// A table where everything reaches everything.
fn all(reachable: bool) -> Table {
    let mut t = Table::new();
    for f in peers() {
        for to in peers() {
            for port in PORTS {
                for proto in PROTOS {
                    t.insert((f.clone(), to.clone(), port, proto), reachable || f == to);
                }
            }
        }
    }
    t
}

/// Set every cell matching the predicate.
fn set(t: &mut Table, value: bool, pred: impl Fn(&str, &str, u16, &str) -> bool) {
    for ((f, to, port, proto), v) in t.iter_mut() {
        if f != to && pred(f, to, *port, proto) {
            *v = value;
        }
    }
}

fn ns_of(p: &str) -> &str {
    p.split_once('/').unwrap().0
}

fn pod_of(p: &str) -> &str {
    p.split_once('/').unwrap().1
}

fn netpol(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: '{ns}'\nspec:\n{spec}"
    )
}

#[test]
fn upstream_network_policy_cases() {
    let m = Model::up("netpol");
    let t0 = Instant::now();
    m.check("no policy: everything reachable", &all(true));

    // 1. default deny ingress in x.
    m.apply(&netpol(
        "x",
        "deny-ingress",
        "  podSelector: {}\n  policyTypes: [Ingress]\n",
    ));
    let mut t = all(true);
    set(&mut t, false, |_, to, _, _| ns_of(to) == "x");
    m.check("default deny ingress", &t);
    m.delete_policies();

    // 2. default deny egress in x.
    m.apply(&netpol(
        "x",
        "deny-egress",
        "  podSelector: {}\n  policyTypes: [Egress]\n",
    ));
    let mut t = all(true);
    set(&mut t, false, |f, _, _, _| ns_of(f) == "x");
    m.check("default deny egress", &t);
    m.delete_policies();

    // 3. default deny all.
    m.apply(&netpol(
        "x",
        "deny-all",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
    ));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| {
        ns_of(f) == "x" || ns_of(to) == "x"
    });
    m.check("default deny all", &t);
    m.delete_policies();

    // 4. allow all ingress on top of deny all.
    m.apply(
        &(netpol(
            "x",
            "deny-all",
            "  podSelector: {}\n  policyTypes: [Ingress]\n",
        ) + &netpol("x", "allow-all", "  podSelector: {}\n  ingress:\n  - {}\n")),
    );
    m.check("allow all ingress", &all(true));
    m.delete_policies();

    // 5. pod selector: x/a from x/b only.
    m.apply(&netpol("x", "a-from-b", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}\n"));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| to == "x/a" && f != "x/b");
    m.check("pod selector", &t);
    m.delete_policies();

    // 6. namespace selector: x/a from namespace y only.
    m.apply(&netpol("x", "a-from-y", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: 'y'}}\n"));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| to == "x/a" && ns_of(f) != "y");
    m.check("namespace selector", &t);
    m.delete_policies();

    // 7. pod AND namespace selector in one peer: c pods of y and z.
    m.apply(&netpol("x", "a-from-yz-c", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions: [{key: ns, operator: In, values: ['y', z]}]\n      podSelector: {matchLabels: {pod: c}}\n"));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| {
        to == "x/a" && !(pod_of(f) == "c" && ns_of(f) != "x")
    });
    m.check("pod and namespace selector", &t);
    m.delete_policies();

    // 8. OR of peers: x/b, or anything in y.
    m.apply(&netpol("x", "a-or", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}\n    - namespaceSelector: {matchLabels: {ns: 'y'}}\n"));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| {
        to == "x/a" && !(f == "x/b" || ns_of(f) == "y")
    });
    m.check("or of peers", &t);
    m.delete_policies();

    // 9. ports: only 81/TCP into x/a.
    m.apply(&netpol("x", "a-81", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports:\n    - {port: 81, protocol: TCP}\n"));
    let mut t = all(true);
    set(&mut t, false, |_, to, port, proto| {
        to == "x/a" && !(port == 81 && proto == "tcp")
    });
    m.check("port", &t);
    m.delete_policies();

    // 10. named port.
    m.apply(&netpol("x", "a-named", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports:\n    - {port: serve-80-udp, protocol: UDP}\n"));
    let mut t = all(true);
    set(&mut t, false, |_, to, port, proto| {
        to == "x/a" && !(port == 80 && proto == "udp")
    });
    m.check("named port", &t);
    m.delete_policies();

    // 11. endPort: 80-81 TCP.
    m.apply(&netpol("x", "a-range", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports:\n    - {port: 80, endPort: 81, protocol: TCP}\n"));
    let mut t = all(true);
    set(&mut t, false, |_, to, _, proto| {
        to == "x/a" && proto != "tcp"
    });
    m.check("endPort", &t);
    m.delete_policies();

    // 12. protocol-only rule: UDP on any port.
    m.apply(&netpol(
        "x",
        "a-udp",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports:\n    - protocol: UDP\n",
    ));
    let mut t = all(true);
    set(&mut t, false, |_, to, _, proto| {
        to == "x/a" && proto != "udp"
    });
    m.check("protocol only", &t);
    m.delete_policies();

    // 13. stacked policies: the union of their ingress.
    m.apply(&(netpol("x", "a-from-b", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}\n")
        + &netpol("x", "a-from-z", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: z}}\n")));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| {
        to == "x/a" && !(f == "x/b" || ns_of(f) == "z")
    });
    m.check("stacked policies", &t);

    // 14. policy update: a-from-b now lets c in instead of b.
    m.apply(&netpol("x", "a-from-b", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: c}}\n"));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| {
        to == "x/a" && !(f == "x/c" || ns_of(f) == "z")
    });
    m.check("policy update", &t);

    // 15. policy deletion.
    m.lab
        .ok(&["delete", "networkpolicy", "a-from-z", "-n", "x"]);
    m.wait_synced();
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| to == "x/a" && f != "x/c");
    m.check("policy deletion", &t);
    m.delete_policies();

    // 16. pod relabel: y/b becomes pod=special and is let in.
    m.apply(&netpol("x", "a-from-special", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {}\n      podSelector: {matchLabels: {pod: special}}\n"));
    let mut t = all(true);
    set(&mut t, false, |_, to, _, _| to == "x/a");
    m.check("before pod relabel", &t);
    m.lab
        .ok(&["label", "pod", "b", "-n", "y", "pod=special", "--overwrite"]);
    m.wait_synced();
    set(&mut t, true, |f, to, _, _| to == "x/a" && f == "y/b");
    m.check("pod relabel", &t);
    m.lab
        .ok(&["label", "pod", "b", "-n", "y", "pod=b", "--overwrite"]);
    m.delete_policies();

    // 17. namespace relabel: z becomes ns=trusted and is let in.
    m.apply(&netpol("x", "a-from-trusted", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: trusted}}\n"));
    m.lab
        .ok(&["label", "namespace", "z", "ns=trusted", "--overwrite"]);
    m.wait_synced();
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| to == "x/a" && ns_of(f) != "z");
    m.check("namespace relabel", &t);
    m.lab
        .ok(&["label", "namespace", "z", "ns=z", "--overwrite"]);
    m.delete_policies();

    // 18. ipBlock with except: the pod CIDRs, except y/b.
    let yb = m.ips["y/b"].clone();
    m.apply(&netpol("x", "a-cidr", &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.244.0.0/16\n        except: [{yb}/32]\n")));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| to == "x/a" && f == "y/b");
    m.check("ipBlock with except", &t);
    m.delete_policies();

    // 19. egress allowed to DNS only (port 53): everything else from x/a denied.
    m.apply(&netpol("x", "a-dns-only", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - ports:\n    - {port: 53, protocol: UDP}\n    - {port: 53, protocol: TCP}\n"));
    let mut t = all(true);
    set(&mut t, false, |f, _, _, _| f == "x/a");
    m.check("egress with DNS allowed", &t);
    m.delete_policies();

    // 20. egress to y/b on 80 only.
    m.apply(&netpol("x", "a-to-yb", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector: {matchLabels: {ns: 'y'}}\n      podSelector: {matchLabels: {pod: b}}\n    ports:\n    - {port: 80}\n"));
    let mut t = all(true);
    set(&mut t, false, |f, to, port, proto| {
        f == "x/a" && !(to == "y/b" && port == 80 && proto == "tcp")
    });
    m.check("egress to a pod and port", &t);
    m.delete_policies();

    // 21. empty ingress list: deny all into x/a; replies of x/a's own
    // connections still pass (it can reach everyone).
    m.apply(&netpol(
        "x",
        "a-deny",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress: []\n",
    ));
    let mut t = all(true);
    set(&mut t, false, |_, to, _, _| to == "x/a");
    m.check("empty ingress rules", &t);
    m.delete_policies();

    // 22. ingress from every namespace's b pods (namespaceSelector {}).
    m.apply(&netpol("x", "a-from-all-b", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {}\n      podSelector: {matchLabels: {pod: b}}\n"));
    let mut t = all(true);
    set(&mut t, false, |f, to, _, _| to == "x/a" && pod_of(f) != "b");
    m.check("all namespaces' b pods", &t);
    m.delete_policies();

    m.check("all policies gone", &all(true));
    println!("22 upstream cases in {:?}", t0.elapsed());
}
