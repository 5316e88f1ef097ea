//! Named network namespaces (`/var/run/netns/NAME`, as iproute2 makes them).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

use crate::error::{LabError, Result};
use crate::sys::cmd;

/// Where iproute2 keeps named namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// The bind-mount of a named namespace.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Create a named namespace with `lo` up (idempotent).
pub fn add(name: &str) -> Result<()> {
    if !exists(name) {
        cmd::ip(None, &["netns", "add", name])?;
    }
    cmd::ip(Some(name), &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Delete a named namespace (idempotent). Links inside it go with it; a
/// veth's peer in another namespace goes too.
pub fn delete(name: &str) -> Result<()> {
    if exists(name) {
        cmd::ip(None, &["netns", "delete", name])?;
    }
    Ok(())
}

/// Names of namespaces starting with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io("listing", NETNS_DIR, e)),
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    out.sort();
    Ok(out)
}

/// Open a namespace for `setns`.
pub fn open(name: &str) -> Result<File> {
    let p = path(name);
    File::open(&p).map_err(|e| LabError::io("opening network namespace", p, e))
}

/// Run `f` on a thread that has entered the namespace (the calling thread's
/// namespace is never changed).
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = open(name)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| LabError::sys(format!("setns into {name}"), e))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(LabError::Command {
                command: format!("task in network namespace {name}"),
                stderr: "panicked".into(),
            })
        })
    })
}

/// Set sysctls (`net.ipv4.ip_forward` = `1`, ...) inside a namespace.
pub fn sysctls(name: &str, settings: &[(&str, &str)]) -> Result<()> {
    run_in(name, || {
        for (key, value) in settings {
            let p = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&p, value).map_err(|e| LabError::io("writing", &p, e))?;
        }
        Ok(())
    })
}

/// Read a sysctl inside a namespace.
pub fn sysctl(name: &str, key: &str) -> Result<String> {
    run_in(name, || {
        let p = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| LabError::io("reading", &p, e))
    })
}
