//! `cilium.io/v2` CiliumIdentity: one security identity, named by its
//! number, with the labels it stands for. Tollway allocates them (the lab
//! daemon, or the agents through the Kubernetes API) so that every node
//! agrees on the numbers; users only read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

/// A security identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiliumIdentity {
    /// `cilium.io/v2`.
    pub api_version: String,
    /// `CiliumIdentity`.
    pub kind: String,
    /// `metadata.name` is the identity's number.
    pub metadata: ObjectMeta,
    /// The security labels (`k8s:app` → `web`, ...), as Cilium writes them.
    #[serde(default, rename = "security-labels")]
    pub security_labels: BTreeMap<String, String>,
}

impl CiliumIdentity {
    /// The identity's number, from its name.
    pub fn number(&self) -> Option<u32> {
        self.metadata.name.parse().ok()
    }
}
