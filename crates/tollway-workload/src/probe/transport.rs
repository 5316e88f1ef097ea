//! TCP greeting and UDP exchange attempts, and socket error classification.

use std::error::Error as StdError;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout_at;

use super::{Answer, AttemptResult, Budget, Failure, Outcome};

/// Longest TCP greeting read.
const MAX_GREETING: usize = 64 * 1024;

/// Connects and reads the greeting: up to the first `\n`, the peer's close, or the
/// deadline, whichever comes first. Nothing at all is a failure.
pub(crate) async fn tcp_greeting(
    addr: SocketAddr,
    budget: Budget,
    local: &mut Option<SocketAddr>,
) -> Outcome {
    let mut stream = match timeout_at(budget.deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(budget.timed_out("connection")),
        Ok(Err(err)) => return Err(from_io(&err)),
        Ok(Ok(stream)) => stream,
    };
    *local = stream.local_addr().ok();
    let mut greeting = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match timeout_at(budget.deadline, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => {
                greeting.extend_from_slice(&buf[..n]);
                if let Some(newline) = greeting.iter().position(|&b| b == b'\n') {
                    greeting.truncate(newline);
                    break false;
                }
                if greeting.len() >= MAX_GREETING {
                    break false;
                }
            }
            Ok(Err(err)) if greeting.is_empty() => return Err(from_io(&err)),
            Ok(Err(_)) => break true,
        }
    };
    if greeting.is_empty() {
        return Err(if closed {
            Failure {
                result: AttemptResult::Reset,
                error: "connection closed before a greeting".into(),
            }
        } else {
            budget.timed_out("greeting")
        });
    }
    if greeting.last() == Some(&b'\r') {
        greeting.pop();
    }
    Ok(Answer {
        status: None,
        headers: None,
        body: String::from_utf8_lossy(&greeting).into_owned(),
    })
}

/// Sends one datagram from a connected socket (so ICMP errors are reported) and waits
/// for one reply.
pub(crate) async fn udp_exchange(
    addr: SocketAddr,
    payload: &[u8],
    budget: Budget,
    local: &mut Option<SocketAddr>,
) -> Outcome {
    let any: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).await.map_err(|e| from_io(&e))?;
    socket.connect(addr).await.map_err(|e| from_io(&e))?;
    *local = socket.local_addr().ok();
    let mut buf = vec![0u8; 64 * 1024];
    let exchange = async {
        socket.send(payload).await?;
        socket.recv(&mut buf).await
    };
    match timeout_at(budget.deadline, exchange).await {
        Err(_) => Err(budget.timed_out("UDP reply")),
        Ok(Err(err)) => Err(from_io(&err)),
        Ok(Ok(n)) => Ok(Answer {
            status: None,
            headers: None,
            body: String::from_utf8_lossy(&buf[..n]).into_owned(),
        }),
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
