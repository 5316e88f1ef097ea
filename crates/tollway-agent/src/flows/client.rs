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
/// How long a relay may take: it waits [`NODE_TIMEOUT`] for its own nodes.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(6);

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
        /// The socket (a path, or host:port).
        socket: String,
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

/// Where a flow API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket (a lab node's `flows.sock`).
    Unix(PathBuf),
    /// host:port over TCP (an agent's `--flows-listen`, or a relay).
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a) => f.write_str(a),
        }
    }
}

/// One node's flow API (or a relay's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    /// The node (for a relay or a TCP peer: its address).
    pub node: String,
    /// Where its API listens.
    pub socket: Endpoint,
    /// How long it may take to answer.
    pub timeout: Duration,
}

impl NodeTarget {
    /// An agent's flow API on TCP, named by its address.
    pub fn tcp(addr: &str) -> NodeTarget {
        NodeTarget {
            node: addr.to_string(),
            socket: Endpoint::Tcp(addr.to_string()),
            timeout: NODE_TIMEOUT,
        }
    }

    /// A relay on TCP (it answers for many nodes, after waiting for them).
    pub fn relay(addr: &str) -> NodeTarget {
        NodeTarget {
            timeout: RELAY_TIMEOUT,
            ..NodeTarget::tcp(addr)
        }
    }
}

/// The targets `spec` names: `dns:///host:port` (every address the name
/// resolves to, as Hubble Relay's peer service does), or a comma-separated
/// list of host:port and `unix:///path/to/flows.sock`.
pub async fn resolve_peers(spec: &str) -> Result<Vec<NodeTarget>, ClientError> {
    if let Some(name) = spec.strip_prefix("dns:///") {
        let addrs = tokio::net::lookup_host(name)
            .await
            .map_err(|source| ClientError::Connect {
                socket: name.to_string(),
                source,
            })?;
        let mut out: Vec<NodeTarget> = addrs.map(|a| NodeTarget::tcp(&a.to_string())).collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out.dedup();
        return Ok(out);
    }
    Ok(spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|p| match p.strip_prefix("unix://") {
            Some(path) => NodeTarget {
                node: node_of_socket(path),
                socket: Endpoint::Unix(PathBuf::from(path)),
                timeout: NODE_TIMEOUT,
            },
            None => NodeTarget::tcp(p),
        })
        .collect())
}

/// A lab node's name from its socket path (`.../nodes/<node>/flows.sock`),
/// else the path.
fn node_of_socket(path: &str) -> String {
    let p = std::path::Path::new(path);
    p.parent()
        .and_then(|d| d.file_name())
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
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
            socket: Endpoint::Unix(socket_path(&paths.node_dir(&n.name))),
            timeout: NODE_TIMEOUT,
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
    /// A relay says one of its nodes is unreachable.
    Unreachable {
        /// The node.
        node: String,
        /// Why.
        error: String,
    },
}

type Body = hyper::body::Incoming;

/// An HTTP/1 connection over `stream`, driven in the background.
async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn open(t: &NodeTarget, req: &FlowRequest) -> Result<hyper::Response<Body>, ClientError> {
    let connect = |source| ClientError::Connect {
        socket: t.socket.to_string(),
        source,
    };
    let mut sender = match &t.socket {
        Endpoint::Unix(path) => {
            handshake(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect)?,
            )
            .await?
        }
        Endpoint::Tcp(addr) => {
            handshake(
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(connect)?,
            )
            .await?
        }
    };
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
    if let Some(st) = v.get("node_status") {
        let status: NodeStatus =
            serde_json::from_value(st.clone()).map_err(|source| ClientError::Decode { source })?;
        return Ok(Some(NodeEvent::Unreachable {
            node: status.name,
            error: status.error.unwrap_or_default(),
        }));
    }
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
    query_node_status(t, req).await.map(|(flows, _)| flows)
}

/// [`query_node`], with the nodes a relay reported unreachable.
pub async fn query_node_status(
    t: &NodeTarget,
    req: &FlowRequest,
) -> Result<(Vec<Arc<Flow>>, Vec<NodeStatus>), ClientError> {
    let mut req = req.clone();
    req.follow = false;
    let work = async {
        let resp = open(t, &req).await?;
        let (tx, mut rx) = mpsc::channel(1024);
        let collect = async {
            let mut out = Vec::new();
            let mut down = Vec::new();
            while let Some(ev) = rx.recv().await {
                match ev {
                    NodeEvent::Flow(f) => out.push(f),
                    NodeEvent::Unreachable { node, error } => down.push(NodeStatus {
                        name: node,
                        reachable: false,
                        error: Some(error),
                    }),
                    _ => {}
                }
            }
            (out, down)
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
    tokio::time::timeout(t.timeout, work)
        .await
        .map_err(|_| ClientError::Timeout(t.timeout))?
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
        tasks.push(tokio::spawn(
            async move { query_node_status(&t, &req).await },
        ));
    }
    let mut lists = Vec::new();
    let mut status = Vec::new();
    for (t, task) in targets.iter().zip(tasks) {
        let r = task.await;
        let (reachable, error) = match r {
            Ok(Ok((flows, down))) => {
                lists.push(flows);
                // A relay's own unreachable nodes.
                status.extend(down);
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
        let resp = tokio::time::timeout(t.timeout, open(&t, &req))
            .await
            .map_err(|_| ClientError::Timeout(t.timeout))??;
        let r = pump(resp, &inner_tx).await;
        drop(inner_tx);
        r
    };
    let (result, ()) = tokio::join!(run, forward);
    let _ = tx
        .send((node, NodeEvent::Closed(result.err().map(|e| e.to_string()))))
        .await;
}
