//! CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, for real: the
//! seed's L3/L4 policy, deny over allow, entities, CIDR sets with except,
//! cluster-wide selectors, and policy flips that must never let through a
//! connection that neither the old nor the new policy allows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, Lab};

const NODES: [&str; 2] = ["node-1", "node-2"];
const EXTERNAL: &str = "172.18.255.254";

/// shop/web, shop/api, shop/batch and other/web, spread over both nodes,
/// each serving TCP 8080 and 9090; a Service `api` in front of shop/api.
fn manifest() -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  selector: {app: api}\n  ports:\n  - {port: 8080}\n",
    );
    for (ns, pod, app, node) in [
        ("shop", "web", "web", "node-1"),
        ("shop", "api", "api", "node-2"),
        ("shop", "batch", "batch", "node-1"),
        ("other", "web", "web", "node-2"),
    ] {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n  labels: {{app: {app}}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    command: [tollway, workload, serve, --name, '{ns}/{pod}', --tcp, '8080', --tcp, '9090']\n"
        ));
    }
    out
}

struct World {
    lab: Lab,
    api: String,
    web: String,
    svc: String,
    external: Child,
}

impl World {
    fn up(tag: &str) -> World {
        let lab = Lab::up(tag, 2);
        lab.apply_ok(&manifest());
        lab.wait_ready("shop");
        lab.wait_ready("other");
        let api = lab.pod_ip("shop", "api");
        let web = lab.pod_ip("shop", "web");
        let svc =
            lab.json(&["get", "service", "api", "-n", "shop", "-o", "json"])["spec"]["clusterIP"]
                .as_str()
                .unwrap()
                .to_string();
        // A server outside the cluster (lab down ends it with the lab).
        let external = Command::new(BIN)
            .args(["--lab", &lab.name, "lab", "exec", "--external", "--"])
            .args([
                "tollway", "workload", "serve", "--name", "external", "--tcp", "8080",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = World {
            lab,
            api,
            web,
            svc,
            external,
        };
        w.lab
            .eventually(Duration::from_secs(10), "external server", || {
                w.reach("shop/web", &[&format!("tcp://{EXTERNAL}:8080")])[0].then_some(())
            });
        w.lab.wait_synced(&NODES);
        w
    }

    fn apply(&self, yaml: &str) {
        self.lab.apply_ok(yaml);
        self.lab.wait_synced(&NODES);
    }

    fn delete(&self, kind: &str, name: &str, ns: Option<&str>) {
        let mut args = vec!["delete", kind, name];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        self.lab.ok(&args);
        self.lab.wait_synced(&NODES);
    }

    /// Whether `from` (`ns/pod`) reaches each target; a failure is probed
    /// once more so that a lost SYN on a loaded machine is not a verdict.
    fn reach(&self, from: &str, targets: &[&str]) -> Vec<bool> {
        let (ns, pod) = from.split_once('/').unwrap();
        let t: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        let first = self.lab.reach_many(ns, pod, &t, 700);
        if first.iter().all(|ok| *ok) {
            return first;
        }
        let second = self.lab.reach_many(ns, pod, &t, 700);
        first.iter().zip(second).map(|(a, b)| *a || b).collect()
    }

    fn expect(&self, case: &str, from: &str, target: &str, want: bool) {
        let got = self.reach(from, &[target])[0];
        assert_eq!(got, want, "{case}: {from} -> {target}");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.external.kill();
        let _ = self.external.wait();
    }
}

fn cnp(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

#[test]
fn cilium_policies_end_to_end() {
    let w = World::up("cnp");
    let api = |port: u16| format!("tcp://{}:{port}", w.api);
    let svc = format!("tcp://{}:8080", w.svc);
    let ext = format!("tcp://{EXTERNAL}:8080");

    // Everything flows without policy.
    for from in ["shop/web", "shop/batch", "other/web"] {
        w.expect("no policy", from, &api(8080), true);
    }

    // 1. The seed's policy, unchanged: only web-frontend (here app=web of
    //    the same namespace) reaches 8080/TCP; the L7 part is not enforced.
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/checkout-api-l7-policy.yaml"
    ))
    .unwrap()
    .replace("namespace: payments", "namespace: shop")
    .replace("app: checkout-api", "app: api")
    .replace("app: web-frontend", "app: web");
    w.apply(&seed);
    w.expect("seed", "shop/web", &api(8080), true);
    w.expect("seed, through the service", "shop/web", &svc, true);
    w.expect("seed, other port", "shop/web", &api(9090), false);
    w.expect("seed", "shop/batch", &api(8080), false);
    w.expect("seed, through the service", "shop/batch", &svc, false);
    w.expect("seed, implicit namespace", "other/web", &api(8080), false);
    // Not the subject: web still accepts anyone.
    w.expect("seed", "shop/batch", &format!("tcp://{}:8080", w.web), true);
    // What the CLI shows of it, as Cilium's commands would.
    let eps = w
        .lab
        .json(&["endpoint", "list", "--node", "node-2", "-o", "json"]);
    let api_ep = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pod"] == "shop/api")
        .unwrap_or_else(|| panic!("no endpoint for shop/api: {eps}"));
    assert_eq!(api_ep["ingressEnforcement"], "Enabled", "{api_ep}");
    assert_eq!(api_ep["egressEnforcement"], "Disabled", "{api_ep}");
    let id = api_ep["identity"].as_u64().unwrap();
    let ids = w
        .lab
        .json(&["identity", "list", "--node", "node-2", "-o", "json"]);
    assert!(
        ids.as_array().unwrap().iter().any(|i| i["id"] == id
            && i["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l == "k8s:app=api")),
        "{ids}"
    );
    let ipc = w
        .lab
        .json(&["bpf", "ipcache", "list", "--node", "node-1", "-o", "json"]);
    assert!(
        ipc.as_array()
            .unwrap()
            .iter()
            .any(|r| r["prefix"] == format!("{}/32", w.api)
                && r["identity"] == id
                && r["nodeIp"] == "172.18.0.3"),
        "{ipc}"
    );
    let pol = w
        .lab
        .json(&["bpf", "policy", "get", "shop/api", "-o", "json"]);
    let allow = pol
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["direction"] == "Ingress" && r["port"] == "8080/TCP")
        .unwrap_or_else(|| panic!("no 8080/TCP ingress entry: {pol}"));
    assert_eq!(allow["policy"], "Allow");
    assert_eq!(
        allow["origin"],
        "shop/checkout-api-l7-policy spec.ingress[0]"
    );
    assert!(
        allow["packets"].as_u64().unwrap() > 0,
        "hits counted: {allow}"
    );
    let trace = w.lab.ok(&[
        "policy",
        "trace",
        "--src-k8s-pod",
        "shop/batch",
        "--dst-k8s-pod",
        "shop/api",
        "--dport",
        "8080",
    ]);
    assert!(trace.contains("Final verdict: DENIED"), "{trace}");
    let st = w.lab.json(&["status", "--node", "node-2", "-o", "json"]);
    let denied = st["drops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == 133)
        .unwrap_or_else(|| panic!("no policy drops counted: {}", st["drops"]));
    assert!(denied["count"].as_u64().unwrap() > 0);
    w.delete(
        "ciliumnetworkpolicy",
        "checkout-api-l7-policy",
        Some("shop"),
    );

    // 2. ingressDeny wins over an allow-all.
    w.apply(&cnp(
        "deny-batch",
        "shop",
        "  endpointSelector: {matchLabels: {app: api}}\n  ingress:\n  - fromEntities: [all]\n  ingressDeny:\n  - fromEndpoints:\n    - matchLabels: {app: batch}\n",
    ));
    w.expect("deny over allow", "shop/web", &api(8080), true);
    w.expect("deny over allow", "other/web", &api(9090), true);
    w.expect("deny over allow", "shop/batch", &api(8080), false);
    w.delete("ciliumnetworkpolicy", "deny-batch", Some("shop"));

    // 3. Egress entities: world only, then cluster only.
    let entities = |e: &str| {
        cnp(
            "web-egress",
            "shop",
            &format!(
                "  endpointSelector: {{matchLabels: {{app: web}}}}\n  egress:\n  - toEntities: [{e}]\n"
            ),
        )
    };
    w.apply(&entities("world"));
    w.expect("toEntities world", "shop/web", &ext, true);
    w.expect("toEntities world", "shop/web", &api(8080), false);
    w.expect("other namespace untouched", "other/web", &api(8080), true);
    w.apply(&entities("cluster"));
    w.expect("toEntities cluster", "shop/web", &ext, false);
    w.expect("toEntities cluster", "shop/web", &api(8080), true);
    w.delete("ciliumnetworkpolicy", "web-egress", Some("shop"));

    // 4. CIDR sets: the fabric's /24 except the external host; then the
    //    host alone. CIDR rules never select pods (Cilium's default).
    let cidr = |rule: &str| {
        cnp(
            "web-cidr",
            "shop",
            &format!("  endpointSelector: {{matchLabels: {{app: web}}}}\n  egress:\n{rule}"),
        )
    };
    w.apply(&cidr(&format!(
        "  - toCIDRSet:\n    - cidr: 172.18.255.0/24\n      except: [{EXTERNAL}/32]\n"
    )));
    w.expect("toCIDRSet except", "shop/web", &ext, false);
    w.apply(&cidr(&format!("  - toCIDR: [{EXTERNAL}/32, 10.0.0.0/8]\n")));
    w.expect("toCIDR", "shop/web", &ext, true);
    w.expect("toCIDR does not select pods", "shop/web", &api(8080), false);
    w.delete("ciliumnetworkpolicy", "web-cidr", Some("shop"));

    // 5. Cluster-wide: every app=web pod accepts only app=api pods, of any
    //    namespace.
    w.apply(
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: web-from-api}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints:\n    - matchLabels: {app: api}\n",
    );
    let other_web = format!("tcp://{}:8080", w.lab.pod_ip("other", "web"));
    w.expect("ccnp", "shop/api", &other_web, true);
    w.expect("ccnp", "shop/batch", &other_web, false);
    w.expect(
        "ccnp",
        "shop/batch",
        &format!("tcp://{}:8080", w.web),
        false,
    );
    w.expect(
        "ccnp: api itself is not selected",
        "shop/batch",
        &api(8080),
        true,
    );
    w.delete("ciliumclusterwidenetworkpolicy", "web-from-api", None);

    w.expect("all policies gone", "shop/batch", &api(8080), true);
}

/// Flip one policy between "from web" and "from batch" many times while
/// other/web, which neither allows, keeps connecting: not one connection
/// may succeed. Each version is one swap of api's policy trie.
#[test]
fn policy_flips_never_let_through_what_neither_version_allows() {
    let w = World::up("cnpflip");
    let version = |app: &str| {
        cnp(
            "flip",
            "shop",
            &format!(
                "  endpointSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n  - fromEndpoints:\n    - matchLabels: {{app: {app}}}\n"
            ),
        )
    };
    w.apply(&version("web"));
    w.expect("flip A", "shop/web", &format!("tcp://{}:8080", w.api), true);

    let stop = AtomicBool::new(false);
    let target = format!("tcp://{}:8080", w.api);
    let (leaked, attempts, flips_done) = std::thread::scope(|scope| {
        let hammer = scope.spawn(|| {
            let mut leaked = 0;
            let mut attempts = 0;
            while !stop.load(Ordering::Relaxed) {
                let targets = vec![target.clone(); 64];
                let ok = w.lab.reach_many("other", "web", &targets, 300);
                attempts += ok.len();
                leaked += ok.iter().filter(|x| **x).count();
            }
            (leaked, attempts)
        });
        let started = Instant::now();
        let mut flips = 0;
        while flips < 20 && started.elapsed() < Duration::from_secs(120) {
            w.lab
                .apply_ok(&version(if flips % 2 == 0 { "batch" } else { "web" }));
            flips += 1;
            std::thread::sleep(Duration::from_millis(150));
        }
        stop.store(true, Ordering::Relaxed);
        let (leaked, attempts) = hammer.join().unwrap();
        (leaked, attempts, flips)
    });
    println!("{flips_done} flips, {attempts} connection attempts from other/web");
    assert!(attempts > 0);
    assert_eq!(
        leaked, 0,
        "{leaked} of {attempts} connections from other/web got through a policy flip"
    );
    // The last version (20 flips: back to "from web") is in force.
    w.lab.wait_synced(&NODES);
    w.expect("after the flips", "shop/web", &target, true);
    w.expect("after the flips", "shop/batch", &target, false);
}
