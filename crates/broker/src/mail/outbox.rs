//! The outbox: each message written as an `.eml` file in a directory of the
//! data directory, readable by the broker's user only, so a broker with no
//! mail server still "sends" mail the operator can read or forward.

use std::path::{Path, PathBuf};

use lettre::Message;
use rand::RngExt;

use super::MailError;
use crate::private_file;
use crate::time::UnixTime;

pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `message` as `<unix time>-<random>.eml`, atomically and with
    /// mode 0600 (it may hold a password or a reset link).
    pub async fn write(&self, message: &Message) -> Result<(), MailError> {
        let bytes = message.formatted();
        let dir = self.dir.clone();
        let name = format!(
            "{}-{}.eml",
            UnixTime::now().0,
            hex::encode(rand::rng().random::<[u8; 8]>())
        );
        let path = tokio::task::spawn_blocking(move || -> std::io::Result<PathBuf> {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            let path = dir.join(name);
            private_file::write(&path, &bytes)?;
            Ok(path)
        })
        .await
        .map_err(std::io::Error::other)??;
        tracing::info!("mail written to {}", path.display());
        Ok(())
    }
}
