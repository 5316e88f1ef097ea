//! Helpers for lab integration tests: run the real `tollway` binary against a
//! lab of the test's own, and take it down even when the test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tollway");

/// Fail (never skip) when not root: the lab needs namespaces and cgroups.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test builds real lab namespaces and must run as root (CI runs as root; use `sudo make test`)"
    );
}

/// A lab owned by one test; `Drop` runs `lab down`.
pub struct Lab {
    pub name: String,
}

impl Lab {
    /// Bring up a lab named after the test (and the PID, so reruns and
    /// parallel runs never share one).
    pub fn up(tag: &str, nodes: usize) -> Lab {
        let lab = Lab::named(tag);
        lab.ok(&["lab", "up", "--nodes", &nodes.to_string()]);
        lab
    }

    /// A lab name of the test's own, not yet brought up (any leftover of an
    /// earlier, killed run is removed).
    pub fn named(tag: &str) -> Lab {
        require_root();
        let lab = Lab {
            name: format!("{tag}-{}", std::process::id() % 100_000),
        };
        let _ = lab.tw(&["lab", "down"]);
        lab
    }

    pub fn tw(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--lab")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run tollway")
    }

    /// Run; assert success; return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.tw(args);
        assert!(
            out.status.success(),
            "tollway {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Apply manifest text through stdin.
    pub fn apply(&self, yaml: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(["--lab", &self.name, "apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn apply_ok(&self, yaml: &str) {
        let out = self.apply(yaml);
        assert!(
            out.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Wait until every pod in the namespace is Ready.
    pub fn wait_ready(&self, ns: &str) {
        self.ok(&[
            "wait",
            "--for=condition=Ready",
            "pod",
            "--all",
            "-n",
            ns,
            "--timeout",
            "60s",
        ]);
    }

    pub fn pod(&self, ns: &str, name: &str) -> Value {
        self.json(&["get", "pod", name, "-n", ns, "-o", "json"])
    }

    pub fn pod_ip(&self, ns: &str, name: &str) -> String {
        self.pod(ns, name)["status"]["podIP"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `tollway workload probe` from inside a pod; returns the JSON report.
    pub fn probe_from(&self, ns: &str, pod: &str, target: &str) -> Value {
        self.probe_in(&["-n", ns, pod], target)
    }

    /// The same from a node's network namespace.
    pub fn probe_from_node(&self, node: &str, target: &str) -> Value {
        self.probe_in(&["--node", node], target)
    }

    /// `tollway workload probe TARGET` run by `lab exec PLACE...` (a pod
    /// name, `--node N`, `--external`).
    pub fn probe_in(&self, place: &[&str], target: &str) -> Value {
        let mut args = vec!["lab", "exec"];
        args.extend_from_slice(place);
        args.extend([
            "--",
            "tollway",
            "workload",
            "probe",
            target,
            "--timeout-ms",
            "2000",
            "-o",
            "json",
        ]);
        let out = self.tw(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "probe output not JSON ({e}): {text} / {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Poll `f` until it returns Some, or panic after `timeout`.
    pub fn eventually<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The store's resource version (first token of its version file).
    pub fn store_version(&self) -> u64 {
        let p = format!("/var/lib/tollway/labs/{}/store/version", self.name);
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Wait until the agents of `nodes` have synced the store's current
    /// state without errors, and the store has settled (the daemon
    /// allocates identities for new label sets in a pass of its own, right
    /// after a change).
    pub fn wait_synced(&self, nodes: &[&str]) {
        let mut want = self.store_version();
        loop {
            self.eventually(Duration::from_secs(20), "agents synced", || {
                nodes
                    .iter()
                    .all(|n| {
                        let st = self.json(&["status", "--node", n, "-o", "json"]);
                        let a = &st["agent"];
                        a["sync"]["resourceVersion"]
                            .as_u64()
                            .is_some_and(|v| v >= want)
                            && a["sync"]["error"].is_null()
                            && a["policy"]["errors"]
                                .as_array()
                                .is_some_and(|e| e.is_empty())
                    })
                    .then_some(())
            });
            std::thread::sleep(Duration::from_millis(250));
            let now = self.store_version();
            if now == want {
                return;
            }
            want = now;
        }
    }

    /// `tollway workload probe-many` from a pod: whether each target
    /// answered within `timeout_ms`.
    pub fn reach_many(
        &self,
        ns: &str,
        pod: &str,
        targets: &[String],
        timeout_ms: u64,
    ) -> Vec<bool> {
        let t = timeout_ms.to_string();
        let mut args = vec![
            "lab",
            "exec",
            "-n",
            ns,
            pod,
            "--",
            "tollway",
            "workload",
            "probe-many",
            "--timeout-ms",
            &t,
        ];
        args.extend(targets.iter().map(String::as_str));
        let out = self.tw(&args);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("probe-many: {e}: {}", String::from_utf8_lossy(&out.stderr))
        });
        let reports = v["reports"].as_array().cloned().unwrap_or_default();
        assert_eq!(reports.len(), targets.len());
        reports
            .iter()
            .map(|r| r["summary"]["ok"].as_u64() == Some(1))
            .collect()
    }

    pub fn down(&self) {
        self.ok(&["lab", "down"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.tw(&["lab", "down"]);
    }
}

/// The probe's first attempt: (result, status, body).
pub fn first(report: &Value) -> (String, Option<u64>, String) {
    let a = &report["attempts"][0];
    (
        a["result"].as_str().unwrap_or("").to_string(),
        a["status"].as_u64(),
        a["body"].as_str().unwrap_or("").to_string(),
    )
}

/// Everything a lab leaves on the machine, as a list of what is still there.
pub fn leftovers(lab: &str) -> Vec<String> {
    let mut left = Vec::new();
    let prefix = format!("tw_{lab}_");
    if let Ok(rd) = std::fs::read_dir("/var/run/netns") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) {
                left.push(format!("netns {n}"));
            }
        }
    }
    for dir in [
        format!("/var/lib/tollway/labs/{lab}"),
        format!("/sys/fs/bpf/tollway/{lab}"),
        format!("/sys/fs/cgroup/unified/tollway/{lab}"),
        format!("/sys/fs/cgroup/tollway/{lab}"),
    ] {
        if std::path::Path::new(&dir).exists() {
            left.push(format!("path {dir}"));
        }
    }
    // Processes: pods carry TOLLWAY_LAB in their environment, the daemon
    // has `--lab NAME` on its command line.
    let env_marker = format!("TOLLWAY_LAB={lab}");
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == std::process::id().to_string() {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let has_env = environ
                .split(|b| *b == 0)
                .any(|v| v == env_marker.as_bytes());
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let has_arg = args
                .windows(2)
                .any(|w| w[0] == b"--lab" && w[1] == lab.as_bytes())
                && args.iter().any(|a| *a == b"daemon");
            if has_env || has_arg {
                left.push(format!(
                    "process {pid} {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
    }
    left
}

/// Interfaces of the root network namespace (which the lab must never change).
pub fn root_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_string()))
        .collect();
    v.sort();
    v
}

pub fn root_addrs_and_routes() -> String {
    let a = Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .unwrap();
    let r = Command::new("ip")
        .args(["route", "show", "table", "all"])
        .output()
        .unwrap();
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&r.stdout)
    )
}
