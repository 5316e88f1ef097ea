//! The source's health, as `tollway status` shows it.

use serde::{Deserialize, Serialize};

/// One watched kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindReport {
    /// The kind (`Pod`, `TollwayIdentity`, ...).
    pub kind: String,
    /// Objects in the mirror.
    pub objects: usize,
    /// The first list is done.
    pub synced: bool,
    /// False when the API server does not serve the kind (a CRD that is
    /// not installed: the kind counts as empty until it is).
    pub served: bool,
    /// The watch's last error, cleared by its next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The Kubernetes source's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeReport {
    /// The API server's URL.
    pub api_server: String,
    /// Its version (`v1.31.2`), once it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The API server answered the last request (watch, list or health
    /// probe). While false the agent keeps the last state it had.
    pub connected: bool,
    /// Every kind has been listed once.
    pub synced: bool,
    /// Last event received from a watch (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    /// Last error (transport or API), with its time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last error happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// Lists done after the first one (410 Gone, expired continue tokens).
    pub relists: u64,
    /// Objects refused by the decoder (skipped), in all.
    pub rejected: u64,
    /// The last refusals' messages (at most 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_rejections: Vec<String>,
    /// Identities this agent created.
    pub identities_created: u64,
    /// The last identity allocation error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_error: Option<String>,
    /// Identities this agent took back from the garbage collection (it
    /// removed their mark: its pods use them again).
    #[serde(default)]
    pub identities_reclaimed: u64,
    /// The garbage collection of unused identities (None: off, the source
    /// was given no node name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_gc: Option<IdentityGcReport>,
    /// Each kind.
    pub kinds: Vec<KindReport>,
}

/// The garbage collection of unused identities, as this agent sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IdentityGcReport {
    /// This agent's node.
    pub node: String,
    /// The node whose agent collects: the lowest node name in the mirror
    /// (None: no Node object yet). Passes run here only if it is `node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// Time between passes, in seconds.
    pub interval_seconds: u64,
    /// How long an identity stays marked before it is deleted, in seconds.
    pub grace_seconds: u64,
    /// Passes completed by this agent.
    pub passes: u64,
    /// Identities this agent marked unused, in all.
    pub marked: u64,
    /// Marks this agent's passes removed (the identity was used again).
    pub unmarked: u64,
    /// Identities this agent deleted, in all.
    pub deleted: u64,
    /// Writes refused because the identity had changed or gone since the
    /// pass listed it (someone reclaimed, marked or deleted it first).
    pub conflicts: u64,
    /// Identities marked and waiting for their grace, at the last pass.
    pub waiting: u64,
    /// When the last pass ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<String>,
    /// The last failed pass's error, cleared by the next pass that works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
}

/// Refusals kept in [`KubeReport::recent_rejections`].
pub(crate) const RECENT_REJECTIONS: usize = 8;
