//! `tollway workload serve`: HTTP/1.1 + h2c, TCP and UDP listeners answering with the pod
//! name.

mod http;
mod query;
mod retry;
mod stream;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::WorkloadError;

/// The HTTP port served when no `--http`, `--tcp` or `--udp` flag is given.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

/// How long in-flight requests and connections may run after shutdown starts.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// Arguments of `tollway workload serve`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ServeArgs {
    /// Serve HTTP/1.1 and h2c (prior knowledge) on this port (repeatable).
    #[arg(long = "http", value_name = "PORT")]
    pub http: Vec<u16>,
    /// Serve the TCP greeting + echo on this port (repeatable).
    #[arg(long = "tcp", value_name = "PORT")]
    pub tcp: Vec<u16>,
    /// Answer UDP datagrams with the pod name on this port (repeatable).
    #[arg(long = "udp", value_name = "PORT")]
    pub udp: Vec<u16>,
    /// Pod name to report (default: env POD_NAME, else the hostname).
    #[arg(long)]
    pub name: Option<String>,
    /// Address to bind every listener to.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,
    /// On SIGTERM/SIGINT keep serving normally (and accepting) for N ms before the
    /// graceful shutdown starts, like a preStop sleep; a second signal ends the wait.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub shutdown_delay_ms: u64,
}

impl Default for ServeArgs {
    /// No ports (hence HTTP on 8080), no name, bind 0.0.0.0, no shutdown delay: the same
    /// as no flags.
    fn default() -> Self {
        Self {
            http: Vec::new(),
            tcp: Vec::new(),
            udp: Vec::new(),
            name: None,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            shutdown_delay_ms: 0,
        }
    }
}

impl ServeArgs {
    /// The HTTP ports to serve: the `--http` ports, or [`DEFAULT_HTTP_PORT`] when no port
    /// flag at all was given.
    pub fn http_ports(&self) -> Vec<u16> {
        if self.http.is_empty() && self.tcp.is_empty() && self.udp.is_empty() {
            vec![DEFAULT_HTTP_PORT]
        } else {
            self.http.clone()
        }
    }
}

/// The local addresses a [`Server`] is bound to, in the order of the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundAddrs {
    /// HTTP/1.1 + h2c listeners.
    pub http: Vec<SocketAddr>,
    /// TCP greeting + echo listeners.
    pub tcp: Vec<SocketAddr>,
    /// UDP sockets.
    pub udp: Vec<SocketAddr>,
}

/// A bound, not yet running server; see [`Server::bind`] and [`Server::run`].
#[derive(Debug)]
pub struct Server {
    pod: Arc<str>,
    state: Arc<http::HttpState>,
    http: Vec<(TcpListener, SocketAddr)>,
    tcp: Vec<(TcpListener, SocketAddr)>,
    udp: Vec<(UdpSocket, SocketAddr)>,
    grace: Duration,
    shutdown_delay: Duration,
}

impl Server {
    /// Resolves the pod name and binds every listener (port 0 picks a free port).
    pub async fn bind(args: ServeArgs) -> Result<Self, WorkloadError> {
        let pod: Arc<str> = resolve_pod_name(args.name.clone())?.into();
        let state = Arc::new(http::HttpState::new(pod.clone())?);
        let mut http = Vec::new();
        for port in args.http_ports() {
            http.push(bind_tcp("http", SocketAddr::new(args.bind, port)).await?);
        }
        let mut tcp = Vec::new();
        for &port in &args.tcp {
            tcp.push(bind_tcp("tcp", SocketAddr::new(args.bind, port)).await?);
        }
        let mut udp = Vec::new();
        for &port in &args.udp {
            udp.push(bind_udp(SocketAddr::new(args.bind, port)).await?);
        }
        Ok(Self {
            pod,
            state,
            http,
            tcp,
            udp,
            grace: DEFAULT_GRACE_PERIOD,
            shutdown_delay: Duration::from_millis(args.shutdown_delay_ms),
        })
    }

    /// The pod name this server answers with.
    pub fn pod_name(&self) -> &str {
        &self.pod
    }

    /// The addresses actually bound (with the chosen ports when port 0 was asked for).
    pub fn local_addrs(&self) -> BoundAddrs {
        BoundAddrs {
            http: self.http.iter().map(|(_, a)| *a).collect(),
            tcp: self.tcp.iter().map(|(_, a)| *a).collect(),
            udp: self.udp.iter().map(|(_, a)| *a).collect(),
        }
    }

    /// Changes how long in-flight work may continue after shutdown starts
    /// (default [`DEFAULT_GRACE_PERIOD`]).
    #[must_use]
    pub fn with_grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Changes how long the server keeps serving normally after `shutdown` completes,
    /// before it stops accepting (default: `--shutdown-delay-ms`, 0 = none).
    #[must_use]
    pub fn with_shutdown_delay(mut self, delay: Duration) -> Self {
        self.shutdown_delay = delay;
        self
    }

    /// Serves until `shutdown` completes, keeps serving normally for the shutdown delay,
    /// then stops accepting, lets in-flight HTTP requests and TCP connections run for up
    /// to the grace period, and returns.
    pub async fn run<F>(self, shutdown: F)
    where
        F: Future<Output = ()>,
    {
        self.run_until(shutdown, std::future::pending()).await;
    }

    /// Like [`Server::run`], but `hurry` completing during the shutdown delay ends the
    /// delay early (a second SIGTERM/SIGINT). `hurry` is only polled during the delay.
    pub(crate) async fn run_until<F, G>(self, shutdown: F, hurry: G)
    where
        F: Future<Output = ()>,
        G: Future<Output = ()>,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut listeners = JoinSet::new();
        for (listener, addr) in self.http {
            eprintln!("serving http (HTTP/1.1 + h2c) on {addr} as {}", self.pod);
            let conn_state = self.state.clone();
            let stop = Stop::new(stop_rx.clone(), self.grace);
            listeners.spawn(stream::accept_loop(listener, stop, move |s, peer, stop| {
                http::serve_connection(s, peer, conn_state.clone(), stop)
            }));
        }
        for (listener, addr) in self.tcp {
            eprintln!("serving tcp echo on {addr} as {}", self.pod);
            let pod = self.pod.clone();
            let stop = Stop::new(stop_rx.clone(), self.grace);
            listeners.spawn(stream::accept_loop(listener, stop, move |s, peer, _| {
                stream::tcp_echo(s, peer, pod.clone())
            }));
        }
        for (socket, addr) in self.udp {
            eprintln!("serving udp on {addr} as {}", self.pod);
            let stop = Stop::new(stop_rx.clone(), self.grace);
            listeners.spawn(stream::udp_loop(socket, addr, self.pod.clone(), stop));
        }
        drop(stop_rx);

        shutdown.await;
        if !self.shutdown_delay.is_zero() {
            eprintln!(
                "shutdown requested: still serving for {}ms (--shutdown-delay-ms) before draining",
                self.shutdown_delay.as_millis()
            );
            tokio::select! {
                () = tokio::time::sleep(self.shutdown_delay) => {}
                () = hurry => eprintln!("second shutdown signal: ending the shutdown delay early"),
            }
        }
        eprintln!(
            "shutting down: no new connections, draining for up to {}ms",
            self.grace.as_millis()
        );
        // Receivers live in the listener tasks; a send error only means they are all gone.
        let _ = stop_tx.send(true);
        while let Some(joined) = listeners.join_next().await {
            if let Err(err) = joined {
                eprintln!("listener task failed: {err}");
            }
        }
        eprintln!("shutdown complete");
    }
}

/// The shutdown notification handed to listener and connection tasks.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    rx: watch::Receiver<bool>,
    grace: Duration,
}

impl Stop {
    fn new(rx: watch::Receiver<bool>, grace: Duration) -> Self {
        Self { rx, grace }
    }

    /// Completes once shutdown has started (immediately if it already has).
    pub(crate) async fn stopped(&mut self) {
        // An error means the sender is gone, which also means: stop.
        let _ = self.rx.wait_for(|stopped| *stopped).await;
    }

    /// How long in-flight work may continue after [`Stop::stopped`].
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }
}

/// Waits for SIGTERM or SIGINT; installed before binding so that failures are reported.
#[derive(Debug)]
pub struct ShutdownSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the SIGTERM and SIGINT handlers.
    #[cfg(unix)]
    pub fn install() -> Result<Self, WorkloadError> {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).map_err(|source| WorkloadError::Signal {
            signal: "SIGTERM",
            source,
        })?;
        let int = signal(SignalKind::interrupt()).map_err(|source| WorkloadError::Signal {
            signal: "SIGINT",
            source,
        })?;
        Ok(Self { term, int })
    }

    /// Installs the Ctrl-C handler (non-unix platforms).
    #[cfg(not(unix))]
    pub fn install() -> Result<Self, WorkloadError> {
        Ok(Self {})
    }

    /// Completes when SIGTERM or SIGINT arrives.
    pub async fn wait(mut self) {
        self.next().await;
    }

    /// Completes when the next SIGTERM or SIGINT arrives, and logs it.
    #[cfg(unix)]
    pub async fn next(&mut self) {
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        eprintln!("received {name}");
    }

    /// Completes on the next Ctrl-C (non-unix platforms).
    #[cfg(not(unix))]
    pub async fn next(&mut self) {
        if let Err(err) = tokio::signal::ctrl_c().await {
            eprintln!("cannot wait for Ctrl-C ({err}); shutting down");
        }
    }

    /// Counts signals in the background: the receiver sees 1 after the first signal, 2
    /// after the second (then the task ends).
    pub(crate) fn spawn_counter(mut self) -> watch::Receiver<u32> {
        let (tx, rx) = watch::channel(0u32);
        tokio::spawn(async move {
            for _ in 0..2 {
                self.next().await;
                tx.send_modify(|n| *n += 1);
            }
        });
        rx
    }
}

async fn bind_tcp(
    protocol: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), WorkloadError> {
    let bind_err = |source| WorkloadError::Bind {
        protocol,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

async fn bind_udp(addr: SocketAddr) -> Result<(UdpSocket, SocketAddr), WorkloadError> {
    let bind_err = |source| WorkloadError::Bind {
        protocol: "udp",
        addr,
        source,
    };
    let socket = UdpSocket::bind(addr).await.map_err(bind_err)?;
    let local = socket.local_addr().map_err(bind_err)?;
    Ok((socket, local))
}

/// `--name`, else env `POD_NAME`, else the hostname.
fn resolve_pod_name(name: Option<String>) -> Result<String, WorkloadError> {
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        return Ok(name);
    }
    if let Ok(name) = std::env::var("POD_NAME")
        && !name.is_empty()
    {
        return Ok(name);
    }
    hostname()
}

fn hostname() -> Result<String, WorkloadError> {
    let mut first_err = None;
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        match std::fs::read_to_string(path) {
            Ok(contents) if !contents.trim().is_empty() => return Ok(contents.trim().to_owned()),
            Ok(_) => {}
            Err(err) => {
                first_err.get_or_insert(err);
            }
        }
    }
    if let Ok(name) = std::env::var("HOSTNAME")
        && !name.is_empty()
    {
        return Ok(name);
    }
    Err(WorkloadError::PodName {
        source: first_err.unwrap_or_else(|| std::io::Error::other("the hostname is empty")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn no_port_flag_means_http_8080() {
        let cli = Cli::try_parse_from(["serve"]).unwrap();
        assert_eq!(cli.args, ServeArgs::default());
        assert_eq!(cli.args.http_ports(), vec![8080]);
        assert_eq!(cli.args.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn only_tcp_means_no_http() {
        let cli = Cli::try_parse_from(["serve", "--tcp", "9000", "--udp", "9001"]).unwrap();
        assert!(cli.args.http_ports().is_empty());
        assert_eq!(cli.args.tcp, vec![9000]);
        assert_eq!(cli.args.udp, vec![9001]);
    }

    #[test]
    fn repeated_flags_and_bind() {
        let cli = Cli::try_parse_from([
            "serve", "--http", "80", "--http", "8081", "--name", "web-0", "--bind", "::1",
        ])
        .unwrap();
        assert_eq!(cli.args.http_ports(), vec![80, 8081]);
        assert_eq!(cli.args.name.as_deref(), Some("web-0"));
        assert_eq!(cli.args.bind, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn shutdown_delay_flag() {
        let cli = Cli::try_parse_from(["serve", "--shutdown-delay-ms", "15000"]).unwrap();
        assert_eq!(cli.args.shutdown_delay_ms, 15_000);
        assert!(Cli::try_parse_from(["serve", "--shutdown-delay-ms", "-1"]).is_err());
    }

    #[tokio::test]
    async fn second_signal_ends_the_delay() {
        let args = ServeArgs {
            http: vec![0],
            name: Some("p".into()),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            shutdown_delay_ms: 60_000,
            ..ServeArgs::default()
        };
        let server = Server::bind(args).await.unwrap();
        let run = server.run_until(std::future::ready(()), std::future::ready(()));
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the second signal ends the 60 s delay");
    }

    #[test]
    fn explicit_name_wins() {
        assert_eq!(resolve_pod_name(Some("a".into())).unwrap(), "a");
    }

    #[test]
    fn some_name_is_always_found() {
        // Either POD_NAME or the hostname; on Linux the hostname is always readable.
        assert!(!resolve_pod_name(None).unwrap().is_empty());
    }
}
