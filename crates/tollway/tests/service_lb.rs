//! The kube-proxy replacement, for real: ClusterIP and NodePort services
//! translated by the eBPF datapath in lab namespaces, as root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use common::{BIN, Lab, first};
use serde_json::Value;

/// Three echo backends (HTTP 8080, TCP 9000, UDP 5353, with a preStop-like
/// shutdown delay), a Service over them, and four clients: one per node
/// using the socket LB and one per node forced onto the tc path.
fn echo(replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: echo
        command: [tollway, workload, serve, --http, "8080", --tcp, "9000", --udp, "5353", --shutdown-delay-ms, "1500"]
        ports:
        - {{name: http, containerPort: 8080}}
        - {{name: tcp, containerPort: 9000}}
        - {{name: dns, containerPort: 5353, protocol: UDP}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
  - {{name: tcp, port: 9000, targetPort: tcp}}
  - {{name: udp, port: 53, targetPort: dns, protocol: UDP}}
"#
    )
}

const CLIENTS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: sock-1}
spec:
  nodeName: node-1
  containers: [{name: c, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: sock-2}
spec:
  nodeName: node-2
  containers: [{name: c, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata:
  name: tc-1
  annotations: {tollway.io/socket-lb: "false"}
spec:
  nodeName: node-1
  containers: [{name: c, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata:
  name: tc-2
  annotations: {tollway.io/socket-lb: "false"}
spec:
  nodeName: node-2
  containers: [{name: c, command: [sleep, "3600"]}]
"#;

const ALL_CLIENTS: [&str; 4] = ["sock-1", "sock-2", "tc-1", "tc-2"];

fn setup(tag: &str, replicas: u32) -> (Lab, String) {
    let lab = Lab::up(tag, 2);
    lab.apply_ok(&echo(replicas));
    lab.apply_ok(CLIENTS);
    lab.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/echo",
        "--timeout",
        "60s",
    ]);
    lab.wait_ready("default");
    let vip = lab.json(&["get", "svc", "echo", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    // The agents program the service within a moment of it existing.
    wait_frontend(&lab, "node-1", &format!("{vip}:80"), replicas as usize);
    wait_frontend(&lab, "node-2", &format!("{vip}:80"), replicas as usize);
    (lab, vip)
}

/// Wait until a node's maps list the frontend with `backends` backends.
fn wait_frontend(lab: &Lab, node: &str, frontend: &str, backends: usize) {
    lab.eventually(
        Duration::from_secs(20),
        &format!("{frontend} with {backends} backends on {node}"),
        || {
            let out = lab.tw(&["bpf", "lb", "list", "--node", node, "-o", "json"]);
            let rows: Value = serde_json::from_slice(&out.stdout).ok()?;
            rows.as_array()?
                .iter()
                .find(|r| r["frontend"] == frontend && r["scope"] == "external")
                .filter(|r| r["backends"].as_array().map_or(0, Vec::len) == backends)
                .map(|_| ())
        },
    );
}

fn probe(lab: &Lab, client: &str, args: &[&str]) -> Value {
    let mut full = vec!["lab", "exec", client, "--", "tollway", "workload", "probe"];
    full.extend_from_slice(args);
    full.extend(["-o", "json"]);
    let out = lab.tw(&full);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe {args:?} from {client}: not JSON ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn attempts(r: &Value) -> Vec<Value> {
    r["attempts"].as_array().cloned().unwrap_or_default()
}

fn names(r: &Value) -> Vec<String> {
    attempts(r)
        .iter()
        .map(|a| a["body"].as_str().unwrap_or("").to_string())
        .collect()
}

fn all_ok(r: &Value) -> bool {
    r["summary"]["failed"] == 0 && r["summary"]["ok"].as_u64().unwrap_or(0) > 0
}

fn backend_pods(lab: &Lab) -> Vec<String> {
    lab.json(&["get", "pods", "-l", "app=echo", "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn clusterip_from_both_nodes_to_backends_on_both_nodes_tcp_and_udp() {
    let (lab, vip) = setup("svc", 3);
    let backends: BTreeSet<String> = backend_pods(&lab).into_iter().collect();
    let nodes: BTreeSet<String> =
        lab.json(&["get", "pods", "-l", "app=echo", "-o", "json"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["spec"]["nodeName"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(nodes.len(), 2, "backends on both nodes");
    for client in ALL_CLIENTS {
        // HTTP: spread over all three backends.
        let r = probe(
            &lab,
            client,
            &[&format!("http://{vip}:80/hostname"), "--count", "30"],
        );
        assert!(all_ok(&r), "{client}: {r}");
        let seen: BTreeSet<String> = names(&r).into_iter().collect();
        assert_eq!(seen, backends, "{client} reaches every backend");
        // getpeername shows the ClusterIP, whichever path translated it.
        assert_eq!(
            attempts(&r)[0]["remote_addr"],
            format!("{vip}:80"),
            "{client}: {r}"
        );
        // TCP and UDP.
        let r = probe(
            &lab,
            client,
            &[&format!("tcp://{vip}:9000"), "--count", "5"],
        );
        assert!(all_ok(&r), "{client} tcp: {r}");
        assert!(names(&r).iter().all(|n| backends.contains(n)), "{r}");
        let r = probe(&lab, client, &[&format!("udp://{vip}:53"), "--count", "5"]);
        assert!(all_ok(&r), "{client} udp: {r}");
        assert!(names(&r).iter().all(|n| backends.contains(n)), "{r}");
    }
    // The tc path keeps per-connection service entries for TCP; the socket
    // LB translates TCP at connect() and leaves none. (Connected UDP is on
    // the per-packet path by design, on both.)
    let ct = lab.json(&["bpf", "ct", "list", "--node", "node-1", "-o", "json"]);
    let ip = |p: &str| lab.pod_ip("default", p);
    let tcp_service_entries = |client_ip: &str| {
        ct.as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["kind"] == "SERVICE"
                    && e["protocol"] == "TCP"
                    && e["source"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("{client_ip}:"))
            })
            .count()
    };
    assert!(
        tcp_service_entries(&ip("tc-1")) > 0,
        "tc path: SERVICE entries expected"
    );
    assert_eq!(
        tcp_service_entries(&ip("sock-1")),
        0,
        "socket LB: no per-packet translation of TCP"
    );
}

#[test]
fn no_iptables_or_nftables_rule_exists_in_any_lab_namespace() {
    let (lab, vip) = setup("norules", 1);
    let r = probe(&lab, "tc-1", &[&format!("http://{vip}:80/hostname")]);
    assert!(all_ok(&r), "{r}");
    let prefix = format!("tw_{}_", lab.name);
    let namespaces: Vec<String> = std::fs::read_dir("/var/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(namespaces.len() >= 8, "{namespaces:?}");
    for ns in &namespaces {
        for cmd in [
            &["iptables-save"][..],
            &["iptables-legacy-save"][..],
            &["nft", "list", "ruleset"][..],
        ] {
            let out = Command::new("ip")
                .args(["netns", "exec", ns])
                .args(cmd)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let rules: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.starts_with("-A ")
                        || l.trim_start().starts_with("chain ")
                        || l.contains(" rule ")
                })
                .collect();
            assert!(
                rules.is_empty(),
                "{ns}: `{}` shows rules: {rules:?}",
                cmd.join(" ")
            );
        }
    }
}

#[test]
fn a_service_without_endpoints_rejects_at_once() {
    let (lab, _) = setup("noep", 1);
    lab.apply_ok("apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nobody}\n  ports:\n  - {name: tcp, port: 7000}\n  - {name: udp, port: 7001, protocol: UDP}\n");
    let vip = lab.json(&["get", "svc", "empty", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    wait_frontend(&lab, "node-1", &format!("{vip}:7000"), 0);
    for client in ["sock-1", "tc-1"] {
        let r = probe(
            &lab,
            client,
            &[&format!("tcp://{vip}:7000"), "--timeout-ms", "3000"],
        );
        assert_eq!(
            first(&r).0,
            "refused",
            "{client}: TCP gets a reset, not a timeout: {r}"
        );
        assert!(
            attempts(&r)[0]["latency_us"].as_u64().unwrap() < 1_000_000,
            "{r}"
        );
        let r = probe(
            &lab,
            client,
            &[&format!("udp://{vip}:7001"), "--timeout-ms", "3000"],
        );
        assert_eq!(
            first(&r).0,
            "refused",
            "{client}: UDP gets ICMP unreachable: {r}"
        );
    }
    let st = lab.json(&["status", "--node", "node-1", "-o", "json"]);
    assert!(
        st["drops"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["reason"] == "NO_SERVICE" && d["count"].as_u64() > Some(0)),
        "{st}"
    );
}

/// Run a probe in the background; join to get its report.
fn background(lab: &Lab, client: &str, args: &[&str]) -> std::thread::JoinHandle<Value> {
    let mut full: Vec<String> = [
        "--lab", &lab.name, "lab", "exec", client, "--", "tollway", "workload", "probe",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    full.extend(args.iter().map(|s| s.to_string()));
    full.extend(["-o".to_string(), "json".to_string()]);
    std::thread::spawn(move || {
        let out = Command::new(BIN).args(&full).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    })
}

#[test]
fn scale_3_to_1_to_3_under_traffic() {
    let (lab, vip) = setup("scale", 3);
    let url = format!("http://{vip}:80/hostname");
    for client in ["sock-1", "tc-2"] {
        let traffic = background(
            &lab,
            client,
            &[&url, "--count", "120", "--interval-ms", "40"],
        );
        std::thread::sleep(Duration::from_millis(500));
        lab.ok(&["scale", "deployment/echo", "--replicas", "1"]);
        lab.eventually(Duration::from_secs(30), "one backend", || {
            (backend_pods(&lab).len() == 1).then_some(())
        });
        wait_frontend(&lab, "node-1", &format!("{vip}:80"), 1);
        lab.ok(&["scale", "deployment/echo", "--replicas", "3"]);
        lab.ok(&[
            "wait",
            "--for=condition=Available",
            "deployment/echo",
            "--timeout",
            "30s",
        ]);
        let r = traffic.join().unwrap();
        assert!(
            all_ok(&r),
            "{client}: every request answered while scaling: {}",
            r["summary"]
        );
        wait_frontend(&lab, "node-1", &format!("{vip}:80"), 3);
        wait_frontend(&lab, "node-2", &format!("{vip}:80"), 3);
    }
    let r = probe(&lab, "tc-1", &[&url, "--count", "30"]);
    assert_eq!(
        names(&r).into_iter().collect::<BTreeSet<_>>().len(),
        3,
        "spread again over 3: {r}"
    );
}

#[test]
fn a_backend_deleted_mid_traffic() {
    let (lab, vip) = setup("delete", 3);
    let url = format!("http://{vip}:80/hostname");
    let victim = backend_pods(&lab)[0].clone();
    let traffic = background(
        &lab,
        "tc-1",
        &[&url, "--count", "100", "--interval-ms", "40"],
    );
    let traffic2 = background(
        &lab,
        "sock-2",
        &[&url, "--count", "100", "--interval-ms", "40"],
    );
    std::thread::sleep(Duration::from_millis(800));
    lab.ok(&["delete", "pod", &victim, "--wait=false"]);
    for r in [traffic.join().unwrap(), traffic2.join().unwrap()] {
        assert!(all_ok(&r), "every request answered: {}", r["summary"]);
        // After the deletion the victim gets no new connections.
        let tail: Vec<String> = names(&r).into_iter().skip(60).collect();
        assert!(
            !tail.contains(&victim),
            "deleted backend still chosen: {tail:?}"
        );
    }
}

#[test]
fn terminating_pods_keep_established_connections() {
    let (lab, vip) = setup("graceful", 1);
    let victim = backend_pods(&lab)[0].clone();
    // A long-lived connection (tc path) to the only backend.
    let hold = background(
        &lab,
        "tc-1",
        &[
            &format!("tcp://{vip}:9000"),
            "--hold-ms",
            "1200",
            "--interval-ms",
            "100",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(&["scale", "deployment/echo", "--replicas", "2"]);
    lab.ok(&["delete", "pod", &victim, "--wait=false"]);
    let r = hold.join().unwrap();
    assert!(
        all_ok(&r),
        "the established connection outlives the endpoint's removal: {r}"
    );
    assert!(
        names(&r)
            .iter()
            .all(|n| n.contains(&victim) || n.starts_with("ping ")),
        "{r}"
    );
}

#[test]
fn nodeport_from_outside_the_cluster() {
    let lab = Lab::up("nodeport", 2);
    lab.apply_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-2
  containers:
  - name: web
    command: [tollway, workload, serve, --http, "8080"]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports:
  - {port: 81, targetPort: 8080, nodePort: 30081}
"#,
    );
    lab.wait_ready("default");
    wait_frontend(&lab, "node-1", "172.18.0.2:30080", 1);
    wait_frontend(&lab, "node-2", "172.18.0.3:30081", 1);
    let ext = |target: &str| -> Value {
        let out = lab.tw(&[
            "lab",
            "exec",
            "--external",
            "--",
            "tollway",
            "workload",
            "probe",
            target,
            "--timeout-ms",
            "1500",
            "-o",
            "json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Through the node with the backend, and through the other node (SNAT
    // to that node's IP, so the reply comes back through it).
    for node_ip in ["172.18.0.3", "172.18.0.2"] {
        let r = ext(&format!("http://{node_ip}:30080/echo"));
        assert_eq!(first(&r).0, "ok", "via {node_ip}: {r}");
        let echo: Value = serde_json::from_str(&first(&r).2).unwrap();
        assert_eq!(echo["pod"], "web");
        let client = echo["client"].as_str().unwrap();
        if node_ip == "172.18.0.2" {
            assert!(
                client.starts_with("172.18.0.2:"),
                "remote backend: SNAT to the node: {client}"
            );
        } else {
            assert!(
                client.starts_with("172.18.255.254:"),
                "local backend: the client is seen: {client}"
            );
        }
    }
    // externalTrafficPolicy: Local: only the node with a backend answers,
    // and it keeps the client's address.
    let r = ext("http://172.18.0.3:30081/echo");
    assert_eq!(first(&r).0, "ok", "{r}");
    let echo: Value = serde_json::from_str(&first(&r).2).unwrap();
    assert!(
        echo["client"]
            .as_str()
            .unwrap()
            .starts_with("172.18.255.254:"),
        "{echo}"
    );
    let r = ext("http://172.18.0.2:30081/echo");
    assert_ne!(first(&r).0, "ok", "no local backend on node-1: {r}");
    // From inside the cluster every backend counts.
    lab.apply_ok("apiVersion: v1\nkind: Pod\nmetadata: {name: c}\nspec:\n  nodeName: node-1\n  containers: [{name: c, command: [sleep, '3600']}]\n");
    lab.wait_ready("default");
    let r = lab.probe_from("default", "c", "http://172.18.0.2:30081/hostname");
    assert_eq!(first(&r).0, "ok", "{r}");
}

#[test]
fn client_ip_affinity_sticks() {
    let (lab, _) = setup("affinity", 3);
    lab.apply_ok("apiVersion: v1\nkind: Service\nmetadata: {name: sticky}\nspec:\n  selector: {app: echo}\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n  ports:\n  - {port: 80, targetPort: http}\n");
    let vip = lab.json(&["get", "svc", "sticky", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    wait_frontend(&lab, "node-1", &format!("{vip}:80"), 3);
    wait_frontend(&lab, "node-2", &format!("{vip}:80"), 3);
    for client in ALL_CLIENTS {
        let r = probe(
            &lab,
            client,
            &[&format!("http://{vip}:80/hostname"), "--count", "20"],
        );
        assert!(all_ok(&r), "{r}");
        let seen: BTreeSet<String> = names(&r).into_iter().collect();
        assert_eq!(seen.len(), 1, "{client} sticks to one backend: {seen:?}");
    }
}

#[test]
fn maglev_moves_only_the_flows_of_a_removed_backend() {
    let (lab, _) = setup("maglev", 10);
    lab.apply_ok("apiVersion: v1\nkind: Service\nmetadata:\n  name: mag\n  annotations: {service.cilium.io/lb-algorithm: maglev}\nspec:\n  selector: {app: echo}\n  ports:\n  - {port: 80, targetPort: http}\n");
    let vip = lab.json(&["get", "svc", "mag", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    wait_frontend(&lab, "node-1", &format!("{vip}:80"), 10);
    let flows = |lab: &Lab| -> BTreeMap<u16, String> {
        (41000..41120u16)
            .map(|port| {
                let r = probe(
                    lab,
                    "tc-1",
                    &[
                        &format!("http://{vip}:80/hostname"),
                        "--local-port",
                        &port.to_string(),
                    ],
                );
                (port, first(&r).2)
            })
            .collect()
    };
    let before = flows(&lab);
    let used: BTreeSet<&String> = before.values().collect();
    assert!(used.len() >= 8, "flows spread: {used:?}");
    let victim = before[&41000].clone();
    lab.ok(&["scale", "deployment/echo", "--replicas", "10"]);
    lab.ok(&["delete", "pod", &victim]);
    // The deployment replaces it; wait until the maps list 10 backends
    // again, then compare: only the victim's flows may move (to any
    // backend), the others must stay.
    lab.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/echo",
        "--timeout",
        "30s",
    ]);
    wait_frontend(&lab, "node-1", &format!("{vip}:80"), 10);
    let after = flows(&lab);
    let moved = before
        .iter()
        .filter(|(p, b)| **b != victim && after[*p] != **b)
        .count();
    let others = before.values().filter(|b| **b != victim).count();
    println!(
        "maglev: {moved} of {others} flows of other backends moved (the replaced backend's flows may move)"
    );
    // Replacing 1 of 10 backends changes about 2/10 of the table entries
    // (the victim's out, the new one's in); flows of untouched backends
    // that move are those the new backend took: at most ~1/10 + noise.
    assert!(moved * 100 <= others * 16, "{moved} of {others} moved");
    // Random selection would move most flows: the comparison that shows
    // Maglev at work.
    assert!(moved * 2 < others);
}

#[test]
fn agent_kill9_breaks_neither_established_nor_new_connections() {
    let (lab, vip) = setup("agent9", 2);
    let hold = background(
        &lab,
        "tc-1",
        &[
            &format!("tcp://{vip}:9000"),
            "--hold-ms",
            "4000",
            "--interval-ms",
            "100",
        ],
    );
    std::thread::sleep(Duration::from_millis(400));
    let agent_pid = |lab: &Lab| {
        lab.json(&["status", "--node", "node-1", "-o", "json"])["agent"]["pid"]
            .as_i64()
            .unwrap() as i32
    };
    let old = agent_pid(&lab);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // While it is down: new connections to existing services still work,
    // and a change is made that the next agent must pick up.
    for client in ["tc-1", "sock-1"] {
        let r = probe(
            &lab,
            client,
            &[&format!("http://{vip}:80/hostname"), "--count", "5"],
        );
        assert!(all_ok(&r), "{client} with the agent down: {r}");
    }
    lab.apply_ok("apiVersion: v1\nkind: Service\nmetadata: {name: later}\nspec:\n  selector: {app: echo}\n  ports:\n  - {port: 8080, targetPort: http}\n");
    let r = hold.join().unwrap();
    assert!(
        all_ok(&r),
        "the long-lived connection survived: {}",
        r["summary"]
    );
    lab.eventually(Duration::from_secs(20), "a new agent", || {
        let st = lab.json(&["status", "--node", "node-1", "-o", "json"]);
        (st["agent"]["pid"].as_i64().is_some_and(|p| p as i32 != old)
            && tollway_alive(st["agent"]["pid"].as_i64().unwrap() as i32))
        .then_some(())
    });
    let later = lab.json(&["get", "svc", "later", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    wait_frontend(&lab, "node-1", &format!("{later}:8080"), 2);
    let r = probe(&lab, "tc-1", &[&format!("http://{later}:8080/hostname")]);
    assert!(all_ok(&r), "{r}");
}

fn tollway_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_connected_udp_socket_moves_to_a_live_backend() {
    let (lab, vip) = setup("udpmove", 2);
    for client in ["sock-1", "tc-2"] {
        // One connected UDP socket for the whole run.
        let traffic = background(
            &lab,
            client,
            &[
                &format!("udp://{vip}:53"),
                "--reuse",
                "--count",
                "40",
                "--interval-ms",
                "100",
                "--timeout-ms",
                "300",
            ],
        );
        std::thread::sleep(Duration::from_millis(800));
        // Delete every backend it could be talking to; the deployment
        // replaces them.
        let victims = backend_pods(&lab);
        for v in &victims {
            lab.ok(&["delete", "pod", v, "--grace-period", "0", "--wait=false"]);
        }
        let r = traffic.join().unwrap();
        let a = attempts(&r);
        assert_eq!(a.len(), 40, "{r}");
        assert!(a[..5].iter().all(|x| x["result"] == "ok"), "{client}: {r}");
        let tail = &a[30..];
        assert!(
            tail.iter()
                .all(|x| x["result"] == "ok" && !victims.iter().any(|v| x["body"] == v.as_str())),
            "{client}: the connected socket moved to a live backend: {r}"
        );
        lab.ok(&[
            "wait",
            "--for=condition=Available",
            "deployment/echo",
            "--timeout",
            "30s",
        ]);
        wait_frontend(&lab, "node-1", &format!("{vip}:53"), 2);
        wait_frontend(&lab, "node-2", &format!("{vip}:53"), 2);
    }
}

#[test]
fn status_and_lb_list_read_like_cilium() {
    let (lab, vip) = setup("status", 2);
    // The seed's `cilium status --verbose | grep KubeProxyReplacement`,
    // run in a node.
    let out = lab.ok(&[
        "lab",
        "exec",
        "--node",
        "node-2",
        "--",
        "tollway",
        "status",
        "--verbose",
    ]);
    let line = out
        .lines()
        .find(|l| l.starts_with("KubeProxyReplacement:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("True"), "{line}");
    assert!(out.contains("Node:                    node-2"), "{out}");
    assert!(out.contains("Socket LB:              Enabled"), "{out}");
    assert!(out.contains("Backend Selection:"), "{out}");
    assert!(out.contains("tw_ct4"), "maps table: {out}");
    assert!(out.contains("tw_from_lxc"), "programs: {out}");
    // The seed's `cilium bpf lb list`.
    let out = lab.ok(&[
        "lab", "exec", "--node", "node-1", "--", "tollway", "bpf", "lb", "list",
    ]);
    assert!(out.starts_with("SERVICE ADDRESS"), "{out}");
    assert!(out.contains("BACKEND ADDRESS (REVNAT_ID) (SLOT)"), "{out}");
    assert!(out.contains(&format!("{vip}:80")), "{out}");
    let ips: Vec<String> = backend_pods(&lab)
        .iter()
        .map(|p| lab.pod_ip("default", p))
        .collect();
    for ip in &ips {
        assert!(out.contains(&format!("{ip}:8080 (")), "{ip} in {out}");
    }
    let svc = lab.ok(&["service", "list", "--node", "node-1"]);
    assert!(
        svc.contains(&format!("{vip}:80/TCP")) && svc.contains("ClusterIP"),
        "{svc}"
    );
    let r = probe(&lab, "tc-1", &[&format!("http://{vip}:80/hostname")]);
    assert!(all_ok(&r));
    let ct = lab.ok(&["bpf", "ct", "list", "--node", "node-1"]);
    assert!(
        ct.contains("TCP SERVICE") && ct.contains(&format!("-> {vip}:80")),
        "{ct}"
    );
}

/// Two pods that each are the only backend of their own Service: `self-tc`
/// with the socket LB off, and `self-sock` with it on but behind a
/// ClientIP-affinity Service, which the socket LB leaves to the tc path.
const SELF_SERVICES: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: self-tc
  labels: {app: self-tc}
  annotations: {tollway.io/socket-lb: "false"}
spec:
  nodeName: node-1
  containers:
  - name: echo
    command: [tollway, workload, serve, --http, "8080", --tcp, "9000", --udp, "5353"]
---
apiVersion: v1
kind: Service
metadata: {name: self-tc}
spec:
  selector: {app: self-tc}
  ports:
  - {name: tcp, port: 9000, targetPort: 9000}
  - {name: udp, port: 53, targetPort: 5353, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata:
  name: self-sock
  labels: {app: self-sock}
spec:
  nodeName: node-1
  containers:
  - name: echo
    command: [tollway, workload, serve, --http, "8080", --tcp, "9000", --udp, "5353"]
---
apiVersion: v1
kind: Service
metadata: {name: self-sticky}
spec:
  selector: {app: self-sock}
  sessionAffinity: ClientIP
  ports:
  - {name: tcp, port: 9000, targetPort: 9000}
  - {name: udp, port: 53, targetPort: 5353, protocol: UDP}
"#;

/// Hairpin: a pod whose Service's only backend is the pod itself reaches
/// it, over TCP and UDP, on the tc path (the datapath SNATs it to
/// 169.254.42.1 and back; without that the pod never answers itself).
#[test]
fn a_pod_reaches_itself_through_its_own_service_on_the_tc_path() {
    let lab = Lab::up("hairpin", 1);
    lab.apply_ok(SELF_SERVICES);
    lab.wait_ready("default");
    for (pod, svc) in [("self-tc", "self-tc"), ("self-sock", "self-sticky")] {
        let vip = lab.json(&["get", "svc", svc, "-o", "json"])["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .to_string();
        wait_frontend(&lab, "node-1", &format!("{vip}:9000"), 1);
        wait_frontend(&lab, "node-1", &format!("{vip}:53"), 1);
        let r = probe(&lab, pod, &[&format!("tcp://{vip}:9000"), "--count", "3"]);
        assert!(all_ok(&r), "{pod} to itself through {svc}, TCP: {r}");
        assert!(names(&r).iter().all(|n| n == pod), "{r}");
        let r = probe(&lab, pod, &[&format!("udp://{vip}:53"), "--count", "3"]);
        assert!(all_ok(&r), "{pod} to itself through {svc}, UDP: {r}");
        assert!(names(&r).iter().all(|n| n == pod), "{r}");
    }
    // The tc path translated them: its SERVICE entries are there.
    let ct = lab.json(&["bpf", "ct", "list", "--node", "node-1", "-o", "json"]);
    for pod in ["self-tc", "self-sock"] {
        let ip = lab.pod_ip("default", pod);
        let entries = ct
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["kind"] == "SERVICE"
                    && e["source"].as_str().unwrap().starts_with(&format!("{ip}:"))
            })
            .count();
        assert!(
            entries > 0,
            "{pod}: SERVICE entries of the tc path expected"
        );
    }
}
