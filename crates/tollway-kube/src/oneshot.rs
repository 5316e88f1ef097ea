//! One list of every watched kind, for the inspect commands run in the
//! agent's container (`kubectl exec ds/tollway -- tollway endpoint list`):
//! they need the cluster's pods, namespaces, identities and policies to
//! name what the maps hold, as the lab's commands read the lab's store.

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use tollway_state::Snapshot;

use crate::error::KubeError;
use crate::mirror::{Changes, Mirror, Update};
use crate::registry::KindRegistry;
use crate::source::{ClientSpec, load_config};

/// Objects per list request.
const PAGE: u32 = 500;

/// What [`list_snapshot`] read.
#[derive(Debug)]
pub struct Listed {
    /// The typed objects.
    pub snapshot: Snapshot,
    /// Objects refused by the decoder (`<kind>: <why>`), skipped.
    pub rejected: Vec<String>,
    /// Kinds the API server does not serve (a CRD not installed): counted
    /// as empty.
    pub not_served: Vec<String>,
}

/// List every kind of `registry` once (paged), convert the objects as the
/// watchers do, and return the snapshot. Blocks; runs its own runtime.
pub fn list_snapshot(spec: ClientSpec, registry: &KindRegistry) -> Result<Listed, KubeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| KubeError::Runtime {
            what: "runtime",
            source,
        })?;
    rt.block_on(async {
        let config = load_config(spec).await?;
        let url = config.cluster_url.to_string();
        let client =
            Client::try_from(config).map_err(|source| KubeError::Client { url, source })?;
        let mut mirror = Mirror::new();
        let mut changes = Changes::default();
        let mut rejected = Vec::new();
        let mut not_served = Vec::new();
        for entry in registry.entries() {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &entry.resource);
            let mut objects = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut lp = ListParams::default().limit(PAGE);
                if let Some(t) = &token {
                    lp = lp.continue_token(t);
                }
                let list = match api.list(&lp).await {
                    Ok(l) => l,
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        not_served.push(entry.resource.kind.clone());
                        break;
                    }
                    Err(source) => {
                        return Err(KubeError::Request {
                            what: format!("list {}", entry.path()),
                            source,
                        });
                    }
                };
                for o in list.items {
                    let converted = serde_json::to_value(&o)
                        .map_err(|e| e.to_string())
                        .and_then(|v| entry.convert(v));
                    match converted {
                        Ok(c) => objects.push(c),
                        Err(e) => rejected.push(format!("{}: {e}", entry.resource.kind)),
                    }
                }
                token = list.metadata.continue_.filter(|t| !t.is_empty());
                if token.is_none() {
                    break;
                }
            }
            mirror.apply(
                Update::Relisted {
                    produces: entry.produces(),
                    objects,
                },
                &mut changes,
            );
        }
        Ok(Listed {
            snapshot: mirror.snapshot().clone(),
            rejected,
            not_served,
        })
    })
}
