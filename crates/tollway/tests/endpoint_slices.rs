//! Services as a real cluster has them, for real: a Service without a
//! selector whose endpoints are an EndpointSlice (as `default/kubernetes`
//! is), a LoadBalancer with external IPs, an ExternalName; packets through
//! the eBPF datapath of a lab, as root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Lab, first};
use serde_json::Value;

/// One backend on node-2 (HTTP 8080, TCP 9000) and two clients on node-1:
/// one on the socket LB, one forced onto the tc path.
const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: backend, labels: {app: backend}}
spec:
  nodeName: node-2
  containers:
  - name: c
    command: [tollway, workload, serve, --http, "8080", --tcp, "9000"]
---
apiVersion: v1
kind: Pod
metadata: {name: sock-1}
spec:
  nodeName: node-1
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
"#;

/// A Service without a selector: the lab computes nothing for it.
const MANUAL: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  ports:
  - {name: tcp, port: 7000}
  - {name: http, port: 80}
"#;

/// Its EndpointSlice: the backend pod's address, at other ports than the
/// Service's (the slice's ports are the backends').
fn slice(ip: &str, ready: bool) -> String {
    format!(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-1
  labels: {{kubernetes.io/service-name: manual}}
addressType: IPv4
ports:
- {{name: tcp, port: 9000, protocol: TCP}}
- {{name: http, port: 8080}}
endpoints:
- addresses: ["{ip}"]
  conditions: {{ready: {ready}}}
  nodeName: node-2
  targetRef: {{kind: Pod, namespace: default, name: backend}}
"#
    )
}

/// An address of the lab's network that no node or pod has.
const EXTERNAL_IP: &str = "172.18.200.10";

fn load_balancer() -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: lb}}
spec:
  type: LoadBalancer
  selector: {{app: backend}}
  externalIPs: ["{EXTERNAL_IP}"]
  ports:
  - {{port: 80, targetPort: 8080, nodePort: 30090}}
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  type: ExternalName
  externalName: db.example.com
"#
    )
}

/// The node's maps' frontend row (external scope), once it has `backends`
/// backends.
fn wait_frontend(lab: &Lab, node: &str, frontend: &str, backends: usize) -> Value {
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
                .cloned()
        },
    )
}

#[test]
fn selectorless_services_use_their_slices_and_load_balancers_their_node_ports_and_ips() {
    let lab = Lab::up("eps", 2);
    lab.apply_ok(PODS);
    lab.wait_ready("default");
    let ip = lab.pod_ip("default", "backend");

    // 1. The slice makes the backend; both paths reach it, at the slice's
    //    ports.
    lab.apply_ok(&format!("{MANUAL}---{}", slice(&ip, true)));
    let vip = lab.json(&["get", "svc", "manual", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let row = wait_frontend(&lab, "node-1", &format!("{vip}:7000"), 1);
    assert_eq!(row["backends"][0]["address"], format!("{ip}:9000"), "{row}");
    wait_frontend(&lab, "node-1", &format!("{vip}:80"), 1);
    for client in ["sock-1", "tc-1"] {
        let r = lab.probe_in(&[client], &format!("tcp://{vip}:7000"));
        let (result, _, body) = first(&r);
        assert_eq!(result, "ok", "{client}: {r}");
        assert!(
            body.contains("backend"),
            "{client}: the backend answers: {r}"
        );
        let r = lab.probe_in(&[client], &format!("http://{vip}:80/hostname"));
        assert_eq!(first(&r).0, "ok", "{client}: {r}");
        assert_eq!(first(&r).2, "backend", "{client}: {r}");
    }
    // kubectl's columns.
    let table = lab.ok(&["get", "endpointslices"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        "{table}"
    );
    assert_eq!(
        lines[1][..4],
        ["manual-1", "IPv4", "9000,8080", ip.as_str()],
        "{table}"
    );

    // 2. Not ready: no backend; a new connection is refused at once (TCP
    //    reset), on both paths.
    lab.apply_ok(&slice(&ip, false));
    wait_frontend(&lab, "node-1", &format!("{vip}:7000"), 0);
    for client in ["sock-1", "tc-1"] {
        let r = lab.probe_in(&[client], &format!("tcp://{vip}:7000"));
        assert_eq!(first(&r).0, "refused", "{client}: {r}");
        assert!(
            r["attempts"][0]["latency_us"].as_u64().unwrap() < 1_000_000,
            "{client}: refused, not timed out: {r}"
        );
    }
    // Gone: the frontend stays, without backends.
    lab.ok(&["delete", "endpointslice", "manual-1"]);
    lab.apply_ok(&slice(&ip, true));
    wait_frontend(&lab, "node-1", &format!("{vip}:7000"), 1);
    lab.ok(&["delete", "endpointslices/manual-1"]);
    wait_frontend(&lab, "node-1", &format!("{vip}:7000"), 0);

    // 3. A LoadBalancer: node ports as a NodePort's, from outside the
    //    cluster through either node; its external IP from the pods and
    //    from outside.
    lab.apply_ok(&load_balancer());
    wait_frontend(&lab, "node-1", "172.18.0.2:30090", 1);
    wait_frontend(&lab, "node-2", "172.18.0.3:30090", 1);
    wait_frontend(&lab, "node-1", &format!("{EXTERNAL_IP}:80"), 1);
    for node_ip in ["172.18.0.2", "172.18.0.3"] {
        let r = lab.probe_in(&["--external"], &format!("http://{node_ip}:30090/hostname"));
        assert_eq!(first(&r).0, "ok", "via {node_ip}: {r}");
        assert_eq!(first(&r).2, "backend", "via {node_ip}: {r}");
    }
    for client in ["sock-1", "tc-1"] {
        let r = lab.probe_in(&[client], &format!("http://{EXTERNAL_IP}:80/hostname"));
        assert_eq!(first(&r).0, "ok", "{client}: {r}");
        assert_eq!(first(&r).2, "backend", "{client}: {r}");
    }
    // The external IP itself from outside, once the network sends it to a
    // node (here a route of the external client, in the lab's namespace,
    // as a router or MetalLB would): the node owns no such address, its
    // uplink program translates the packet before the kernel routes it.
    // Via node-2, the backend's node: DNAT, the client's address kept;
    // via node-1: DNAT + SNAT to node-1's address. The probe's connection
    // is to the external IP, so every answer comes from it.
    for (via, seen) in [
        ("172.18.0.3", "172.18.255.254"),
        ("172.18.0.2", "172.18.0.2"),
    ] {
        lab.ok(&[
            "lab",
            "exec",
            "--external",
            "--",
            "ip",
            "route",
            "replace",
            &format!("{EXTERNAL_IP}/32"),
            "via",
            via,
            "dev",
            "eth0",
        ]);
        let r = lab.probe_in(&["--external"], &format!("http://{EXTERNAL_IP}:80/echo"));
        let (result, _, body) = first(&r);
        assert_eq!(result, "ok", "via {via}: {r}");
        let echo: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("via {via}: the echo is no JSON ({e}): {r}"));
        assert_eq!(echo["pod"], "backend", "via {via}: {echo}");
        let client = echo["client"].as_str().unwrap_or_default();
        assert!(
            client.starts_with(&format!("{seen}:")),
            "via {via}: the backend must see {seen}, saw {client}"
        );
    }
    let status = lab.ok(&["status", "--node", "node-1", "--verbose"]);
    for line in ["- LoadBalancer:   Enabled", "- externalIPs:    Enabled"] {
        assert!(status.contains(line), "{line}: {status}");
    }
    let svc = lab.json(&["get", "svc", "lb", "-o", "json"]);
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30090, "{svc}");
    let list = lab.ok(&["service", "list", "--node", "node-1"]);
    let ext_row = list
        .lines()
        .find(|l| l.contains(&format!("{EXTERNAL_IP}:80/TCP")))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(ext_row.contains("ExternalIPs"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.contains("172.18.0.2:30090/TCP") && l.contains("NodePort")),
        "{list}"
    );
    let table = lab.ok(&["get", "svc", "lb", "db"]);
    assert!(
        table.lines().any(|l| l.starts_with("lb ")
            && l.contains("LoadBalancer")
            && l.contains(EXTERNAL_IP)
            && l.contains("80:30090/TCP")),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("db ")
            && l.contains("ExternalName")
            && l.contains("db.example.com")),
        "{table}"
    );

    // 4. The ExternalName: no address, a CNAME from the lab's DNS.
    let db = lab.json(&["get", "svc", "db", "-o", "json"]);
    assert!(db["spec"]["clusterIP"].is_null(), "{db}");
    let dig = lab.eventually(Duration::from_secs(30), "kube-dns to answer", || {
        let out = lab.tw(&[
            "lab",
            "exec",
            "sock-1",
            "--",
            "tollway",
            "workload",
            "dig",
            "--server",
            "10.96.0.10:53",
            "--timeout-ms",
            "1000",
            "-o",
            "json",
            "db.default.svc.cluster.local",
        ]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice::<Value>(&out.stdout).ok()
    });
    assert_eq!(dig["rcode"], "NOERROR", "{dig}");
    assert_eq!(dig["answers"][0]["type"], "CNAME", "{dig}");
    assert_eq!(dig["answers"][0]["data"], "db.example.com.", "{dig}");

    lab.down();
}
