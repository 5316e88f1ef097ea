//! Desired state: where the objects live and how they change.
//!
//! - [`Snapshot`]: a consistent view of every object at one resource version.
//! - [`StateSource`]: what a consumer (the lab daemon, later the node agent)
//!   reads: the file store by default, the Kubernetes API later.
//! - [`FileStore`]: the lab's store, one JSON file written atomically under
//!   an exclusive lock, with a version file that watchers poll.
//! - [`registry`]: the API server's rules for writes: all-or-nothing apply,
//!   namespaces that must exist, cluster IP and node port allocation,
//!   immutable fields, graceful deletion.

// Manifest errors are cold-path values carrying file, object and field.
#![allow(clippy::result_large_err)]

mod error;
pub mod file;
pub mod registry;
mod snapshot;

pub use error::StateError;
pub use file::FileStore;
pub use file::{Event, Txn, WatchResult, Watcher};
pub use registry::{
    ApplyAction, ApplyOutcome, ClusterConfig, DeleteOptions, DeleteOutcome, WriteError,
};
pub use snapshot::Snapshot;

/// Something that serves the desired state.
pub trait StateSource {
    /// A cheap number that changes whenever any object changes.
    fn version(&self) -> Result<u64, StateError>;
    /// Every object, consistently.
    fn snapshot(&self) -> Result<Snapshot, StateError>;
}
