//! What the datapath needs from the kernel, checked at the agent's start so
//! that a missing feature is one clear error instead of a verifier log.
//!
//! | need | since | used for |
//! |---|---|---|
//! | BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`) | 5.8 | flow events |
//! | cgroup `getpeername4`/`recvmsg4` hooks | 5.8 | socket LB |
//! | `bpf_loop` | 5.17 | NodePort SNAT port search |
//! | BTF (`/sys/kernel/btf/vmlinux`) | 5.4 (with CONFIG_DEBUG_INFO_BTF) | loading with aya |
//! | bpffs mounted | - | pinned maps (the agent mounts it if it can) |
//! | cgroup v2 mounted | - | the socket LB's cgroup programs |

use std::path::Path;

/// The oldest kernel with every helper the programs call.
pub const MIN_KERNEL: (u32, u32) = (5, 17);

/// A missing kernel feature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    /// The kernel is too old for a helper or map type the programs use.
    #[error(
        "kernel {release} is too old: Tollway's datapath needs Linux {}.{} or newer (bpf_loop 5.17 for NodePort SNAT, BPF ring buffers 5.8 for flow events, cgroup getpeername4 5.8 for the socket LB)",
        MIN_KERNEL.0, MIN_KERNEL.1
    )]
    OldKernel {
        /// `uname -r`.
        release: String,
    },
    /// The kernel release could not be read or parsed.
    #[error("cannot read the kernel release ({detail})")]
    Release {
        /// Why.
        detail: String,
    },
    /// No BTF for the running kernel.
    #[error(
        "the kernel has no BTF ({path} is missing): build it with CONFIG_DEBUG_INFO_BTF=y (every major distribution does since 2021)"
    )]
    NoBtf {
        /// Where BTF was looked for.
        path: String,
    },
    /// No cgroup v2 mount.
    #[error(
        "no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo): the socket LB attaches to cgroup v2; boot with systemd's unified hierarchy or mount one with `mount -t cgroup2 none /sys/fs/cgroup`"
    )]
    NoCgroup2,
}

/// Parses "6.18.44-fc-v657" into (6, 18).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Checks a kernel release string against [`MIN_KERNEL`].
pub fn check_release(release: &str) -> Result<(), ProbeError> {
    let v = parse_release(release).ok_or_else(|| ProbeError::Release {
        detail: format!("unparsable release {release:?}"),
    })?;
    if v < MIN_KERNEL {
        return Err(ProbeError::OldKernel {
            release: release.to_string(),
        });
    }
    Ok(())
}

/// Whether /proc/self/mountinfo's text has a cgroup2 mount.
pub fn has_cgroup2(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| {
        l.split(" - ")
            .nth(1)
            .is_some_and(|fs| fs.split_whitespace().next() == Some("cgroup2"))
    })
}

/// Probes the running kernel: release, BTF and cgroup v2 (bpffs is mounted
/// by the loader's caller). Every problem found is returned, not only the
/// first.
pub fn probe() -> Vec<ProbeError> {
    let mut problems = Vec::new();
    match nix::sys::utsname::uname() {
        Ok(u) => {
            if let Err(e) = check_release(&u.release().to_string_lossy()) {
                problems.push(e);
            }
        }
        Err(e) => problems.push(ProbeError::Release {
            detail: e.to_string(),
        }),
    }
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    if !btf.exists() {
        problems.push(ProbeError::NoBtf {
            path: btf.display().to_string(),
        });
    }
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(m) if has_cgroup2(&m) => {}
        _ => problems.push(ProbeError::NoCgroup2),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("5.10.0-28-amd64"), Some((5, 10)));
        assert!(check_release("6.1.0").is_ok());
        assert!(check_release("5.17.0").is_ok());
        assert!(matches!(
            check_release("5.15.0-91-generic"),
            Err(ProbeError::OldKernel { .. })
        ));
        assert!(matches!(
            check_release("weird"),
            Err(ProbeError::Release { .. })
        ));
        let msg = check_release("5.10.0").unwrap_err().to_string();
        assert!(msg.contains("5.17") && msg.contains("5.10.0"), "{msg}");
    }

    #[test]
    fn cgroup2_in_mountinfo() {
        let with = "29 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        let without = "22 1 0:21 / /proc rw - proc proc rw\n";
        assert!(has_cgroup2(with));
        assert!(!has_cgroup2(without));
    }

    #[test]
    fn this_machine_has_what_the_tests_need() {
        // The lab tests run here: a probe failure would be a wrong probe.
        assert_eq!(probe(), Vec::new());
    }
}
