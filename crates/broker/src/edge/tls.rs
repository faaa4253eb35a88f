//! The shared HTTPS port: reads the ClientHello far enough to learn its SNI,
//! routes by `<device>.<domain>`, and passes the whole TLS stream (the
//! ClientHello included) to the device. The broker holds no certificate and
//! never sees plaintext. Without a routable name, or for a listed device
//! between rentals, the connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;

use rpibroker_wire::Service;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::access::Admission;
use crate::broker::Shared;
use crate::edge::sni::{self, Sni};
use crate::edge::{self, device_of_host, splice};
use crate::shutdown::Shutdown;

/// Accepts visitors until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    edge::serve_shared_port(listener, shared, shutdown, "HTTPS", handle).await
}

async fn handle(mut socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let read = tokio::time::timeout(
        shared.settings.edge_read_timeout,
        read_client_hello(&mut socket),
    )
    .await;
    let (bytes, name) = match read {
        Ok(Ok((bytes, Some(name)))) => (bytes, name),
        Ok(Ok((_, None))) => return tracing::debug!("closing: ClientHello without SNI"),
        Ok(Err(e)) => return tracing::debug!(error = %e, "closing: no usable ClientHello"),
        Err(_) => return tracing::debug!("closing: ClientHello did not arrive in time"),
    };
    let Some(device) = device_of_host(&name, &shared.settings.domain) else {
        return tracing::debug!(%name, "closing: SNI names no device");
    };
    let route = match shared.registry.route(&device, Service::Https) {
        Ok(route) => route,
        Err(e) => return tracing::debug!(%device, error = %e, "closing: device unavailable"),
    };
    let pass = match shared.registry.access.admit(&device).await {
        Ok(Admission::Open(pass)) => pass,
        Ok(_) => return tracing::debug!(%device, "closing: device not rented"),
        Err(e) => return tracing::error!(error = %e, "access lookup failed"),
    };
    match splice::open(&route, peer).await {
        Ok(stream) => {
            if let Err(e) = stream
                .run(socket, &bytes, shared.settings.visitor_stall_timeout, pass)
                .await
            {
                tracing::debug!(%device, error = %e, "visitor connection ended with an error");
            }
        }
        Err(e) => tracing::info!(%device, error = %e, "device did not take a visitor"),
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Sni(#[from] sni::SniError),
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn read_client_hello(socket: &mut TcpStream) -> Result<(Vec<u8>, Option<String>), ReadError> {
    let mut buf = Vec::with_capacity(2048);
    // Parsing again is only useful once the record being read is complete.
    let mut needed = 0;
    loop {
        if buf.len() >= needed {
            match sni::parse(&buf)? {
                Sni::Name(name) => return Ok((buf, Some(name))),
                Sni::Missing => return Ok((buf, None)),
                Sni::NeedMore(n) => needed = n,
            }
        }
        let mut chunk = [0u8; 4096];
        let want = chunk.len().min(sni::MAX_CLIENT_HELLO - buf.len());
        let n = socket.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
