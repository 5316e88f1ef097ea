//! The BPF filesystem (bpffs) and Tollway's pin layout.
//!
//! One kernel hosts every node of every lab, so pins are namespaced by lab and
//! node: `/sys/fs/bpf/tollway/<lab>/<node>/<map>`.

use std::path::{Path, PathBuf};

use nix::{
    errno::Errno,
    mount::{MsFlags, mount},
    sys::statfs::statfs,
};

/// Conventional bpffs mount point.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// Directory under [`BPFFS_MOUNT`] that holds all of Tollway's pins.
pub const PIN_ROOT: &str = "/sys/fs/bpf/tollway";

/// What [`ensure_bpffs`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpffsMount {
    /// `path` already was a bpffs.
    AlreadyMounted,
    /// bpffs was mounted at `path`.
    Mounted,
}

/// Errors from checking or mounting bpffs and from naming pin directories.
#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    /// `statfs` failed.
    #[error("statfs({}) failed", path.display())]
    Statfs {
        /// Path checked.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// The mount point could not be created.
    #[error("cannot create bpffs mount point {}", path.display())]
    CreateMountPoint {
        /// Mount point.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `mount -t bpf` failed (needs root / CAP_SYS_ADMIN).
    #[error("mount -t bpf bpf {} failed", path.display())]
    Mount {
        /// Mount point.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// `path` is on some other filesystem.
    #[error("{} is not on bpffs (f_type {f_type:#x}, expected {:#x})", path.display(), BPF_FS_MAGIC_VALUE)]
    NotBpffs {
        /// Path checked.
        path: PathBuf,
        /// Filesystem magic found.
        f_type: u64,
    },
    /// A lab or node name cannot be used as a pin path component.
    #[error("invalid {what} name `{name}` for a pin path: {reason}")]
    InvalidPinName {
        /// `"lab"` or `"node"`.
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// `BPF_FS_MAGIC` from `linux/magic.h`.
pub const BPF_FS_MAGIC_VALUE: u64 = 0xcafe_4a11;

/// Filesystem magic of the filesystem holding `path`.
fn fs_type(path: &Path) -> Result<u64, BpffsError> {
    let st = statfs(path).map_err(|source| BpffsError::Statfs {
        path: path.to_owned(),
        source,
    })?;
    // `f_type` is signed on some targets; the magic is a bit pattern.
    #[allow(clippy::cast_sign_loss, clippy::unnecessary_cast)]
    Ok(st.filesystem_type().0 as u64)
}

/// Whether `path` is on a bpffs.
///
/// # Errors
///
/// [`BpffsError::Statfs`] if `path` cannot be checked (e.g. it does not
/// exist).
pub fn is_bpffs(path: &Path) -> Result<bool, BpffsError> {
    Ok(fs_type(path)? == BPF_FS_MAGIC_VALUE)
}

/// Fails unless `path` is on a bpffs.
///
/// # Errors
///
/// [`BpffsError::NotBpffs`] with the filesystem found, or
/// [`BpffsError::Statfs`] if `path` cannot be checked.
pub fn require_bpffs(path: &Path) -> Result<(), BpffsError> {
    let f_type = fs_type(path)?;
    if f_type == BPF_FS_MAGIC_VALUE {
        Ok(())
    } else {
        Err(BpffsError::NotBpffs {
            path: path.to_owned(),
            f_type,
        })
    }
}

/// Makes sure `path` (normally [`BPFFS_MOUNT`]) is a bpffs, creating the
/// directory and mounting one there if it is not.
///
/// # Errors
///
/// [`BpffsError`] if the check, the directory creation or the mount fails.
pub fn ensure_bpffs(path: &Path) -> Result<BpffsMount, BpffsError> {
    if path.is_dir() && is_bpffs(path)? {
        return Ok(BpffsMount::AlreadyMounted);
    }
    std::fs::create_dir_all(path).map_err(|source| BpffsError::CreateMountPoint {
        path: path.to_owned(),
        source,
    })?;
    mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| BpffsError::Mount {
        path: path.to_owned(),
        source,
    })?;
    require_bpffs(path)?;
    Ok(BpffsMount::Mounted)
}

/// Pin directory of one lab node: `/sys/fs/bpf/tollway/<lab>/<node>`.
///
/// The names are used verbatim; they must already be valid names (see
/// [`checked_pin_dir`] for untrusted input).
pub fn pin_dir(lab: &str, node: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(lab).join(node)
}

/// Like [`pin_dir`], but rejects names that are not a single safe path
/// component (`[A-Za-z0-9._-]`, 1 to 64 bytes, not `.`/`..`).
///
/// # Errors
///
/// [`BpffsError::InvalidPinName`] for an unusable name.
pub fn checked_pin_dir(lab: &str, node: &str) -> Result<PathBuf, BpffsError> {
    check_pin_name("lab", lab)?;
    check_pin_name("node", node)?;
    Ok(pin_dir(lab, node))
}

fn check_pin_name(what: &'static str, name: &str) -> Result<(), BpffsError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > 64 {
        Some("longer than 64 bytes")
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not names")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, `.`, `_` and `-` are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BpffsError::InvalidPinName {
            what,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_dir_is_namespaced_by_lab_and_node() {
        assert_eq!(
            pin_dir("lab1", "node-a"),
            PathBuf::from("/sys/fs/bpf/tollway/lab1/node-a")
        );
        assert_eq!(
            checked_pin_dir("lab1", "node-a").expect("valid names"),
            pin_dir("lab1", "node-a")
        );
    }

    #[test]
    fn checked_pin_dir_rejects_path_tricks() {
        for (lab, node) in [("..", "n"), ("l", "a/b"), ("", "n"), ("l", "."), ("l", "é")] {
            assert!(
                matches!(
                    checked_pin_dir(lab, node),
                    Err(BpffsError::InvalidPinName { .. })
                ),
                "{lab:?}/{node:?} must be rejected"
            );
        }
    }

    #[test]
    fn magic_matches_libc() {
        #[allow(clippy::cast_sign_loss, clippy::unnecessary_cast)]
        let libc_magic = nix::sys::statfs::BPF_FS_MAGIC.0 as u64;
        assert_eq!(libc_magic, BPF_FS_MAGIC_VALUE);
    }

    #[test]
    fn proc_is_not_bpffs() {
        assert!(!is_bpffs(Path::new("/proc")).expect("statfs /proc"));
    }
}
