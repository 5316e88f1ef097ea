//! `tollway bench server`: a small, fast request/response server. Every
//! [`REQUEST_LEN`]-byte request gets one [`RESPONSE_LEN`]-byte response on
//! the same connection, which stays open until the client closes it.
//!
//! Optionally also a stream sink (TCP: reads and discards until EOF, then
//! answers with the count of bytes it read, 8 bytes little-endian, and
//! closes) and a UDP sink (reads and discards datagrams), for the client's
//! `stream` and `udp` modes.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::error::BenchError;

/// Bytes of one request.
pub const REQUEST_LEN: usize = 32;
/// Bytes of one response.
pub const RESPONSE_LEN: usize = 32;

/// The request the client sends (its content does not matter).
pub const REQUEST: [u8; REQUEST_LEN] = *b"tollway-bench request 0123456789";
/// The response the server sends.
pub const RESPONSE: [u8; RESPONSE_LEN] = *b"tollway-bench response 012345678";

/// Serve on `0.0.0.0:port` until killed (single-threaded: one event loop).
pub fn serve_blocking(port: u16) -> Result<(), BenchError> {
    serve_all_blocking(port, None, None)
}

/// Serve request/response on `port`, and the stream and UDP sinks on
/// their ports if given, until killed (one single-threaded event loop).
pub fn serve_all_blocking(
    port: u16,
    stream_port: Option<u16>,
    udp_port: Option<u16>,
) -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting", "the async runtime", e))?;
    rt.block_on(async move {
        if let Some(p) = stream_port {
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, p));
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| BenchError::io("binding", addr.to_string(), e))?;
            eprintln!("tollway bench server: stream sink on {addr}");
            tokio::spawn(stream_accept_loop(l));
        }
        if let Some(p) = udp_port {
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, p));
            let u = UdpSocket::bind(addr)
                .await
                .map_err(|e| BenchError::io("binding", format!("udp {addr}"), e))?;
            eprintln!("tollway bench server: UDP sink on {addr}");
            tokio::spawn(udp_sink(u, Arc::new(AtomicU64::new(0))));
        }
        serve(port).await
    })
}

/// Accept stream connections forever: each is read to EOF, then answered
/// with the count of bytes read (`u64`, little-endian).
pub async fn stream_accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(stream_connection(stream));
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn stream_connection(mut stream: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(_) => return,
        }
    }
    let _ = stream.write_all(&total.to_le_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Read and discard datagrams forever, counting them in `count`.
pub async fn udp_sink(socket: UdpSocket, count: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok(_) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
        }
    }
}

/// Serve on `0.0.0.0:port` forever.
pub async fn serve(port: u16) -> Result<(), BenchError> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| BenchError::io("binding", addr.to_string(), e))?;
    eprintln!("tollway bench server listening on {addr}");
    accept_loop(listener).await;
    Ok(())
}

/// Accept and serve connections forever.
pub async fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream));
            }
            Err(e) => {
                // EMFILE and friends: back off a little, keep serving.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; REQUEST_LEN];
    // Ends at EOF, at a reset (the CRR client closes with RST) or on any
    // error: there is nothing to report to anyone.
    while stream.read_exact(&mut buf).await.is_ok() {
        if stream.write_all(&RESPONSE).await.is_err() {
            break;
        }
    }
}
