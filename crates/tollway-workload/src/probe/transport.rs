//! TCP greeting, TCP line exchanges and UDP exchange attempts, client socket setup, and
//! socket error classification.

use std::error::Error as StdError;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout_at;

use super::{Answer, AttemptResult, Budget, Failure, Outcome};

/// Longest TCP greeting read.
const MAX_GREETING: usize = 64 * 1024;

/// Longest echoed line accepted by [`TcpSession::ping`].
const MAX_ECHO_LINE: usize = 64 * 1024;

/// Most stale datagrams (or stale errors) discarded before a reused UDP exchange.
const MAX_STALE_DATAGRAMS: usize = 1024;

/// The wildcard address of `addr`'s family with `port`.
fn unspecified(addr: SocketAddr, port: u16) -> SocketAddr {
    if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, port).into()
    }
}

fn bind_failure(port: u16, err: &io::Error) -> Failure {
    let mut failure = from_io(err);
    failure.error = format!("cannot bind local port {port}: {err}");
    failure
}

/// Connects a TCP socket to `addr`, from `local_port` when given.
///
/// With a local port the socket gets `SO_REUSEADDR` (so the bind is not refused because
/// of an earlier connection on that port) and `SO_LINGER` 0: closing it sends a RST and
/// leaves no TIME_WAIT behind, so the next attempt can connect from the same port to the
/// same address right away. The caller still closes one connection before opening the
/// next.
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    local_port: Option<u16>,
) -> Result<TcpStream, Failure> {
    let Some(port) = local_port else {
        return TcpStream::connect(addr).await.map_err(|e| from_io(&e));
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| from_io(&e))?;
    socket
        .set_reuseaddr(true)
        .and_then(|()| socket.set_zero_linger())
        .map_err(|e| from_io(&e))?;
    socket
        .bind(unspecified(addr, port))
        .map_err(|e| bind_failure(port, &e))?;
    socket.connect(addr).await.map_err(|e| from_io(&e))
}

/// Records the socket's own address and its peer (`getpeername()`, which is what a
/// socket-level load balancer reports, not necessarily the backend).
fn record_tcp(stream: &TcpStream, local: &mut Option<SocketAddr>, remote: &mut Option<SocketAddr>) {
    *local = stream.local_addr().ok();
    if let Ok(peer) = stream.peer_addr() {
        *remote = Some(peer);
    }
}

/// A connected TCP connection whose greeting was read, for line exchanges.
#[derive(Debug)]
pub(crate) struct TcpSession {
    stream: TcpStream,
    /// Bytes read after the last complete line.
    pending: Vec<u8>,
    /// Why the connection is unusable, once it is.
    closed: Option<String>,
    /// The probe's socket address.
    pub(crate) local: Option<SocketAddr>,
    /// `getpeername()` of the socket.
    pub(crate) remote: Option<SocketAddr>,
}

/// Connects and reads the greeting: up to the first `\n`, the peer's close, or the
/// deadline, whichever comes first. Nothing at all is a failure.
pub(crate) async fn tcp_greeting(
    addr: SocketAddr,
    local_port: Option<u16>,
    budget: Budget,
    local: &mut Option<SocketAddr>,
    remote: &mut Option<SocketAddr>,
) -> Outcome {
    tcp_connect(addr, local_port, budget, local, remote)
        .await
        .map(|(answer, _session)| answer)
}

/// [`tcp_greeting`], keeping the connection for [`TcpSession::ping`].
pub(crate) async fn tcp_connect(
    addr: SocketAddr,
    local_port: Option<u16>,
    budget: Budget,
    local: &mut Option<SocketAddr>,
    remote: &mut Option<SocketAddr>,
) -> Result<(Answer, TcpSession), Failure> {
    let mut stream = match timeout_at(budget.deadline, connect_tcp(addr, local_port)).await {
        Err(_) => return Err(budget.timed_out("connection")),
        Ok(Err(failure)) => return Err(failure),
        Ok(Ok(stream)) => stream,
    };
    record_tcp(&stream, local, remote);
    let mut data = Vec::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match timeout_at(budget.deadline, stream.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) => break Some("connection closed by the peer after the greeting".to_owned()),
            Ok(Ok(n)) => {
                data.extend_from_slice(&buf[..n]);
                if let Some(newline) = data.iter().position(|&b| b == b'\n') {
                    pending = data.split_off(newline + 1);
                    data.truncate(newline);
                    break None;
                }
                if data.len() >= MAX_GREETING {
                    break None;
                }
            }
            Ok(Err(err)) if data.is_empty() => return Err(from_io(&err)),
            Ok(Err(err)) => break Some(err.to_string()),
        }
    };
    if data.is_empty() {
        return Err(if closed.is_some() {
            Failure {
                result: AttemptResult::Reset,
                error: "connection closed before a greeting".into(),
            }
        } else {
            budget.timed_out("greeting")
        });
    }
    if data.last() == Some(&b'\r') {
        data.pop();
    }
    let answer = Answer {
        status: None,
        headers: None,
        body: String::from_utf8_lossy(&data).into_owned(),
    };
    let session = TcpSession {
        stream,
        pending,
        closed,
        local: *local,
        remote: *remote,
    };
    Ok((answer, session))
}

impl TcpSession {
    /// Sends `ping <seq>\n` and waits for the same line to come back. Echoes of earlier
    /// pings (that timed out) are skipped. Once the connection is closed or broken,
    /// every later call fails at once with `reset`.
    pub(crate) async fn ping(&mut self, seq: u32, budget: Budget) -> Outcome {
        if let Some(reason) = &self.closed {
            return Err(Failure {
                result: AttemptResult::Reset,
                error: format!("connection already closed: {reason}"),
            });
        }
        let line = format!("ping {seq}");
        let sent = format!("{line}\n");
        match timeout_at(budget.deadline, self.stream.write_all(sent.as_bytes())).await {
            Err(_) => return Err(budget.timed_out(&format!("room to send {line:?}"))),
            Ok(Err(err)) => return Err(self.broken(&err)),
            Ok(Ok(())) => {}
        }
        let mut buf = [0u8; 4096];
        loop {
            while let Some(newline) = self.pending.iter().position(|&b| b == b'\n') {
                let mut got: Vec<u8> = self.pending.drain(..=newline).collect();
                got.pop();
                if got.last() == Some(&b'\r') {
                    got.pop();
                }
                let got = String::from_utf8_lossy(&got).into_owned();
                if got == line {
                    return Ok(Answer {
                        status: None,
                        headers: None,
                        body: got,
                    });
                }
                if !is_earlier_ping(&got, seq) {
                    return Err(Failure {
                        result: AttemptResult::HttpError,
                        error: format!("expected the echo {line:?}, got {got:?}"),
                    });
                }
            }
            if self.pending.len() > MAX_ECHO_LINE {
                self.pending.clear();
                return Err(Failure {
                    result: AttemptResult::HttpError,
                    error: format!(
                        "expected the echo {line:?}, got a line over {MAX_ECHO_LINE} bytes"
                    ),
                });
            }
            match timeout_at(budget.deadline, self.stream.read(&mut buf)).await {
                Err(_) => return Err(budget.timed_out(&format!("echo of {line:?}"))),
                Ok(Ok(0)) => {
                    let reason = "connection closed by the peer".to_owned();
                    self.closed = Some(reason.clone());
                    return Err(Failure {
                        result: AttemptResult::Reset,
                        error: reason,
                    });
                }
                Ok(Ok(n)) => self.pending.extend_from_slice(&buf[..n]),
                Ok(Err(err)) => return Err(self.broken(&err)),
            }
        }
    }

    fn broken(&mut self, err: &io::Error) -> Failure {
        let failure = from_io(err);
        self.closed = Some(failure.error.clone());
        failure
    }
}

/// `ping K` with K < `seq`: the late echo of an earlier exchange.
fn is_earlier_ping(line: &str, seq: u32) -> bool {
    line.strip_prefix("ping ")
        .and_then(|k| k.parse::<u32>().ok())
        .is_some_and(|k| k < seq)
}

/// A connected UDP socket (so ICMP errors are reported), kept across attempts with
/// `--reuse`.
#[derive(Debug)]
pub(crate) struct UdpSession {
    socket: UdpSocket,
    buf: Vec<u8>,
    /// The probe's socket address.
    pub(crate) local: Option<SocketAddr>,
    /// `getpeername()` of the socket.
    pub(crate) remote: Option<SocketAddr>,
}

/// Binds (to `local_port` when given, else an ephemeral port) and connects a UDP socket.
///
/// No `SO_REUSEADDR`: UDP has no TIME_WAIT, so the port is free again as soon as the
/// previous attempt's socket is closed, and without it two probes cannot share the port.
pub(crate) async fn udp_open(
    addr: SocketAddr,
    local_port: Option<u16>,
) -> Result<UdpSession, Failure> {
    let port = local_port.unwrap_or(0);
    let socket = UdpSocket::bind(unspecified(addr, port))
        .await
        .map_err(|e| {
            if local_port.is_some() {
                bind_failure(port, &e)
            } else {
                from_io(&e)
            }
        })?;
    socket.connect(addr).await.map_err(|e| from_io(&e))?;
    let local = socket.local_addr().ok();
    let remote = socket.peer_addr().ok().or(Some(addr));
    Ok(UdpSession {
        socket,
        buf: vec![0u8; 64 * 1024],
        local,
        remote,
    })
}

/// Sends one datagram from a fresh connected socket and waits for one reply.
pub(crate) async fn udp_exchange(
    addr: SocketAddr,
    local_port: Option<u16>,
    payload: &[u8],
    budget: Budget,
    local: &mut Option<SocketAddr>,
    remote: &mut Option<SocketAddr>,
) -> Outcome {
    let mut session = udp_open(addr, local_port).await?;
    *local = session.local;
    *remote = session.remote;
    session.exchange(payload, budget).await
}

impl UdpSession {
    /// Sends one datagram and waits for one reply. A failure (timeout, an ICMP-induced
    /// ECONNREFUSED, ...) leaves the socket usable for the next exchange.
    pub(crate) async fn exchange(&mut self, payload: &[u8], budget: Budget) -> Outcome {
        self.discard_stale();
        let socket = &self.socket;
        let buf = &mut self.buf;
        let exchange = async {
            socket.send(payload).await?;
            socket.recv(buf).await
        };
        match timeout_at(budget.deadline, exchange).await {
            Err(_) => Err(budget.timed_out("UDP reply")),
            Ok(Err(err)) => Err(from_io(&err)),
            Ok(Ok(n)) => Ok(Answer {
                status: None,
                headers: None,
                body: String::from_utf8_lossy(&self.buf[..n]).into_owned(),
            }),
        }
    }

    /// Drops late replies to (and late ICMP errors for) earlier exchanges, so that they
    /// are not taken for the answer to the next one.
    fn discard_stale(&mut self) {
        for _ in 0..MAX_STALE_DATAGRAMS {
            match self.socket.try_recv(&mut self.buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Ok(_) | Err(_) => {}
            }
        }
    }
}

/// Maps a socket error to an attempt result. Errors with no better match (EPERM from a
/// policy hook, EADDRNOTAVAIL, ...) count as unreachable.
pub(crate) fn from_io(err: &io::Error) -> Failure {
    let result = match err.kind() {
        io::ErrorKind::ConnectionRefused => AttemptResult::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::NotConnected => AttemptResult::Reset,
        io::ErrorKind::TimedOut => AttemptResult::Timeout,
        _ => AttemptResult::Unreachable,
    };
    Failure {
        result,
        error: err.to_string(),
    }
}

/// `error: cause: cause...`, skipping causes already included in the previous message.
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds() {
        use io::ErrorKind::*;
        for (kind, want) in [
            (ConnectionRefused, AttemptResult::Refused),
            (ConnectionReset, AttemptResult::Reset),
            (BrokenPipe, AttemptResult::Reset),
            (UnexpectedEof, AttemptResult::Reset),
            (TimedOut, AttemptResult::Timeout),
            (HostUnreachable, AttemptResult::Unreachable),
            (NetworkUnreachable, AttemptResult::Unreachable),
            (PermissionDenied, AttemptResult::Unreachable),
        ] {
            assert_eq!(from_io(&io::Error::from(kind)).result, want, "{kind:?}");
        }
    }

    #[test]
    fn earlier_pings() {
        assert!(is_earlier_ping("ping 1", 2));
        assert!(!is_earlier_ping("ping 2", 2));
        assert!(!is_earlier_ping("ping 3", 2));
        assert!(!is_earlier_ping("pong 1", 2));
        assert!(!is_earlier_ping("ping x", 2));
    }

    #[test]
    fn os_errors() {
        // Linux errno values: ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH.
        for (errno, want) in [
            (111, AttemptResult::Refused),
            (104, AttemptResult::Reset),
            (113, AttemptResult::Unreachable),
            (101, AttemptResult::Unreachable),
        ] {
            if cfg!(target_os = "linux") {
                let failure = from_io(&io::Error::from_raw_os_error(errno));
                assert_eq!(failure.result, want, "errno {errno}");
            }
        }
    }

    #[derive(Debug)]
    struct Outer(&'static str, io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn chain_appends_new_causes_only() {
        let e = Outer("request failed", io::Error::other("refused"));
        assert_eq!(error_chain(&e), "request failed: refused");
        let e = Outer("request failed: refused", io::Error::other("refused"));
        assert_eq!(error_chain(&e), "request failed: refused");
    }
}
