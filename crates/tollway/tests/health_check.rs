//! Health-check node ports, for real (root): a LoadBalancer Service with
//! `externalTrafficPolicy: Local` gets a `healthCheckNodePort`, and every
//! node answers on it as kube-proxy does, 200 where the Service has a
//! ready endpoint and 503 where it has none, so that a cloud load
//! balancer skips the nodes that would drop its traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Lab, first};
use serde_json::Value;

const NODE_1: &str = "172.18.0.2";
const NODE_2: &str = "172.18.0.3";

fn manifests(replicas_on_node_1: bool) -> String {
    let pod = if replicas_on_node_1 {
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-1
  containers:
  - name: c
    command: [tollway, workload, serve, --http, "8080"]
---"#
    } else {
        ""
    };
    format!(
        r#"{pod}
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {{app: web}}
  ports:
  - {{port: 80, targetPort: 8080}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-cluster}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports:
  - {{port: 80, targetPort: 8080}}
"#
    )
}

/// `GET http://<node>:<port>/` from outside the cluster: the status and
/// the body.
fn check(lab: &Lab, node: &str, port: u64) -> Option<(u64, Value)> {
    let r = lab.probe_in(&["--external"], &format!("http://{node}:{port}/"));
    let (result, status, body) = first(&r);
    if result != "ok" {
        return None;
    }
    Some((status?, serde_json::from_str(&body).ok()?))
}

#[test]
fn nodes_answer_health_checks_for_local_load_balancers_as_kube_proxy_does() {
    let lab = Lab::up("hc", 2);
    lab.apply_ok(&manifests(true));
    lab.wait_ready("default");
    let svc = lab.json(&["get", "service", "web", "-o", "json"]);
    let port = svc["spec"]["healthCheckNodePort"]
        .as_u64()
        .unwrap_or_else(|| panic!("no healthCheckNodePort: {svc}"));
    let cluster = lab.json(&["get", "service", "web-cluster", "-o", "json"]);
    assert!(
        cluster["spec"]["healthCheckNodePort"].is_null(),
        "{cluster}"
    );

    // node-1 has the endpoint, node-2 has none.
    let (status, body) = lab.eventually(Duration::from_secs(20), "node-1's 200", || {
        check(&lab, NODE_1, port).filter(|(s, _)| *s == 200)
    });
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"service": {"namespace": "default", "name": "web"},
                           "localEndpoints": 1, "serviceProxyHealthy": true})
    );
    let (status, body) = lab.eventually(Duration::from_secs(20), "node-2's 503", || {
        check(&lab, NODE_2, port).filter(|(s, _)| *s == 503)
    });
    assert_eq!(
        (status, &body["localEndpoints"]),
        (503, &serde_json::json!(0))
    );

    // The status lists the port.
    let verbose = lab.ok(&["status", "--verbose", "--node", "node-1"]);
    assert!(
        verbose.contains(&format!("- {port} default/web 1")),
        "{verbose}"
    );

    // The endpoint goes: node-1 turns 503 too.
    lab.ok(&["delete", "pod", "web"]);
    lab.eventually(Duration::from_secs(30), "node-1's 503", || {
        check(&lab, NODE_1, port).filter(|(s, b)| *s == 503 && b["localEndpoints"] == 0)
    });

    // The Service goes: the port is closed.
    lab.ok(&["delete", "service", "web"]);
    lab.eventually(Duration::from_secs(20), "the port to close", || {
        let r = lab.probe_in(&["--external"], &format!("http://{NODE_1}:{port}/"));
        (first(&r).0 == "refused").then_some(())
    });
    lab.down();
}
