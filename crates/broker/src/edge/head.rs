//! Reading an HTTP/1.x request head from a visitor, bounded in size and time,
//! far enough to learn the `Host` it is for.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest request head read before routing (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers accepted in one head.
const MAX_HEADERS: usize = 100;

/// Why a request head could not be routed; each maps to one status page.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error(
        "the request head is larger than {MAX_HEAD} bytes or has more than {MAX_HEADERS} headers"
    )]
    TooLarge,
    #[error("the request head did not arrive in time")]
    Timeout,
    #[error("the connection closed before the request head ended")]
    Closed,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("the request has no Host header")]
    NoHost,
    #[error("the request has more than one Host header")]
    DuplicateHost,
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// A request head that has been read: every byte received so far (which is
/// replayed to the device) and the host it names, without port.
pub struct Head {
    pub bytes: Vec<u8>,
    pub host: String,
}

/// Reads from `stream` until the end of the request head, at most
/// [`MAX_HEAD`] bytes and `timeout` in total.
pub async fn read(stream: &mut TcpStream, timeout: Duration) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(2048);
    tokio::time::timeout(timeout, async {
        loop {
            if buf.len() >= MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let mut chunk = [0u8; 4096];
            let want = chunk.len().min(MAX_HEAD - buf.len());
            let n = stream.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(HeadError::Closed);
            }
            let before = buf.len();
            buf.extend_from_slice(&chunk[..n]);
            // Parse only when the new bytes may have ended the head, so a
            // visitor trickling one byte at a time costs one scan per byte,
            // not one parse of the whole head per byte.
            if may_end_head(&buf[before.saturating_sub(3)..])
                && let Some(host) = parse(&buf)?
            {
                return Ok(host);
            }
        }
    })
    .await
    .map_err(|_| HeadError::Timeout)?
    .map(|host| Head { bytes: buf, host })
}

/// Whether `tail` holds a blank line (`\n\n` or `\n\r\n`), which ends a head.
fn may_end_head(tail: &[u8]) -> bool {
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// The host named by a complete head in `buf`, or `None` if the head is not
/// complete yet.
fn parse(buf: &[u8]) -> Result<Option<String>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let mut hosts = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"));
            let host = hosts.next().ok_or(HeadError::NoHost)?;
            if hosts.next().is_some() {
                return Err(HeadError::DuplicateHost);
            }
            let value = std::str::from_utf8(host.value)
                .map_err(|_| HeadError::Malformed("Host is not text".into()))?
                .trim();
            Ok(Some(strip_port(value).to_string()))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// `pi.localhost:8080` → `pi.localhost`; IPv6 literals keep their brackets.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_host_of_a_complete_head() {
        let head = b"GET / HTTP/1.1\r\nHost: pi.localhost:8080\r\nAccept: */*\r\n\r\n";
        assert_eq!(parse(head).unwrap(), Some("pi.localhost".into()));
        assert_eq!(parse(&head[..20]).unwrap(), None);
    }

    #[test]
    fn refuses_missing_duplicate_and_garbage() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HeadError::NoHost)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n\r\n"),
            Err(HeadError::DuplicateHost)
        ));
        assert!(matches!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn a_blank_line_is_what_ends_a_head() {
        assert!(may_end_head(b"x\r\n\r\n"));
        assert!(may_end_head(b"\n\n"));
        assert!(!may_end_head(b"Host: a\r\n"));
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
