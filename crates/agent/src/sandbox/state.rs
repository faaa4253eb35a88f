//! What the agent remembers about its sandbox across restarts: the rental it
//! holds (with its credentials, so a repeated `provision` returns the same
//! ones), whether a wipe was under way, and the limits the owner set from
//! the broker. Written atomically, owner-only.

use std::io::Write;
use std::path::{Path, PathBuf};

use rpibroker_wire::control::RentalId;
use rpibroker_wire::limits::LimitSettings;
use serde::{Deserialize, Serialize};

/// A rental's account in the sandbox.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub rental: RentalId,
    pub username: String,
    pub password: String,
    pub ssh_keys: Vec<String>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("rental", &self.rental)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The rental whose account the sandbox holds. Written before the
    /// account is created, so a crash in between is repaired by repeating.
    #[serde(default)]
    pub rental: Option<Account>,
    /// Set while a wipe is under way; a restarted agent finishes it.
    #[serde(default)]
    pub wiping: bool,
    /// The latest rentals whose sandbox was wiped, newest last (at most
    /// [`ENDED_KEPT`]): a late `provision` for one of them is refused, and a
    /// repeated `wipe` after one of them does nothing.
    #[serde(default)]
    pub ended: Vec<RentalId>,
    /// The limits the owner set from the broker (`configure`); they win
    /// over the config file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitSettings>,
}

/// How many ended rentals the state file remembers.
pub const ENDED_KEPT: usize = 32;

impl Persisted {
    pub fn has_ended(&self, rental: &RentalId) -> bool {
        self.ended.contains(rental)
    }

    pub fn record_ended(&mut self, rental: RentalId) {
        if !self.has_ended(&rental) {
            self.ended.push(rental);
        }
        let excess = self.ended.len().saturating_sub(ENDED_KEPT);
        self.ended.drain(..excess);
    }
}

/// The state file.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> std::io::Result<Persisted> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::other(format!("{} is damaged: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the file: written to a new owner-only temporary file, synced,
    /// renamed.
    pub fn store(&self, state: &Persisted) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.path.with_extension("tmp");
        // A leftover temporary file may have looser permissions: start anew.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trips_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("s.json"));
        assert_eq!(file.load().unwrap(), Persisted::default());
        let state = Persisted {
            rental: Some(Account {
                rental: RentalId::parse("r1").unwrap(),
                username: "u".into(),
                password: "p".into(),
                ssh_keys: vec![],
            }),
            wiping: true,
            ended: vec![],
            limits: Some(LimitSettings::parse("0.5", "128", "").unwrap()),
        };
        file.store(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{state:?}").contains("\"p\""));
    }

    #[test]
    fn remembers_a_bounded_number_of_ended_rentals() {
        let mut state = Persisted::default();
        for i in 0..40 {
            state.record_ended(RentalId::parse(&format!("r{i}")).unwrap());
        }
        assert_eq!(state.ended.len(), ENDED_KEPT);
        assert!(state.has_ended(&RentalId::parse("r39").unwrap()));
        assert!(!state.has_ended(&RentalId::parse("r0").unwrap()));
    }
}
