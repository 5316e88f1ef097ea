//! The benchmark's errors.

use std::path::PathBuf;

/// What can go wrong in a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A system call or file operation failed.
    #[error("{action} {what}: {source}")]
    Io {
        /// What was being done ("binding", "reading", ...).
        action: &'static str,
        /// On what.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A command the harness ran failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line (shortened).
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A command's output was not what was expected.
    #[error("`{command}`: unexpected output ({reason}): {output}")]
    Output {
        /// The command line (shortened).
        command: String,
        /// Why it is not usable.
        reason: String,
        /// The start of the output.
        output: String,
    },
    /// Waited too long.
    #[error("timed out after {seconds:.0} s waiting for {what}")]
    Timeout {
        /// For what.
        what: String,
        /// How long.
        seconds: f64,
    },
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The lab's own libraries.
    #[error("lab: {0}")]
    Lab(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Writing the results.
    #[error("writing {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// JSON encoding.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A synthetic object the generator made does not parse (a bug).
    #[error("synthetic object: {0}")]
    Synthetic(String),
    /// The policy library refused the synthetic cluster.
    #[error("policy: {0}")]
    Policy(#[from] tollway_policy::PolicyError),
    /// The kernel refused a policy trie.
    #[error("policy trie: {0}")]
    Maps(#[from] tollway_datapath::lb::MapsError),
}

impl BenchError {
    pub(crate) fn io(
        action: &'static str,
        what: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        BenchError::Io {
            action,
            what: what.into(),
            source,
        }
    }
}
