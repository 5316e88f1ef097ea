//! Starting processes inside a network namespace and a cgroup, and keeping
//! track of processes across restarts of the lab daemon.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};
use crate::sys::netns;

/// Where a new process goes.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Named network namespace to enter.
    pub netns: Option<String>,
    /// cgroup directory to join.
    pub cgroup: Option<PathBuf>,
    /// Start a new session (so that the process outlives its parent's
    /// terminal and can be signalled as a group).
    pub new_session: bool,
    /// The pod's `/etc/resolv.conf` (kubelet's ClusterFirst file): the
    /// process gets a mount namespace of its own (a slave of the host's, so
    /// the host's later mounts still reach it) with this file bound over
    /// `/etc/resolv.conf`. None: the host's.
    pub resolv_conf: Option<PathBuf>,
}

/// The C strings a resolv.conf bind mount needs, made before the fork.
struct ResolvMount {
    source: std::ffi::CString,
    target: std::ffi::CString,
}

/// A `pre_exec` hook that moves the child into its place. Files are opened
/// here, before the fork; the hook itself only makes async-signal-safe
/// system calls.
pub fn pre_exec_hook(
    p: &Placement,
) -> Result<impl FnMut() -> io::Result<()> + Send + Sync + 'static> {
    let ns: Option<File> = p.netns.as_deref().map(netns::open).transpose()?;
    let cg: Option<File> = match &p.cgroup {
        Some(dir) => {
            let f = dir.join("cgroup.procs");
            Some(
                OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .map_err(|e| LabError::io("opening", f, e))?,
            )
        }
        None => None,
    };
    let new_session = p.new_session;
    let target = Path::new("/etc/resolv.conf");
    // Without a file to bind over (a host with no resolv.conf), the host's
    // nothing stays.
    let resolv = match &p.resolv_conf {
        Some(src) if target.exists() => {
            let c = |p: &Path| {
                std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| {
                    LabError::io(
                        "naming",
                        p.to_path_buf(),
                        io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
                    )
                })
            };
            Some(ResolvMount {
                source: c(src)?,
                target: c(target)?,
            })
        }
        _ => None,
    };
    Ok(move || {
        // SAFETY: plain system calls on descriptors owned by this closure,
        // with no allocation: allowed between fork and exec.
        unsafe {
            if let Some(cg) = &cg {
                // "0" moves the writing process.
                if libc::write(cg.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(ns) = &ns
                && libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if new_session && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(m) = &resolv {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let root = c"/";
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::mount(
                    m.source.as_ptr(),
                    m.target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    })
}

/// A process's start time in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the PID, it names a process uniquely.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process is alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Open a pidfd for a process (readable once it exits; works for processes
/// that are not our children, which is how a restarted daemon adopts pods).
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(LabError::sys(
            format!("pidfd_open({pid})"),
            nix::Error::last(),
        ));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Open (append) a log file for a process's output.
pub fn log_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating", dir, e))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LabError::io("opening", path, e))
}

/// Whether we run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
