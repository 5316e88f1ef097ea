//! The lab's kube-dns, for real: `lab up` runs it in `kube-system`, and pods on
//! another node ask it through its ClusterIP, 10.96.0.10, over UDP and TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Lab;
use serde_json::Value;

/// `tollway workload dig -o json` from inside a pod; None when it got no answer.
fn dig(lab: &Lab, pod: &str, args: &[&str]) -> Option<Value> {
    let mut full = vec![
        "lab",
        "exec",
        pod,
        "--",
        "tollway",
        "workload",
        "dig",
        "--server",
        "10.96.0.10:53",
        "--timeout-ms",
        "1500",
        "-o",
        "json",
    ];
    full.extend_from_slice(args);
    let out = lab.tw(&full);
    if !out.status.success() {
        eprintln!("dig {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn addresses(v: &Value) -> Vec<String> {
    v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pods_resolve_services_through_kube_dns() {
    let lab = Lab::up("dns", 2);

    // lab up made the add-on: Service on .10 with both ports, one DNS pod.
    let svc = lab.json(&[
        "get",
        "service",
        "kube-dns",
        "-n",
        "kube-system",
        "-o",
        "json",
    ]);
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10", "{svc}");
    let ports: Vec<(String, String)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                format!("{}/{}", p["port"], p["protocol"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".to_string(), "53/UDP".to_string()),
            ("dns-tcp".to_string(), "53/TCP".to_string())
        ]
    );
    lab.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/kube-dns",
        "-n",
        "kube-system",
        "--timeout",
        "60s",
    ]);
    let dns_pods = lab.json(&[
        "get",
        "pods",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "-o",
        "json",
    ]);
    let dns_pods = dns_pods["items"].as_array().unwrap();
    assert_eq!(dns_pods.len(), 1, "{dns_pods:?}");
    let dns_node = dns_pods[0]["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    let other = if dns_node == "node-1" {
        "node-2"
    } else {
        "node-1"
    };

    // A client on the other node, and a headless Service selecting it.
    lab.apply_ok(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client, labels: {{app: client}}}}
spec:
  nodeName: {other}
  containers:
  - name: c
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Service
metadata: {{name: clients}}
spec:
  clusterIP: None
  selector: {{app: client}}
  ports:
  - {{port: 80}}
"#
    ));
    lab.wait_ready("default");
    let client_ip = lab.pod_ip("default", "client");

    // The DNS pod may still be starting, the agents still programming the
    // service: ask until it answers.
    let name = "kube-dns.kube-system.svc.cluster.local";
    let a = lab.eventually(Duration::from_secs(30), "kube-dns to answer", || {
        dig(&lab, "client", &[name])
    });
    assert_eq!(a["rcode"], "NOERROR", "{a}");
    assert_eq!(a["authoritative"], true, "{a}");
    assert_eq!(addresses(&a), ["10.96.0.10"], "{a}");
    assert_eq!(a["answers"][0]["ttl"], 30, "{a}");
    assert_eq!(a["transport"], "udp");

    // Through the dns-tcp port too.
    let tcp = dig(&lab, "client", &["--tcp", name]).expect("an answer over TCP");
    assert_eq!(tcp["transport"], "tcp");
    assert_eq!(addresses(&tcp), ["10.96.0.10"], "{tcp}");

    // The headless Service: the ready pod's address (the store may take a
    // poll to reach the server).
    let h = lab.eventually(Duration::from_secs(10), "the headless service", || {
        dig(&lab, "client", &["clients.default.svc.cluster.local"])
            .filter(|v| addresses(v) == [client_ip.clone()])
    });
    assert_eq!(h["rcode"], "NOERROR");

    // The short form, an unknown name, another type, a name outside.
    let short = dig(&lab, "client", &["kube-dns.kube-system.svc"]).unwrap();
    assert_eq!(addresses(&short), ["10.96.0.10"], "{short}");
    let nx = dig(&lab, "client", &["nope.default.svc.cluster.local"]).unwrap();
    assert_eq!(nx["rcode"], "NXDOMAIN", "{nx}");
    let aaaa = dig(&lab, "client", &["-t", "AAAA", name]).unwrap();
    assert_eq!(aaaa["rcode"], "NOERROR", "{aaaa}");
    assert!(aaaa["answers"].as_array().unwrap().is_empty(), "{aaaa}");
    let out = dig(&lab, "client", &["example.com"]).unwrap();
    assert_eq!(out["rcode"], "REFUSED", "{out}");

    // The text form, as a person reads it.
    let text = lab.ok(&[
        "lab", "exec", "client", "--", "tollway", "workload", "dig", name,
    ]);
    assert!(
        text.contains("kube-dns.kube-system.svc.cluster.local.\t30\tIN\tA\t10.96.0.10"),
        "{text}"
    );

    // Pods have kubelet's ClusterFirst resolv.conf, so the system
    // resolver (getaddrinfo) finds Services by their short names too.
    let resolv = lab.ok(&["lab", "exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    // dnsPolicy: Default keeps the node's resolver configuration (the
    // host's own file is untouched); a web Service to reach by name.
    lab.apply_ok(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hostdns}}
spec:
  nodeName: {other}
  dnsPolicy: Default
  containers:
  - name: c
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeName: {dns_node}
  containers:
  - name: c
    command: [tollway, workload, serve, --http, "8080"]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports:
  - {{port: 80, targetPort: 8080}}
"#
    ));
    lab.wait_ready("default");
    for target in [
        "http://web/hostname",
        "http://web.default/hostname",
        "http://web.default.svc.cluster.local/hostname",
    ] {
        let r = lab.eventually(Duration::from_secs(10), target, || {
            let r = lab.probe_in(&["client"], target);
            (common::first(&r).0 == "ok").then_some(r)
        });
        assert_eq!(common::first(&r).2, "web", "{target}: {r}");
    }
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let in_pod = lab.ok(&["lab", "exec", "hostdns", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(in_pod, host);
    assert!(
        !host.contains("10.96.0.10"),
        "the host's resolv.conf changed: {host}"
    );

    lab.down();
}
