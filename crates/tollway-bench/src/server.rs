//! `tollway bench server`: a small, fast request/response server. Every
//! [`REQUEST_LEN`]-byte request gets one [`RESPONSE_LEN`]-byte response on
//! the same connection, which stays open until the client closes it.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting", "the async runtime", e))?;
    rt.block_on(serve(port))
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
