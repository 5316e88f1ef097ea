//! The lab's kubelet gives pods their network through the CNI plugin
//! (`tollway cni`, the `tollway-cni` crate): ADD on sandbox creation, DEL
//! on teardown. The plugin's own IPAM and endpoint records show it, and a
//! CHECK with the lab's configuration agrees with the kernel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Lab};
use serde_json::{Value, json};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: node-1
  containers:
  - name: web
    command: [tollway, workload, serve, --http, "8080"]
"#;

fn lab_dir(lab: &str) -> PathBuf {
    PathBuf::from("/var/lib/tollway/labs").join(lab)
}

/// The plugin, run in the node's namespace as the kubelet runs it.
fn cni(lab: &Lab, command: &str, uid: &str, conf: &Value) -> (i32, String) {
    let node_ns = format!("tw_{}_node_node-1", lab.name);
    let pod_ns = format!("/var/run/netns/tw_{}_pod_default_web", lab.name);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node_ns, BIN, "cni"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", uid)
        .env("CNI_NETNS", pod_ns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_lab_gives_pods_their_network_through_the_cni_plugin() {
    let lab = Lab::up("cni", 1);
    lab.apply_ok(POD);
    lab.wait_ready("default");
    let pod = lab.pod("default", "web");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let ip = lab.pod_ip("default", "web");
    let dir = lab_dir(&lab.name);

    // The plugin's allocation and its endpoint record for the agent.
    let alloc = dir.join("cni/node-1").join(&ip);
    assert_eq!(
        std::fs::read_to_string(&alloc).unwrap(),
        format!("{uid}\neth0\n")
    );
    let rec_path = dir
        .join("nodes/node-1/cni-endpoints")
        .join(format!("{uid}.json"));
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&rec_path).unwrap()).unwrap();
    assert_eq!(rec["containerID"], uid);
    assert_eq!(rec["ip"], ip);
    assert_eq!(rec["podNamespace"], "default");
    assert_eq!(rec["podName"], "web");
    assert_eq!(rec["podUid"], uid);
    assert_eq!(rec["gateway"], "169.254.1.1");
    let host = rec["hostIfname"].as_str().unwrap();
    let node_ns = format!("tw_{}_node_node-1", lab.name);
    let link = Command::new("ip")
        .args(["-n", &node_ns, "-j", "link", "show", "dev", host])
        .output()
        .unwrap();
    let link: Value = serde_json::from_slice(&link.stdout).unwrap();
    assert_eq!(link[0]["ifindex"], rec["hostIfindex"]);

    // CHECK with the lab's configuration: the network is as ADD made it.
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": format!("tollway-{}", lab.name),
        "type": "tollway-cni",
        "podCIDR": "10.244.0.0/24",
        "mtu": 1500,
        "ipam": {"gateway": "169.254.1.1"},
        "dataDir": dir.join("cni/node-1"),
        "agentDir": dir.join("nodes/node-1"),
    });
    let (code, out) = cni(&lab, "CHECK", &uid, &conf);
    assert_eq!(code, 0, "CHECK: {out}");

    // Deleting the pod runs DEL: allocation, record and veth go.
    lab.ok(&["delete", "pod", "web", "--grace-period", "0"]);
    lab.eventually(Duration::from_secs(30), "the pod's CNI state to go", || {
        (!alloc.exists() && !rec_path.exists()).then_some(())
    });
    let links = Command::new("ip")
        .args(["-n", &node_ns, "link", "show"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(host));
}
