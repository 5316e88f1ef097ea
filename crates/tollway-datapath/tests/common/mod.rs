//! Helpers for the root-only integration tests: a root check that fails
//! loudly, throw-away network namespaces and pin directories that are removed
//! even when a test fails.

use std::{
    error::Error,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

use tollway_datapath::netns;

/// Fails the test (never skips it) unless running as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads and attaches eBPF programs and creates network namespaces, so it \
         must run as root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run \
         `cargo test -p tollway-datapath` as root"
    );
}

/// `error` and all its sources, one per line.
pub fn chain(error: &dyn Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str("\n  caused by: ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Runs a command and returns its stdout, panicking with its stderr on
/// failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (install iproute2)"));
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A named network namespace (`ip netns add`), deleted on drop.
///
/// Names contain the test process's PID and a counter, so concurrent tests
/// and concurrent test runs never collide.
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates `twt-<pid>-<n>-<tag>`.
    pub fn create(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("twt-{}-{n}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        Self { name }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/var/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        netns::named_netns_path(&self.name)
    }

    /// Runs `ip -n <name> args...` (acts inside the namespace only).
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `tc -n <name> args...`.
    pub fn tc(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("tc", &full)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth ends, qdiscs and filters.
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: cannot run ip netns del {}: {e}", self.name),
        }
    }
}

/// A directory tree on bpffs, removed (with any pins inside) on drop.
pub struct PinTree {
    root: PathBuf,
}

impl PinTree {
    /// Takes ownership of `root` (which need not exist yet).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
}

impl Drop for PinTree {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: cannot remove {}: {e}", self.root.display()),
        }
    }
}
pub mod lb;
