//! The lab, for real: namespaces, veths, cgroups and processes, as root.
//! Each test owns a lab of its own and takes it down when it ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Lab, first, leftovers, root_addrs_and_routes, root_links};

/// Three echo pods: two on node-1, one on node-2, each serving HTTP (h2c
/// too), TCP and UDP.
const ECHO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: echo-a, labels: {app: echo}}
spec:
  nodeName: node-1
  containers:
  - name: echo
    command: [tollway, workload, serve, --http, "8080", --tcp, "9000", --udp, "5353"]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-b, labels: {app: echo}}
spec:
  nodeName: node-1
  containers:
  - name: echo
    command: [tollway, workload, serve, --http, "8080", --tcp, "9000", --udp, "5353"]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-c, labels: {app: echo}}
spec:
  nodeName: node-2
  containers:
  - name: echo
    command: [tollway, workload, serve, --http, "8080", --tcp, "9000", --udp, "5353"]
"#;

#[test]
fn pods_reach_each_other_on_one_node_and_across_nodes() {
    let links_before = root_links();
    let root_before = root_addrs_and_routes();
    let lab = Lab::up("conn", 2);
    lab.apply_ok(ECHO);
    lab.wait_ready("default");

    // kubectl's JSON shapes.
    let list = lab.json(&["get", "pods", "-o", "json"]);
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    let a = lab.pod("default", "echo-a");
    assert_eq!(a["spec"]["nodeName"], "node-1");
    assert_eq!(a["status"]["phase"], "Running");
    let ip_a = lab.pod_ip("default", "echo-a");
    let ip_b = lab.pod_ip("default", "echo-b");
    let ip_c = lab.pod_ip("default", "echo-c");
    assert!(ip_a.starts_with("10.244.0."), "{ip_a}");
    assert!(ip_c.starts_with("10.244.1."), "{ip_c}");

    // Pod to pod, same node and across nodes, over HTTP, h2c, TCP and UDP.
    for (to, ip) in [("echo-b", &ip_b), ("echo-c", &ip_c)] {
        let r = lab.probe_from("default", "echo-a", &format!("http://{ip}:8080/hostname"));
        assert_eq!(first(&r), ("ok".into(), Some(200), to.to_string()), "{r}");
        let r = lab.probe_from("default", "echo-a", &format!("tcp://{ip}:9000"));
        assert_eq!(first(&r).0, "ok", "{r}");
        assert_eq!(first(&r).2, to);
        let r = lab.probe_from("default", "echo-a", &format!("udp://{ip}:5353"));
        assert_eq!(first(&r).0, "ok", "{r}");
        assert_eq!(first(&r).2, to);
        // The server sees the client's own pod address (no NAT in the lab).
        let r = lab.probe_from("default", "echo-a", &format!("http://{ip}:8080/echo"));
        let echo: serde_json::Value = serde_json::from_str(&first(&r).2).unwrap();
        assert!(
            echo["client"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{ip_a}:")),
            "{echo}"
        );
    }
    let out = lab.tw(&[
        "lab",
        "exec",
        "-n",
        "default",
        "echo-a",
        "--",
        "tollway",
        "workload",
        "probe",
        &format!("http://{ip_c}:8080/echo"),
        "--http2",
        "-o",
        "json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(first(&r).2.contains("HTTP/2.0"), "{r}");

    // Node to pod (both nodes), pod to node.
    for node in ["node-1", "node-2"] {
        let r = lab.probe_from_node(node, &format!("http://{ip_c}:8080/hostname"));
        assert_eq!(
            first(&r),
            ("ok".into(), Some(200), "echo-c".into()),
            "{node}: {r}"
        );
    }
    let r = lab.probe_from("default", "echo-c", "tcp://172.18.0.2:9");
    assert_eq!(
        first(&r).0,
        "refused",
        "node-1's kernel answers (RST): reachable, nothing listening: {r}"
    );

    // A probe to nowhere fails, and says how.
    let r = lab.probe_from("default", "echo-a", &format!("tcp://{ip_c}:9999"));
    assert_eq!(first(&r).0, "refused", "{r}");

    // Nothing ever changes in the machine's root network namespace.
    assert_eq!(root_links(), links_before);
    assert_eq!(root_addrs_and_routes(), root_before);

    lab.down();
    let left = leftovers(&lab.name);
    assert!(left.is_empty(), "lab down left: {left:?}");
    assert_eq!(root_links(), links_before);
}

#[test]
fn lab_status_and_nodes() {
    let lab = Lab::up("status", 3);
    let st = lab.json(&["lab", "status", "-o", "json"]);
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[2]["name"], "node-3");
    assert_eq!(nodes[2]["ip"], "172.18.0.4");
    assert_eq!(nodes[2]["podCIDR"], "10.244.2.0/24");
    // No pods but the DNS add-on's (there may be none yet).
    let pods = st["pods"].as_array().unwrap();
    assert!(
        pods.iter().all(|p| p["namespace"] == "kube-system"
            && p["name"].as_str().unwrap().starts_with("kube-dns-")),
        "{pods:?}"
    );
    assert!(st["daemonPID"].as_i64().is_some());
    let n = lab.json(&["get", "nodes", "-o", "json"]);
    assert_eq!(n["items"][0]["spec"]["podCIDR"], "10.244.0.0/24");
    assert_eq!(
        n["items"][0]["status"]["addresses"][0]["address"],
        "172.18.0.2"
    );
    // Idempotent: a second `lab up` changes nothing and keeps the daemon.
    let pid = st["daemonPID"].as_i64();
    let again = lab.json(&["lab", "up", "--nodes", "3", "-o", "json"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["startedDaemon"], false);
    assert_eq!(
        lab.json(&["lab", "status", "-o", "json"])["daemonPID"].as_i64(),
        pid
    );
    // A different shape is refused with a hint.
    let out = lab.tw(&["lab", "up", "--nodes", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists with 3 nodes"));
}

#[test]
fn a_crashed_container_is_restarted_with_back_off() {
    let lab = Lab::up("crash", 1);
    lab.apply_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: c
    command: [sh, -c, 'echo "run on $NODE_NAME as $POD_NAME"; sleep 0.3; exit 3']
"#,
    );
    let pod = lab.eventually(Duration::from_secs(20), "two restarts", || {
        let p = lab.pod("default", "crasher");
        (p["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(2)).then_some(p)
    });
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(
        pod["status"]["phase"], "Running",
        "restartPolicy Always keeps it Running"
    );
    let logs = lab.ok(&["logs", "crasher"]);
    assert!(
        logs.matches("run on node-1 as crasher").count() >= 2,
        "{logs}"
    );
    // The kubectl table shows the restarts.
    let table = lab.ok(&["get", "pods"]);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 2,
        "{table}"
    );

    // restartPolicy Never: runs once and ends Failed.
    lab.apply_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  containers:
  - name: c
    command: [sh, -c, 'exit 7']
"#,
    );
    lab.eventually(Duration::from_secs(10), "pod once to fail", || {
        (lab.pod("default", "once")["status"]["phase"] == "Failed").then_some(())
    });
    let p = lab.pod("default", "once");
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        7
    );
}

#[test]
fn two_labs_run_side_by_side() {
    let a = Lab::up("side-a", 2);
    let b = Lab::up("side-b", 2);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: node-2
  containers:
  - name: web
    command: [tollway, workload, serve, --http, "8080"]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers:
  - name: c
    command: [sleep, "3600"]
"#;
    a.apply_ok(pod);
    b.apply_ok(pod);
    a.wait_ready("default");
    b.wait_ready("default");
    // Same address plan in both labs: they are isolated, not conflicting.
    let ip_a = a.pod_ip("default", "web");
    assert_eq!(ip_a, b.pod_ip("default", "web"));
    for lab in [&a, &b] {
        let r = lab.probe_from("default", "client", &format!("http://{ip_a}:8080/hostname"));
        assert_eq!(
            first(&r),
            ("ok".into(), Some(200), "web".into()),
            "{}: {r}",
            lab.name
        );
    }
    a.down();
    assert!(leftovers(&a.name).is_empty(), "{:?}", leftovers(&a.name));
    // b is untouched.
    let r = b.probe_from("default", "client", &format!("http://{ip_a}:8080/hostname"));
    assert_eq!(first(&r).0, "ok", "{r}");
    assert_eq!(b.ok(&["get", "pods"]).lines().count(), 3);
}

#[test]
fn daemon_kill9_keeps_pods_and_the_next_daemon_adopts_them() {
    let lab = Lab::up("adopt", 2);
    lab.apply_ok(ECHO);
    lab.wait_ready("default");
    let pid_of = |name: &str| {
        lab.pod("default", name)["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = pid_of("echo-c");
    let st = lab.json(&["lab", "status", "-o", "json"]);
    let daemon = st["daemonPID"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    lab.eventually(Duration::from_secs(5), "daemon gone", || {
        lab.json(&["lab", "status", "-o", "json"])["daemonPID"]
            .is_null()
            .then_some(())
    });
    // Pods still serve without their daemon.
    let ip_c = lab.pod_ip("default", "echo-c");
    let r = lab.probe_from("default", "echo-a", &format!("http://{ip_c}:8080/hostname"));
    assert_eq!(first(&r).0, "ok", "{r}");
    // The restarted daemon adopts the same processes (no restart).
    lab.ok(&["lab", "up", "--nodes", "2"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pid_of("echo-c"), before);
    assert_eq!(
        lab.pod("default", "echo-c")["status"]["containerStatuses"][0]["restartCount"],
        0
    );
    // ...and still supervises them: kill one, it comes back.
    let pid: i32 = before.trim_start_matches("pid://").parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    lab.eventually(Duration::from_secs(10), "echo-c restarted", || {
        let p = lab.pod("default", "echo-c");
        let cs = &p["status"]["containerStatuses"][0];
        (cs["restartCount"] == 1 && cs["state"]["running"].is_object()).then_some(())
    });
}

#[test]
fn lab_down_cleans_up_after_kill9_of_everything() {
    let links_before = root_links();
    let lab = Lab::up("crashed", 2);
    lab.apply_ok(ECHO);
    lab.wait_ready("default");
    // A stray process started in a node, never stopped by anyone.
    let mut stray = std::process::Command::new(common::BIN)
        .args([
            "--lab", &lab.name, "lab", "exec", "--node", "node-1", "--", "sleep", "600",
        ])
        .spawn()
        .unwrap();
    // kill -9 the daemon and every pod process.
    let st = lab.json(&["lab", "status", "-o", "json"]);
    let daemon = st["daemonPID"].as_i64().unwrap() as i32;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    );
    for name in ["echo-a", "echo-b", "echo-c"] {
        let id = lab.pod("default", name)["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .to_string();
        let pid: i32 = id.trim_start_matches("pid://").parse().unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    lab.down();
    let _ = stray.wait();
    let left = leftovers(&lab.name);
    assert!(left.is_empty(), "lab down left: {left:?}");
    assert_eq!(root_links(), links_before);
}

#[test]
fn a_bad_manifest_is_rejected_whole_and_changes_nothing() {
    let lab = Lab::up("badyaml", 1);
    let good = r#"
apiVersion: v1
kind: Namespace
metadata: {name: payments}
---
apiVersion: v1
kind: Service
metadata: {name: checkout-api, namespace: payments}
spec:
  selector: {app: checkout-api}
  ports:
  - port: 8080
"#;
    lab.apply_ok(good);
    let before = lab.ok(&["get", "svc", "-n", "payments", "-o", "json"]);
    let bad = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: payments}
spec:
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata: {name: checkout-api, namespace: payments}
spec:
  selector: {app: checkout-api}
  ports:
  - port: 70000
"#;
    let out = lab.apply(bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<stdin>:15: document 2 (Service payments/checkout-api): spec.ports[0].port: must be 1-65535, got 70000"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    assert_eq!(
        lab.ok(&["get", "svc", "-n", "payments", "-o", "json"]),
        before,
        "nothing may change"
    );
    // The seed's `kubectl label namespace payments istio.io/dataplane-mode=ambient`.
    assert_eq!(
        lab.ok(&[
            "label",
            "namespace",
            "payments",
            "istio.io/dataplane-mode=ambient"
        ]),
        "namespace/payments labeled\n"
    );
    let ns = lab.json(&["get", "ns", "payments", "-o", "json"]);
    assert_eq!(
        ns["metadata"]["labels"]["istio.io/dataplane-mode"],
        "ambient"
    );
    let out = lab.tw(&["label", "ns", "payments", "istio.io/dataplane-mode=sidecar"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite is false"));
    lab.ok(&["label", "ns", "payments", "istio.io/dataplane-mode-"]);
    assert!(
        lab.json(&["get", "ns", "payments", "-o", "json"])["metadata"]["labels"]
            .get("istio.io/dataplane-mode")
            .is_none()
    );
    // The seed's Cilium policy is accepted unchanged; its L7 rules are
    // named as not enforced yet.
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/checkout-api-l7-policy.yaml"
    ))
    .unwrap();
    let out = lab.apply(&policy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ciliumnetworkpolicy.cilium.io/checkout-api-l7-policy created\n"
    );
    assert!(
        stderr.contains(
            "Warning: <stdin>:20: document 1 (CiliumNetworkPolicy payments/checkout-api-l7-policy): \
             spec.ingress[0].toPorts[0].rules: L7 rules are not enforced yet: the L3/L4 part of this rule is"
        ),
        "{stderr}"
    );
    assert_eq!(
        lab.ok(&["get", "cnp", "-n", "payments", "-o", "name"]),
        "ciliumnetworkpolicy.cilium.io/checkout-api-l7-policy\n"
    );
}

#[test]
fn deployments_scale_roll_and_cascade() {
    let lab = Lab::up("deploy", 2);
    let dep = |replicas: u32, version: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api, version: "{version}"}}}}
    spec:
      containers:
      - name: api
        image: example/api:{version}
        ports: [{{containerPort: 8080}}]
"#
        )
    };
    let pods = |lab: &Lab| -> Vec<serde_json::Value> {
        lab.json(&["get", "pods", "-l", "app=api", "-o", "json"])["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    lab.apply_ok(&dep(3, "v1"));
    lab.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/api",
        "--timeout",
        "30s",
    ]);
    let p = pods(&lab);
    assert_eq!(p.len(), 3);
    // Names are <deploy>-<template hash>-<suffix>; spread over both nodes.
    let name = p[0]["metadata"]["name"].as_str().unwrap();
    let hash = p[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert!(name.starts_with(&format!("api-{hash}-")), "{name}");
    let nodes: std::collections::BTreeSet<&str> = p
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 2, "pods spread over nodes: {nodes:?}");
    // Each pod serves on its declared port (the default workload).
    let ip = p[0]["status"]["podIP"].as_str().unwrap();
    let other = p[1]["metadata"]["name"].as_str().unwrap();
    let r = lab.probe_from("default", other, &format!("http://{ip}:8080/hostname"));
    assert_eq!(first(&r).2, name);

    lab.ok(&["scale", "deployment/api", "--replicas", "1"]);
    lab.eventually(Duration::from_secs(30), "scale to 1", || {
        (pods(&lab).len() == 1).then_some(())
    });
    lab.ok(&["scale", "deployment", "api", "--replicas", "3"]);
    lab.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/api",
        "--timeout",
        "30s",
    ]);

    // A template change rolls: all pods end up with the new hash.
    lab.apply_ok(&dep(3, "v2"));
    lab.eventually(Duration::from_secs(30), "rollout to v2", || {
        let p = pods(&lab);
        (p.len() == 3
            && p.iter().all(|p| {
                p["metadata"]["labels"]["version"] == "v2" && p["status"]["phase"] == "Running"
            }))
        .then_some(())
    });
    let d = lab.json(&["get", "deploy", "api", "-o", "json"]);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(
        d["metadata"]["generation"], 4,
        "v1, scale 1, scale 3, v2: {d}"
    );

    // Deleting a pod of a deployment: it is replaced.
    let victim = pods(&lab)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ok(&["delete", "pod", &victim]);
    lab.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/api",
        "--timeout",
        "30s",
    ]);
    assert!(
        pods(&lab)
            .iter()
            .all(|p| p["metadata"]["name"] != victim.as_str())
    );

    // Deleting the deployment takes its pods with it.
    lab.ok(&["delete", "deployment", "api"]);
    lab.eventually(Duration::from_secs(30), "pods gone", || {
        pods(&lab).is_empty().then_some(())
    });
}

#[test]
fn deletion_is_graceful_and_exec_returns_exit_codes() {
    let lab = Lab::up("grace", 1);
    lab.apply_ok(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    command: [sh, -c, 'trap "echo got SIGTERM; exit 0" TERM; while true; do sleep 0.1; done']
"#,
    );
    lab.wait_ready("default");
    assert_eq!(
        lab.tw(&["lab", "exec", "graceful", "--", "sh", "-c", "exit 42"])
            .status
            .code(),
        Some(42)
    );
    // The command really runs inside the pod: same address.
    let ip = lab.pod_ip("default", "graceful");
    let out = lab.ok(&[
        "lab", "exec", "graceful", "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(out.contains(&format!("{ip}/32")), "{out}");
    let started = std::time::Instant::now();
    lab.ok(&["delete", "pod", "graceful"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the trap exits at SIGTERM, before the grace period ends"
    );
    // The pod's log went with it; the namespace and address are gone (the
    // only pod namespace left is kube-system's DNS pod).
    assert!(lab.tw(&["get", "pod", "graceful"]).status.code() == Some(1));
    let netns = std::fs::read_dir("/var/run/netns")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("tw_{}_pod_default_", lab.name))
        })
        .count();
    let all: Vec<_> = std::fs::read_dir("/var/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let later: Vec<_> = std::fs::read_dir("/var/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(netns, 0, "DEBUG {all:?} LATER {later:?}");
}

#[test]
fn the_demo_runs_and_probes_across_nodes() {
    let lab = Lab::named("demo");
    let out = lab.ok(&["demo"]);
    assert!(
        out.contains("(node-1) -> checkout-api") || out.contains("(node-2) -> checkout-api"),
        "{out}"
    );
    assert_eq!(
        out.matches("ok 200").count(),
        4,
        "four successful probes (three, and one the policy allows):\n{out}"
    );
    // The seed's policy: web-frontend allowed, batch-reporter dropped.
    let policy = out
        .split("== 6.")
        .nth(1)
        .unwrap_or_else(|| panic!("no policy step:\n{out}"));
    let lines: Vec<&str> = policy.lines().collect();
    let allowed = lines
        .iter()
        .position(|l| l.contains("(expected: allowed)"))
        .unwrap();
    assert!(lines[allowed].contains("web-frontend-"), "{policy}");
    assert!(lines[allowed + 1].contains("ok 200"), "{policy}");
    let dropped = lines
        .iter()
        .position(|l| l.contains("(expected: dropped by policy)"))
        .unwrap();
    assert!(lines[dropped].contains("batch-reporter-"), "{policy}");
    assert!(lines[dropped + 1].contains("timeout"), "{policy}");
    assert!(
        policy.contains("payments/checkout-api-l7-policy spec.ingress[0]"),
        "bpf policy get shows the rule: {policy}"
    );
    assert!(out.contains("answered by checkout-api-"), "{out}");
    // Step 7: the flows of both connections, as Hubble prints them.
    let flows = out
        .split("== 7.")
        .nth(1)
        .unwrap_or_else(|| panic!("no flows step:\n{out}"));
    let (allowed, rest) = flows.split_once("--verdict DROPPED").unwrap();
    assert!(
        allowed.lines().any(|l| l.contains("payments/web-frontend-")
            && l.contains("-> payments/checkout-api-")
            && l.contains("FORWARDED")),
        "{flows}"
    );
    assert!(
        rest.lines()
            .any(|l| l.contains("payments/batch-reporter-") && l.contains("Policy denied DROPPED")),
        "{flows}"
    );
    assert!(!flows.contains("MISSING"), "{flows}");
    assert!(out.contains(" ui "), "the demo points to the UI: {out}");
    // The ClusterIP part: spread over both backends, and the LB map shown.
    let spread: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
                && l.contains("answered by checkout-api-")
        })
        .collect();
    assert_eq!(
        spread.len(),
        2,
        "20 requests spread over 2 backends:\n{out}"
    );
    assert!(
        out.contains("SERVICE ADDRESS   BACKEND ADDRESS (REVNAT_ID) (SLOT)"),
        "{out}"
    );
    // The lab stays up for the user.
    assert_eq!(
        lab.json(&["get", "deploy", "-n", "payments", "-o", "json"])["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // And running it again is harmless.
    lab.ok(&["demo"]);
}
