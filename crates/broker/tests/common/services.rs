//! The services a test device offers: a TCP echo server, an HTTP/1.1 server
//! that also speaks WebSocket, and a TLS server with its own certificate.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Echoes every byte back, on any number of connections.
pub async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 server whose responses say which server answered, the path,
/// and how many requests this TCP connection has carried (to see keep-alive);
/// `/endless` answers a body that never ends; a request with `Upgrade: websocket` becomes a
/// WebSocket echo.
pub async fn web(name: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name: Arc<str> = name.into();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let mut peek = [0u8; 2048];
                let n = s.peek(&mut peek).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&peek[..n]).to_ascii_lowercase();
                if head.contains("upgrade: websocket") {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
                let count = Arc::new(AtomicU64::new(0));
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                        let body = if req.uri().path() == "/endless" {
                            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                            let frames = futures_util::stream::repeat_with(move || {
                                Ok::<_, Infallible>(Frame::data(chunk.clone()))
                            });
                            BodyExt::boxed(StreamBody::new(frames))
                        } else {
                            let text = format!(
                                "hello from {name} path={} request-on-connection={n}",
                                req.uri().path()
                            );
                            BodyExt::boxed(Full::new(Bytes::from(text)))
                        };
                        async move { Ok::<_, Infallible>(hyper::Response::new(body)) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                    .await;
            });
        }
    });
    addr
}

/// A TLS server for `host` with a fresh self-signed certificate; it answers
/// each line with `tls <host>: <line>`. Returns its address and certificate.
pub async fn tls(host: &str) -> (SocketAddr, rustls::pki_types::CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let host = host.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, host) = (acceptor.clone(), host.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let (r, mut w) = tokio::io::split(tls);
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if w.write_all(format!("tls {host}: {line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, der)
}

/// Connects to `addr` as a TLS client trusting only `cert`, with SNI `host`.
pub async fn tls_connect(
    addr: SocketAddr,
    host: &str,
    cert: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    connector.connect(name, tcp).await
}

/// Sends `line` over a verified TLS connection through `addr` to `host` and
/// returns the server's one-line answer.
pub async fn tls_line(
    addr: SocketAddr,
    host: &str,
    cert: &rustls::pki_types::CertificateDer<'static>,
    line: &str,
) -> String {
    let tls = tls_connect(addr, host, cert).await.unwrap();
    let (r, mut w) = tokio::io::split(tls);
    w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    BufReader::new(r)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap()
}

/// The first bytes a TLS client sends (its ClientHello) for `host`; for an
/// IP address rustls sends no SNI.
pub fn client_hello(host: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Sends `payload` through `addr` and reads it all back (an echo round trip).
pub async fn echo_round_trip(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    let (mut r, mut w) = s.into_split();
    let data = payload.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.shutdown().await
    });
    let mut back = Vec::with_capacity(payload.len());
    tokio::time::timeout(super::DEADLINE, r.read_to_end(&mut back))
        .await
        .map_err(|_| std::io::Error::other("echo timed out"))??;
    writer.await.unwrap()?;
    Ok(back)
}
