//! The relay (Hubble Relay's job, in the caller's process): asks every
//! node's flow API ([`super::server`]) over its unix socket, merges the
//! answers in time order, and reports the nodes it could not reach instead
//! of waiting for them. `tollway observe` and `tollway ui` use it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tollway_flow::filter::FlowRequest;
use tollway_flow::model::{Flow, FlowResponse};
use tollway_flow::relay::{NodeStatus, merge_by_time};
use tollway_lab::{LabConfig, LabPaths};

use super::socket_path;

/// How long a node may take to answer a query (or to accept a follow).
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors of talking to one node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The lab is unknown.
    #[error(transparent)]
    Lab(#[from] tollway_lab::LabError),
    /// The lab does not exist.
    #[error("lab {lab} does not exist")]
    NoLab {
        /// Its name.
        lab: String,
    },
    /// The socket could not be reached.
    #[error("cannot connect to {socket}: {source}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// HTTP failed.
    #[error("flow API: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("flow API request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The node refused the request.
    #[error("the node answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// A line was not a flow.
    #[error("bad flow line: {source}")]
    Decode {
        /// serde's error.
        source: serde_json::Error,
    },
    /// The node took too long.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One node's flow API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    /// The node.
    pub node: String,
    /// Its socket.
    pub socket: PathBuf,
}

/// Every node of lab `lab`.
pub fn lab_targets(lab: &str) -> Result<Vec<NodeTarget>, ClientError> {
    let paths = LabPaths::new(lab);
    let cfg = LabConfig::load(&paths)?.ok_or_else(|| ClientError::NoLab { lab: lab.into() })?;
    Ok(cfg
        .nodes
        .iter()
        .map(|n| NodeTarget {
            node: n.name.clone(),
            socket: socket_path(&paths.node_dir(&n.name)),
        })
        .collect())
}

/// What a node's stream carries.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A flow.
    Flow(Arc<Flow>),
    /// Flows its ring overwrote before this follower saw them.
    Lost(u64),
    /// The node's stream ended or failed (`None`: ended).
    Closed(Option<String>),
}

type Body = hyper::body::Incoming;

async fn open(t: &NodeTarget, req: &FlowRequest) -> Result<hyper::Response<Body>, ClientError> {
    let stream = tokio::net::UnixStream::connect(&t.socket)
        .await
        .map_err(|source| ClientError::Connect {
            socket: t.socket.clone(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = serde_json::to_vec(req).map_err(|source| ClientError::Decode { source })?;
    let request = Request::post("/v1/flows")
        .header(hyper::header::HOST, "tollway-flows")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let resp = sender.send_request(request).await?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(ClientError::Status { status, message });
    }
    Ok(resp)
}

/// Parses one line of a node's stream.
fn parse_line(line: &[u8]) -> Result<Option<NodeEvent>, ClientError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|source| ClientError::Decode { source })?;
    if let Some(lost) = v.get("lost_events") {
        let n = lost
            .get("num_events_lost")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        return Ok(Some(NodeEvent::Lost(n)));
    }
    let r: FlowResponse =
        serde_json::from_value(v).map_err(|source| ClientError::Decode { source })?;
    Ok(Some(NodeEvent::Flow(Arc::new(r.flow))))
}

/// Streams a node's answer into `tx` as it comes, line by line.
async fn pump(
    resp: hyper::Response<Body>,
    tx: &mpsc::Sender<NodeEvent>,
) -> Result<(), ClientError> {
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Some(ev) = parse_line(&line)?
                && tx.send(ev).await.is_err()
            {
                return Ok(());
            }
        }
    }
    if let Some(ev) = parse_line(&buf)? {
        let _ = tx.send(ev).await;
    }
    Ok(())
}

/// The flows one node holds that match `req` (no follow).
pub async fn query_node(t: &NodeTarget, req: &FlowRequest) -> Result<Vec<Arc<Flow>>, ClientError> {
    let mut req = req.clone();
    req.follow = false;
    let work = async {
        let resp = open(t, &req).await?;
        let (tx, mut rx) = mpsc::channel(1024);
        let collect = async {
            let mut out = Vec::new();
            while let Some(ev) = rx.recv().await {
                if let NodeEvent::Flow(f) = ev {
                    out.push(f);
                }
            }
            out
        };
        let (pumped, flows) = tokio::join!(
            async {
                let r = pump(resp, &tx).await;
                drop(tx);
                r
            },
            collect
        );
        pumped.map(|()| flows)
    };
    tokio::time::timeout(NODE_TIMEOUT, work)
        .await
        .map_err(|_| ClientError::Timeout(NODE_TIMEOUT))?
}

/// Every node's matching flows, merged in time order and cut to the
/// request's `number` (last ones, or first with `first`), and whether each
/// node answered. Nodes are asked at once; one that fails or is slower than
/// [`NODE_TIMEOUT`] is reported, not waited for.
pub async fn query_all(
    targets: &[NodeTarget],
    req: &FlowRequest,
) -> (Vec<Arc<Flow>>, Vec<NodeStatus>) {
    let mut tasks = Vec::new();
    for t in targets {
        let t = t.clone();
        let req = req.clone();
        tasks.push(tokio::spawn(async move { query_node(&t, &req).await }));
    }
    let mut lists = Vec::new();
    let mut status = Vec::new();
    for (t, task) in targets.iter().zip(tasks) {
        let r = task.await;
        let (reachable, error) = match r {
            Ok(Ok(flows)) => {
                lists.push(flows);
                (true, None)
            }
            Ok(Err(e)) => (false, Some(e.to_string())),
            Err(e) => (false, Some(e.to_string())),
        };
        status.push(NodeStatus {
            name: t.node.clone(),
            reachable,
            error,
        });
    }
    (merge_by_time(lists, req.number, req.first), status)
}

/// Follows one node: its matching flows (the initial ones, then new ones)
/// go to `tx` tagged with the node, and a [`NodeEvent::Closed`] at the end.
pub async fn follow_node(t: NodeTarget, req: FlowRequest, tx: mpsc::Sender<(String, NodeEvent)>) {
    let (inner_tx, mut inner_rx) = mpsc::channel(1024);
    let node = t.node.clone();
    let forward = {
        let tx = tx.clone();
        let node = node.clone();
        async move {
            while let Some(ev) = inner_rx.recv().await {
                if tx.send((node.clone(), ev)).await.is_err() {
                    return;
                }
            }
        }
    };
    let run = async {
        let resp = tokio::time::timeout(NODE_TIMEOUT, open(&t, &req))
            .await
            .map_err(|_| ClientError::Timeout(NODE_TIMEOUT))??;
        let r = pump(resp, &inner_tx).await;
        drop(inner_tx);
        r
    };
    let (result, ()) = tokio::join!(run, forward);
    let _ = tx
        .send((node, NodeEvent::Closed(result.err().map(|e| e.to_string()))))
        .await;
}
