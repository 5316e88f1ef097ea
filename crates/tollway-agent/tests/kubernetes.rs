//! The agent in Kubernetes mode (root): `run_kubernetes` against the fake
//! API server of tollway-kube's tests, in a network namespace of its own
//! with a veth `eth0`. It programs the services it watches, follows their
//! changes, allocates identities for its pods, and keeps the maps when the
//! API server goes away.

#![allow(clippy::unwrap_used)]

#[path = "../../tollway-kube/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::FakeApi;
use tollway_agent::inspect::{self, LbServiceRow};
use tollway_agent::{AgentStatus, KubeOptions};
use tollway_datapath::lb::LbMaps;

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn frontend<'a>(rows: &'a [LbServiceRow], addr: &str, proto: &str) -> Option<&'a LbServiceRow> {
    rows.iter()
        .find(|r| r.frontend == addr && r.protocol == proto)
}

fn backends(row: &LbServiceRow) -> Vec<String> {
    let mut b: Vec<String> = row.backends.iter().map(|b| b.address.clone()).collect();
    b.sort();
    b
}

#[test]
fn the_kubernetes_agent_programs_what_it_watches_and_keeps_it_when_the_api_goes() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads BPF programs and must run as root"
    );
    // Everything this thread starts from here on (the fake API server's
    // runtime, the agent and its threads, `ip`) is in the new namespace.
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

    let state = tempfile::tempdir().unwrap();
    // SAFETY: the only test of this binary; set before any thread that
    // reads the environment is started.
    unsafe { std::env::set_var("TOLLWAY_STATE_DIR", state.path()) };
    let cluster = format!("kubetest-{}", std::process::id());
    let pins = PathBuf::from("/sys/fs/bpf/tollway").join(&cluster);
    let _cleanup = Cleanup(pins.clone());
    let node_dir = state
        .path()
        .join("labs")
        .join(&cluster)
        .join("nodes")
        .join("node-a");

    let api = FakeApi::start();
    let kubeconfig = state.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let opts = KubeOptions {
        node: "node-a".into(),
        kubeconfig: Some(kubeconfig),
        cluster: cluster.clone(),
        uplink: "eth0".into(),
        cgroup: None,
        lb: tollway_lab::LbSettings {
            // The socket LB would attach to the machine's cgroup root.
            socket_lb: false,
            ..Default::default()
        },
        node_port_range: "30000-32767".into(),
        cni_agent_dir: state.path().join("run"),
        auto_direct_node_routes: false,
        namespace: Some("kube-system".into()),
        kube_proxy_replacement: true,
        identity_gc_interval: Duration::from_secs(900),
        identity_gc_grace: Duration::from_secs(900),
    };
    let flow_cfg = tollway_agent::flows::FlowConfig {
        enabled: false,
        metrics_port: None,
        ..Default::default()
    };
    std::thread::spawn(move || {
        let r = tollway_agent::run_kubernetes(opts, flow_cfg);
        panic!("the agent stopped: {r:?}");
    });

    let maps = wait_for("the pinned maps", Duration::from_secs(30), || {
        LbMaps::open(&pins.join("node-a")).ok()
    });
    let rows = wait_for("the services", Duration::from_secs(30), || {
        let rows = inspect::lb_list(&maps).ok()?;
        frontend(&rows, "10.96.120.15:80", "TCP")?;
        Some(rows)
    });
    // Named target port (http → 8080), both nodes' web pods.
    let web = frontend(&rows, "10.96.120.15:80", "TCP").unwrap();
    assert_eq!(backends(web), ["10.244.1.5:8080", "10.244.2.7:8080"]);
    let dns = frontend(&rows, "10.96.0.10:53", "UDP").unwrap();
    assert_eq!(backends(dns), ["10.244.1.2:53"]);
    // default/kubernetes has no selector: its backend is the API
    // server's EndpointSlice (port 6443, not the service's 443).
    let kubernetes = frontend(&rows, "10.96.0.1:443", "TCP").unwrap();
    assert_eq!(backends(kubernetes), ["172.18.0.2:6443"]);
    assert!(frontend(&rows, "10.96.77.3:80", "TCP").is_some());
    // The dual-stack service, by its IPv4 cluster IP.
    assert!(frontend(&rows, "10.96.88.4:80", "TCP").is_some());
    assert!(
        rows.iter().any(|r| r.frontend.ends_with(":30080")),
        "the NodePort: {rows:#?}"
    );
    // The ExternalName service is kept (no frontend: it has no address);
    // the dual-stack one is refused (IPv4 only).
    let status = wait_for("the status", Duration::from_secs(10), || {
        AgentStatus::read(&node_dir).filter(|s| s.kubernetes.is_some())
    });
    let k = status.kubernetes.unwrap();
    assert!(k.synced && k.rejected == 1, "{k:#?}");
    assert_eq!(status.node_ip, "172.18.0.2", "from the Node object");
    assert_eq!(status.uplink, "eth0");

    // Identities for node-a's pods: the web and api label sets get one
    // each (coredns has 256).
    wait_for("the identities", Duration::from_secs(30), || {
        (api.objects_of("/apis/tollway.io/v1alpha1/tollwayidentities")
            .len()
            == 3)
            .then_some(())
    });

    // Changes: a new web pod on node-b becomes a backend; the web service
    // gets a second port.
    api.play("watch/changes.jsonl");
    wait_for("the changes", Duration::from_secs(30), || {
        let rows = inspect::lb_list(&maps).ok()?;
        let web = frontend(&rows, "10.96.120.15:80", "TCP")?;
        (backends(web).len() == 3 && frontend(&rows, "10.96.120.15:9100", "TCP").is_some())
            .then_some(())
    });

    // The API server goes away: the maps stay as they are, the status says
    // so.
    let before = inspect::lb_list(&maps).unwrap().len();
    api.stop();
    let k = wait_for("the disconnection", Duration::from_secs(30), || {
        let k = AgentStatus::read(&node_dir)?.kubernetes?;
        (!k.connected).then_some(k)
    });
    assert!(k.last_error.is_some(), "{k:#?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(inspect::lb_list(&maps).unwrap().len(), before);
    // It comes back: the agent reconnects.
    api.restart();
    wait_for("the reconnection", Duration::from_secs(60), || {
        let k = AgentStatus::read(&node_dir)?.kubernetes?;
        k.connected.then_some(())
    });
    assert_eq!(inspect::lb_list(&maps).unwrap().len(), before);
}
