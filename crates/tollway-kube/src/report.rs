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
    /// Each kind.
    pub kinds: Vec<KindReport>,
}

/// Refusals kept in [`KubeReport::recent_rejections`].
pub(crate) const RECENT_REJECTIONS: usize = 8;
