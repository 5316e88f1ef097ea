//! `tollway workload probe`: connect to an `http://`, `tcp://` or `udp://` target and
//! report each attempt.

mod http;
mod target;
mod transport;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use self::target::Scheme;
use crate::WorkloadError;

/// Payload of a UDP probe when `--data` is not given.
pub const DEFAULT_UDP_PAYLOAD: &str = "tollway-probe";

/// Longest body shown by [`ProbeReport::render_text`], in characters.
pub const TEXT_BODY_CHARS: usize = 80;

/// The ping period of `--hold-ms` when `--interval-ms` is 0 (not given).
pub const DEFAULT_HOLD_INTERVAL_MS: u64 = 100;

/// Arguments of `tollway workload probe`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ProbeArgs {
    /// `http://host[:port][/path][?query]`, `tcp://host:port` or `udp://host:port`.
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Extra HTTP request header `Name:Value` (repeatable).
    #[arg(long = "header", value_name = "K:V")]
    pub headers: Vec<String>,
    /// HTTP request body, or the UDP datagram payload.
    #[arg(long, value_name = "BODY")]
    pub data: Option<String>,
    /// Per-attempt budget for resolving, connecting and getting the full answer.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Number of attempts.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Pause between attempts; with --hold-ms, the period of the pings (0 means 100).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub interval_ms: u64,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    #[arg(long)]
    pub http2: bool,
    /// Bind the client socket to this source port (SO_REUSEADDR; TCP connections are
    /// closed with SO_LINGER 0, i.e. a RST, so every attempt can reuse the port at once).
    #[arg(long, value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub local_port: Option<u16>,
    /// One connection or socket for all attempts: a connected UDP socket, a keep-alive
    /// HTTP/1.1 (or h2c) connection reopened only if it breaks, or one TCP connection
    /// with a `ping <seq>` line echoed per attempt after the greeting.
    #[arg(long)]
    pub reuse: bool,
    /// tcp:// only: keep one connection for N ms, sending `ping <seq>` every
    /// --interval-ms and expecting it echoed; one attempt for the greeting, then one per
    /// exchange.
    #[arg(long, value_name = "N", conflicts_with = "count",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub hold_ms: Option<u64>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
}

impl ProbeArgs {
    /// Arguments for `target` with every flag at its default.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            method: "GET".into(),
            headers: Vec::new(),
            data: None,
            timeout_ms: 2000,
            count: 1,
            interval_ms: 0,
            http2: false,
            local_port: None,
            reuse: false,
            hold_ms: None,
            output: OutputFormat::Text,
        }
    }
}

/// How the binary prints a [`ProbeReport`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// One line per attempt plus a summary line.
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// The transport-level outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// An answer arrived (any HTTP status, a TCP greeting, a UDP reply).
    Ok,
    /// ECONNREFUSED (for UDP: an ICMP port unreachable).
    Refused,
    /// No connection or no answer within `--timeout-ms`.
    Timeout,
    /// ECONNRESET, or the connection closed before an answer.
    Reset,
    /// A malformed or protocol-broken HTTP exchange (also: a TCP echo that is not the
    /// line sent).
    HttpError,
    /// EHOSTUNREACH/ENETUNREACH, an unresolvable host, or another socket error.
    Unreachable,
}

impl AttemptResult {
    /// The name used in JSON and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::HttpError => "http_error",
            Self::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One probe attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Transport-level outcome.
    pub result: AttemptResult,
    /// HTTP status, for HTTP answers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// HTTP body, TCP greeting line (without the newline) or UDP datagram; lossy UTF-8.
    #[serde(default)]
    pub body: String,
    /// HTTP response headers (lowercase names, repeated ones joined with ", ").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// From the start of the connect to the full answer (or the failure).
    pub latency_us: u64,
    /// What went wrong, when `result` is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The probe's own socket address (`getsockname()`), once a socket was connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_addr: Option<SocketAddr>,
    /// The peer: `getpeername()` of the connected socket (a socket-level load balancer
    /// may show the service address here, not the backend's), else the address the
    /// target resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<SocketAddr>,
    /// With `--reuse`: the connection of the earlier attempts was closed or broken, so
    /// this attempt opened a new one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reconnected: bool,
    /// For a TCP line exchange (`--hold-ms`, or `--reuse` after the greeting): the
    /// `<seq>` of the `ping <seq>` line sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Attempt {
    /// HTTP 2xx, a TCP greeting or a UDP reply.
    pub fn succeeded(&self) -> bool {
        self.result == AttemptResult::Ok && self.status.is_none_or(|s| (200..300).contains(&s))
    }
}

/// Attempt counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Attempts that [succeeded](Attempt::succeeded).
    pub ok: usize,
    /// All other attempts.
    pub failed: usize,
}

/// The outcome of a probe: every attempt, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The target as given.
    pub target: String,
    /// The attempts, in order.
    pub attempts: Vec<Attempt>,
    /// Counts over `attempts`.
    pub summary: Summary,
}

impl ProbeReport {
    /// Builds a report, computing the summary.
    pub fn new(target: String, attempts: Vec<Attempt>) -> Self {
        let ok = attempts.iter().filter(|a| a.succeeded()).count();
        let summary = Summary {
            ok,
            failed: attempts.len() - ok,
        };
        Self {
            target,
            attempts,
            summary,
        }
    }

    /// True when there was at least one attempt and every attempt succeeded.
    pub fn success(&self) -> bool {
        !self.attempts.is_empty() && self.attempts.iter().all(Attempt::succeeded)
    }

    /// One line per attempt, like `1: ok 200 latency=812us body=web-frontend-abc`, then a
    /// summary line. No trailing newline.
    pub fn render_text(&self) -> String {
        let mut lines: Vec<String> = self
            .attempts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut line = format!("{}: {}", i + 1, a.result);
                if let Some(status) = a.status {
                    line.push_str(&format!(" {status}"));
                }
                line.push_str(&format!(" latency={}us", a.latency_us));
                if a.reconnected {
                    line.push_str(" reconnected");
                }
                if a.result == AttemptResult::Ok {
                    line.push_str(&format!(" body={}", truncate(&a.body, TEXT_BODY_CHARS)));
                }
                if let Some(error) = &a.error {
                    line.push_str(&format!(" error={error}"));
                }
                line
            })
            .collect();
        lines.push(format!(
            "summary: {} ok={} failed={}",
            self.target, self.summary.ok, self.summary.failed
        ));
        lines.join("\n")
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Result<String, WorkloadError> {
        serde_json::to_string(self).map_err(|source| WorkloadError::Serialize { source })
    }

    /// Renders in the chosen format (no trailing newline).
    pub fn render(&self, format: OutputFormat) -> Result<String, WorkloadError> {
        match format {
            OutputFormat::Text => Ok(self.render_text()),
            OutputFormat::Json => self.to_json(),
        }
    }
}

/// First `max` characters, control characters escaped, `...` when cut.
fn truncate(body: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in body.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A successful answer, before timing is added.
#[derive(Debug)]
pub(crate) struct Answer {
    status: Option<u16>,
    headers: Option<BTreeMap<String, String>>,
    body: String,
}

/// A failed attempt, before timing is added.
#[derive(Debug)]
pub(crate) struct Failure {
    result: AttemptResult,
    error: String,
}

type Outcome = Result<Answer, Failure>;

/// The time an attempt may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    deadline: Instant,
    timeout: Duration,
}

impl Budget {
    fn timed_out(&self, waiting_for: &str) -> Failure {
        Failure {
            result: AttemptResult::Timeout,
            error: format!("no {waiting_for} within {}ms", self.timeout.as_millis()),
        }
    }
}

/// Runs the probe described by `args`.
pub(crate) async fn run(args: ProbeArgs) -> Result<ProbeReport, WorkloadError> {
    let target = target::parse_target(&args.target)?;
    let request = http::RequestSpec::new(&args, &target)?;
    if args.count == 0 {
        return Err(WorkloadError::InvalidCount { count: args.count });
    }
    if args.local_port == Some(0) {
        return Err(WorkloadError::InvalidOption {
            option: "--local-port",
            reason: "port 0 is not a fixed port; leave the flag out for an ephemeral one".into(),
        });
    }
    if let Some(hold_ms) = args.hold_ms {
        let reason = if target.scheme != Scheme::Tcp {
            Some("it needs a tcp:// target")
        } else if hold_ms == 0 {
            Some("at least 1 ms is needed")
        } else if args.count != 1 {
            Some("it cannot be combined with --count: it makes one exchange per --interval-ms")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(WorkloadError::InvalidOption {
                option: "--hold-ms",
                reason: reason.into(),
            });
        }
    }
    let mut prober = Prober {
        plan: Plan {
            target: &target,
            request: &request,
            payload: args
                .data
                .as_deref()
                .unwrap_or(DEFAULT_UDP_PAYLOAD)
                .as_bytes(),
            local_port: args.local_port,
            timeout: Duration::from_millis(args.timeout_ms),
            reuse: args.reuse || args.hold_ms.is_some(),
        },
        http: None,
        udp: None,
        tcp: None,
        pings: 0,
        connected_before: false,
    };
    let mut attempts = Vec::new();
    if let Some(hold_ms) = args.hold_ms {
        let interval = match args.interval_ms {
            0 => DEFAULT_HOLD_INTERVAL_MS,
            ms => ms,
        };
        attempts.push(prober.attempt().await);
        if prober.tcp.is_some() {
            let anchor = Instant::now();
            let exchanges = (hold_ms / interval).max(1);
            for k in 1..=exchanges {
                let offset = Duration::from_millis(interval.saturating_mul(k));
                tokio::time::sleep_until(anchor + offset).await;
                attempts.push(prober.attempt().await);
            }
        }
    } else {
        for i in 0..args.count {
            if i > 0 && args.interval_ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
            }
            attempts.push(prober.attempt().await);
        }
    }
    Ok(ProbeReport::new(args.target, attempts))
}

/// What every attempt does.
#[derive(Debug, Clone, Copy)]
struct Plan<'a> {
    target: &'a target::Target,
    request: &'a http::RequestSpec,
    payload: &'a [u8],
    local_port: Option<u16>,
    timeout: Duration,
    reuse: bool,
}

/// The [`Plan`], and what `--reuse` keeps between attempts. (The kept HTTP connection is
/// not `Sync`: methods that await take `&mut self`, or are on the `Plan`, so that the
/// probe future stays `Send`.)
#[derive(Debug)]
struct Prober<'a> {
    plan: Plan<'a>,
    http: Option<http::HttpConnection>,
    udp: Option<transport::UdpSession>,
    tcp: Option<transport::TcpSession>,
    /// `ping <seq>` lines sent so far on `tcp`.
    pings: u32,
    /// An earlier attempt established a connection (so a new one is a reconnect).
    connected_before: bool,
}

/// What is known about an attempt besides its outcome.
#[derive(Debug)]
struct Meta {
    start: Instant,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    reconnected: bool,
    seq: Option<u32>,
}

impl Plan<'_> {
    /// Resolves the target and restarts the latency clock (resolving is not timed).
    async fn resolve(&self, budget: Budget, meta: &mut Meta) -> Result<SocketAddr, Failure> {
        let addr = resolve(&self.target.host, self.target.port, budget).await?;
        meta.remote = Some(addr);
        meta.start = Instant::now();
        Ok(addr)
    }

    /// A new connection or socket for this attempt alone.
    async fn fresh(&self, budget: Budget, meta: &mut Meta) -> Outcome {
        let addr = self.resolve(budget, meta).await?;
        let local_port = self.local_port;
        let (local, remote) = (&mut meta.local, &mut meta.remote);
        match self.target.scheme {
            Scheme::Http => {
                let exchange = http::exchange(addr, self.request, local_port, local, remote);
                tokio::time::timeout_at(budget.deadline, exchange)
                    .await
                    .unwrap_or_else(|_| Err(budget.timed_out("HTTP answer")))
            }
            Scheme::Tcp => transport::tcp_greeting(addr, local_port, budget, local, remote).await,
            Scheme::Udp => {
                transport::udp_exchange(addr, local_port, self.payload, budget, local, remote).await
            }
        }
    }
}

impl Prober<'_> {
    async fn attempt(&mut self) -> Attempt {
        let plan = self.plan;
        let budget = Budget {
            deadline: Instant::now() + plan.timeout,
            timeout: plan.timeout,
        };
        let mut meta = Meta {
            start: Instant::now(),
            local: None,
            remote: None,
            reconnected: false,
            seq: None,
        };
        let outcome = match (plan.reuse, plan.target.scheme) {
            (false, _) => plan.fresh(budget, &mut meta).await,
            (true, Scheme::Http) => self.http_reused(budget, &mut meta).await,
            (true, Scheme::Tcp) => self.tcp_reused(budget, &mut meta).await,
            (true, Scheme::Udp) => self.udp_reused(budget, &mut meta).await,
        };
        let latency_us = u64::try_from(meta.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut attempt = to_attempt(outcome, latency_us, meta.local, meta.remote);
        attempt.reconnected = meta.reconnected;
        attempt.seq = meta.seq;
        attempt
    }

    /// The kept HTTP connection if it is still usable, else a new one (kept if the
    /// exchange works). A failed exchange drops the connection: its state is unknown.
    async fn http_reused(&mut self, budget: Budget, meta: &mut Meta) -> Outcome {
        if let Some(conn) = &mut self.http {
            meta.local = conn.local;
            meta.remote = conn.remote;
            let ready = tokio::time::timeout_at(budget.deadline, conn.ready()).await;
            match ready {
                Err(_) => {
                    self.http = None;
                    return Err(budget.timed_out("room for a request on the kept connection"));
                }
                Ok(true) => {
                    let send =
                        tokio::time::timeout_at(budget.deadline, conn.send(self.plan.request));
                    let outcome = send
                        .await
                        .unwrap_or_else(|_| Err(budget.timed_out("HTTP answer")));
                    if outcome.is_err() {
                        self.http = None;
                    }
                    return outcome;
                }
                Ok(false) => {
                    // Closed by the server (keep-alive timeout, shutdown, GOAWAY, ...)
                    // before this request was sent: reconnect.
                    self.http = None;
                    meta.local = None;
                }
            }
        }
        meta.reconnected = self.connected_before;
        let addr = self.plan.resolve(budget, meta).await?;
        let connect = http::HttpConnection::connect(
            addr,
            self.plan.request,
            self.plan.local_port,
            &mut meta.local,
            &mut meta.remote,
        );
        let mut conn = match tokio::time::timeout_at(budget.deadline, connect).await {
            Err(_) => return Err(budget.timed_out("HTTP connection")),
            Ok(Err(failure)) => return Err(failure),
            Ok(Ok(conn)) => conn,
        };
        self.connected_before = true;
        let outcome = tokio::time::timeout_at(budget.deadline, conn.send(self.plan.request))
            .await
            .unwrap_or_else(|_| Err(budget.timed_out("HTTP answer")));
        if outcome.is_ok() {
            self.http = Some(conn);
        }
        outcome
    }

    /// The first successful attempt connects and reads the greeting; every later one
    /// sends a `ping <seq>` line on that connection. A broken connection is not
    /// replaced: its later attempts fail with `reset`.
    async fn tcp_reused(&mut self, budget: Budget, meta: &mut Meta) -> Outcome {
        if let Some(session) = &mut self.tcp {
            self.pings += 1;
            meta.local = session.local;
            meta.remote = session.remote;
            meta.seq = Some(self.pings);
            return session.ping(self.pings, budget).await;
        }
        let addr = self.plan.resolve(budget, meta).await?;
        let (answer, session) = transport::tcp_connect(
            addr,
            self.plan.local_port,
            budget,
            &mut meta.local,
            &mut meta.remote,
        )
        .await?;
        self.tcp = Some(session);
        Ok(answer)
    }

    /// One connected UDP socket for every attempt; a failed attempt (timeout, ICMP
    /// refused) keeps it.
    async fn udp_reused(&mut self, budget: Budget, meta: &mut Meta) -> Outcome {
        let session = match &mut self.udp {
            Some(session) => session,
            None => {
                let addr = self.plan.resolve(budget, meta).await?;
                self.udp
                    .insert(transport::udp_open(addr, self.plan.local_port).await?)
            }
        };
        meta.local = session.local;
        meta.remote = session.remote;
        session.exchange(self.plan.payload, budget).await
    }
}

fn to_attempt(
    outcome: Outcome,
    latency_us: u64,
    local_addr: Option<SocketAddr>,
    remote_addr: Option<SocketAddr>,
) -> Attempt {
    match outcome {
        Ok(answer) => Attempt {
            result: AttemptResult::Ok,
            status: answer.status,
            body: answer.body,
            headers: answer.headers,
            latency_us,
            error: None,
            local_addr,
            remote_addr,
            reconnected: false,
            seq: None,
        },
        Err(failure) => Attempt {
            result: failure.result,
            status: None,
            body: String::new(),
            headers: None,
            latency_us,
            error: Some(failure.error),
            local_addr,
            remote_addr,
            reconnected: false,
            seq: None,
        },
    }
}

/// Resolves `host` (an IP literal or a name) to its first address.
async fn resolve(host: &str, port: u16, budget: Budget) -> Result<SocketAddr, Failure> {
    let lookup = tokio::time::timeout_at(budget.deadline, tokio::net::lookup_host((host, port)));
    match lookup.await {
        Err(_) => Err(budget.timed_out(&format!("address for {host}"))),
        Ok(Err(err)) => Err(Failure {
            result: AttemptResult::Unreachable,
            error: format!("cannot resolve {host}: {err}"),
        }),
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| Failure {
            result: AttemptResult::Unreachable,
            error: format!("{host} resolved to no address"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProbeArgs,
    }

    fn attempt(result: AttemptResult, status: Option<u16>) -> Attempt {
        Attempt {
            result,
            status,
            body: String::new(),
            headers: None,
            latency_us: 5,
            error: (result != AttemptResult::Ok).then(|| "boom".to_owned()),
            local_addr: None,
            remote_addr: None,
            reconnected: false,
            seq: None,
        }
    }

    #[test]
    fn cli_defaults_match_new() {
        let cli = Cli::try_parse_from(["probe", "tcp://h:1"]).unwrap();
        assert_eq!(cli.args, ProbeArgs::new("tcp://h:1"));
    }

    #[test]
    fn cli_flags() {
        let cli = Cli::try_parse_from([
            "probe",
            "http://h/x",
            "--method",
            "POST",
            "--header",
            "a:1",
            "--header",
            "b: 2",
            "--data",
            "d",
            "--timeout-ms",
            "50",
            "--count",
            "3",
            "--interval-ms",
            "7",
            "--http2",
            "-o",
            "json",
        ])
        .unwrap();
        let a = cli.args;
        assert_eq!(a.method, "POST");
        assert_eq!(a.headers, vec!["a:1", "b: 2"]);
        assert_eq!(a.data.as_deref(), Some("d"));
        assert_eq!((a.timeout_ms, a.count, a.interval_ms), (50, 3, 7));
        assert!(a.http2);
        assert_eq!(a.output, OutputFormat::Json);
        assert_eq!((a.local_port, a.reuse, a.hold_ms), (None, false, None));
        assert!(Cli::try_parse_from(["probe", "tcp://h:1", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["probe", "tcp://h:1", "-o", "yaml"]).is_err());
    }

    #[test]
    fn cli_new_flags() {
        let cli = Cli::try_parse_from([
            "probe",
            "tcp://h:1",
            "--local-port",
            "40000",
            "--reuse",
            "--hold-ms",
            "5000",
            "--interval-ms",
            "250",
        ])
        .unwrap();
        let a = cli.args;
        assert_eq!(a.local_port, Some(40000));
        assert!(a.reuse);
        assert_eq!((a.hold_ms, a.interval_ms), (Some(5000), 250));
        for bad in [
            &["--local-port", "0"][..],
            &["--local-port", "70000"],
            &["--hold-ms", "0"],
            &["--hold-ms", "100", "--count", "2"],
        ] {
            let argv = ["probe", "tcp://h:1"].iter().chain(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn success_rules() {
        use AttemptResult::*;
        assert!(attempt(Ok, Some(200)).succeeded());
        assert!(attempt(Ok, Some(204)).succeeded());
        assert!(attempt(Ok, None).succeeded());
        assert!(!attempt(Ok, Some(503)).succeeded());
        assert!(!attempt(Ok, Some(302)).succeeded());
        assert!(!attempt(Refused, None).succeeded());

        let r = ProbeReport::new("t".into(), vec![attempt(Ok, Some(200)), attempt(Ok, None)]);
        assert!(r.success());
        assert_eq!(r.summary, Summary { ok: 2, failed: 0 });
        let r = ProbeReport::new(
            "t".into(),
            vec![attempt(Ok, Some(200)), attempt(Timeout, None)],
        );
        assert!(!r.success());
        assert_eq!(r.summary, Summary { ok: 1, failed: 1 });
        assert!(!ProbeReport::new("t".into(), vec![]).success());
    }

    #[test]
    fn json_omits_absent_fields_and_round_trips() {
        let r = ProbeReport::new(
            "tcp://h:1".into(),
            vec![
                attempt(AttemptResult::Ok, None),
                attempt(AttemptResult::Refused, None),
            ],
        );
        let json = r.to_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let ok = &v["attempts"][0];
        assert_eq!(ok["result"], "ok");
        for absent in [
            "status",
            "headers",
            "error",
            "local_addr",
            "reconnected",
            "seq",
        ] {
            assert!(ok.get(absent).is_none(), "{absent} in {ok}");
        }
        assert_eq!(v["attempts"][1]["result"], "refused");
        assert_eq!(v["attempts"][1]["error"], "boom");
        assert_eq!(v["summary"], serde_json::json!({"ok": 1, "failed": 1}));
        let back: ProbeReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.render(OutputFormat::Json).unwrap(), json);
    }

    #[test]
    fn text_lines() {
        let mut ok = attempt(AttemptResult::Ok, Some(200));
        ok.latency_us = 812;
        ok.body = "web-frontend-abc".into();
        let mut long = attempt(AttemptResult::Ok, None);
        long.body = format!("{}\n", "x".repeat(100));
        let refused = attempt(AttemptResult::Refused, None);
        let r = ProbeReport::new("http://h/".into(), vec![ok, long, refused]);
        let text = r.render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "1: ok 200 latency=812us body=web-frontend-abc");
        assert_eq!(
            lines[1],
            format!("2: ok latency=5us body={}...", "x".repeat(80))
        );
        assert_eq!(lines[2], "3: refused latency=5us error=boom");
        assert_eq!(lines[3], "summary: http://h/ ok=2 failed=1");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn truncate_escapes_control_characters() {
        assert_eq!(truncate("a\nb", 80), "a\\nb");
        assert_eq!(truncate("héllo", 2), "hé...");
        assert_eq!(truncate("ab", 2), "ab");
    }
}
