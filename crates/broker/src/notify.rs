//! How `rpibroker device …` commands tell a running broker that a device
//! changed: a Unix socket in the data directory, one line per change.
//!
//! The store is the source of truth; a notification only makes the broker act
//! at once on what the store already says: cut the session of a removed
//! device, or of one whose token or key was revoked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rpibroker_wire::DeviceName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::broker::Shared;
use crate::shutdown::Shutdown;
use crate::tunnel;

/// File name of the socket inside the data directory.
pub const SOCKET: &str = "broker.sock";
/// Longest line accepted on the socket.
const MAX_LINE: u64 = 256;
const TIMEOUT: Duration = Duration::from_secs(5);

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Binds the socket (replacing one left by a broker that did not exit
/// cleanly) with owner-only permissions.
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves notifications until shutdown.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, mut shutdown: Shutdown) {
    loop {
        let stream = tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the notification socket");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(TIMEOUT, handle(stream, shared)).await {
                tracing::debug!(error = %e, "notification timed out");
            }
        });
    }
}

async fn handle(stream: UnixStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_LINE))
        .read_line(&mut line)
        .await?;
    let reply = match line
        .trim()
        .strip_prefix("device-changed ")
        .map(DeviceName::parse)
    {
        Some(Ok(device)) => {
            device_changed(&shared, device).await;
            "ok\n"
        }
        _ => "error: expected `device-changed <name>`\n",
    };
    write.write_all(reply.as_bytes()).await
}

/// Cuts the device's session if the store no longer lets it in.
async fn device_changed(shared: &Arc<Shared>, device: DeviceName) {
    let Some((generation, credential)) = shared.registry.credential(&device) else {
        return;
    };
    let valid = {
        let (shared, device) = (shared.clone(), device.clone());
        tokio::task::spawn_blocking(move || tunnel::still_valid(&shared, &device, &credential))
            .await
            .unwrap_or(false)
    };
    if !valid {
        tracing::info!(%device, "device credentials changed; disconnecting its session");
        shared.registry.kick_generation(
            &device,
            generation,
            "device credentials were revoked or the device was removed",
        );
    }
}

/// Tells the broker running on `data_dir`, if any, that `device` changed.
/// Returns `Ok(false)` when no broker is running there.
pub async fn device_changed_client(data_dir: &Path, device: &DeviceName) -> std::io::Result<bool> {
    let path = socket_path(data_dir);
    let mut stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    tokio::time::timeout(TIMEOUT, async {
        stream
            .write_all(format!("device-changed {device}\n").as_bytes())
            .await?;
        let mut reply = String::new();
        BufReader::new((&mut stream).take(MAX_LINE))
            .read_line(&mut reply)
            .await?;
        if reply.trim() == "ok" {
            Ok(true)
        } else {
            Err(std::io::Error::other(format!(
                "broker answered {:?}",
                reply.trim()
            )))
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "broker did not answer"))?
}
