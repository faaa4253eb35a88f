//! The outbox: each message written as an `.eml` file in a directory of the
//! data directory, readable by the broker's user only, so a broker with no
//! mail server still "sends" mail the operator can read or forward. Messages
//! hold logins and reset links, so each write also removes those older than
//! [`KEEP_SECS`].

use std::path::{Path, PathBuf};

use lettre::Message;
use rand::RngExt;

use super::MailError;
use crate::private_file;
use crate::time::UnixTime;

/// How long a message stays in the outbox: a week.
pub const KEEP_SECS: i64 = 7 * 24 * 3600;

/// Removes the messages written before `before` (their names start with the
/// time they were written); returns how many went.
fn purge(dir: &Path, before: i64) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let written = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".eml"))
            .and_then(|n| n.split('-').next())
            .and_then(|t| t.parse::<i64>().ok());
        if written.is_some_and(|t| t < before) {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

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
            let purged = purge(&dir, UnixTime::now().0 - KEEP_SECS)?;
            if purged > 0 {
                tracing::info!(messages = purged, "old mail removed from the outbox");
            }
            Ok(path)
        })
        .await
        .map_err(std::io::Error::other)??;
        tracing::info!("mail written to {}", path.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_messages_are_purged_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["100-aa.eml", "200-bb.eml", "notes.txt", "x-cc.eml"] {
            std::fs::write(dir.path().join(name), b"m").unwrap();
        }
        assert_eq!(purge(dir.path(), 150).unwrap(), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["200-bb.eml", "notes.txt", "x-cc.eml"]);
    }
}
