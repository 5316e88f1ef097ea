use std::path::PathBuf;

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab must run as root.
    #[error("the lab needs root (network namespaces, cgroups, bpffs): run as root or with sudo")]
    NotRoot,
    /// A lab name that can't be used.
    #[error("invalid lab name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// No such lab.
    #[error("lab {name:?} does not exist (create it with `tollway --lab {name} lab up`)")]
    NoSuchLab {
        /// The name.
        name: String,
    },
    /// No such node in the lab.
    #[error("lab {lab:?} has no node {node:?} (nodes: {known})")]
    NoSuchNode {
        /// The lab.
        lab: String,
        /// The node asked for.
        node: String,
        /// Nodes it has.
        known: String,
    },
    /// No such pod.
    #[error("pod {namespace}/{name} not found in lab {lab:?}")]
    NoSuchPod {
        /// The lab.
        lab: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The pod exists but has no sandbox yet.
    #[error("pod {namespace}/{name} is not running yet (phase {phase})")]
    PodNotRunning {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Its phase.
        phase: String,
    },
    /// The lab exists with a different shape.
    #[error(
        "lab {name:?} already exists with {existing} nodes (asked for {wanted}); run `tollway --lab {name} lab down` first"
    )]
    ShapeMismatch {
        /// The lab.
        name: String,
        /// Nodes it has.
        existing: usize,
        /// Nodes asked for.
        wanted: usize,
    },
    /// An external command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        stderr: String,
    },
    /// An external command could not be started.
    #[error("cannot run `{program}` ({hint}): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What to install.
        hint: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{call}: {source}")]
    Sys {
        /// What was called.
        call: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A lab file is not valid.
    #[error("{path}: {source}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// cgroup v2 is not mounted.
    #[error(
        "no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo); mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )]
    NoCgroup2,
    /// The store failed.
    #[error(transparent)]
    State(#[from] tollway_state::StateError),
    /// A write was refused.
    #[error(transparent)]
    Write(#[from] tollway_state::WriteError),
    /// Timed out waiting for something.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What.
        what: String,
        /// How long.
        seconds: u64,
    },
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LabError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(call: impl Into<String>, source: nix::Error) -> Self {
        LabError::Sys {
            call: call.into(),
            source,
        }
    }
}

/// Result alias.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
