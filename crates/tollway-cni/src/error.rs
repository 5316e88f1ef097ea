//! The plugin's errors and their CNI error codes.
//!
//! Codes 0-99 are the spec's well-known ones; 100+ are Tollway's own:
//!
//! | code | meaning |
//! |---|---|
//! | 1 | incompatible CNI version |
//! | 2 | unsupported field in the network configuration |
//! | 3 | container unknown or does not exist (its netns, its allocation) |
//! | 4 | invalid necessary environment variable (`CNI_*`) |
//! | 5 | I/O failure (data or agent directory) |
//! | 6 | failed to decode content (stdin is not JSON) |
//! | 7 | invalid network configuration |
//! | 11 | try again later (the IPAM lock stayed busy) |
//! | 50 | STATUS: the plugin cannot serve ADDs now |
//! | 100 | an iproute2 command failed |
//! | 101 | the address range is exhausted |
//! | 102 | `CNI_IFNAME` already exists in the container (not made by us) |
//! | 103 | CHECK found the network not as ADD made it |

use std::path::PathBuf;

/// Errors of the plugin; each maps to one CNI error code ([`CniError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The configuration's `cniVersion` is not one this plugin speaks.
    #[error("CNI version {version:?} is not supported by {command} (supported: {supported})")]
    IncompatibleVersion {
        /// What was asked for.
        version: String,
        /// The command.
        command: &'static str,
        /// What we support for it.
        supported: String,
    },
    /// A configuration field this plugin does not implement.
    #[error("unsupported field {field:?} in the network configuration: {reason}")]
    UnsupportedField {
        /// The field.
        field: String,
        /// Why (and what to do instead).
        reason: String,
    },
    /// The container (its network namespace or its allocation) is unknown.
    #[error("container {container_id}: {reason}")]
    UnknownContainer {
        /// `CNI_CONTAINERID`.
        container_id: String,
        /// What is missing.
        reason: String,
    },
    /// A `CNI_*` environment variable is missing or malformed.
    #[error("environment variable {name}: {reason}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        reason: String,
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
    /// stdin (or a stored file) is not valid JSON.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was decoded.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The network configuration is invalid.
    #[error("invalid network configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field (JSON path).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A transient condition: retry.
    #[error("{what} stayed busy for {seconds}s; try again later")]
    TryAgainLater {
        /// What was busy.
        what: String,
        /// How long we waited.
        seconds: u64,
    },
    /// STATUS: the plugin cannot serve ADDs now.
    #[error("the plugin is not ready: {reason}")]
    NotReady {
        /// Why.
        reason: String,
    },
    /// An iproute2 command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line (and batch script).
        command: String,
        /// What it printed.
        stderr: String,
    },
    /// An iproute2 command could not be started.
    #[error("cannot run `{program}` (install iproute2): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No free address in the range.
    #[error("no free address in {range} ({allocated} allocated)")]
    PoolExhausted {
        /// The range.
        range: String,
        /// How many are allocated.
        allocated: usize,
    },
    /// The container interface exists already and is not ours.
    #[error("interface {ifname} already exists in network namespace {netns}")]
    InterfaceExists {
        /// `CNI_IFNAME`.
        ifname: String,
        /// `CNI_NETNS`.
        netns: String,
    },
    /// CHECK found differences.
    #[error("CHECK of {container_id}/{ifname} failed: {problems}")]
    CheckFailed {
        /// `CNI_CONTAINERID`.
        container_id: String,
        /// `CNI_IFNAME`.
        ifname: String,
        /// Every difference found, `; `-separated.
        problems: String,
    },
}

impl CniError {
    /// The CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion { .. } => 1,
            CniError::UnsupportedField { .. } => 2,
            CniError::UnknownContainer { .. } => 3,
            CniError::InvalidEnv { .. } => 4,
            CniError::Io { .. } | CniError::Spawn { .. } => 5,
            CniError::Decode { .. } => 6,
            CniError::InvalidConfig { .. } => 7,
            CniError::TryAgainLater { .. } => 11,
            CniError::NotReady { .. } => 50,
            CniError::Command { .. } => 100,
            CniError::PoolExhausted { .. } => 101,
            CniError::InterfaceExists { .. } => 102,
            CniError::CheckFailed { .. } => 103,
        }
    }

    /// The spec's error JSON: `msg` is the whole message (libcni shows it
    /// as the error), `details` the command and its output where an
    /// iproute2 command failed.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code(),
            "msg": self.to_string(),
        });
        if let CniError::Command { command, .. } = self {
            v["details"] = serde_json::json!(command);
        }
        v
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CniError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CniError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias.
pub type Result<T, E = CniError> = std::result::Result<T, E>;
