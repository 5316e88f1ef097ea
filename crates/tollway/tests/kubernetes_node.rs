//! A Kubernetes node as the chart sets it up (root): `tollway agent
//! --kubernetes` against the fake API server of tollway-kube's tests, in a
//! network namespace of this test's own with an uplink `eth0` on node-a's
//! InternalIP. It checks what a real node depends on beyond the lab:
//!
//! - the agent finds a pod's veth through the CNI plugin's endpoint record
//!   (the veth is named after the sandbox's container id, which the Pod
//!   object does not carry) and puts the pod programs on it;
//! - with `--auto-direct-node-routes` it routes node-b's pod CIDR via
//!   node-b's InternalIP, under its own protocol number;
//! - the inspect commands work the way `kubectl exec ds/tollway -- tollway
//!   ...` runs them: no lab, only the container's environment
//!   (`TOLLWAY_LAB` = the cluster, `TOLLWAY_NODE`, `TOLLWAY_STATE_DIR`,
//!   and the API server for the objects' names);
//! - every `TOLLWAY_*` variable and flag the chart gives the agent is one
//!   the agent reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tollway-kube/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::FakeApi;

const TW: &str = env!("CARGO_BIN_EXE_tollway");

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Node {
    agent: Child,
    pins: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Run `tollway ARGS` with only what the agent's container has.
fn in_container(env: &[(&str, String)], args: &[&str]) -> Output {
    let mut c = Command::new(TW);
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(env: &[(&str, String)], args: &[&str]) -> String {
    let out = in_container(env, args);
    assert!(
        out.status.success(),
        "tollway {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_record(dir: &Path, container: &str, host_if: &str, ifindex: u32) {
    let rec = serde_json::json!({
        "version": 1,
        "network": "tollway",
        "containerID": container,
        "netns": "/var/run/netns/cni-test",
        "ifname": "eth0",
        "containerMac": "02:00:0a:f4:01:05",
        "hostIfname": host_if,
        "hostIfindex": ifindex,
        "hostMac": "02:00:0a:f4:01:01",
        "ip": "10.244.1.5",
        "gateway": "10.244.1.1",
        "mtu": 1500,
        "podNamespace": "shop",
        "podName": "web-7d4b9c8f6-p2x7k",
        "podUid": "c0d1e2f3-bbbb-4b5c-8d9e-0f1a2b3c4d02"
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(format!("{container}.json")),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
}

/// The pod's host veth, named as for a sandbox id (not the pod uid).
const HOST_IF: &str = "lxc5a1dbox0001";

/// A node in a new network namespace (this thread's, and everything it
/// starts: the fake API server's runtime, the agent, `ip`): an uplink on
/// node-a's InternalIP, one pod veth with its CNI record, the fake API
/// server, and the agent started with the chart's container environment
/// plus `extra`.
struct Setup {
    /// Stops the agent and removes its pins when dropped.
    _node: Node,
    env: Vec<(&'static str, String)>,
    api: FakeApi,
    tmp: tempfile::TempDir,
}

impl Setup {
    fn start(tag: &str, extra: &[(&'static str, &str)]) -> Setup {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test loads BPF programs and adds links and routes in a namespace of its own: run it as root"
        );
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        sh(&["ip", "link", "set", "lo", "up"]);
        sh(&[
            "ip",
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ]);
        sh(&["ip", "link", "set", "eth0-peer", "up"]);
        sh(&["ip", "addr", "add", "172.18.0.2/24", "dev", "eth0"]);
        sh(&["ip", "link", "set", "eth0", "up"]);
        sh(&[
            "ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "podside0",
        ]);
        sh(&["ip", "link", "set", HOST_IF, "up"]);
        sh(&["ip", "link", "set", "podside0", "up"]);
        let ifindex = nix::net::if_::if_nametoindex(HOST_IF).unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let cni_dir = tmp.path().join("run");
        write_record(
            &cni_dir.join("cni-endpoints"),
            "5a1db0c0ffee",
            HOST_IF,
            ifindex,
        );
        let cluster = format!("{tag}-{}", std::process::id());
        let api = FakeApi::start();
        let kubeconfig = tmp.path().join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();

        // The chart's container environment (values from its ConfigMap).
        let mut env: Vec<(&'static str, String)> = vec![
            ("K8S_NODE_NAME", "node-a".into()),
            ("TOLLWAY_K8S_NAMESPACE", "kube-system".into()),
            ("TOLLWAY_CLUSTER_NAME", cluster.clone()),
            ("TOLLWAY_KUBE_PROXY_REPLACEMENT", "true".into()),
            ("TOLLWAY_ROUTING_MODE", "native".into()),
            ("TOLLWAY_AUTO_DIRECT_NODE_ROUTES", "true".into()),
            ("TOLLWAY_FLOWS", "true".into()),
            ("TOLLWAY_AMBIENT", "false".into()),
            ("TOLLWAY_METRICS_PORT", "0".into()),
            ("TOLLWAY_STATE_DIR", state.display().to_string()),
            ("TOLLWAY_LAB", cluster.clone()),
            ("TOLLWAY_NODE", "node-a".into()),
            ("TOLLWAY_CNI_AGENT_DIR", cni_dir.display().to_string()),
            (
                "TOLLWAY_API_SOCKET",
                cni_dir.join("agent.sock").display().to_string(),
            ),
            ("KUBECONFIG", kubeconfig.display().to_string()),
        ];
        for (k, v) in extra {
            env.retain(|(n, _)| n != k);
            env.push((k, v.to_string()));
        }
        let mut cmd = Command::new(TW);
        cmd.args([
            "agent",
            "--kubernetes",
            "--node=node-a",
            "--uplink=eth0",
            // The socket LB would attach to the machine's cgroup root.
            "--no-socket-lb",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("RUST_LOG", "info");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let log = std::fs::File::create(tmp.path().join("agent.log")).unwrap();
        cmd.stderr(log.try_clone().unwrap()).stdout(log);
        let node = Node {
            agent: cmd.spawn().unwrap(),
            pins: PathBuf::from("/sys/fs/bpf/tollway").join(&cluster),
        };
        Setup {
            _node: node,
            env,
            api,
            tmp,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("agent.log")).unwrap_or_default()
    }

    /// The status once the agent has synced and `ready` holds.
    fn status_when(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, Duration::from_secs(60), || {
            let out = in_container(&self.env, &["status", "-o", "json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let synced = v["agent"]["kubernetes"]["synced"].as_bool() == Some(true);
            (synced && ready(&v)).then_some(v)
        })
    }
}

#[test]
fn a_kubernetes_node_attaches_by_cni_record_routes_to_other_nodes_and_answers_inspect_commands() {
    let setup = Setup::start("kubenode", &[]);
    let env = &setup.env;
    let host_if = HOST_IF;
    let cni_dir = setup.tmp.path().join("run");
    let state = setup.tmp.path().join("state");
    let api = &setup.api;
    let agent_log = || setup.log();

    // The agent reports, synced, through the variables alone.
    let status = setup.status_when("the agent's status, the veth attached", |v| {
        v["agent"]["programs"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["targets"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == host_if))
            })
        })
    });
    let a = &status["agent"];
    assert_eq!(a["namespace"], "kube-system");
    assert_eq!(a["kubeProxyReplacement"], true);
    assert_eq!(a["cniEndpoints"]["records"], 1, "{a:#}");
    // node-a's other pods have no record: reported, not attached.
    let missing: Vec<&str> = a["cniEndpoints"]["podsWithoutRecord"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(missing.contains(&"shop/api-5f8d7b6c4-hk3vn"), "{missing:?}");
    assert!(
        !missing.iter().any(|m| m.starts_with("shop/web-")),
        "{missing:?}"
    );
    // The programs are really on the veth.
    let tc = sh(&["tc", "filter", "show", "dev", host_if, "ingress"]);
    assert!(
        tc.contains("tw_"),
        "no pod program on {host_if}: {tc}\n{}",
        agent_log()
    );

    // node-b's pods: a route via node-b, under the agent's protocol.
    let routes = wait_for("the node route", Duration::from_secs(20), || {
        let r = sh(&["ip", "-4", "route", "show", "proto", "186"]);
        r.contains("10.244.2.0/24 via 172.18.0.3 dev eth0")
            .then_some(r)
    });
    assert!(
        !routes.contains("10.244.1.0/24"),
        "no route to its own pods: {routes}"
    );

    // The status reports it (written right after the routes change).
    setup.status_when("the route in the status", |v| {
        v["agent"]["nodeRoutes"]["routes"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "10.244.2.0/24 via 172.18.0.3"))
    });

    // The seed's inspect commands, as `kubectl exec ds/tollway --` runs them.
    let verbose = ok(env, &["status", "--verbose"]);
    println!("{verbose}");
    for want in [
        "Kubernetes:              Ok",
        "KubeProxyReplacement:    True",
        "10.244.2.0/24 via 172.18.0.3",
    ] {
        assert!(verbose.contains(want), "{want:?} not in:\n{verbose}");
    }
    let lb = ok(env, &["bpf", "lb", "list"]);
    assert!(lb.contains("10.96.120.15:80"), "{lb}");
    assert!(lb.contains("10.244.1.5:8080"), "{lb}");
    let svc = ok(env, &["service", "list"]);
    assert!(svc.contains("10.96.120.15:80"), "{svc}");
    // These need the objects: listed from the API server.
    let eps = ok(env, &["endpoint", "list"]);
    assert!(eps.contains("10.244.1.5"), "{eps}");
    assert!(eps.contains("k8s:app=web"), "{eps}");
    let ids = ok(env, &["identity", "list"]);
    assert!(ids.contains("k8s:app=web"), "{ids}");

    // Without the variables, the error says what to set.
    let out = in_container(
        &[("TOLLWAY_STATE_DIR", state.display().to_string())],
        &["status"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TOLLWAY_LAB"), "{err}");

    // The pod's record goes (CNI DEL): the veth is no longer the pod's.
    std::fs::remove_file(cni_dir.join("cni-endpoints/5a1db0c0ffee.json")).unwrap();
    // A change of the pods makes the agent look again.
    api.play("watch/changes.jsonl");
    setup.status_when("the record's removal", |v| {
        v["agent"]["cniEndpoints"]["records"] == 0
    });
}

/// `kubeProxyReplacement=false`, as in Cilium: kube-proxy keeps NodePort,
/// LoadBalancer and external IPs; the agent translates only ClusterIPs
/// at the pod veths (before policy), and attaches neither the uplink
/// program nor the socket LB.
#[test]
fn without_kube_proxy_replacement_only_cluster_ips_are_translated() {
    let setup = Setup::start("kubenokpr", &[("TOLLWAY_KUBE_PROXY_REPLACEMENT", "false")]);
    let status = setup.status_when("the agent's status, the veth attached", |v| {
        v["agent"]["policy"]["endpoints"] == 1
    });
    let a = &status["agent"];
    assert_eq!(a["kubeProxyReplacement"], false, "{a:#}");
    assert_eq!(status["kubeProxyReplacement"], false);

    let hooks: Vec<&str> = a["programs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["hook"].as_str())
        .collect();
    assert!(!hooks.iter().any(|h| h.contains("uplink")), "{hooks:?}");
    assert!(hooks.iter().any(|h| h.contains("pod veth")), "{hooks:?}");
    let text = ok(&setup.env, &["status"]);
    assert!(text.contains("KubeProxyReplacement:    False"), "{text}");
    let lb = ok(&setup.env, &["bpf", "lb", "list"]);
    assert!(
        lb.contains("10.96.120.15:80"),
        "the ClusterIP: {lb}\n{}",
        setup.log()
    );
    assert!(!lb.contains(":30080"), "no NodePort: {lb}");
}

/// Every variable and flag the chart hands the agent is one it reads, and
/// the settings it refuses say why.
#[test]
fn the_agent_reads_what_the_chart_sets() {
    let help = Command::new(TW).args(["agent", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let chart = tollway_deploy::Chart::load(&tollway_deploy::chart_dir()).unwrap();
    for sets in [
        vec![],
        vec![
            "kubeProxyReplacement=true",
            "k8sServiceHost=api.example",
            "k8sServicePort=6443",
            "flows.enabled=true",
        ],
    ] {
        let rendered = chart
            .render(&tollway_deploy::RenderOptions::new("tollway", "kube-system").with_set(sets))
            .unwrap();
        let ds = rendered
            .documents()
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .find(|d| d["kind"] == "DaemonSet")
            .unwrap();
        let c = &ds["spec"]["template"]["spec"]["containers"][0];
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            // Read by the CLI (TOLLWAY_LAB/NODE/STATE_DIR), by kube-rs
            // (KUBERNETES_*) or by tracing (RUST_LOG), not by agent flags.
            if matches!(
                name,
                "TOLLWAY_LAB"
                    | "TOLLWAY_NODE"
                    | "TOLLWAY_STATE_DIR"
                    | "KUBERNETES_SERVICE_HOST"
                    | "KUBERNETES_SERVICE_PORT"
                    | "RUST_LOG"
            ) {
                continue;
            }
            assert!(
                help.contains(&format!("[env: {name}=")),
                "the chart sets {name}, which `tollway agent` does not read"
            );
        }
        for a in c["args"].as_array().unwrap().iter().skip(1) {
            let flag = a.as_str().unwrap().split('=').next().unwrap();
            assert!(
                help.contains(flag),
                "the chart passes {flag}, unknown to `tollway agent`"
            );
        }
    }
    for (args, want) in [
        (&["--routing-mode=tunnel"][..], "only native routing"),
        (&["--enable-ambient=true"][..], "not implemented yet"),
        (
            &["--auto-direct-node-routes=true"][..],
            "needs --kubernetes",
        ),
    ] {
        let out = Command::new(TW)
            .args(["agent", "--node=n"])
            .args(args)
            .env_remove("TOLLWAY_ROUTING_MODE")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// `tollway cni` ADD as containerd calls it on a node, with
/// `agentWaitSeconds`: it returns only once the agent has programmed the
/// new pod's endpoint (identity, policy, programs on the veth) with the
/// address from the plugin's record, before the API server's pod status
/// has one; for a pod the agent never programs it fails with code 11 and
/// leaves nothing behind.
#[test]
fn cni_add_waits_until_the_agent_has_programmed_the_endpoint() {
    let setup = Setup::start("kubecni", &[]);
    setup.status_when("the agent's status", |v| {
        v["agent"]["policy"]["endpoints"] == 1
    });
    let cni_dir = setup.tmp.path().join("run");
    struct DelNetns(String);
    impl Drop for DelNetns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    // Two pod sandboxes' namespaces.
    let netns: Vec<DelNetns> = ["a", "b"]
        .iter()
        .map(|n| {
            let name = format!("twkcni{n}-{}", std::process::id());
            sh(&["ip", "netns", "add", &name]);
            DelNetns(name)
        })
        .collect();
    // The pod, bound to node-a, without an address yet (kubelet has not
    // reported one: the sandbox is being made).
    setup.api.write(
        "ADDED",
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-new", "namespace": "shop", "uid": "u-web-new",
                         "resourceVersion": "5001", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x",
                     "ports": [{"containerPort": 8080, "name": "http"}]}]},
            "status": {"phase": "Pending"}
        }),
    );
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "tollway", "type": "tollway-cni",
        "podCIDR": "10.244.1.0/24",
        "dataDir": setup.tmp.path().join("ipam"),
        "agentDir": cni_dir,
        "agentWaitSeconds": 20
    });
    let cni = |command: &str, id: &str, pod: &str, uid: &str, conf: &Value, netns: &str| {
        use std::io::Write;
        let mut child = Command::new(TW)
            .arg("cni")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID={uid}"),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };

    let started = Instant::now();
    let out = cni(
        "ADD",
        "sandboxnew1",
        "web-new",
        "u-web-new",
        &conf,
        &netns[0].0,
    );
    let took = started.elapsed();
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "ADD: {result:#}\n{}", setup.log());
    let ip = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    // When ADD returns, the endpoint is programmed: the marker names the
    // veth, and the maps hold the pod's address with web's identity.
    let record = cni_dir.join("cni-endpoints/sandboxnew1.json");
    assert!(record.exists() && record.with_extension("ready").exists());
    let eps = ok(&setup.env, &["endpoint", "list", "-o", "json"]);
    let eps: Value = serde_json::from_str(&eps).unwrap();
    let ep = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ipv4"] == ip.as_str())
        .unwrap_or_else(|| panic!("no endpoint for {ip} right after ADD: {eps:#}"));
    let labels = ep.to_string();
    assert!(labels.contains("k8s:app=web"), "{ep:#}");
    println!("ADD returned after {took:?} with {ip} programmed");

    // A sandbox for a pod the API server does not have: the agent never
    // programs it; ADD gives up with "try again later" and undoes itself.
    let short = {
        let mut c = conf.clone();
        c["agentWaitSeconds"] = 2.into();
        c
    };
    let out = cni(
        "ADD",
        "sandboxghost",
        "ghost",
        "u-ghost",
        &short,
        &netns[1].0,
    );
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["code"], 11, "{err:#}");
    assert!(!cni_dir.join("cni-endpoints/sandboxghost.json").exists());
    let links = sh(&["ip", "-o", "link", "show"]);
    let ghost_if = tollway_cni::link::host_link("sandboxghost", "eth0").name;
    assert!(!links.contains(&ghost_if), "{links}");

    // DEL: the record and its marker go, and so does the endpoint.
    let out = cni(
        "DEL",
        "sandboxnew1",
        "web-new",
        "u-web-new",
        &conf,
        &netns[0].0,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!record.exists() && !record.with_extension("ready").exists());
    wait_for("the endpoint's removal", Duration::from_secs(10), || {
        let eps = ok(&setup.env, &["endpoint", "list", "-o", "json"]);
        (!eps.contains(&format!("\"{ip}\""))).then_some(())
    });
}

/// `spec.loadBalancerSourceRanges` from the API server to the uplink's
/// maps, through the agent's planner: the Service's LoadBalancer ingress IP
/// gets `check source-range` and one `tw_lb4_srcrange` entry per IPv4 range
/// (the IPv6 one admits no IPv4 client: no entry), its node port and
/// cluster IP neither; the entries follow the Service when it changes, and
/// go with the field (the frontend then admits everyone again).
#[test]
fn load_balancer_source_ranges_are_programmed_from_the_service() {
    let setup = Setup::start("kubesrc", &[]);
    let env = &setup.env;
    setup.status_when("the first sync", |_| true);
    let service = |ranges: Value| {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web-public",
                "namespace": "shop",
                "uid": "d1e2f3a4-0099-4b5c-8d9e-0f1a2b3c4d99",
            },
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "10.96.99.9",
                "clusterIPs": ["10.96.99.9"],
                "selector": {"app": "web"},
                "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30099}],
                "externalTrafficPolicy": "Cluster",
                "loadBalancerSourceRanges": ranges,
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.50", "ipMode": "VIP"}]}},
        })
    };
    // The rows of `bpf lb list -o json` once `ready` holds for them, by
    // frontend.
    let rows_when = |what: &str, ready: &dyn Fn(&Value) -> bool| -> Value {
        wait_for(what, Duration::from_secs(30), || {
            let out = in_container(env, &["bpf", "lb", "list", "-o", "json"]);
            let rows: Value = serde_json::from_slice(&out.stdout).ok()?;
            let by_frontend: serde_json::Map<String, Value> = rows
                .as_array()?
                .iter()
                .map(|r| (r["frontend"].as_str().unwrap_or("").to_string(), r.clone()))
                .collect();
            let v = Value::Object(by_frontend);
            ready(&v).then_some(v)
        })
    };
    let fill = || -> u64 {
        let out = in_container(env, &["status", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = v["maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "tw_lb4_srcrange")
            .unwrap_or_else(|| panic!("tw_lb4_srcrange not in the status: {v:#}"));
        assert_eq!(m["max_entries"].as_u64(), Some(16384));
        m["in_use"].as_u64().unwrap()
    };

    setup.api.write(
        "ADDED",
        service(serde_json::json!([
            "198.51.100.0/24",
            " 192.0.2.7/32",
            "2001:db8::/64"
        ])),
    );
    let rows = rows_when("the LoadBalancer frontend", &|v| {
        v.get("203.0.113.50:80").is_some()
    });
    let lb = &rows["203.0.113.50:80"];
    assert_eq!(
        lb["serviceType"], "LoadBalancer, check source-range",
        "{lb:#}"
    );
    assert_eq!(
        lb["sourceRanges"],
        serde_json::json!(["192.0.2.7/32", "198.51.100.0/24"]),
        "{lb:#}"
    );
    assert_eq!(lb["backends"][0]["address"], "10.244.1.5:8080", "{lb:#}");
    for (frontend, kind) in [
        ("172.18.0.2:30099", "NodePort"),
        ("10.96.99.9:80", "ClusterIP"),
    ] {
        let r = &rows[frontend];
        assert_eq!(r["serviceType"], kind, "{frontend}: {r:#}");
        assert!(r.get("sourceRanges").is_none(), "{frontend}: {r:#}");
    }
    let text = ok(env, &["bpf", "lb", "list"]);
    assert!(
        text.contains("[LoadBalancer, check source-range, random]"),
        "{text}"
    );
    assert_eq!(fill(), 2);

    // Other ranges: the entries follow.
    setup
        .api
        .write("MODIFIED", service(serde_json::json!(["192.0.2.0/24"])));
    let rows = rows_when("the changed ranges", &|v| {
        v["203.0.113.50:80"]["sourceRanges"] == serde_json::json!(["192.0.2.0/24"])
    });
    assert_eq!(
        rows["203.0.113.50:80"]["serviceType"],
        "LoadBalancer, check source-range"
    );
    assert_eq!(fill(), 1);

    // No ranges any more: everyone again, no entry left.
    setup.api.write("MODIFIED", service(serde_json::json!([])));
    rows_when("the frontend without ranges", &|v| {
        v["203.0.113.50:80"]["serviceType"] == "LoadBalancer"
            && v["203.0.113.50:80"].get("sourceRanges").is_none()
    });
    assert_eq!(fill(), 0);
    assert!(
        !setup
            .log()
            .contains("loadBalancerSourceRanges: unknown field"),
        "{}",
        setup.log()
    );
}
