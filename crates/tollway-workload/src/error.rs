//! The error type shared by `serve` and `probe`.

use std::io;
use std::net::SocketAddr;

/// Everything that can make `tollway workload serve` or `probe` fail as a whole.
///
/// Failures of a single probe attempt (refused, timeout, ...) are not errors: they are
/// recorded in the [`ProbeReport`](crate::probe::ProbeReport).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A listener could not be bound (address in use, permission denied, ...).
    #[error("cannot bind the {protocol} listener on {addr}: {source}")]
    Bind {
        /// `"http"`, `"tcp"` or `"udp"`.
        protocol: &'static str,
        /// The address that was asked for.
        addr: SocketAddr,
        /// The underlying socket error.
        #[source]
        source: io::Error,
    },
    /// No `--name`, no `POD_NAME` and the hostname could not be read.
    #[error(
        "cannot determine the pod name (no --name, POD_NAME unset, hostname unreadable): {source}"
    )]
    PodName {
        /// The error from reading the hostname.
        #[source]
        source: io::Error,
    },
    /// The pod name cannot be sent in the `x-pod-name` header.
    #[error("pod name {name:?} is not a valid HTTP header value")]
    InvalidPodName {
        /// The rejected name.
        name: String,
    },
    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        /// `"SIGTERM"` or `"SIGINT"`.
        signal: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The probe target is not `http://host[:port][/path][?query]`, `tcp://host:port` or
    /// `udp://host:port`.
    #[error("invalid probe target {target:?}: {reason}")]
    InvalidTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--header` is not `Name: value` or is not valid HTTP.
    #[error("invalid header {header:?}: {reason}")]
    InvalidHeader {
        /// The header as given.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `--method` is not a valid HTTP method token.
    #[error("invalid HTTP method {method:?}")]
    InvalidMethod {
        /// The method as given.
        method: String,
    },
    /// `--count` must be at least 1.
    #[error("invalid --count {count}: at least one attempt is needed")]
    InvalidCount {
        /// The count as given.
        count: u32,
    },
    /// A probe option does not fit the target or the other options (`--hold-ms` without a
    /// tcp:// target, `--local-port 0`, ...).
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// The flag, like `"--hold-ms"`.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The probe report could not be rendered as JSON.
    #[error("cannot serialize the probe report: {source}")]
    Serialize {
        /// The serde_json error.
        #[source]
        source: serde_json::Error,
    },
}
