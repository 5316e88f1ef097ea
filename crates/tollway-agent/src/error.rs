/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The lab or its node is unknown.
    #[error(transparent)]
    Lab(#[from] tollway_lab::LabError),
    /// The store failed.
    #[error(transparent)]
    State(#[from] tollway_state::StateError),
    /// The Kubernetes source could not start.
    #[error(transparent)]
    Kube(#[from] tollway_kube::KubeError),
    /// bpffs could not be mounted (Kubernetes mode; the lab mounts it).
    #[error(transparent)]
    Bpffs(#[from] tollway_datapath::bpffs::BpffsError),
    /// The Node object's InternalIP is not an IPv4 address.
    #[error(
        "node {node}: InternalIP {address:?} is not an IPv4 address (the datapath is IPv4 only)"
    )]
    NodeAddress {
        /// The node.
        node: String,
        /// The address found.
        address: String,
    },
    /// Loading or attaching programs failed.
    #[error(transparent)]
    Load(#[from] tollway_datapath::lb::LoadError),
    /// A map operation failed.
    #[error(transparent)]
    Maps(#[from] tollway_datapath::lb::MapsError),
    /// Planning failed (ids exhausted, bad Maglev size).
    #[error(transparent)]
    Plan(#[from] tollway_lb::LbError),
    /// The policy could not be compiled (the previous one stays).
    #[error("compiling network policy: {message}")]
    Policy {
        /// Why.
        message: String,
    },
    /// The Maglev table size is not a prime.
    #[error(
        "maglev table size {m} is not a prime (Cilium's sizes: 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)"
    )]
    MaglevSize {
        /// The size.
        m: u32,
    },
    /// An interface of the node is missing.
    #[error("interface {ifname} not found in node {node}'s network namespace")]
    NoInterface {
        /// Interface name.
        ifname: String,
        /// Node.
        node: String,
    },
    /// The kernel lacks what the datapath needs.
    #[error("the kernel cannot run Tollway's datapath: {}", problems.join("; "))]
    Kernel {
        /// Each missing feature, with what to do.
        problems: Vec<String>,
    },
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The flow server could not listen.
    #[error("flow server: cannot listen on {addr}: {source}")]
    Listen {
        /// The socket path or address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file of the agent could not be written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Installing or reading the node routes failed.
    #[error("node routes: {action}: {message}")]
    Route {
        /// The command or step.
        action: String,
        /// Why.
        message: String,
    },
}
