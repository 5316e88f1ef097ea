//! The flow API of a node: HTTP/1.1 on a unix socket (the node's
//! `flows.sock`), which `tollway observe`, the relay and `tollway ui` use,
//! and the Prometheus metrics on TCP (Hubble's port 9965, inside the
//! node's network namespace).
//!
//! - `POST /v1/flows` with a JSON [`FlowRequest`] (Hubble's
//!   GetFlowsRequest: whitelist, blacklist, number, first, follow, since,
//!   until): the matching flows as JSON lines (`{"flow":…,"node_name":…,
//!   "time":…}`, what `hubble observe -o json` prints), oldest first; with
//!   `follow`, the response goes on with every new matching flow until the
//!   client hangs up. A line `{"lost_events":{"source":"HUBBLE_RING_BUFFER",
//!   "num_events_lost":N}}` reports flows the ring overwrote before a
//!   follower saw them.
//! - `GET /v1/status`: the node's flow counters as JSON.
//! - `GET /metrics`: Hubble's metrics, Prometheus text format.
//! - `GET /healthz` (the agent's process answers) and `GET /readyz` (its
//!   first full sync is done), also on 127.0.0.1:9879 for probes.
//!
//! Every path is served on every listener: the unix socket, the metrics
//! port, the health port, and `--flows-listen` (TCP, for a relay: Hubble's
//! 4244).

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tollway_flow::filter::{CompiledRequest, FlowRequest};
use tollway_flow::model::FlowResponse;

use super::{LOST_SOURCE_RING, Shared};
use crate::error::AgentError;

/// A response body fed by a channel (streams follows).
pub(super) struct ChannelBody(pub(super) mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub(super) type Reply = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

pub(super) fn full(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub(super) fn error(status: StatusCode, message: &str) -> Reply {
    let body = serde_json::json!({ "error": message }).to_string();
    full(status, "application/json", body)
}

/// Starts the server thread (its own tokio runtime): the API on `socket`,
/// the metrics on `metrics_addr`. Binding happens before this returns, so
/// that errors are the agent's.
pub fn spawn(
    shared: Arc<Shared>,
    socket: PathBuf,
    metrics_addr: Option<String>,
    health_addr: Option<String>,
    api_addr: Option<String>,
    extra_socket: Option<PathBuf>,
) -> Result<(), AgentError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| AgentError::Thread {
            what: "flow server runtime",
            source,
        })?;
    let listen = |addr: &str, source| AgentError::Listen {
        addr: addr.to_string(),
        source,
    };
    let bind_unix = |path: &PathBuf| -> Result<tokio::net::UnixListener, AgentError> {
        let _ = std::fs::remove_file(path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _guard = rt.enter();
        tokio::net::UnixListener::bind(path).map_err(|e| listen(&path.display().to_string(), e))
    };
    let unix = bind_unix(&socket)?;
    let extra = extra_socket.as_ref().map(bind_unix).transpose()?;
    let bind = |addr: &Option<String>| -> Result<Option<std::net::TcpListener>, AgentError> {
        match addr {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(|e| listen(addr, e))?;
                l.set_nonblocking(true).map_err(|e| listen(addr, e))?;
                Ok(Some(l))
            }
            None => Ok(None),
        }
    };
    let tcp = bind(&metrics_addr)?;
    let health = bind(&health_addr)?;
    let api = bind(&api_addr)?;
    std::thread::Builder::new()
        .name("flow-server".into())
        .spawn(move || {
            rt.block_on(async move {
                for l in [tcp, health, api].into_iter().flatten() {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            tokio::spawn(accept_tcp(l, shared.clone()));
                        }
                        Err(e) => tracing::warn!(error = %e, "metrics/health listener"),
                    }
                }
                if let Some(extra) = extra {
                    tokio::spawn(accept_unix(extra, shared.clone()));
                }
                accept_unix(unix, shared).await;
            });
        })
        .map_err(|source| AgentError::Thread {
            what: "flow server",
            source,
        })?;
    Ok(())
}

async fn accept_unix(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => serve_conn(TokioIo::new(stream), shared.clone()),
            Err(e) => {
                tracing::warn!(error = %e, "flow API accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn accept_tcp(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => serve_conn(TokioIo::new(stream), shared.clone()),
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn serve_conn<I>(io: I, shared: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = service_fn(move |req| handle(req, shared.clone()));
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await
        {
            tracing::debug!(error = %e, "flow API connection");
        }
    });
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match (req.method().clone(), path.as_str()) {
        (Method::GET, "/metrics") => full(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.encode_metrics(),
        ),
        (Method::GET, "/v1/status") => {
            let body = serde_json::json!({
                "node": shared.node(),
                "capacity": shared.store.capacity(),
                "stored": shared.store.len(),
                "seen": shared.store.flows_seen(),
                "lostEvents": shared.lost.load(std::sync::atomic::Ordering::Relaxed),
            });
            full(StatusCode::OK, "application/json", body.to_string())
        }
        (Method::POST, "/v1/flows") => flows(req, shared).await,
        (Method::GET, "/healthz") => full(StatusCode::OK, "text/plain", "ok\n"),
        (Method::GET, "/readyz") => {
            if shared.ready.load(std::sync::atomic::Ordering::Relaxed) {
                full(StatusCode::OK, "text/plain", "ready\n")
            } else {
                full(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "the first sync is not done\n",
                )
            }
        }
        (_, "/metrics" | "/v1/status" | "/v1/flows" | "/healthz" | "/readyz") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "no such path"),
    })
}

pub(super) fn line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

/// The flow request in a request's body (empty: every flow), compiled; or
/// the 400 answer.
pub(super) async fn read_request(
    req: Request<Incoming>,
) -> Result<(FlowRequest, CompiledRequest), Reply> {
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("reading the request: {e}"),
            )
        })?
        .to_bytes();
    let request: FlowRequest = if body.is_empty() {
        FlowRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("bad flow request: {e}")))?
    };
    let compiled = request
        .compile()
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    Ok((request, compiled))
}

async fn flows(req: Request<Incoming>, shared: Arc<Shared>) -> Reply {
    let (request, compiled) = match read_request(req).await {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let compiled: Arc<CompiledRequest> = Arc::new(compiled);
    let follow = request.follow;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let s = shared.clone();
        let c = compiled.clone();
        let Ok((initial, mut after)) =
            tokio::task::spawn_blocking(move || s.store.query_and_seq(&c)).await
        else {
            return;
        };
        for f in initial {
            if tx
                .send(line(&FlowResponse::new((*f).clone())))
                .await
                .is_err()
            {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            let s = shared.clone();
            let Ok(newer) = tokio::task::spawn_blocking(move || {
                s.store.wait_newer(after, Duration::from_millis(500))
            })
            .await
            else {
                return;
            };
            after = newer.next_after;
            if newer.lost > 0 {
                let lost = serde_json::json!({"lost_events": {
                    "source": LOST_SOURCE_RING, "num_events_lost": newer.lost,
                }});
                if tx.send(line(&lost)).await.is_err() {
                    return;
                }
            }
            for f in newer.flows {
                if compiled.matches(&f)
                    && tx
                        .send(line(&FlowResponse::new((*f).clone())))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    let mut r = Response::new(ChannelBody(rx).boxed());
    if let Ok(v) = "application/x-ndjson".parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
