//! The network-policy brain of the Tollway node agent: Cilium-style
//! identity-based policy.
//!
//! Pure functions and data, no I/O, no Kubernetes types:
//!
//! - Labels: security labels ([`Label`], [`LabelSet`]), selector keys
//!   ([`LabelKey`]) and the labels of a pod as Cilium computes them
//!   ([`pod_security_labels`], with Cilium's default label filter).
//! - Identities: reserved identities ([`reserved_labels`]), deterministic
//!   endpoint identity allocation ([`IdentityAllocator`]) and CIDR
//!   identities ([`CidrIdentities`], [`cidr_labels`]).
//! - Selectors: [`EndpointSelector`] and the helpers that give selectors
//!   their implicit namespace.
//! - The model: the normalized rules ([`Rule`]) the agent translates
//!   NetworkPolicy and CiliumNetworkPolicy into, and the facts about
//!   identities the compiler needs ([`PolicyContext`]).
//! - [`compile()`]: rules → per-endpoint entries of the `tw_policy` LPM trie
//!   ([`EndpointPolicy`], [`PolicyEntry`]), fitting `bpf/abi/policy.h`.
//! - [`evaluate()`] / [`lookup()`]: the verdict for one flow from the rules,
//!   and from compiled entries as the datapath computes it.

pub mod abi;
mod cluster;
mod compile;
mod evaluate;
mod identity;
mod labels;
mod model;
mod ports;
mod selector;
mod translate;

pub use abi::{
    TW_ID_ANY, TW_ID_CIDR_FIRST, TW_ID_CLUSTER_FIRST, TW_ID_HEALTH, TW_ID_HOST, TW_ID_INIT,
    TW_ID_KUBE_APISERVER, TW_ID_REMOTE_NODE, TW_ID_UNMANAGED, TW_ID_WORLD, TW_POLICY_ENTRIES_MAX,
};
pub use cluster::{
    ClusterObjects, ClusterPolicy, IpKind, IpcacheWant, PodIdentity, cluster_policy,
    identity_labels, identity_table, namespace_labels, pod_labels, security_labels_map,
    wanted_label_sets,
};
pub use compile::{EndpointPolicy, PolicyEntry, compile, compile_each, compile_endpoint};
pub use evaluate::{Flow, Verdict, evaluate, lookup};
pub use identity::{
    CidrIdentities, IdentityAllocator, cidr_labels, identity_cidr, reserved_identities,
    reserved_labels,
};
pub use labels::{
    CLUSTER_NAME, LABEL_CLUSTER, LABEL_NAMESPACE_LABELS_PREFIX, LABEL_POD_NAMESPACE,
    LABEL_SERVICE_ACCOUNT, Label, LabelKey, LabelSet, SOURCE_ANY, SOURCE_CIDR, SOURCE_K8S,
    SOURCE_RESERVED, is_identity_relevant, pod_security_labels,
};
pub use model::{
    Action, Direction, Entity, NamedPort, Peer, PolicyContext, PortSpec, Proto, Rule, policy_cidrs,
};
pub use ports::{prefix_covers, range_to_prefixes};
pub use selector::{EndpointSelector, LabelSelector, Operator, Requirement};
pub use translate::{Translated, cilium_policy_rules, network_policy_rules, translate_all};

/// Why labels, identities or a policy cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A label string is not `source:key[=value]`.
    #[error("invalid label {input:?}: {reason}")]
    InvalidLabel {
        /// The text.
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A selector key is empty or has an empty source.
    #[error("invalid selector key {input:?}")]
    InvalidLabelKey {
        /// The key as written.
        input: String,
    },
    /// A selector operator is not `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("invalid selector operator {operator:?}")]
    InvalidOperator {
        /// The operator as written.
        operator: String,
    },
    /// An existing identity is outside the range of its kind.
    #[error("identity {identity} is outside {first}..={last}")]
    IdentityOutOfRange {
        /// The identity.
        identity: u32,
        /// The first identity of the range.
        first: u32,
        /// The last.
        last: u32,
    },
    /// Two existing identities have the same labels.
    #[error("identities {first} and {second} have the same labels {labels}")]
    DuplicateIdentity {
        /// The lower identity.
        first: u32,
        /// The other.
        second: u32,
        /// Their labels.
        labels: String,
    },
    /// Every identity of the range is taken.
    #[error("no free identity left in {first}..={last}")]
    IdentitiesExhausted {
        /// The first identity of the range.
        first: u32,
        /// The last.
        last: u32,
    },
    /// A port range ends before it starts.
    #[error("rule {rule_id} ({origin}): port range {port}-{end_port} ends before it starts")]
    InvalidPortRange {
        /// The rule's id.
        rule_id: u32,
        /// The rule's origin.
        origin: String,
        /// The first port.
        port: u16,
        /// The last port.
        end_port: u16,
    },
    /// A policy manifest says something the translator cannot express
    /// (validation normally rejects it first).
    #[error("{origin}: {field}: {reason}")]
    Untranslatable {
        /// The rule's origin (`payments/name ingress[0]`).
        origin: String,
        /// The field path inside the rule.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// An endpoint's policy does not fit its inner map.
    #[error("identity {identity} would need {needed} policy entries; at most {max} fit")]
    TooManyEntries {
        /// The endpoint identity.
        identity: u32,
        /// Entries its policy needs.
        needed: usize,
        /// `TW_POLICY_ENTRIES_MAX`.
        max: usize,
    },
}
