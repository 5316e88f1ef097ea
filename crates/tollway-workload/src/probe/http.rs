//! One HTTP/1.1 or h2c exchange over a fresh TCP connection.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::target::{Target, parse_header};
use super::transport::{error_chain, from_io};
use super::{Answer, AttemptResult, Failure, Outcome, ProbeArgs};
use crate::WorkloadError;
use crate::headers::join_headers;

/// Largest response body read.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The request every attempt sends, validated once.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    http2: bool,
}

impl RequestSpec {
    /// Validates `--method` and `--header` and builds the request for `target`.
    ///
    /// HTTP/1.1 sends the origin form (`/path?query`) with a Host header (the target's
    /// authority unless `--header Host:...` is given); HTTP/2 sends the absolute form,
    /// whose authority becomes `:authority`.
    pub(crate) fn new(args: &ProbeArgs, target: &Target) -> Result<Self, WorkloadError> {
        let method = Method::from_bytes(args.method.as_bytes()).map_err(|_| {
            WorkloadError::InvalidMethod {
                method: args.method.clone(),
            }
        })?;
        let mut headers = HeaderMap::new();
        for header in &args.headers {
            let (name, value) = parse_header(header)?;
            headers.append(name, value);
        }
        let uri = if args.http2 {
            let authority =
                match headers.remove(HOST) {
                    Some(host) => host.to_str().map(str::to_owned).map_err(|_| {
                        WorkloadError::InvalidHeader {
                            header: format!("host: {host:?}"),
                            reason: "not a valid authority".into(),
                        }
                    })?,
                    None => target.authority.to_string(),
                };
            Uri::builder()
                .scheme("http")
                .authority(authority.as_str())
                .path_and_query(target.path_and_query.clone())
                .build()
                .map_err(|e| WorkloadError::InvalidHeader {
                    header: format!("host: {authority}"),
                    reason: format!("not a valid authority: {e}"),
                })?
        } else {
            if !headers.contains_key(HOST) {
                let host = HeaderValue::from_str(target.authority.as_str()).map_err(|_| {
                    WorkloadError::InvalidTarget {
                        target: args.target.clone(),
                        reason: "the host is not a valid Host header".into(),
                    }
                })?;
                headers.insert(HOST, host);
            }
            Uri::from(target.path_and_query.clone())
        };
        Ok(Self {
            method,
            uri,
            headers,
            body: args.data.clone().map(Bytes::from).unwrap_or_default(),
            http2: args.http2,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Connects to `addr`, sends the request and reads the whole answer. The caller bounds
/// the time; dropping this future closes the connection.
pub(crate) async fn exchange(
    addr: SocketAddr,
    spec: &RequestSpec,
    local: &mut Option<SocketAddr>,
) -> Outcome {
    let stream = TcpStream::connect(addr).await.map_err(|e| from_io(&e))?;
    // Best effort: only latency suffers without it.
    let _ = stream.set_nodelay(true);
    *local = stream.local_addr().ok();
    let io = TokioIo::new(stream);
    let request = spec.request();
    if spec.http2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| from_hyper(&e))?;
        drive(conn, async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| from_hyper(&e))?;
            read_answer(response).await
        })
        .await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| from_hyper(&e))?;
        drive(conn, async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| from_hyper(&e))?;
            read_answer(response).await
        })
        .await
    }
}

/// Polls the connection alongside the exchange in the same task, so that nothing keeps
/// running once the exchange is done or dropped. When both fail, the connection's error
/// is reported: it is the root cause.
async fn drive<C, W>(conn: C, work: W) -> Outcome
where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future<Output = Outcome>,
{
    let mut conn = pin!(conn);
    let mut work = pin!(work);
    let mut conn_error = None;
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            outcome = &mut work => {
                return match (outcome, conn_error) {
                    (Err(_), Some(err)) => Err(from_hyper(&err)),
                    (outcome, _) => outcome,
                };
            }
            result = &mut conn, if !conn_done => {
                conn_done = true;
                conn_error = result.err();
            }
        }
    }
}

async fn read_answer(response: Response<Incoming>) -> Outcome {
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| from_body_error(&*e))?
        .to_bytes();
    Ok(Answer {
        status: Some(parts.status.as_u16()),
        headers: Some(join_headers(&parts.headers)),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn from_body_error(err: &(dyn StdError + Send + Sync + 'static)) -> Failure {
    if let Some(err) = err.downcast_ref::<hyper::Error>() {
        return from_hyper(err);
    }
    if err.downcast_ref::<LengthLimitError>().is_some() {
        return Failure {
            result: AttemptResult::HttpError,
            error: format!("response body larger than {MAX_BODY} bytes"),
        };
    }
    Failure {
        result: AttemptResult::HttpError,
        error: error_chain(err),
    }
}

/// Socket errors keep their meaning; an early close is a reset; the rest is a broken
/// HTTP exchange.
pub(crate) fn from_hyper(err: &hyper::Error) -> Failure {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let mut failure = from_io(io);
            failure.error = error_chain(err);
            return failure;
        }
        source = e.source();
    }
    let result = if err.is_timeout() {
        AttemptResult::Timeout
    } else if err.is_incomplete_message() || err.is_closed() || err.is_canceled() {
        AttemptResult::Reset
    } else {
        AttemptResult::HttpError
    };
    Failure {
        result,
        error: error_chain(err),
    }
}
