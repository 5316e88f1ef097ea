use std::path::PathBuf;

/// Errors of the Kubernetes source.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No configuration could be found (not in a pod, no kubeconfig).
    #[error("cannot find a Kubernetes configuration (in-cluster or kubeconfig): {source}")]
    Infer {
        /// kube's error.
        #[source]
        source: kube::config::InferConfigError,
    },
    /// The kubeconfig given could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// kube's error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The client could not be built from the configuration.
    #[error("building the Kubernetes client for {url}: {source}")]
    Client {
        /// The API server.
        url: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// A one-off API request failed.
    #[error("{what}: {source}")]
    Request {
        /// What was asked.
        what: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// The runtime of the watchers could not start.
    #[error("cannot start the Kubernetes watchers' {what}: {source}")]
    Runtime {
        /// The thread or the runtime.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The watchers' thread stopped before it was ready.
    #[error("the Kubernetes watchers' thread stopped")]
    Stopped,
    /// A request about identities failed.
    #[error("identity for {labels}: {action}: {source}")]
    Identity {
        /// The label set.
        labels: String,
        /// What was being done (`listing`, `creating 256`, ...).
        action: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// Others kept taking the numbers this allocator tried.
    #[error("identity for {labels}: no number after {attempts} attempts (conflicts)")]
    IdentityConflicts {
        /// The label set.
        labels: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A request of the identities' garbage collection failed.
    #[error("identity garbage collection: {action}: {source}")]
    IdentityGc {
        /// What was being done (`listing`, `marking 300`, `deleting 300`).
        action: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// Every endpoint identity number is taken.
    #[error("identity for {labels}: every number {first}..={last} is taken")]
    IdentitiesExhausted {
        /// The label set.
        labels: String,
        /// First endpoint identity.
        first: u32,
        /// Last endpoint identity.
        last: u32,
    },
}
