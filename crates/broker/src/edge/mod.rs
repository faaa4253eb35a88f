//! The public edge: where visitors come in.
//!
//! - [`http`]: the shared HTTP port, routing by `Host: <device>.<domain>`.
//! - [`tls`]: the shared HTTPS port, routing by the SNI of the ClientHello,
//!   without terminating TLS (the broker never sees the plaintext).
//! - [`device_port`]: each device's raw TCP ports, one per service.
//! - [`head`] and [`sni`]: bounded parsers for what the routers must read
//!   before they know the device.
//! - [`splice`]: joining a visitor's socket to a channel on the device's tunnel.
//!
//! Everything a visitor sends before routing is bounded in size and time;
//! after routing the bytes are copied as they are, so keep-alive, WebSocket
//! and any other protocol on top pass through.

pub mod device_port;
pub mod head;
pub mod http;
pub mod sni;
pub mod splice;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rpibroker_wire::DeviceName;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::accept;
use crate::broker::Shared;
use crate::shutdown::Shutdown;

/// Runs one of the shared edge ports until shutdown: each visitor the broker
/// has room for is handed to `handle` in a task of its own.
pub async fn serve_shared_port<F, Fut>(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
    port: &'static str,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<Shared>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (socket, peer) = tokio::select! {
            conn = accept::next(&listener, port) => conn,
            _ = shutdown.wait() => return,
        };
        let Some(permit) = shared.registry.admit_visitor(peer.ip()) else {
            continue;
        };
        let visit = handle(socket, peer, shared.clone());
        tokio::spawn(
            async move {
                visit.await;
                drop(permit);
            }
            .instrument(tracing::debug_span!("visitor", port, %peer)),
        );
    }
}

/// Maps a host name (from `Host` or SNI) to the device it names:
/// `<device>.<domain>`, case-insensitive, with an optional trailing dot.
pub fn device_of_host(host: &str, domain: &str) -> Option<DeviceName> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    DeviceName::parse(label).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_their_device() {
        let d = |h| device_of_host(h, "localhost").map(|n| n.to_string());
        assert_eq!(d("pi.localhost"), Some("pi".into()));
        assert_eq!(d("PI.LocalHost."), Some("pi".into()));
        assert_eq!(d("localhost"), None);
        assert_eq!(d("a.pi.localhost"), None);
        assert_eq!(d("pilocalhost"), None);
        assert_eq!(d("pi.example.org"), None);
        assert_eq!(d("www.localhost"), None);
    }
}
