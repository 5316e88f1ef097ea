//! The load-balancing brain of the Tollway node agent.
//!
//! Pure functions, no I/O, no clock, no randomness:
//!
//! - [`desired_services`]: Kubernetes Services, Pods and EndpointSlices →
//!   the frontends this node serves and their backends ([`DesiredService`]),
//!   with Kubernetes' rules (readiness, terminating endpoints, named ports,
//!   traffic policies, session affinity, the algorithm annotation; the
//!   selector's pods or, without a selector, the Service's EndpointSlices;
//!   ClusterIP, NodePort, LoadBalancer and external-IP frontends).
//! - [`maglev_table`]: Maglev consistent hashing, identical on every node.
//! - [`plan`]: the difference between what the BPF maps hold ([`Applied`],
//!   read back by the agent) and the desired state, as an ordered list of
//!   map writes ([`Op`]) such that no packet ever sees a half-written
//!   service; [`apply_to`] models what executing an op does.

//!
//! Incrementally, for one change among many services:
//!
//! - [`DesiredState`] keeps Services, Pods (a [`PodIndex`]) and
//!   EndpointSlices (a [`SliceIndex`]), each
//!   service's frontends, who wins a contested frontend and the
//!   [`BackendDemand`]; after a change it names the frontends to re-plan and
//!   their desired services ([`DesiredState::pending`]);
//! - [`plan_scoped`] plans just those frontends, with the indexes
//!   [`Applied`] keeps, giving the ops [`plan`] would give.

mod desired;
pub mod flags;
mod incremental;
mod maglev;
mod model;
mod plan;

pub use desired::{
    DesiredWarning, PodIndex, SliceIndex, affected_services, desired_services,
    desired_services_indexed,
};
pub use incremental::DesiredState;
pub use maglev::{DEFAULT_M, is_prime, maglev_table};
pub use model::{
    Algorithm, BackendAddr, DesiredService, Frontend, FrontendKind, LbConfig, NodeContext, Proto,
    Scope, ServiceKey, ServiceName, SourceRange,
};
pub use plan::{
    Applied, AppliedBackend, AppliedService, BackendDemand, Inconsistency, Op, apply_to, matches,
    mismatch, plan, plan_scoped,
};

/// Why a Maglev table or a plan cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LbError {
    /// The Maglev table size must be prime.
    #[error("Maglev table size M={m} is not prime")]
    MaglevNotPrime {
        /// The configured M.
        m: u32,
    },
    /// The Maglev table must be larger than the backend count.
    #[error("Maglev table size M={m} must be larger than the number of backends ({backends})")]
    MaglevTooSmall {
        /// The configured M.
        m: u32,
        /// The service's backend count.
        backends: usize,
    },
    /// Two desired services have the same frontend.
    #[error("frontend {frontend} is wanted by both {first} and {second}")]
    DuplicateFrontend {
        /// The frontend.
        frontend: Frontend,
        /// The first service that wants it (`namespace/name:port`).
        first: String,
        /// The second.
        second: String,
    },
    /// A service has more active backends than slots can number.
    #[error("frontend {frontend} ({service}) has {backends} active backends; at most 65535 fit")]
    TooManyBackends {
        /// The frontend.
        frontend: Frontend,
        /// Its service (`namespace/name:port`).
        service: String,
        /// The active backend count.
        backends: usize,
    },
    /// No free backend id is left.
    #[error("no free backend id left ({in_use} in use)")]
    BackendIdsExhausted {
        /// Ids in use.
        in_use: usize,
    },
    /// No free reverse-NAT index is left.
    #[error("no free reverse-NAT index left ({in_use} in use, at most 65535)")]
    RevNatExhausted {
        /// Indexes in use.
        in_use: usize,
    },
    /// A scoped plan would have to change a frontend outside its scope, or
    /// its inputs disagree (see [`plan_scoped`]).
    #[error("scoped plan: frontend {frontend}: {reason}")]
    OutOfScope {
        /// The frontend.
        frontend: Frontend,
        /// Why.
        reason: &'static str,
    },
    /// The desired state does not fit in a BPF map.
    #[error("{map} would need {needed} entries; it holds {max}")]
    MapFull {
        /// The map name, e.g. `tw_lb4_backends`.
        map: &'static str,
        /// Entries the desired state needs.
        needed: usize,
        /// The map's capacity (`bpf/abi/lb.h`).
        max: usize,
    },
}
