//! A plain HTTP/1.1 GET for the schedulers' `/healthz`, `/readyz` and `/metrics` endpoints.
//!
//! Deliberately raw (one TCP connection, `Connection: close`, no client library): tests use it
//! while a scheduler starts, stops or is killed, so every failure is an answer, not an error.

use std::{net::SocketAddr, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from `addr` and returns the status code and the body; code 0 (and an empty
/// body) when nothing listens, the connection fails or no status line arrives. Connecting is
/// given 2 s, reading the answer 5 s.
///
/// ```no_run
/// # async fn probe(addr: std::net::SocketAddr) {
/// let (code, body) = ksched_testenv::http_get(addr, "/readyz").await;
/// assert_eq!(code, 200, "{body}");
/// # }
/// ```
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    // A partial answer (timeout or reset) is still parsed: the status line may be in it.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}
