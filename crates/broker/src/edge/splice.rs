//! Joining a visitor's connection to the device: one `forwarded-tcpip`
//! channel on the device's SSH session per visitor connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::access::Pass;
use crate::registry::Route;

/// How long the device has to accept a channel before the visitor is told it
/// is unavailable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    #[error("the device did not accept the connection: {0}")]
    Refused(String),
    #[error("the device did not answer within {OPEN_TIMEOUT:?}")]
    Timeout,
}

/// An open channel to the device, ready to carry a visitor's bytes.
pub struct DeviceStream(russh::ChannelStream<russh::server::Msg>);

/// Opens a channel on the device's session for `visitor`.
pub async fn open(route: &Route, visitor: SocketAddr) -> Result<DeviceStream, SpliceError> {
    let open = route.handle.channel_open_forwarded_tcpip(
        route.address.clone(),
        route.port,
        visitor.ip().to_string(),
        u32::from(visitor.port()),
    );
    let channel = tokio::time::timeout(OPEN_TIMEOUT, open)
        .await
        .map_err(|_| SpliceError::Timeout)?
        .map_err(|e| SpliceError::Refused(e.to_string()))?;
    Ok(DeviceStream(channel.into_stream()))
}

impl DeviceStream {
    /// Sends `prefix` (bytes already read from the visitor), then copies both
    /// ways until both sides are done, or until `pass` is revoked (the
    /// rental ended). Returns the bytes moved each way. A side that accepts
    /// no bytes for `stall` ends the connection, so a visitor that stops
    /// reading cannot hold up the device's other visitors (see
    /// [`rpibroker_tunnel_io::splice`]).
    pub async fn run(
        mut self,
        visitor: TcpStream,
        prefix: &[u8],
        stall: Duration,
        mut pass: Pass,
    ) -> std::io::Result<(u64, u64)> {
        let copy = async {
            if !prefix.is_empty() {
                self.0.write_all(prefix).await?;
            }
            let (up, down) = rpibroker_tunnel_io::splice(visitor, self.0, stall).await?;
            Ok((up + prefix.len() as u64, down))
        };
        tokio::select! {
            moved = copy => moved,
            () = pass.revoked() => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "cut: the device's access changed",
            )),
        }
    }
}
