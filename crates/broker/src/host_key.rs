//! The broker's SSH host key: generated on first start, kept in the data
//! directory, and identified by its OpenSSH fingerprint, which agents pin.

use std::path::Path;

use anyhow::Context;
use russh::keys::{Algorithm, HashAlg, PrivateKey, ssh_key::LineEnding};

use crate::private_file;

/// File name of the host key inside the data directory.
pub const FILE_NAME: &str = "ssh_host_ed25519_key";

/// Loads the host key from `data_dir`, creating it (mode 0600) on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<PrivateKey> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(&text)
            .with_context(|| format!("reading SSH host key {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
                .context("generating SSH host key")?;
            let text = key
                .to_openssh(LineEnding::LF)
                .context("encoding SSH host key")?;
            private_file::write(&path, text.as_bytes())
                .with_context(|| format!("writing SSH host key {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new SSH host key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading SSH host key {}", path.display())),
    }
}

/// The fingerprint OpenSSH shows for this key (`SHA256:…`).
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert!(fingerprint(&a).starts_with("SHA256:"));
    }
}
