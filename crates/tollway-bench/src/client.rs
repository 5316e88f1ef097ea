//! `tollway bench client`: one thread, blocking sockets, for a fixed time.
//!
//! - `crr` (netperf's TCP_CRR): connect, send one request, read one
//!   response, close; repeat. One transaction's latency runs from before
//!   `connect()` to after `close()`. The close is abortive (`SO_LINGER` 0,
//!   an RST): neither side keeps a TIME_WAIT socket, so tens of thousands
//!   of connections a run do not exhaust the client's ephemeral ports
//!   (28,232 by default) or fill conntrack tables with TIME_WAIT entries.
//! - `rr` (TCP_RR): one connection, opened before the clock starts; request
//!   and response repeated on it.
//!
//! Every socket has 2 s send/receive timeouts (`SO_SNDTIMEO` also bounds
//! `connect()`), so a black-holed path costs errors, never a hang.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use serde::{Deserialize, Serialize};

use crate::server::{REQUEST, RESPONSE_LEN};
use crate::stats::{Bucket, Latency, Summary, round1};

/// What the client measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Connect, request, response, close; repeat.
    Crr,
    /// Request and response repeated on one connection.
    Rr,
}

impl Mode {
    /// `crr` / `rr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Crr => "crr",
            Mode::Rr => "rr",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "crr" => Ok(Mode::Crr),
            "rr" => Ok(Mode::Rr),
            other => Err(format!("unknown mode {other:?} (crr, rr)")),
        }
    }
}

/// A client run.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Where to connect.
    pub target: SocketAddrV4,
    /// CRR or RR.
    pub mode: Mode,
    /// How long to measure.
    pub duration: Duration,
    /// How long to run first without recording.
    pub warmup: Duration,
    /// Send/receive/connect timeout of each socket.
    pub io_timeout: Duration,
}

/// What a client run reports (`-o json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientReport {
    /// `crr` / `rr`.
    pub mode: Mode,
    /// `IP:port`.
    pub target: String,
    /// Seconds measured (after the warm-up).
    pub duration_s: f64,
    /// Transactions completed in that time.
    pub ops: u64,
    /// Transactions that failed in that time.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// `ops / duration_s`.
    pub rate_ops_s: f64,
    /// Latency percentiles.
    pub latency: Summary,
    /// The latency histogram's non-empty buckets `[ns, count]`, for
    /// merging runs.
    pub buckets: Vec<Bucket>,
}

impl ClientReport {
    /// One human line.
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "{} {}: {} ops in {:.2} s = {:.0} ops/s, p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            self.mode.as_str(),
            self.target,
            self.ops,
            self.duration_s,
            self.rate_ops_s,
            self.latency.p50_us,
            self.latency.p99_us,
            self.latency.max_us
        );
        if self.errors > 0 {
            s.push_str(&format!(
                ", {} errors (first: {})",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        s
    }
}

fn errno(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from(e)
}

/// A connected socket with the benchmark's options.
fn connect(
    target: SocketAddrV4,
    timeout: Duration,
    abortive_close: bool,
) -> std::io::Result<TcpStream> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(errno)?;
    let tv = TimeVal::milliseconds(timeout.as_millis().min(i64::MAX as u128) as i64);
    socket::setsockopt(&fd, sockopt::SendTimeout, &tv).map_err(errno)?;
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(errno)?;
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true).map_err(errno)?;
    if abortive_close {
        let linger = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        socket::setsockopt(&fd, sockopt::Linger, &linger).map_err(errno)?;
    }
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(target)).map_err(errno)?;
    Ok(TcpStream::from(fd))
}

fn transact(stream: &mut TcpStream, resp: &mut [u8; RESPONSE_LEN]) -> std::io::Result<()> {
    stream.write_all(&REQUEST)?;
    stream.read_exact(resp)
}

/// Run the client; never fails as a whole (failures are counted).
pub fn run(opts: &ClientOptions) -> ClientReport {
    let mut hist = Latency::new();
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut resp = [0u8; RESPONSE_LEN];
    let started = Instant::now();
    let measure_from = started + opts.warmup;
    let end = measure_from + opts.duration;
    let mut fail = |when: Instant, e: std::io::Error, errors: &mut u64| {
        if when >= measure_from {
            *errors += 1;
            first_error.get_or_insert_with(|| e.to_string());
        }
    };
    let mut last = measure_from;
    match opts.mode {
        Mode::Crr => loop {
            let t0 = Instant::now();
            if t0 >= end {
                break;
            }
            let r = connect(opts.target, opts.io_timeout, true).and_then(|mut s| {
                let r = transact(&mut s, &mut resp);
                drop(s);
                r
            });
            let t1 = Instant::now();
            match r {
                Ok(()) if t0 >= measure_from => {
                    hist.record_ns((t1 - t0).as_nanos() as u64);
                    last = t1;
                }
                Ok(()) => {}
                Err(e) => {
                    fail(t0, e, &mut errors);
                    // A refused or unreachable target fails at once: do not
                    // spin on it.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        },
        Mode::Rr => {
            let mut stream: Option<TcpStream> = None;
            loop {
                if stream.is_none() {
                    match connect(opts.target, opts.io_timeout, false) {
                        Ok(s) => stream = Some(s),
                        Err(e) => {
                            fail(Instant::now(), e, &mut errors);
                            std::thread::sleep(Duration::from_millis(1));
                            if Instant::now() >= end {
                                break;
                            }
                            continue;
                        }
                    }
                }
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let Some(s) = stream.as_mut() else { continue };
                match transact(s, &mut resp) {
                    Ok(()) => {
                        let t1 = Instant::now();
                        if t0 >= measure_from {
                            hist.record_ns((t1 - t0).as_nanos() as u64);
                            last = t1;
                        }
                    }
                    Err(e) => {
                        fail(t0, e, &mut errors);
                        stream = None;
                    }
                }
            }
        }
    }
    // The window ends with the last transaction that ended in it (or at
    // the deadline when nothing completed).
    let window = if hist.count() > 0 {
        last.saturating_duration_since(measure_from)
    } else {
        opts.duration
    };
    let secs = window.as_secs_f64().max(1e-9);
    ClientReport {
        mode: opts.mode,
        target: opts.target.to_string(),
        duration_s: (secs * 1000.0).round() / 1000.0,
        ops: hist.count(),
        errors,
        first_error,
        rate_ops_s: round1(hist.count() as f64 / secs),
        latency: hist.summary(),
        buckets: hist.buckets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                listener.set_nonblocking(true).expect("nonblocking");
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                crate::server::accept_loop(l).await;
            });
        });
        port
    }

    #[test]
    fn crr_and_rr_against_the_server_on_loopback() {
        let port = server();
        for mode in [Mode::Crr, Mode::Rr] {
            let r = run(&ClientOptions {
                target: SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port),
                mode,
                duration: Duration::from_millis(200),
                warmup: Duration::from_millis(20),
                io_timeout: Duration::from_secs(2),
            });
            assert_eq!(r.errors, 0, "{mode:?}: {:?}", r.first_error);
            assert!(r.ops > 10, "{mode:?}: {}", r.ops);
            assert!(r.latency.p50_us > 0.0 && r.latency.p50_us <= r.latency.p99_us);
            assert_eq!(r.buckets.iter().map(|b| b.1).sum::<u64>(), r.ops);
            let back: ClientReport =
                serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
            assert_eq!(back.ops, r.ops);
        }
    }

    #[test]
    fn a_refused_target_counts_errors_and_ends_on_time() {
        // A port nobody listens on (bound then dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let t = Instant::now();
        let r = run(&ClientOptions {
            target: SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port),
            mode: Mode::Crr,
            duration: Duration::from_millis(100),
            warmup: Duration::ZERO,
            io_timeout: Duration::from_secs(2),
        });
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(r.ops, 0);
        assert!(r.errors > 0);
        assert!(r.first_error.is_some());
    }

    #[test]
    fn modes_parse() {
        assert_eq!("crr".parse::<Mode>(), Ok(Mode::Crr));
        assert_eq!("rr".parse::<Mode>(), Ok(Mode::Rr));
        assert!("udp".parse::<Mode>().is_err());
    }
}
