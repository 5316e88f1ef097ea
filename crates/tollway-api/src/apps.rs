//! `apps/v1` Deployment.

use serde::{Deserialize, Serialize};

use crate::core::PodSpec;
use crate::meta::ObjectMeta;
use crate::selector::LabelSelector;

/// `apps/v1` Deployment: keeps `replicas` pods of its template running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: DeploymentSpec,
    /// Maintained by the lab's deployment controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatus>,
}

/// Deployment spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Desired pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// Must match the template's labels.
    #[serde(default)]
    pub selector: LabelSelector,
    /// The pod template.
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// `RollingUpdate` (default) or `Recreate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    /// Accepted; not used by the lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i64>,
    /// Accepted; not used by the lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    /// Accepted; not used by the lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
}

/// Update strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStrategy {
    /// `RollingUpdate` or `Recreate`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Accepted: the lab surges a full set of new pods, then retires old ones
    /// as new ones become ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<serde_json::Value>,
}

/// A pod template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodTemplateSpec {
    /// Labels and annotations given to each pod.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The pods' spec.
    #[serde(default)]
    pub spec: PodSpec,
}

/// Deployment status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Generation last acted on.
    #[serde(default)]
    pub observed_generation: i64,
    /// Pods owned.
    #[serde(default)]
    pub replicas: i64,
    /// Pods of the current template.
    #[serde(default)]
    pub updated_replicas: i64,
    /// Ready pods.
    #[serde(default)]
    pub ready_replicas: i64,
    /// Ready pods of the current template.
    #[serde(default)]
    pub available_replicas: i64,
}

impl Deployment {
    /// Desired replicas (default 1).
    pub fn replicas(&self) -> i64 {
        self.spec.replicas.unwrap_or(1)
    }
}
