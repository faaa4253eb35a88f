//! The agent's SSH key. Made on first start and registered with the broker at
//! each handshake, so the tunnel logs in with the key and the token itself is
//! sent only to the handshake API.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use russh::keys::{Algorithm, PrivateKey, ssh_key::LineEnding};

/// Loads the key at `path`, creating an ed25519 key (mode 0600) if there is none.
pub fn load_or_create(path: &Path) -> anyhow::Result<PrivateKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(&text)
            .with_context(|| format!("reading device key {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
                .context("generating device key")?;
            let text = key
                .to_openssh(LineEnding::LF)
                .context("encoding device key")?;
            write_private(path, text.as_bytes())
                .with_context(|| format!("writing device key {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the device's SSH key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading device key {}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
