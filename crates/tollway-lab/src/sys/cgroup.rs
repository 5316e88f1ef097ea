//! cgroup v2: the lab's own subtree `<cgroup2 mount>/tollway/<lab>/...`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// The cgroup2 mount point, from `/proc/self/mountinfo` (it is
/// `/sys/fs/cgroup` on most Kubernetes nodes, `/sys/fs/cgroup/unified` on
/// hybrid hosts).
pub fn mount_point() -> Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| LabError::io("reading", "/proc/self/mountinfo", e))?;
    for line in text.lines() {
        // ... mount-point ... - fstype source options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2")
            && let Some(mp) = left.split_whitespace().nth(4)
        {
            return Ok(PathBuf::from(mp.replace("\\040", " ")));
        }
    }
    Err(LabError::NoCgroup2)
}

/// Create a cgroup directory (and its parents).
pub fn create(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| LabError::io("creating cgroup", path, e))
}

/// PIDs directly in a cgroup.
pub fn procs(path: &Path) -> Result<Vec<i32>> {
    let p = path.join("cgroup.procs");
    match fs::read_to_string(&p) {
        Ok(t) => Ok(t.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(LabError::io("reading", p, e)),
    }
}

/// Whether any process is in the cgroup or below it.
pub fn populated(path: &Path) -> bool {
    match fs::read_to_string(path.join("cgroup.events")) {
        Ok(t) => t.lines().any(|l| l.trim() == "populated 1"),
        Err(_) => false,
    }
}

/// Every descendant cgroup, deepest first.
fn descendants(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(descendants(&e.path()));
                out.push(e.path());
            }
        }
    }
    out
}

/// Send `signal` to every process in the subtree.
pub fn signal_all(path: &Path, signal: nix::sys::signal::Signal) -> Result<()> {
    let mut all = descendants(path);
    all.push(path.to_path_buf());
    for cg in all {
        for pid in procs(&cg)? {
            // The process may be gone already.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
    Ok(())
}

/// Kill every process in the subtree and wait until it is empty.
pub fn kill_all(path: &Path, timeout: Duration) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kill_file = path.join("cgroup.kill");
    let deadline = Instant::now() + timeout;
    while populated(path) {
        if kill_file.exists() {
            fs::write(&kill_file, "1").map_err(|e| LabError::io("writing", &kill_file, e))?;
        } else {
            signal_all(path, nix::sys::signal::Signal::SIGKILL)?;
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: format!("the processes of cgroup {} to exit", path.display()),
                seconds: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Remove a cgroup subtree whose processes are gone.
pub fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    for cg in descendants(path).into_iter().chain([path.to_path_buf()]) {
        match fs::remove_dir(&cg) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io("removing cgroup", cg, e)),
        }
    }
    Ok(())
}

/// The cgroup (relative to the cgroup2 root) of a process.
pub fn of_pid(pid: i32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}
