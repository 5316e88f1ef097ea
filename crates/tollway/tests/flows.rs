//! Flow visibility end to end, in a real 2-node lab: the datapath's events,
//! the agents' flow service, the relay and `tollway observe`, the metrics,
//! DNS flows, and the service map in headless Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Lab};
use serde_json::Value;

const NODES: [&str; 2] = ["node-1", "node-2"];

/// shop/web and shop/batch on node-1, shop/api on node-2 (behind Service
/// api), other/client on node-2; a policy lets only app=web into api.
fn manifest() -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  selector: {app: api}\n  ports:\n  - {port: 80, targetPort: 8080}\n",
    );
    for (ns, pod, app, node) in [
        ("shop", "web", "web", "node-1"),
        ("shop", "batch", "batch", "node-1"),
        ("shop", "api", "api", "node-2"),
        ("other", "client", "client", "node-2"),
    ] {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n  labels: {{app: {app}}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    command: [tollway, workload, serve, --name, '{ns}/{pod}', --tcp, '8080']\n"
        ));
    }
    out
}

const POLICY: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: api-from-web, namespace: shop}\nspec:\n  endpointSelector:\n    matchLabels: {app: api}\n  ingress:\n  - fromEndpoints:\n    - matchLabels: {app: web}\n    toPorts:\n    - ports:\n      - {port: '8080', protocol: TCP}\n";

/// `tollway observe ARGS -o json`: the flows (one JSON object per line).
fn observe(lab: &Lab, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["observe"];
    full.extend_from_slice(args);
    full.extend(["-o", "json"]);
    lab.ok(&full)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| v["flow"].clone())
        .collect()
}

fn pod_of(f: &Value, side: &str) -> String {
    format!(
        "{}/{}",
        f[side]["namespace"].as_str().unwrap_or(""),
        f[side]["pod_name"].as_str().unwrap_or("")
    )
}

fn verdicts(flows: &[Value]) -> BTreeSet<String> {
    flows
        .iter()
        .map(|f| f["verdict"].as_str().unwrap_or("").to_string())
        .collect()
}

/// GET /metrics on the node's metrics port, from inside its namespace.
fn scrape(lab: &Lab, node: &str) -> String {
    http_get(lab, node, "127.0.0.1:9965", "/metrics")
}

/// GET `path` at `addr` from inside the node's namespace; the body of a
/// 200 answer.
fn http_get(lab: &Lab, node: &str, addr: &'static str, path: &'static str) -> String {
    let ns = format!("/run/netns/tw_{}_node_{node}", lab.name);
    let out = std::thread::spawn(move || {
        tollway_datapath::netns::run_in_netns(std::path::Path::new(&ns), || {
            let mut s = std::net::TcpStream::connect(addr).expect("the agent's port");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        })
        .expect("enter the node's namespace")
    })
    .join()
    .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

fn metric(samples: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn agent_pid(lab: &Lab, node: &str) -> i32 {
    let st = lab.json(&["status", "--node", node, "-o", "json"]);
    st["agent"]["pid"].as_i64().expect("the agent's pid") as i32
}

#[test]
fn flows_answer_what_happened_to_each_connection() {
    let lab = Lab::up("flows", 2);
    lab.apply_ok(&manifest());
    lab.wait_ready("shop");
    lab.wait_ready("other");
    lab.apply_ok(POLICY);
    lab.wait_synced(&NODES);
    let api = lab.pod_ip("shop", "api");
    let svc = lab.json(&["get", "service", "api", "-n", "shop", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();

    // web -> api through the service (node-1 -> node-2): allowed; batch ->
    // api: denied by policy.
    let ok = lab.reach_many("shop", "web", &[format!("tcp://{svc}:80")], 1500);
    assert_eq!(ok, vec![true], "web reaches api");
    let denied = lab.reach_many("shop", "batch", &[format!("tcp://{api}:8080")], 700);
    assert_eq!(denied, vec![false], "batch is denied");

    // The allowed connection, seen on both nodes through the relay, with
    // names, identities and the service.
    let flows = lab.eventually(Duration::from_secs(5), "web's flows on both nodes", || {
        let f = observe(
            &lab,
            &[
                "--from-pod",
                "shop/web",
                "--to-port",
                "8080",
                "--last",
                "200",
            ],
        );
        let nodes: BTreeSet<_> = f
            .iter()
            .map(|f| f["node_name"].as_str().unwrap_or("").to_string())
            .collect();
        (nodes.len() == 2).then_some(f)
    });
    // (The socket LB's TRANSLATED events match too: checked below.)
    for f in flows.iter().filter(|f| f["verdict"] != "TRANSLATED") {
        assert_eq!(pod_of(f, "source"), "shop/web");
        assert_eq!(pod_of(f, "destination"), "shop/api");
        assert!(f["source"]["identity"].as_u64().unwrap() >= 256);
        assert!(f["destination"]["identity"].as_u64().unwrap() >= 256);
        assert_ne!(f["source"]["identity"], f["destination"]["identity"]);
        assert_eq!(
            f["source"]["workloads"],
            Value::Null,
            "bare pods have no workload"
        );
        assert!(
            f["source"]["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l == "k8s:app=web"),
            "{f}"
        );
        assert_eq!(f["verdict"], "FORWARDED");
        assert_eq!(f["IP"]["destination"], api.as_str());
    }
    // node-2 judged it: an allowed L3-L4 verdict at api's ingress.
    let verdict = flows
        .iter()
        .find(|f| f["event_type"]["type"] == 5)
        .expect("a policy verdict for web -> api");
    assert_eq!(verdict["node_name"], "node-2");
    assert_eq!(verdict["traffic_direction"], "INGRESS");
    assert_eq!(verdict["policy_match_type"], 2, "L3-L4");
    // The socket LB translated it at connect(): TRANSLATED, with the service.
    let xlate = observe(&lab, &["--from-pod", "shop/web", "--verdict", "TRANSLATED"]);
    assert!(
        xlate
            .iter()
            .any(|f| f["destination_service"]["name"] == "api"
                && f["destination_service"]["namespace"] == "shop"),
        "{xlate:?}"
    );
    // Hubble's relay merges in time order.
    let all = observe(&lab, &["--all"]);
    let times: Vec<String> = all
        .iter()
        .map(|f| f["time"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "flows in time order");

    // The denied one: a verdict and a drop with the reason, at node-2.
    let dropped = observe(&lab, &["--from-pod", "shop/batch", "--verdict", "DROPPED"]);
    assert!(!dropped.is_empty(), "batch's drops");
    for f in &dropped {
        assert_eq!(pod_of(f, "destination"), "shop/api");
        assert_eq!(f["drop_reason_desc"], "POLICY_DENIED");
        assert_eq!(f["drop_reason"], 133);
        assert_eq!(f["node_name"], "node-2");
        assert!(f["Summary"].as_str().unwrap().contains("SYN"), "{f}");
    }
    assert!(dropped.iter().any(|f| f["event_type"]["type"] == 1));
    assert!(dropped.iter().any(|f| f["event_type"]["type"] == 5));
    let compact = lab.ok(&[
        "observe",
        "--from-pod",
        "shop/batch",
        "--verdict",
        "DROPPED",
    ]);
    assert!(
        compact.contains("shop/batch") && compact.contains("DROPPED"),
        "{compact}"
    );
    assert!(compact.contains("Policy denied"), "{compact}");

    // Filters: each one narrows, --not inverts.
    let by_ns = observe(&lab, &["-n", "other", "--all"]);
    assert!(
        by_ns.iter().all(
            |f| f["source"]["namespace"] == "other" || f["destination"]["namespace"] == "other"
        )
    );
    let by_label = observe(&lab, &["--label", "app=batch", "--all"]);
    assert!(!by_label.is_empty());
    assert!(
        by_label.iter().all(
            |f| pod_of(f, "source") == "shop/batch" || pod_of(f, "destination") == "shop/batch"
        )
    );
    let from_label = observe(&lab, &["--from-label", "app=web", "--all"]);
    assert!(from_label.iter().all(|f| pod_of(f, "source") == "shop/web"));
    let to_label = observe(
        &lab,
        &["--to-label", "app=api", "--verdict", "DROPPED", "--all"],
    );
    assert!(
        to_label
            .iter()
            .all(|f| pod_of(f, "destination") == "shop/api")
    );
    let pod = observe(&lab, &["--pod", "shop/web", "--all"]);
    assert!(
        pod.iter()
            .all(|f| pod_of(f, "source") == "shop/web" || pod_of(f, "destination") == "shop/web")
    );
    let to_pod = observe(&lab, &["--to-pod", "shop/api", "--all"]);
    assert!(
        to_pod
            .iter()
            .all(|f| pod_of(f, "destination") == "shop/api")
    );
    let by_ip = observe(&lab, &["--ip", &api, "--all"]);
    assert!(
        by_ip
            .iter()
            .all(|f| f["IP"]["source"] == api.as_str() || f["IP"]["destination"] == api.as_str())
    );
    let by_port = observe(&lab, &["--port", "8080", "--protocol", "tcp", "--all"]);
    assert!(!by_port.is_empty());
    assert!(by_port.iter().all(|f| f["l4"]["TCP"].is_object()));
    let id = flows[0]["destination"]["identity"]
        .as_u64()
        .unwrap()
        .to_string();
    let by_id = observe(&lab, &["--identity", &id, "--all"]);
    assert!(
        by_id
            .iter()
            .all(|f| f["source"]["identity"].as_u64() == id.parse().ok()
                || f["destination"]["identity"].as_u64() == id.parse().ok())
    );
    let drops = observe(&lab, &["--type", "drop", "--all"]);
    assert!(!drops.is_empty() && drops.iter().all(|f| f["verdict"] == "DROPPED"));
    let not_dropped = observe(&lab, &["--not", "--verdict", "DROPPED", "--all"]);
    assert!(!not_dropped.is_empty() && !verdicts(&not_dropped).contains("DROPPED"));
    let last = observe(&lab, &["--last", "3"]);
    assert_eq!(last.len(), 3);
    let future = observe(&lab, &["--since", "2099-01-01T00:00:00Z"]);
    assert!(future.is_empty());
    let until = observe(&lab, &["--until", "2000-01-01T00:00:00Z"]);
    assert!(until.is_empty());
    let table = lab.ok(&["observe", "--last", "2", "-o", "table"]);
    assert!(table.starts_with("TIMESTAMP"), "{table}");
    let dict = lab.ok(&["observe", "--last", "2", "-o", "dict"]);
    assert!(
        dict.contains("TIMESTAMP:") && dict.contains("VERDICT:"),
        "{dict}"
    );
    // The seed's command: HTTP flows come with the L7 issue; no error now.
    let http = lab.ok(&["observe", "--namespace", "shop", "--protocol", "http"]);
    assert!(http.trim().is_empty(), "{http}");
    let bad = lab.tw(&["observe", "--verdict", "MAYBE"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--verdict"));

    // DNS: a query to kube-dns is an L7 flow with the answer.
    let dig = lab.tw(&[
        "lab",
        "exec",
        "-n",
        "other",
        "client",
        "--",
        "tollway",
        "workload",
        "dig",
        "--server",
        "10.96.0.10:53",
        "api.shop.svc.cluster.local",
    ]);
    assert!(
        dig.status.success(),
        "{}",
        String::from_utf8_lossy(&dig.stderr)
    );
    let dns = lab.eventually(Duration::from_secs(5), "DNS flows", || {
        let f = observe(
            &lab,
            &["--protocol", "dns", "--pod", "other/client", "--all"],
        );
        (f.len() >= 2).then_some(f)
    });
    let query = dns
        .iter()
        .find(|f| f["l7"]["type"] == "REQUEST")
        .expect("a DNS query");
    assert_eq!(query["l7"]["dns"]["query"], "api.shop.svc.cluster.local.");
    assert_eq!(query["Type"], "L7");
    assert!(
        pod_of(query, "destination").starts_with("kube-system/kube-dns-"),
        "{query}"
    );
    let answer = dns
        .iter()
        .find(|f| f["l7"]["type"] == "RESPONSE")
        .expect("a DNS answer");
    assert_eq!(answer["l7"]["dns"]["ips"][0], svc.as_str());
    assert_eq!(answer["l7"]["dns"]["ttl"], 30);
    assert_eq!(answer["l7"]["dns"]["rcode"].as_u64().unwrap_or(0), 0);

    // --follow sees a new flow within a second.
    let mut child = Command::new(BIN)
        .args([
            "--lab",
            &lab.name,
            "observe",
            "--follow",
            "--from-pod",
            "shop/web",
            "--to-port",
            "8080",
            "-o",
            "json",
            "--since",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(jiff::Timestamp, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((jiff::Timestamp::now(), line)).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    while rx.try_recv().is_ok() {}
    let sent = jiff::Timestamp::now();
    assert_eq!(
        lab.reach_many("shop", "web", &[format!("tcp://{api}:8080")], 1500),
        vec![true]
    );
    let (seen, line) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a followed flow");
    let _ = child.kill();
    let _ = child.wait();
    let flow: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(pod_of(&flow["flow"], "source"), "shop/web", "{line}");
    // From the datapath seeing the packet (the flow's time) to the line
    // reaching this test through the relay.
    let at: jiff::Timestamp = flow["time"].as_str().unwrap().parse().unwrap();
    assert!(at >= sent, "a new flow, not an old one: {line}");
    let lag = seen.duration_since(at);
    eprintln!("--follow: a new flow arrived {lag:#} after the datapath saw it");
    assert!(
        lag < jiff::SignedDuration::from_secs(1),
        "followed after {lag:#}"
    );

    // The agents' probes (what the DaemonSet's liveness/readiness ask).
    for node in NODES {
        assert_eq!(
            http_get(&lab, node, "127.0.0.1:9879", "/healthz").trim(),
            "ok"
        );
        assert_eq!(
            http_get(&lab, node, "127.0.0.1:9879", "/readyz").trim(),
            "ready"
        );
    }

    // Metrics with Hubble's names, parsed by a Prometheus text parser.
    let text = scrape(&lab, "node-2");
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert!(metric(&parsed, "hubble_flows_processed_total", &[]) > 0.0);
    assert!(
        metric(
            &parsed,
            "hubble_drop_total",
            &[("reason", "POLICY_DENIED"), ("protocol", "TCP")]
        ) >= 1.0
    );
    assert!(
        metric(
            &parsed,
            "hubble_policy_verdicts_total",
            &[("direction", "ingress"), ("action", "dropped")]
        ) >= 1.0
    );
    assert!(
        metric(
            &parsed,
            "hubble_policy_verdicts_total",
            &[("direction", "ingress"), ("action", "forwarded")]
        ) >= 1.0
    );
    assert!(metric(&parsed, "hubble_tcp_flags_total", &[("flag", "SYN")]) >= 1.0);
    assert!(
        metric(
            &parsed,
            "hubble_port_distribution_total",
            &[("port", "8080")]
        ) >= 1.0
    );
    // The datapath ring's losses are always exported (zero here); HTTP
    // families appear with the first L7 HTTP flow (none before the L7 issue),
    // as Hubble's Go client leaves out families without samples.
    assert_eq!(
        metric(
            &parsed,
            "hubble_lost_events_total",
            &[("source", "PERF_EVENT_RING_BUFFER")]
        ),
        0.0
    );
    assert!(
        text.contains("hubble_lost_events_total{source=\"PERF_EVENT_RING_BUFFER\"}"),
        "{text}"
    );
    let dns_node = scrape(&lab, "node-2");
    let parsed =
        prometheus_parse::Scrape::parse(dns_node.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert!(
        metric(&parsed, "hubble_dns_queries_total", &[]) >= 1.0,
        "{dns_node}"
    );
    assert!(metric(&parsed, "hubble_dns_responses_total", &[]) >= 1.0);

    // The service map, in headless Chromium, from the real lab.
    let ui_port = 20000 + (std::process::id() % 20000) as u16;
    let listen = format!("127.0.0.1:{ui_port}");
    let mut ui = Command::new(BIN)
        .args(["--lab", &lab.name, "ui", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.eventually(Duration::from_secs(10), "the UI listening", || {
        std::net::TcpStream::connect(&listen).ok()
    });
    let url = format!("http://{listen}/?namespace=shop");
    let dom = tollway_ui::browser::render_dom(&url);
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("../test-artifacts/lab-service-map.png");
    let _ = std::fs::create_dir_all(shot.parent().unwrap());
    let screenshot = tollway_ui::browser::screenshot(&url, &shot);
    let _ = ui.kill();
    let _ = ui.wait();
    let dom = dom.unwrap_or_else(|e| panic!("chromium: {e}"));
    screenshot.unwrap_or_else(|e| panic!("chromium screenshot: {e}"));
    eprintln!("service map screenshot: {}", shot.display());
    let body = tollway_ui::browser::body(&dom).expect("a body");
    assert_eq!(body.attr("data-ready"), Some("1"), "the page rendered");
    let nodes: BTreeSet<String> = tollway_ui::browser::elements_with_class(&dom, "node")
        .iter()
        .filter_map(|e| e.attr("data-workload").map(str::to_string))
        .collect();
    for want in ["shop/web", "shop/batch", "shop/api"] {
        assert!(nodes.contains(want), "node {want} in {nodes:?}");
    }
    let edges: Vec<(String, String, String)> =
        tollway_ui::browser::elements_with_class(&dom, "edge")
            .iter()
            .map(|e| {
                (
                    e.attr("data-from").unwrap_or("").to_string(),
                    e.attr("data-to").unwrap_or("").to_string(),
                    e.attr("data-verdict").unwrap_or("").to_string(),
                )
            })
            .collect();
    assert!(
        edges
            .iter()
            .any(|(f, t, v)| f == "shop/web" && t == "shop/api" && v == "forwarded"),
        "{edges:?}"
    );
    assert!(
        edges
            .iter()
            .any(|(f, t, v)| f == "shop/batch" && t == "shop/api" && v == "dropped"),
        "{edges:?}"
    );

    // The relay (Hubble Relay's role): one address for every node's flows.
    let relay_port = 40000 + (std::process::id() % 20000) as u16;
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let peers = NODES
        .iter()
        .map(|n| {
            format!(
                "unix:///var/lib/tollway/labs/{}/nodes/{n}/flows.sock",
                lab.name
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut relay = Command::new(BIN)
        .args(["relay", "--listen", &relay_addr, "--peers", &peers])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.eventually(Duration::from_secs(10), "the relay listening", || {
        std::net::TcpStream::connect(&relay_addr).ok()
    });
    let via_relay = Command::new(BIN)
        .args([
            "observe",
            "--server",
            &relay_addr,
            "--from-pod",
            "shop/web",
            "--to-port",
            "8080",
            "--all",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        via_relay.status.success(),
        "{}",
        String::from_utf8_lossy(&via_relay.stderr)
    );
    let nodes: BTreeSet<String> = String::from_utf8_lossy(&via_relay.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["node_name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(nodes.len(), 2, "the relay merges both nodes: {nodes:?}");

    // A node whose agent does not answer is reported, not waited for:
    // through the relay and directly.
    let pid = agent_pid(&lab, "node-2");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["observe", "--server", &relay_addr, "--last", "5"])
        .output()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let _ = relay.kill();
    let _ = relay.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node-2") && err.contains("unreachable"),
        "relay: {err}"
    );

    let pid = agent_pid(&lab, "node-2");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let started = Instant::now();
    let out = lab.tw(&["observe", "--last", "5"]);
    let took = started.elapsed();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    assert!(out.status.success(), "node-1 still answers");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node-2") && err.contains("unreachable"),
        "{err}"
    );
    assert!(took < Duration::from_secs(8), "observe took {took:?}");
}
