//! A deliberately plain HTTP/1.1 client, so tests control every byte a
//! visitor sends (Host headers, keep-alive, garbage).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Reads one response with a Content-Length body from `s`.
pub async fn read_response(s: &mut TcpStream) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before a response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// Sends a GET for `path` with `Host: host` on an open connection.
pub async fn send_get(s: &mut TcpStream, host: &str, path: &str) -> std::io::Result<()> {
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rpibroker-test\r\n\r\n")
            .as_bytes(),
    )
    .await
}

/// One GET on a new connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr).await?;
    send_get(&mut s, host, path).await?;
    read_response(&mut s).await
}

/// POSTs `body` as JSON to `path` on a new connection.
pub async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    read_response(&mut s).await
}

/// Reads until the peer closes; returns what arrived, or an error if it
/// did not close within `timeout`.
pub async fn read_until_closed(
    s: &mut TcpStream,
    timeout: std::time::Duration,
) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    tokio::time::timeout(timeout, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer did not close"))?;
    Ok(all)
}
