//! `tollway relay` (Hubble Relay's job): the flow API of the whole cluster
//! on one TCP address. Each request is fanned out to every peer (the
//! agents' `--flows-listen` addresses, or `dns:///name:port` resolved anew
//! for each request, as the relay's peer service), and the answers are
//! merged in time order ([`tollway_flow::relay`]); a peer that does not
//! answer is reported in the stream as `{"node_status": {"name", "reachable":
//! false, "error"}}`, never waited for beyond [`super::client::NODE_TIMEOUT`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tollway_flow::model::FlowResponse;
use tollway_flow::relay::{DEFAULT_MAX_DELAY, FollowMerger, NodeStatus};

use super::client::{self, NodeEvent};
use super::server::{ChannelBody, Reply, error, full, line, read_request};

/// Serves the relay on `listener` until the process ends. `peers` is a
/// `dns:///name:port` or a comma-separated list of host:port.
pub async fn serve(listener: tokio::net::TcpListener, peers: String) {
    let peers = Arc::new(peers);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let peers = peers.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, peers.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, peers: Arc<String>) -> Result<Reply, Infallible> {
    Ok(match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/healthz") => full(StatusCode::OK, "text/plain", "ok\n"),
        (Method::POST, "/v1/flows") => flows(req, &peers).await,
        _ => error(StatusCode::NOT_FOUND, "no such path"),
    })
}

fn down(status: &NodeStatus) -> Bytes {
    line(&serde_json::json!({ "node_status": status }))
}

async fn flows(req: Request<Incoming>, peers: &str) -> Reply {
    let request = match read_request(req).await {
        Ok((r, _)) => r,
        Err(reply) => return reply,
    };
    let targets = match client::resolve_peers(peers).await {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "no peers"),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        if !request.follow {
            let (flows, status) = client::query_all(&targets, &request).await;
            for s in status.iter().filter(|s| !s.reachable) {
                if tx.send(down(s)).await.is_err() {
                    return;
                }
            }
            for f in flows {
                if tx
                    .send(line(&FlowResponse::new((*f).clone())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            return;
        }
        let (ntx, mut nrx) = mpsc::channel::<(String, NodeEvent)>(4096);
        for t in &targets {
            tokio::spawn(client::follow_node(t.clone(), request.clone(), ntx.clone()));
        }
        drop(ntx);
        let mut merger =
            FollowMerger::new(targets.iter().map(|t| t.node.clone()), DEFAULT_MAX_DELAY);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                ev = nrx.recv() => {
                    let Some((node, ev)) = ev else { break };
                    match ev {
                        NodeEvent::Flow(f) => merger.push(&node, vec![f], jiff::Timestamp::now()),
                        NodeEvent::Lost(n) => {
                            let l = serde_json::json!({"lost_events": {"source": super::LOST_SOURCE_RING, "num_events_lost": n}});
                            if tx.send(line(&l)).await.is_err() { return; }
                        }
                        NodeEvent::Closed(err) => {
                            merger.set_reachable(&node, false);
                            if let Some(error) = err {
                                let s = NodeStatus { name: node, reachable: false, error: Some(error) };
                                if tx.send(down(&s)).await.is_err() { return; }
                            }
                        }
                        NodeEvent::Unreachable { node, error } => {
                            let s = NodeStatus { name: node, reachable: false, error: Some(error) };
                            if tx.send(down(&s)).await.is_err() { return; }
                        }
                    }
                }
                _ = tick.tick() => {
                    if tx.is_closed() { return; }
                }
            }
            for f in merger.release(jiff::Timestamp::now()) {
                if tx
                    .send(line(&FlowResponse::new((*f).clone())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        for f in merger.drain() {
            if tx
                .send(line(&FlowResponse::new((*f).clone())))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut r = hyper::Response::new(ChannelBody(rx).boxed());
    if let Ok(v) = "application/x-ndjson".parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
