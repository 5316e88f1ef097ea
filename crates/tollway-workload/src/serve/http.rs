//! The HTTP/1.1 + h2c request handler: `/hostname`, `/echo`, `/status/NNN`, `?delay=` and
//! `?responseCode=&succeedAfter=&uuid=`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpStream;

use super::Stop;
use super::query::{self, Params};
use super::retry::RetryTable;
use crate::WorkloadError;
use crate::headers::join_headers;

/// Header carrying the pod name on every answer.
pub(crate) const POD_NAME_HEADER: HeaderName = HeaderName::from_static("x-pod-name");

/// Largest request body read (and echoed back).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Shared by every connection of one server.
#[derive(Debug)]
pub(crate) struct HttpState {
    pod: Arc<str>,
    pod_header: HeaderValue,
    retries: Mutex<RetryTable>,
}

impl HttpState {
    pub(crate) fn new(pod: Arc<str>) -> Result<Self, WorkloadError> {
        let pod_header =
            HeaderValue::from_str(&pod).map_err(|_| WorkloadError::InvalidPodName {
                name: pod.to_string(),
            })?;
        Ok(Self {
            pod,
            pod_header,
            retries: Mutex::new(RetryTable::default()),
        })
    }

    fn next_attempt(&self, uuid: &str) -> u32 {
        // The table stays consistent even if a holder panicked: keep using it.
        self.retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_attempt(uuid)
    }
}

/// Serves one accepted connection (HTTP/1.1 or h2c prior knowledge) until it closes or,
/// after shutdown started, until its in-flight requests are answered.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<HttpState>,
    mut stop: Stop,
) {
    // Best effort: only latency suffers without it.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(state.clone(), peer, req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer enables hyper's default 30 s HTTP/1 header read timeout.
    builder.http1().timer(TokioTimer::new());
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.stopped() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        eprintln!("http connection from {peer} ended with an error: {err}");
    }
}

/// The `/echo` JSON.
#[derive(Debug, Serialize)]
struct Echo<'a> {
    pod: &'a str,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: BTreeMap<String, String>,
    client: String,
    body: Cow<'a, str>,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
}

async fn handle(
    state: Arc<HttpState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let version = req.version();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers = join_headers(req.headers());

    let response = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => {
            let body = body.to_bytes();
            let echo = Echo {
                pod: &state.pod,
                method: method.as_str(),
                path: &path,
                query: &query,
                headers,
                client: peer.to_string(),
                body: String::from_utf8_lossy(&body),
                protocol: protocol_name(version),
                attempt: None,
            };
            match query::parse(&query) {
                Ok(params) => answer(&state, &method, params, echo).await,
                Err(err) => text(StatusCode::BAD_REQUEST, err.to_string()),
            }
        }
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY} bytes"),
        ),
        Err(err) => text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {err}"),
        ),
    };
    let mut response = response;
    response
        .headers_mut()
        .insert(POD_NAME_HEADER, state.pod_header.clone());
    let query_suffix = if query.is_empty() { "" } else { "?" };
    eprintln!(
        "http {method} {path}{query_suffix}{query} {} {peer} {}",
        response.status().as_u16(),
        protocol_name(version),
    );
    Ok(response)
}

/// Routes a request whose body was read and whose query parsed.
async fn answer(
    state: &HttpState,
    method: &Method,
    params: Params,
    mut echo: Echo<'_>,
) -> Response<Full<Bytes>> {
    if echo.path == "/hostname" && (method == Method::GET || method == Method::HEAD) {
        delay(&params).await;
        return text(StatusCode::OK, state.pod.to_string());
    }
    let mut status = StatusCode::OK;
    if let Some(code) = echo.path.strip_prefix("/status/") {
        match query::parse_status(code) {
            Some(code) => status = code,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid status code {code:?} in /status/NNN: expected 100..=999"),
                );
            }
        }
    }
    if let Some(failure) = &params.failure {
        match &failure.sequence {
            None => status = failure.status,
            Some(seq) => {
                let attempt = state.next_attempt(&seq.uuid);
                echo.attempt = Some(attempt);
                if attempt <= seq.succeed_after {
                    status = failure.status;
                }
            }
        }
    }
    delay(&params).await;
    match serde_json::to_vec(&echo) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the echo: {err}"),
        ),
    }
}

async fn delay(params: &Params) {
    if let Some(delay) = params.delay {
        tokio::time::sleep(delay).await;
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pod_name_is_rejected() {
        let err = HttpState::new("bad\nname".into()).unwrap_err();
        assert!(matches!(err, WorkloadError::InvalidPodName { ref name } if name == "bad\nname"));
    }

    #[test]
    fn protocol_names() {
        assert_eq!(protocol_name(Version::HTTP_11), "HTTP/1.1");
        assert_eq!(protocol_name(Version::HTTP_2), "HTTP/2.0");
    }
}
