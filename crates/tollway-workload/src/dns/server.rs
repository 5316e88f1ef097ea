//! The server: UDP and TCP listeners answering from a [`SharedZone`], and the loop that
//! replaces the zone when the store changes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tollway_state::StateSource;

use super::DnsError;
use super::wire::{Transport, respond};
use super::zone::{CLUSTER_DOMAIN, SharedZone, Zone};
use crate::serve::ShutdownSignal;

/// How long a TCP connection may sit idle between two messages.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// After a socket error, wait this long before the next receive or accept (an error that
/// repeats must not spin).
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Options of `tollway workload dns` (the store comes from the caller).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct DnsServeArgs {
    /// Where to listen: UDP, and TCP on the same address and port.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:53")]
    pub listen: SocketAddr,
    /// Serve UDP only.
    #[arg(long)]
    pub no_tcp: bool,
    /// How often to check the store's version, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub poll_ms: u64,
}

impl Default for DnsServeArgs {
    fn default() -> Self {
        DnsServeArgs {
            listen: SocketAddr::from(([0, 0, 0, 0], 53)),
            no_tcp: false,
            poll_ms: 200,
        }
    }
}

/// Serve DNS on `udp` (and `tcp`, if given) from `zone`, which may be replaced at any
/// time: every request is answered from the zone current when it arrives.
///
/// Must run inside a Tokio runtime. It serves until the future is dropped; it returns
/// only with an error, when the sockets cannot be handed to the runtime. Errors on single
/// requests or connections are logged and do not stop it.
pub async fn serve_dns(
    udp: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
    zone: SharedZone,
) -> Result<(), DnsError> {
    let socket_err = |protocol| move |source| DnsError::Socket { protocol, source };
    udp.set_nonblocking(true).map_err(socket_err("udp"))?;
    let udp = UdpSocket::from_std(udp).map_err(socket_err("udp"))?;
    let tcp = match tcp {
        Some(l) => {
            l.set_nonblocking(true).map_err(socket_err("tcp"))?;
            Some(TcpListener::from_std(l).map_err(socket_err("tcp"))?)
        }
        None => None,
    };
    match tcp {
        Some(tcp) => {
            tokio::join!(serve_udp(udp, zone.clone()), serve_tcp(tcp, zone));
        }
        None => serve_udp(udp, zone).await,
    }
    Ok(())
}

async fn serve_udp(socket: UdpSocket, zone: SharedZone) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("dns: udp receive: {e}");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(reply) = respond(&zone.get(), &buf[..n], Transport::Udp) else {
            continue;
        };
        if let Err(e) = socket.send_to(&reply, peer).await {
            eprintln!("dns: udp reply to {peer}: {e}");
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: SharedZone) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let zone = zone.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, &zone).await {
                        eprintln!("dns: tcp connection from {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                eprintln!("dns: tcp accept: {e}");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2, RFC 7766), one answer per request, until the
/// client closes, stays idle for [`TCP_IDLE`], or sends something that gets no answer.
async fn serve_connection(mut stream: TcpStream, zone: &SharedZone) -> io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg)).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                r?;
            }
        }
        let Some(reply) = respond(&zone.get(), &msg, Transport::Tcp) else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&reply_len.to_be_bytes());
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
    }
}

/// The zone of the source's current state, and the version it was read at (read before
/// the snapshot: a change in between is seen again at the next poll).
pub fn load_zone<S: StateSource>(source: &S) -> Result<(u64, Zone), DnsError> {
    let version = source.version()?;
    let snap = source.snapshot()?;
    Ok((version, Zone::from_snapshot(&snap)))
}

/// Reload `zone` from `source` if its version is not `seen` (and update `seen`).
/// Returns whether the zone was replaced.
pub fn reload_if_changed<S: StateSource>(
    source: &S,
    zone: &SharedZone,
    seen: &mut Option<u64>,
) -> Result<bool, DnsError> {
    let version = source.version()?;
    if *seen == Some(version) {
        return Ok(false);
    }
    let (version, fresh) = load_zone(source)?;
    let before = zone.get();
    if !same_names(&before, &fresh) {
        eprintln!(
            "dns: {} services at store version {version}",
            fresh.services().count()
        );
    }
    zone.replace(fresh);
    *seen = Some(version);
    Ok(true)
}

fn same_names(a: &Zone, b: &Zone) -> bool {
    a.services().eq(b.services())
}

/// Poll `source` every `every` and replace `zone` when the version changes, until `stop`
/// is set. Blocking: run it on a thread of its own. Read errors are logged and retried at
/// the next poll (the zone served stays the last one read).
pub fn follow_store<S: StateSource>(
    source: &S,
    zone: &SharedZone,
    mut seen: Option<u64>,
    every: Duration,
    stop: &AtomicBool,
) {
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        match reload_if_changed(source, zone, &mut seen) {
            Ok(_) => failing = false,
            Err(e) => {
                // Log once per run of failures, not every poll.
                if !failing {
                    eprintln!("dns: reading the store: {e} (serving the last zone read)");
                }
                failing = true;
            }
        }
        std::thread::sleep(every);
    }
}

/// `tollway workload dns`: serve the Services of `source` until SIGTERM or SIGINT,
/// reloading when its version changes.
///
/// Fails before serving if the signal handlers cannot be installed, the store cannot be
/// read, or a listener cannot be bound.
pub async fn serve_store<S: StateSource + Send + 'static>(
    source: S,
    args: &DnsServeArgs,
) -> Result<(), DnsError> {
    let signals = ShutdownSignal::install()?;
    let (version, initial) = load_zone(&source)?;
    let services = initial.services().count();
    let zone = SharedZone::new(initial);
    let bind_err = |protocol, addr| {
        move |source| DnsError::Bind {
            protocol,
            addr,
            source,
        }
    };
    let udp = std::net::UdpSocket::bind(args.listen).map_err(bind_err("udp", args.listen))?;
    let addr = udp.local_addr().map_err(bind_err("udp", args.listen))?;
    let tcp = if args.no_tcp {
        None
    } else {
        Some(std::net::TcpListener::bind(addr).map_err(bind_err("tcp", addr))?)
    };
    eprintln!(
        "serving DNS for {CLUSTER_DOMAIN}. and svc. on {addr} ({}): {services} services at store version {version}",
        if tcp.is_some() { "udp+tcp" } else { "udp" }
    );
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let zone = zone.clone();
        let stop = Arc::clone(&stop);
        let every = Duration::from_millis(args.poll_ms.max(10));
        std::thread::spawn(move || follow_store(&source, &zone, Some(version), every, &stop))
    };
    let result = tokio::select! {
        r = serve_dns(udp, tcp, zone) => r,
        () = signals.wait() => Ok(()),
    };
    stop.store(true, Ordering::Relaxed);
    if follower.join().is_err() {
        eprintln!("dns: the store follower panicked");
    }
    result
}
