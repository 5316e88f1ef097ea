//! The HTTP/1.1 server: the page, the JSON API and the health check.

use std::convert::Infallible;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::query::{self, QueryError};
use crate::{FeedError, FlowFeed, UiError};

/// The page: one self-contained HTML file (inline JavaScript and CSS).
const INDEX_HTML: &str = include_str!("../assets/index.html");

type Feed = Arc<dyn FlowFeed + Send + Sync>;

/// Serves the UI on `listener` until accepting fails for good.
pub async fn serve(
    listener: TcpListener,
    feed: Arc<dyn FlowFeed + Send + Sync>,
) -> Result<(), UiError> {
    serve_with_shutdown(listener, feed, std::future::pending()).await
}

/// Like [`serve`], but stops accepting and returns `Ok(())` once `shutdown` completes
/// (connections already accepted finish their requests on their own tasks).
pub async fn serve_with_shutdown(
    listener: TcpListener,
    feed: Arc<dyn FlowFeed + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UiError> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = shutdown.as_mut() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(serve_connection(stream, peer, feed.clone()));
            }
            Err(err) if transient(&err) => {
                // Out of descriptors or memory: give the process a moment.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) if err.kind() == ErrorKind::ConnectionAborted => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(UiError::Accept(err)),
        }
    }
}

fn transient(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    ) || err.kind() == ErrorKind::ConnectionReset
}

mod libc_errno {
    use nix::errno::Errno;
    pub(super) const EMFILE: i32 = Errno::EMFILE as i32;
    pub(super) const ENFILE: i32 = Errno::ENFILE as i32;
    pub(super) const ENOBUFS: i32 = Errno::ENOBUFS as i32;
    pub(super) const ENOMEM: i32 = Errno::ENOMEM as i32;
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, feed: Feed) {
    // Best effort: only latency suffers without it.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(feed.clone(), req));
    let conn = http1::Builder::new()
        // A timer enables hyper's default 30 s header read timeout.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    if let Err(err) = conn.await
        && !err.is_incomplete_message()
    {
        eprintln!("tollway-ui: connection from {peer} ended with an error: {err}");
    }
}

async fn handle(feed: Feed, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("").to_owned();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let response = match path {
        "/" | "/index.html" if get => body(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(INDEX_HTML.as_bytes()),
        ),
        "/healthz" if get => body(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok\n"),
        ),
        "/api/flows" if get => flows(feed, &query).await,
        "/api/namespaces" if get => namespaces(feed).await,
        "/" | "/index.html" | "/healthz" | "/api/flows" | "/api/namespaces" => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} {path}: only GET is allowed", req.method()),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such page {path:?} (known: /, /api/flows, /api/namespaces, /healthz)"),
        ),
    };
    Ok(response)
}

async fn flows(feed: Feed, query: &str) -> Response<Full<Bytes>> {
    let query = match query::parse_flows_query(query) {
        Ok(query) => query,
        Err(err) => return bad_request(&err),
    };
    match tokio::task::spawn_blocking(move || feed.flows(&query)).await {
        Ok(Ok(page)) => json_response(
            StatusCode::OK,
            &json!({
                "flows": page.flows,
                "unreachable_nodes": page.unreachable_nodes,
                "messages": page.messages,
            }),
        ),
        Ok(Err(err)) => feed_error(&err),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading flows failed: {err}"),
        ),
    }
}

async fn namespaces(feed: Feed) -> Response<Full<Bytes>> {
    match tokio::task::spawn_blocking(move || feed.namespaces()).await {
        Ok(Ok(names)) => json_response(StatusCode::OK, &json!({ "namespaces": names })),
        Ok(Err(err)) => feed_error(&err),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading namespaces failed: {err}"),
        ),
    }
}

fn bad_request(err: &QueryError) -> Response<Full<Bytes>> {
    error(StatusCode::BAD_REQUEST, err.to_string())
}

fn feed_error(err: &FeedError) -> Response<Full<Bytes>> {
    error(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    body(status, "application/json", Bytes::from(value.to_string()))
}

fn body(status: StatusCode, content_type: &'static str, bytes: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
