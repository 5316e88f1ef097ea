//! The Kubernetes API as a source of desired state for the node agent
//! (`tollway agent --kubernetes`), next to the lab's file store.
//!
//! - [`registry`]: the kinds that are watched, one entry each: where the
//!   API serves them ([`kube::discovery::ApiResource`]) and how an object
//!   becomes a [`tollway_api::Object`] (through tollway-api's decoder, so
//!   validation is the lab's). A kind added later is one more entry.
//! - [`mirror`]: the local copy ([`tollway_state::Snapshot`], plus the raw
//!   objects of kinds tollway-api has no type for yet) and the journal of
//!   what changed ([`Changes`], the shape of the agent's delta).
//! - [`KubeSource`]: one kube-runtime watcher per kind (list, then watch
//!   with bookmarks, resume after errors with back-off, relist on 410
//!   Gone), on a tokio runtime in a thread of its own; changes reach the
//!   caller through a channel. While the API server is unreachable the
//!   mirror keeps the last state; [`KubeReport`] says so.
//! - [`identity`]: security identities agreed across nodes, allocated as
//!   `tollway.io/v1alpha1` `TollwayIdentity` objects (named by number, as
//!   Cilium's CiliumIdentity), and the garbage collection of those no pod
//!   uses (mark, then delete after a grace, both under resourceVersion
//!   preconditions), run by the agent of the lowest-named node.

mod error;
pub mod identity;
pub mod mirror;
mod oneshot;
pub mod registry;
mod report;
mod source;

pub use error::KubeError;
pub use identity::{IDENTITY_GROUP, IDENTITY_KIND, IDENTITY_PLURAL, IDENTITY_VERSION};
pub use mirror::{AnyKey, Changes, Mirror, RawKey, Update};
pub use oneshot::{Listed, list_snapshot};
pub use registry::{Conversion, Converted, KindEntry, KindRegistry, Produces};
pub use report::{IdentityGcReport, KindReport, KubeReport};
pub use source::{Backoff, ClientSpec, KubeSource, Polled, SourceOptions, node_pod_cidr};
