//! Accepting connections the same way on every listener: transient accept
//! errors (out of file descriptors, a connection reset before it was
//! accepted) are logged and waited out briefly instead of spinning or
//! stopping the listener.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept, so an exhausted process does not spin.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// The next connection on `listener`, with Nagle's algorithm turned off
/// (every socket the broker owns carries interactive traffic). `what`
/// names the listener in logs.
pub async fn next(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                return (socket, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed on the {what} port");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}
