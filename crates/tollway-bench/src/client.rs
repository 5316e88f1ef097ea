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
//! - `stream` (TCP_STREAM): one connection, bulk writes of
//!   [`STREAM_CHUNK`] bytes for the whole run; then the client half-closes
//!   and reads the server's count of bytes received (checked against what
//!   it sent). The throughput counts the bytes written in the measured
//!   window.
//! - `udp` (a DNS storm): [`ClientOptions::udp_ports`] connected UDP
//!   sockets (one source port each) send DNS queries ([`dns_query`]) to
//!   the target in turn, as fast as they go; `ops` counts the datagrams
//!   sent.
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
    /// Bulk writes on one connection (throughput).
    Stream,
    /// DNS queries over UDP from many source ports (a flow storm).
    Udp,
}

impl Mode {
    /// `crr` / `rr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Crr => "crr",
            Mode::Rr => "rr",
            Mode::Stream => "stream",
            Mode::Udp => "udp",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "crr" => Ok(Mode::Crr),
            "rr" => Ok(Mode::Rr),
            "stream" => Ok(Mode::Stream),
            "udp" => Ok(Mode::Udp),
            other => Err(format!("unknown mode {other:?} (crr, rr, stream, udp)")),
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
    /// `udp`: source sockets (ports) the datagrams are spread over.
    pub udp_ports: usize,
    /// Start at this wall-clock time (sleep until then), so that several
    /// clients and the harness's window line up; `None`: at once.
    pub start_at: Option<std::time::SystemTime>,
}

/// Bytes of one write of the `stream` mode.
pub const STREAM_CHUNK: usize = 128 * 1024;

/// Default of [`ClientOptions::udp_ports`].
pub const DEFAULT_UDP_PORTS: usize = 256;

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
    /// `stream`: bytes written in the measured window (`udp`: payload
    /// bytes sent in it).
    #[serde(default)]
    pub bytes: u64,
    /// `stream`: `bytes` in Gbit/s over `duration_s`.
    #[serde(default)]
    pub gbit_s: f64,
    /// `stream`: the bytes the server says it received on the connection
    /// (warm-up included), when it answered.
    #[serde(default)]
    pub server_bytes: Option<u64>,
    /// With a start time: how late the client was for it, ms (0: on
    /// time).
    #[serde(default)]
    pub late_ms: Option<f64>,
}

impl ClientReport {
    /// One human line.
    pub fn render_text(&self) -> String {
        let mut s = match self.mode {
            Mode::Stream => format!(
                "stream {}: {} bytes in {:.2} s = {:.2} Gbit/s (server received {})",
                self.target,
                self.bytes,
                self.duration_s,
                self.gbit_s,
                self.server_bytes
                    .map_or("?".to_string(), |b| format!("{b} bytes"))
            ),
            Mode::Udp => format!(
                "udp {}: {} datagrams in {:.2} s = {:.0} datagrams/s",
                self.target, self.ops, self.duration_s, self.rate_ops_s
            ),
            Mode::Crr | Mode::Rr => self.render_latency(),
        };
        if self.errors > 0 {
            s.push_str(&format!(
                ", {} errors (first: {})",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        s
    }

    fn render_latency(&self) -> String {
        format!(
            "{} {}: {} ops in {:.2} s = {:.0} ops/s, p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            self.mode.as_str(),
            self.target,
            self.ops,
            self.duration_s,
            self.rate_ops_s,
            self.latency.p50_us,
            self.latency.p99_us,
            self.latency.max_us
        )
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
    let late_ms = opts
        .start_at
        .map(|at| match at.duration_since(std::time::SystemTime::now()) {
            Ok(wait) => {
                std::thread::sleep(wait);
                0.0
            }
            Err(e) => round1(e.duration().as_secs_f64() * 1000.0),
        });
    let mut r = match opts.mode {
        Mode::Crr | Mode::Rr => run_latency(opts),
        Mode::Stream => run_stream(opts),
        Mode::Udp => run_udp(opts),
    };
    r.late_ms = late_ms;
    r
}

fn run_latency(opts: &ClientOptions) -> ClientReport {
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
        // Only RR gets here (`run` sends the other modes elsewhere).
        Mode::Rr | Mode::Stream | Mode::Udp => {
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
        bytes: 0,
        gbit_s: 0.0,
        server_bytes: None,
        late_ms: None,
    }
}

/// A report with no transaction (for the modes without latencies).
fn volume_report(opts: &ClientOptions, window: Duration, ops: u64, bytes: u64) -> ClientReport {
    let secs = window.as_secs_f64().max(1e-9);
    ClientReport {
        mode: opts.mode,
        target: opts.target.to_string(),
        duration_s: (secs * 1000.0).round() / 1000.0,
        ops,
        errors: 0,
        first_error: None,
        rate_ops_s: round1(ops as f64 / secs),
        latency: Summary::default(),
        buckets: Vec::new(),
        bytes,
        gbit_s: ((bytes as f64 * 8.0 / secs / 1e9) * 1000.0).round() / 1000.0,
        server_bytes: None,
        late_ms: None,
    }
}

/// `stream`: bulk writes on one connection until the deadline, then a
/// half-close and the server's count of bytes received.
fn run_stream(opts: &ClientOptions) -> ClientReport {
    let started = Instant::now();
    let measure_from = started + opts.warmup;
    let end = measure_from + opts.duration;
    let mut s = match connect(opts.target, opts.io_timeout, false) {
        Ok(s) => s,
        Err(e) => {
            let mut r = volume_report(opts, opts.duration, 0, 0);
            r.errors = 1;
            r.first_error = Some(format!("connect: {e}"));
            return r;
        }
    };
    let buf = vec![0x5a_u8; STREAM_CHUNK];
    let (mut total, mut measured, mut writes) = (0u64, 0u64, 0u64);
    let mut last = measure_from;
    let mut error: Option<String> = None;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        match s.write(&buf) {
            Ok(n) => {
                total += n as u64;
                if t0 >= measure_from {
                    measured += n as u64;
                    writes += 1;
                    last = Instant::now();
                }
            }
            Err(e) => {
                error = Some(format!("write: {e}"));
                break;
            }
        }
    }
    let window = if measured > 0 {
        last.saturating_duration_since(measure_from)
    } else {
        opts.duration
    };
    let mut r = volume_report(opts, window, writes, measured);
    if error.is_none() {
        // What the server got: it answers EOF with its count.
        let counted = s
            .shutdown(std::net::Shutdown::Write)
            .and_then(|()| {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).map(|()| u64::from_le_bytes(b))
            })
            .map_err(|e| format!("reading the server's count: {e}"));
        match counted {
            Ok(n) => {
                r.server_bytes = Some(n);
                if n != total {
                    error = Some(format!("the server received {n} bytes of {total} sent"));
                }
            }
            Err(e) => error = Some(e),
        }
    }
    if let Some(e) = error {
        r.errors = 1;
        r.first_error = Some(e);
    }
    r
}

/// A DNS query (RFC 1035): id `id`, recursion desired, one question for
/// the A record of `name` (dot-separated labels, each under 64 bytes).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(18 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        m.push(l.len() as u8);
        m.extend_from_slice(l);
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

/// `udp`: DNS queries from `udp_ports` connected sockets in turn, as fast
/// as they go.
fn run_udp(opts: &ClientOptions) -> ClientReport {
    let started = Instant::now();
    let measure_from = started + opts.warmup;
    let end = measure_from + opts.duration;
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut socks = Vec::new();
    for i in 0..opts.udp_ports.max(1) {
        let s = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.connect(opts.target).map(|()| s))
            .and_then(|s| s.set_write_timeout(Some(opts.io_timeout)).map(|()| s));
        match s {
            Ok(s) => {
                let name = format!("storm-{i}.bench.svc.cluster.local");
                socks.push((s, dns_query(i as u16, &name)));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("socket: {e}"));
            }
        }
    }
    let (mut sent, mut bytes) = (0u64, 0u64);
    let mut last = measure_from;
    let mut id: u16 = 0;
    'run: loop {
        for (s, msg) in &mut socks {
            let now = Instant::now();
            if now >= end {
                break 'run;
            }
            id = id.wrapping_add(1);
            msg[..2].copy_from_slice(&id.to_be_bytes());
            match s.send(msg) {
                Ok(n) if now >= measure_from => {
                    sent += 1;
                    bytes += n as u64;
                    last = now;
                }
                Ok(_) => {}
                // ICMP errors of earlier datagrams, full queues: counted.
                Err(e) if now >= measure_from => {
                    errors += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
                Err(_) => {}
            }
        }
        if socks.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
            if Instant::now() >= end {
                break;
            }
        }
    }
    let window = if sent > 0 {
        last.saturating_duration_since(measure_from)
    } else {
        opts.duration
    };
    let mut r = volume_report(opts, window, sent, bytes);
    r.gbit_s = 0.0;
    r.errors = errors;
    r.first_error = first_error;
    r
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
                udp_ports: 1,
                start_at: None,
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
            udp_ports: 1,
            start_at: None,
        });
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(r.ops, 0);
        assert!(r.errors > 0);
        assert!(r.first_error.is_some());
    }

    #[test]
    fn modes_parse() {
        for m in [Mode::Crr, Mode::Rr, Mode::Stream, Mode::Udp] {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        assert!("sctp".parse::<Mode>().is_err());
    }

    /// The server's sinks on loopback: (stream port, udp port, datagrams
    /// received).
    fn sinks() -> (u16, u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let ports = (
            tcp.local_addr().expect("addr").port(),
            udp.local_addr().expect("addr").port(),
        );
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                tcp.set_nonblocking(true).expect("nonblocking");
                udp.set_nonblocking(true).expect("nonblocking");
                let l = tokio::net::TcpListener::from_std(tcp).expect("listener");
                let u = tokio::net::UdpSocket::from_std(udp).expect("udp");
                tokio::spawn(crate::server::udp_sink(u, c));
                crate::server::stream_accept_loop(l).await;
            });
        });
        (ports.0, ports.1, count)
    }

    #[test]
    fn stream_counts_what_the_server_received() {
        let (port, _, _) = sinks();
        let r = run(&ClientOptions {
            target: SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port),
            mode: Mode::Stream,
            duration: Duration::from_millis(200),
            warmup: Duration::from_millis(20),
            io_timeout: Duration::from_secs(2),
            udp_ports: 1,
            start_at: None,
        });
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert!(r.bytes >= STREAM_CHUNK as u64, "{}", r.bytes);
        assert!(r.server_bytes.expect("count") >= r.bytes);
        assert!(r.gbit_s > 0.0);
        assert!(r.render_text().contains("Gbit/s"));
    }

    #[test]
    fn udp_sends_dns_queries_from_many_ports() {
        let (_, port, received) = sinks();
        let r = run(&ClientOptions {
            target: SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port),
            mode: Mode::Udp,
            duration: Duration::from_millis(100),
            warmup: Duration::ZERO,
            io_timeout: Duration::from_secs(2),
            udp_ports: 16,
            start_at: Some(std::time::SystemTime::now() + Duration::from_millis(50)),
        });
        assert!(r.ops > 16, "{}", r.ops);
        assert_eq!(r.late_ms, Some(0.0));
        std::thread::sleep(Duration::from_millis(50));
        assert!(received.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }

    #[test]
    fn dns_queries_are_well_formed() {
        let q = dns_query(0x1234, "storm-1.bench.svc.cluster.local");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[4..6], &[0, 1], "one question");
        assert_eq!(q[12], 7);
        assert_eq!(&q[13..20], b"storm-1");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1], "root, A, IN");
    }
}
