//! Synthetic Hubble-shaped flows and a server on 127.0.0.1:0 for the tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollway_ui::{FlowFeed, MemoryFeed, serve_with_shutdown};

/// A pod endpoint of a Deployment.
pub fn pod(ns: &str, app: &str, pod: &str, identity: u32) -> Value {
    json!({
        "identity": identity,
        "namespace": ns,
        "labels": [format!("k8s:app={app}"), format!("k8s:io.kubernetes.pod.namespace={ns}")],
        "pod_name": pod,
        "workloads": [{"name": app, "kind": "Deployment"}],
    })
}

/// The world outside the cluster.
pub fn world() -> Value {
    json!({"identity": 2, "labels": ["reserved:world"]})
}

pub struct L4 {
    pub proto: &'static str,
    pub sport: u16,
    pub dport: u16,
}

pub fn tcp(sport: u16, dport: u16) -> L4 {
    L4 {
        proto: "TCP",
        sport,
        dport,
    }
}

pub fn udp(sport: u16, dport: u16) -> L4 {
    L4 {
        proto: "UDP",
        sport,
        dport,
    }
}

/// One flow in the shape `hubble observe -o json` prints.
#[allow(clippy::too_many_arguments)]
pub fn flow(
    time: &str,
    node: &str,
    (src, src_ip): (Value, &str),
    (dst, dst_ip): (Value, &str),
    l4: &L4,
    verdict: &str,
    is_reply: bool,
    l7: Option<Value>,
) -> Value {
    let mut l4_obj = json!({});
    l4_obj[l4.proto] = json!({"source_port": l4.sport, "destination_port": l4.dport});
    if l4.proto == "TCP" {
        l4_obj["TCP"]["flags"] = if is_reply {
            json!({"SYN": true, "ACK": true})
        } else {
            json!({"SYN": true})
        };
    }
    let mut f = json!({
        "time": time,
        "verdict": verdict,
        "IP": {"source": src_ip, "destination": dst_ip, "ipVersion": "IPv4"},
        "l4": l4_obj,
        "source": src,
        "destination": dst,
        "Type": if l7.is_some() { "L7" } else { "L3_L4" },
        "node_name": node,
        "traffic_direction": "EGRESS",
        "trace_observation_point": "TO_ENDPOINT",
        "is_reply": is_reply,
        "event_type": {"type": 4},
        "Summary": format!("{} {}", l4.proto, if is_reply { "Flags: SYN, ACK" } else { "Flags: SYN" }),
    });
    if verdict == "DROPPED" {
        f["drop_reason"] = json!(133);
        f["drop_reason_desc"] = json!("POLICY_DENIED");
        f["event_type"] = json!({"type": 1, "sub_type": 133});
    }
    if let Some(l7) = l7 {
        f["l7"] = l7;
        f["event_type"] = json!({"type": 129});
    }
    json!({"flow": f, "node_name": node, "time": time})
}

/// The flows of the tests, oldest first:
/// - payments/web-frontend → payments/checkout:8080 FORWARDED (two, plus a reply)
/// - payments/batch-reporter → payments/checkout:8080 DROPPED POLICY_DENIED (two)
/// - world → payments/web-frontend:8080 FORWARDED
/// - payments/web-frontend → kube-system/coredns:53 UDP, an L7 DNS request
/// - payments/web-frontend → payments/ledger:5432, one FORWARDED and one DROPPED
/// - billing/invoicer → billing/pdf-render:9000 FORWARDED (another namespace)
pub fn synthetic_flows() -> Vec<Value> {
    let web = || {
        (
            pod("payments", "web-frontend", "web-frontend-6d9f-abcde", 12345),
            "10.244.1.5",
        )
    };
    let checkout = || {
        (
            pod("payments", "checkout", "checkout-7c4b-xyz12", 23456),
            "10.244.2.7",
        )
    };
    let batch = || {
        (
            pod(
                "payments",
                "batch-reporter",
                "batch-reporter-5f5f-q1w2e",
                34567,
            ),
            "10.244.1.9",
        )
    };
    let ledger = || (pod("payments", "ledger", "ledger-0", 45678), "10.244.2.11");
    let coredns = || {
        (
            pod("kube-system", "coredns", "coredns-5d78-kx2pq", 102),
            "10.244.0.3",
        )
    };
    let dns = json!({"type": "REQUEST", "dns": {"query": "kube-dns.kube-system.svc.cluster.local.", "qtypes": ["A"]}});
    vec![
        flow(
            "2026-12-01T10:00:00.123456789Z",
            "node-1",
            web(),
            checkout(),
            &tcp(43210, 8080),
            "FORWARDED",
            false,
            None,
        ),
        flow(
            "2026-12-01T10:00:00.2Z",
            "node-2",
            checkout(),
            web(),
            &tcp(8080, 43210),
            "FORWARDED",
            true,
            None,
        ),
        flow(
            "2026-12-01T10:00:00.5Z",
            "node-1",
            batch(),
            checkout(),
            &tcp(51000, 8080),
            "DROPPED",
            false,
            None,
        ),
        flow(
            "2026-12-01T10:00:01Z",
            "node-2",
            (world(), "203.0.113.10"),
            web(),
            &tcp(60000, 8080),
            "FORWARDED",
            false,
            None,
        ),
        flow(
            "2026-12-01T10:00:01.25Z",
            "node-1",
            web(),
            coredns(),
            &udp(40000, 53),
            "FORWARDED",
            false,
            Some(dns),
        ),
        flow(
            "2026-12-01T10:00:01.5Z",
            "node-1",
            web(),
            ledger(),
            &tcp(43300, 5432),
            "FORWARDED",
            false,
            None,
        ),
        flow(
            "2026-12-01T10:00:02Z",
            "node-1",
            web(),
            ledger(),
            &tcp(43301, 5432),
            "DROPPED",
            false,
            None,
        ),
        flow(
            "2026-12-01T10:00:02.5Z",
            "node-1",
            batch(),
            checkout(),
            &tcp(51001, 8080),
            "DROPPED",
            false,
            None,
        ),
        flow(
            "2026-12-01T10:00:03Z",
            "node-1",
            web(),
            checkout(),
            &tcp(43211, 8080),
            "FORWARDED",
            false,
            None,
        ),
        flow(
            "2026-12-01T10:00:03.5Z",
            "node-2",
            (
                pod("billing", "invoicer", "invoicer-1", 56789),
                "10.244.2.20",
            ),
            (
                pod("billing", "pdf-render", "pdf-render-1", 67890),
                "10.244.1.21",
            ),
            &tcp(41000, 9000),
            "FORWARDED",
            false,
            None,
        ),
    ]
}

/// How many of [`synthetic_flows`] touch the `payments` namespace.
pub const PAYMENTS_FLOWS: usize = 9;

pub struct Server {
    pub addr: SocketAddr,
    pub feed: Arc<MemoryFeed>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tollway_ui::UiError>>>,
}

impl Server {
    pub async fn start() -> Self {
        let feed = MemoryFeed::new(synthetic_flows());
        feed.set_unreachable_nodes(vec!["node-3".to_owned()]);
        let feed = Arc::new(feed);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel();
        let dyn_feed: Arc<dyn FlowFeed + Send + Sync> = feed.clone();
        let task = tokio::spawn(serve_with_shutdown(listener, dyn_feed, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            feed,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}
