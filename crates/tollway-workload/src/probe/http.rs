//! HTTP/1.1 or h2c exchanges, over a fresh TCP connection or a reused one.

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::target::{Target, parse_header};
use super::transport::{connect_tcp, error_chain, from_io};
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

/// Connects to `addr` (from `local_port` when given), sends the request and reads the
/// whole answer. The caller bounds the time; dropping this future closes the connection.
pub(crate) async fn exchange(
    addr: SocketAddr,
    spec: &RequestSpec,
    local_port: Option<u16>,
    local: &mut Option<SocketAddr>,
    remote: &mut Option<SocketAddr>,
) -> Outcome {
    let mut conn = HttpConnection::connect(addr, spec, local_port, local, remote).await?;
    conn.send(spec).await
}

type ConnFuture = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor given to hyper's h2 client: instead of spawning, it keeps the futures
/// (among them the one that owns the socket) for [`drive`] to poll. So nothing runs once
/// an exchange is over, and dropping the [`HttpConnection`] closes the socket at once,
/// which a reconnect from the same `--local-port` needs.
#[derive(Clone, Default)]
struct LocalExec {
    tasks: Arc<Mutex<Vec<Task>>>,
}

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.lock().push(Box::pin(future));
    }
}

impl LocalExec {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Task>> {
        // A panicking task cannot leave the list inconsistent: keep using it.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls every task (and those they spawn) once, dropping the finished ones.
    fn poll_tasks(&self, cx: &mut Context<'_>) {
        let mut pending = Vec::new();
        loop {
            // Taken out of the lock: a task being polled may spawn another one.
            let batch = std::mem::take(&mut *self.lock());
            if batch.is_empty() {
                break;
            }
            for mut task in batch {
                if task.as_mut().poll(cx).is_pending() {
                    pending.push(task);
                }
            }
        }
        self.lock().append(&mut pending);
    }

    /// Polls the tasks whenever they are woken; never completes.
    async fn run(&self) {
        poll_fn(|cx| {
            self.poll_tasks(cx);
            Poll::<()>::Pending
        })
        .await;
    }
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One HTTP/1.1 or h2c client connection that can carry several requests in turn
/// (`--reuse`).
///
/// The connection is only driven while [`HttpConnection::send`] or
/// [`HttpConnection::is_usable`] runs, in the caller's task: nothing runs in the
/// background, and dropping it closes the socket at once.
pub(crate) struct HttpConnection {
    sender: Sender,
    conn: ConnFuture,
    /// What the h2 client spawned (empty for HTTP/1.1).
    exec: LocalExec,
    /// The connection future has completed: the connection is closed.
    done: bool,
    /// The probe's socket address.
    pub(crate) local: Option<SocketAddr>,
    /// `getpeername()` of the socket.
    pub(crate) remote: Option<SocketAddr>,
}

impl fmt::Debug for HttpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConnection")
            .field("done", &self.done)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl HttpConnection {
    /// Connects and does the HTTP/1.1 or h2c handshake. `local` and `remote` are set as
    /// soon as the TCP connection is up, so that they are known even if the caller's
    /// timeout drops this future later.
    pub(crate) async fn connect(
        addr: SocketAddr,
        spec: &RequestSpec,
        local_port: Option<u16>,
        local: &mut Option<SocketAddr>,
        remote: &mut Option<SocketAddr>,
    ) -> Result<Self, Failure> {
        let stream = connect_tcp(addr, local_port).await?;
        // Best effort: only latency suffers without it.
        let _ = stream.set_nodelay(true);
        *local = stream.local_addr().ok();
        if let Ok(peer) = stream.peer_addr() {
            *remote = Some(peer);
        }
        let io = TokioIo::new(stream);
        let exec = LocalExec::default();
        let (sender, conn): (Sender, ConnFuture) = if spec.http2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(exec.clone(), io)
                .await
                .map_err(|e| from_hyper(&e))?;
            (Sender::Http2(sender), Box::pin(conn))
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| from_hyper(&e))?;
            (Sender::Http1(sender), Box::pin(conn))
        };
        Ok(Self {
            sender,
            conn,
            exec,
            done: false,
            local: *local,
            remote: *remote,
        })
    }

    /// Lets the connection process what arrived since the last request (a close, a
    /// GOAWAY, ...), then waits until it can take another request. False when it is
    /// closed. The caller bounds the time.
    pub(crate) async fn ready(&mut self) -> bool {
        if !self.done {
            let polled = poll_fn(|cx| {
                self.exec.poll_tasks(cx);
                Poll::Ready(self.conn.as_mut().poll(cx))
            })
            .await;
            if let Poll::Ready(result) = polled {
                self.done = true;
                if let Err(err) = result {
                    eprintln!("kept HTTP connection broke: {}", error_chain(&err));
                }
            }
        }
        if self.done {
            return false;
        }
        let sender = &mut self.sender;
        let work = async move {
            match sender {
                Sender::Http1(s) => s.ready().await,
                Sender::Http2(s) => s.ready().await,
            }
        };
        let (ready, _) = drive(&mut self.conn, &mut self.done, &self.exec, work).await;
        ready.is_ok()
    }

    /// Sends the request and reads the whole answer, driving the connection alongside.
    /// When both fail, the connection's error is reported: it is the root cause. A kept
    /// connection must have been [ready](HttpConnection::ready) first.
    pub(crate) async fn send(&mut self, spec: &RequestSpec) -> Outcome {
        let request = spec.request();
        let sender = &mut self.sender;
        let work = async move {
            let response = match sender {
                Sender::Http1(s) => s.send_request(request).await,
                Sender::Http2(s) => s.send_request(request).await,
            }
            .map_err(|e| from_hyper(&e))?;
            read_answer(response).await
        };
        match drive(&mut self.conn, &mut self.done, &self.exec, work).await {
            (Err(_), Some(err)) => Err(from_hyper(&err)),
            (outcome, _) => outcome,
        }
    }
}

/// Polls the connection (and its h2 tasks) alongside `work` in the same task, so that
/// nothing keeps running once `work` is done or dropped; returns `work`'s output and the
/// connection's error if it failed meanwhile. `done` records that the connection future
/// completed (it must not be polled again).
async fn drive<W: Future>(
    conn: &mut ConnFuture,
    done: &mut bool,
    exec: &LocalExec,
    work: W,
) -> (W::Output, Option<hyper::Error>) {
    let mut work = pin!(work);
    let mut conn_error = None;
    let tasks = exec.run();
    let mut tasks = pin!(tasks);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return (output, conn_error),
            () = &mut tasks => {}
            result = conn.as_mut(), if !*done => {
                *done = true;
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
