//! Running code inside a network namespace.
//!
//! The network namespace is a per-thread property, so code is run on a
//! dedicated thread that `setns()`es into the namespace and exits afterwards;
//! the calling thread (and the rest of the process) stays where it was.
//! Netlink sockets, interface-name lookups and sockets created by that thread
//! all act in the target namespace. (`ip netns exec` is not used: it remounts
//! `/sys`, which would hide bpffs.)

use std::{
    fs::File,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    thread,
};

use nix::sched::{CloneFlags, setns};

/// Directory where `ip netns add NAME` creates `NAME`.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// Identity of a network namespace: device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    /// Device number of the nsfs inode.
    pub dev: u64,
    /// Inode number (what `ip netns identify`/`lsns` show).
    pub ino: u64,
}

/// Errors from entering or identifying network namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened or inspected.
    #[error("cannot open network namespace {}", path.display())]
    Open {
        /// Namespace file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `setns(CLONE_NEWNET)` failed.
    #[error("setns into network namespace {} failed", path.display())]
    Setns {
        /// Namespace file.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The worker thread could not be spawned.
    #[error("cannot spawn a thread for network namespace {}", path.display())]
    Spawn {
        /// Namespace file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Path of the namespace created by `ip netns add name`.
pub fn named_netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Returns the identity of the network namespace of the calling thread.
///
/// # Errors
///
/// [`NetnsError::Open`] if `/proc/thread-self/ns/net` cannot be inspected.
pub fn current_netns() -> Result<NetnsId, NetnsError> {
    netns_id(Path::new("/proc/thread-self/ns/net"))
}

/// Returns the identity of the network namespace at `path` (e.g.
/// `/var/run/netns/NAME` or `/proc/PID/ns/net`).
///
/// # Errors
///
/// [`NetnsError::Open`] if `path` cannot be inspected.
pub fn netns_id(path: &Path) -> Result<NetnsId, NetnsError> {
    let meta = std::fs::metadata(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok(NetnsId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Runs `f` on a new thread that has entered the network namespace at
/// `path` and returns its result. The calling thread's namespace is not
/// changed.
///
/// Anything that acts on a namespace implicitly (netlink, sockets,
/// `if_nametoindex`, and aya's tc attach/detach) must be created, used and
/// dropped inside `f`.
///
/// A panic in `f` is propagated to the caller.
///
/// # Errors
///
/// [`NetnsError`] if the namespace cannot be opened or entered, or the thread
/// cannot be spawned. Errors of `f` itself are part of `T`.
pub fn run_in_netns<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let ns = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    let joined = thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("tollway-netns".to_owned())
            .spawn_scoped(scope, move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Setns {
                    path: path.to_owned(),
                    source,
                })?;
                drop(ns);
                Ok(f())
            })
            .map_err(|source| NetnsError::Spawn {
                path: path.to_owned(),
                source,
            })?;
        Ok(handle.join())
    })?;
    match joined {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
