//! Health-check node ports, as kube-proxy's service health server serves
//! them: for each LoadBalancer Service with `externalTrafficPolicy:
//! Local`, every node answers HTTP on the Service's `healthCheckNodePort`
//! with 200 when it has a ready endpoint of the Service and 503 when it
//! has none, so that the cloud load balancer sends traffic only to nodes
//! that would not drop it (ETP=Local drops at a node without a local
//! backend). The body is kube-proxy's:
//! `{"service":{"namespace":…,"name":…},"localEndpoints":N,"serviceProxyHealthy":true}`
//! with `X-Load-Balancing-Endpoint-Weight: N`.
//!
//! [`entries`] computes what to serve from the agent's desired state
//! (pure); [`HealthChecks`] runs the listeners (0.0.0.0:<port> in the
//! node's network namespace) on a thread of their own and follows the
//! entries through a watch channel: new ports are bound, gone ones closed.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tollway_lb::{DesiredState, Frontend, Proto, Scope};

use crate::error::AgentError;

/// What one health-check port answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The Service's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its ready endpoints on this node (distinct addresses).
    pub local_endpoints: usize,
}

/// The health-check ports this node serves, from the desired state: each
/// LoadBalancer with `externalTrafficPolicy: Local` and a health-check
/// node port, with the ready local backends of its node-port frontends
/// (which, with Local policy, hold only this node's backends).
pub fn entries(state: &DesiredState, node_ip: Ipv4Addr) -> BTreeMap<u16, Entry> {
    let mut out = BTreeMap::new();
    for svc in state.services() {
        if !svc.needs_health_check_node_port() {
            continue;
        }
        let Some(port) = svc
            .spec
            .health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        let mut local = BTreeSet::new();
        for p in &svc.spec.ports {
            let (Some(np), Some(proto)) = (
                p.node_port.and_then(|n| u16::try_from(n).ok()),
                Proto::from_protocol(p.protocol()),
            ) else {
                continue;
            };
            let f = Frontend {
                address: node_ip,
                port: np,
                proto,
                scope: Scope::External,
            };
            if let Some(d) = state.desired_of(&f) {
                local.extend(d.backends.iter().map(|b| b.address));
            }
        }
        out.insert(
            port,
            Entry {
                namespace: svc.metadata.namespace_or_default().to_string(),
                name: svc.metadata.name.clone(),
                local_endpoints: local.len(),
            },
        );
    }
    out
}

/// kube-proxy's answer for `entry` (None: the port serves no Service any
/// more).
pub fn answer(entry: Option<&Entry>) -> (StatusCode, usize, String) {
    match entry {
        Some(e) => {
            let body = serde_json::json!({
                "service": {"namespace": e.namespace, "name": e.name},
                "localEndpoints": e.local_endpoints,
                "serviceProxyHealthy": true,
            });
            let status = if e.local_endpoints > 0 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, e.local_endpoints, body.to_string())
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, 0, "{}".into()),
    }
}

type Entries = BTreeMap<u16, Entry>;

/// The listeners, on their own thread.
pub struct HealthChecks {
    tx: watch::Sender<Entries>,
    errors: Arc<Mutex<BTreeMap<u16, String>>>,
}

impl HealthChecks {
    /// Start the thread (no port yet).
    pub fn start() -> Result<HealthChecks, AgentError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| AgentError::Thread {
                what: "health-check runtime",
                source,
            })?;
        let (tx, rx) = watch::channel(Entries::new());
        let errors: Arc<Mutex<BTreeMap<u16, String>>> = Arc::default();
        let errs = errors.clone();
        std::thread::Builder::new()
            .name("health-checks".into())
            .spawn(move || rt.block_on(manage(rx, errs)))
            .map_err(|source| AgentError::Thread {
                what: "health-check",
                source,
            })?;
        Ok(HealthChecks { tx, errors })
    }

    /// Serve these ports (a change of counts alone needs no rebinding).
    pub fn set(&self, entries: Entries) {
        self.tx.send_if_modified(|cur| {
            if *cur == entries {
                false
            } else {
                *cur = entries;
                true
            }
        });
    }

    /// The ports served (`<port> <namespace>/<name> <local endpoints>`)
    /// and the ones that could not be bound.
    pub fn report(&self) -> (Vec<String>, Vec<String>) {
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let served = self
            .tx
            .borrow()
            .iter()
            .filter(|(p, _)| !errors.contains_key(p))
            .map(|(p, e)| format!("{p} {}/{} {}", e.namespace, e.name, e.local_endpoints))
            .collect();
        let failed = errors.iter().map(|(p, e)| format!("{p}: {e}")).collect();
        (served, failed)
    }
}

async fn manage(mut rx: watch::Receiver<Entries>, errors: Arc<Mutex<BTreeMap<u16, String>>>) {
    let mut running: BTreeMap<u16, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let want: BTreeSet<u16> = rx.borrow_and_update().keys().copied().collect();
        running.retain(|port, task| {
            let keep = want.contains(port);
            if !keep {
                task.abort();
            }
            keep
        });
        errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p, _| want.contains(p));
        for port in want {
            if running.contains_key(&port) {
                continue;
            }
            match tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await {
                Ok(l) => {
                    errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&port);
                    tracing::info!(port, "serving a health-check node port");
                    running.insert(port, tokio::spawn(serve(l, port, rx.clone())));
                }
                Err(e) => {
                    tracing::warn!(port, error = %e, "cannot serve a health-check node port");
                    errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(port, e.to_string());
                }
            }
        }
        // Ports that failed to bind are tried again on the next change,
        // or after a while.
        let retry = !errors.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)), if retry => {}
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, port: u16, rx: watch::Receiver<Entries>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let rx = rx.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let (status, weight, body) = answer(rx.borrow().get(&port));
                let mut r = Response::new(Full::new(Bytes::from(body)));
                *r.status_mut() = status;
                let h = r.headers_mut();
                h.insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                h.insert(
                    "x-content-type-options",
                    hyper::header::HeaderValue::from_static("nosniff"),
                );
                if let Ok(v) = hyper::header::HeaderValue::from_str(&weight.to_string()) {
                    h.insert("x-load-balancing-endpoint-weight", v);
                }
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kube_proxys() {
        let e = Entry {
            namespace: "shop".into(),
            name: "web".into(),
            local_endpoints: 2,
        };
        let (status, weight, body) = answer(Some(&e));
        assert_eq!((status, weight), (StatusCode::OK, 2));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"service": {"namespace": "shop", "name": "web"},
                               "localEndpoints": 2, "serviceProxyHealthy": true})
        );
        let none = Entry {
            local_endpoints: 0,
            ..e
        };
        assert_eq!(answer(Some(&none)).0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer(None).0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
