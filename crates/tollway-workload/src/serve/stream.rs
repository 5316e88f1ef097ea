//! Accept loops, the TCP greeting + echo and the UDP responder.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::Stop;

/// Pause after a failed `accept` (e.g. EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections and runs `handle` for each until shutdown, then drains the
/// connections for up to the grace period and aborts what is left.
pub(crate) async fn accept_loop<H, Fut>(listener: TcpListener, mut stop: Stop, mut handle: H)
where
    H: FnMut(TcpStream, SocketAddr, Stop) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(handle(stream, peer, stop.clone()));
                }
                Err(err) => {
                    eprintln!("accept failed: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Closing the listener makes new connection attempts fail right away.
    drop(listener);
    drain(conns, stop.grace()).await;
}

/// Waits up to `grace` for the tasks, then aborts the rest (by dropping the set).
async fn drain(mut conns: JoinSet<()>, grace: Duration) {
    if conns.is_empty() {
        return;
    }
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        eprintln!(
            "grace period over: closing {} remaining connection(s)",
            conns.len()
        );
    }
}

/// Sends `POD\n`, then echoes everything back until the peer closes.
pub(crate) async fn tcp_echo(mut stream: TcpStream, peer: SocketAddr, pod: Arc<str>) {
    eprintln!("tcp accept {peer}");
    let greeting = format!("{pod}\n");
    let (mut reader, mut writer) = stream.split();
    let result = async {
        writer.write_all(greeting.as_bytes()).await?;
        let mut echoed: u64 = 0;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.write_all(&buf[..n]).await?;
            echoed += n as u64;
        }
        writer.shutdown().await?;
        Ok::<u64, std::io::Error>(echoed)
    }
    .await;
    match result {
        Ok(echoed) => eprintln!("tcp close {peer} echoed={echoed}B"),
        Err(err) => eprintln!("tcp close {peer} error={err}"),
    }
}

/// Answers every datagram with the pod name until shutdown.
pub(crate) async fn udp_loop(socket: UdpSocket, local: SocketAddr, pod: Arc<str>, mut stop: Stop) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            () = stop.stopped() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, peer)) => match socket.send_to(pod.as_bytes(), peer).await {
                    Ok(_) => eprintln!("udp {local} from {peer} len={n} answered"),
                    Err(err) => eprintln!("udp {local} from {peer} len={n} reply failed: {err}"),
                },
                Err(err) => eprintln!("udp {local} receive failed: {err}"),
            },
        }
    }
}
