//! Helpers for the plugin's root tests: namespaces the test owns (removed
//! on drop, also when the test fails), a "node" namespace the plugin runs
//! in (`ip netns exec NODE tollway-cni`, as a runtime on that node would),
//! and the plugin run with a runtime's environment.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_tollway-cni");

/// Fail (never skip) when not root.
pub fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test makes network namespaces and veths and must run as root (CI runs as root; use `sudo -E cargo test -p tollway-cni`)"
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        let name = format!(
            "twcni{}_{}_{tag}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// `ip -n NS ARGS`, stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `ip -n NS -j ARGS` as JSON.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.ip(&full);
        if out.trim().is_empty() {
            return json!([]);
        }
        serde_json::from_str(&out).unwrap()
    }

    /// Set a sysctl inside the namespace (`/proc/sys/net` is per namespace
    /// of the thread that opens it).
    pub fn sysctl(&self, key: &str, value: &str) {
        let p = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.run_in(|| std::fs::write(&p, value))
            .unwrap_or_else(|e| panic!("{} in {}: {e}", p.display(), self.name));
    }

    /// Run `f` on a thread inside this namespace.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = std::fs::File::open(self.path()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(
                    unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                    0,
                    "setns into {}",
                    self.name
                );
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Run a command; panic with its stderr if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node: its namespace (forwarding on, an address for ARP to speak
/// from), and directories for IPAM and endpoint records.
pub struct Node {
    pub ns: Netns,
    pub dir: tempfile::TempDir,
    pub cidr: String,
}

impl Node {
    pub fn new(tag: &str, cidr: &str) -> Node {
        let ns = Netns::new(&format!("{tag}_node"));
        ns.sysctl("net.ipv4.ip_forward", "1");
        ns.sysctl("net.ipv4.conf.all.rp_filter", "0");
        ns.sysctl("net.ipv4.conf.default.rp_filter", "0");
        // No dummy driver on every kernel: a veth pair of its own.
        ns.ip(&[
            "link",
            "add",
            "nodeaddr0",
            "type",
            "veth",
            "peer",
            "name",
            "nodeaddr1",
        ]);
        ns.ip(&["addr", "add", "192.0.2.1/32", "dev", "nodeaddr0"]);
        ns.ip(&["link", "set", "nodeaddr0", "up"]);
        Node {
            ns,
            dir: tempfile::tempdir().unwrap(),
            cidr: cidr.to_string(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub fn endpoints_dir(&self) -> PathBuf {
        self.dir.path().join("agent").join("cni-endpoints")
    }

    /// The network configuration for this node (extra keys merged in).
    pub fn conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version,
            "name": "tollway-test",
            "type": "tollway-cni",
            "podCIDR": self.cidr,
            "dataDir": self.data_dir(),
            "agentDir": self.dir.path().join("agent"),
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
        });
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    /// Run the plugin in the node namespace.
    pub fn plugin(&self, env: &[(&str, &str)], stdin: &[u8]) -> Run {
        run_plugin(BIN, Some(&self.ns.name), env, stdin)
    }

    /// An attachment command for `(id, eth0)` into `pod`.
    pub fn cmd(&self, command: &str, id: &str, netns: Option<&str>, conf: &Value) -> Run {
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
            ),
        ];
        if let Some(n) = netns {
            env.push(("CNI_NETNS", n));
        }
        self.plugin(&env, conf.to_string().as_bytes())
    }

    /// ADD that must succeed; returns the result.
    pub fn add(&self, id: &str, pod: &Netns, conf: &Value) -> Value {
        let r = self.cmd("ADD", id, Some(&pod.path()), conf);
        r.ok()
    }
}

/// What a plugin run gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Assert success; the stdout as JSON (`null` if empty).
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {}\n{}",
            self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout).unwrap()
        }
    }

    /// Assert failure with the spec's error JSON; its code.
    pub fn err_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected a failure: {}", self.stdout);
        let v: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("error output is not JSON ({e}): {}", self.stdout));
        assert!(v["msg"].is_string(), "no msg: {v}");
        v["code"].as_u64().unwrap()
    }
}

/// Run a CNI plugin the way a runtime does: a clean environment with only
/// `PATH` and the `CNI_*` variables, the configuration on stdin, inside
/// `node` when given.
pub fn run_plugin(bin: &str, node: Option<&str>, env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut cmd = match node {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n, bin]);
            c
        }
        None => Command::new(bin),
    };
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The address (without prefix) of a result's first IP.
pub fn result_ip(result: &Value) -> String {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().to_string()
}

/// Whether a path exists.
pub fn exists(p: &Path) -> bool {
    p.exists()
}
