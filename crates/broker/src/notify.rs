//! How local commands reach a running broker: a Unix socket in the data
//! directory, owner-only, one request line and one answer line per
//! connection.
//!
//! - `device-changed NAME`: the store is the source of truth; this only makes
//!   the broker act at once on what the store already says: cut the session
//!   of a removed device, or of one whose token or key was revoked, and
//!   reload whom it admits.
//! - A JSON [`LocalRequest`] (`rental start`, `rental stop`, `device verify`,
//!   `device limits`):
//!   things only the broker can do, because they talk to the device over its
//!   live session. The answer is `{"ok": …}` or `{"error": "…"}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rpibroker_wire::DeviceName;
use rpibroker_wire::limits::LimitSettings;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::broker::Shared;
use crate::shutdown::Shutdown;
use crate::{rental, sandbox_limits, tunnel, verify};

/// File name of the socket inside the data directory.
pub const SOCKET: &str = "broker.sock";
/// Longest line accepted on the socket (a rental's SSH keys fit).
const MAX_LINE: u64 = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a request that waits on a device (a wipe recreates a container).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A request that needs the device's live session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum LocalRequest {
    RentalStart {
        device: DeviceName,
        #[serde(default)]
        ssh_keys: Vec<String>,
    },
    RentalStop {
        device: DeviceName,
    },
    Verify {
        device: DeviceName,
    },
    Limits {
        device: DeviceName,
        limits: LimitSettings,
    },
}

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
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, shared)).await {
                tracing::debug!(error = %e, "local request timed out");
            }
        });
    }
}

async fn handle(stream: UnixStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::time::timeout(
        TIMEOUT,
        BufReader::new(read.take(MAX_LINE)).read_line(&mut line),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request line"))??;
    if line.starts_with('{') {
        let answer = match serde_json::from_str::<LocalRequest>(&line) {
            Ok(request) => local_request(&shared, request).await,
            Err(e) => serde_json::json!({ "error": format!("not a request: {e}") }),
        };
        let mut text = answer.to_string();
        text.push('\n');
        return write.write_all(text.as_bytes()).await;
    }
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

async fn local_request(shared: &Arc<Shared>, request: LocalRequest) -> serde_json::Value {
    let result = match request {
        LocalRequest::RentalStart { device, ssh_keys } => {
            rental::start(shared, &device, ssh_keys, None)
                .await
                .map(|s| serde_json::to_value(s).unwrap_or_default())
                .map_err(|e| e.to_string())
        }
        LocalRequest::RentalStop { device } => rental::stop(shared, &device)
            .await
            .map(|r| serde_json::json!({ "rental": r.id, "device": device }))
            .map_err(|e| e.to_string()),
        LocalRequest::Verify { device } => verify::run(shared, &device)
            .await
            .map(|r| serde_json::to_value(r.report()).unwrap_or_default())
            .map_err(|e| format!("device {device}: {e}")),
        LocalRequest::Limits { device, limits } => {
            sandbox_limits::configure(shared, &device, None, limits)
                .await
                .map(|s| serde_json::to_value(s).unwrap_or_default())
                .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(e) => serde_json::json!({ "error": e }),
    }
}

/// Sends `request` to the broker running on `data_dir` and waits for its
/// answer.
pub async fn request(data_dir: &Path, request: &LocalRequest) -> anyhow::Result<serde_json::Value> {
    let path = socket_path(data_dir);
    let mut stream = UnixStream::connect(&path).await.map_err(|e| {
        anyhow::anyhow!(
            "no broker is running on {} ({e}); start it with `rpibroker serve`",
            data_dir.display()
        )
    })?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    let answer = tokio::time::timeout(REQUEST_TIMEOUT + TIMEOUT, async {
        stream.write_all(line.as_bytes()).await?;
        let mut reply = String::new();
        BufReader::new((&mut stream).take(MAX_LINE))
            .read_line(&mut reply)
            .await?;
        Ok::<_, std::io::Error>(reply)
    })
    .await
    .map_err(|_| anyhow::anyhow!("the broker did not answer in time"))??;
    let mut value: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| anyhow::anyhow!("the broker's answer is not JSON ({e}): {answer:?}"))?;
    if let Some(e) = value.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    Ok(value
        .get_mut("ok")
        .map(serde_json::Value::take)
        .unwrap_or_default())
}

/// Cuts the device's session if the store no longer lets it in.
async fn device_changed(shared: &Arc<Shared>, device: DeviceName) {
    shared.registry.access.refresh(&device).await;
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
