//! The broker's own federation keys: ed25519 key pairs generated on first
//! use and kept in one file in the data directory (mode 0600). The newest key
//! signs; a rotated-out key stays listed, with its expiry, so peers verify
//! what it signed until then.
//!
//! A new key is endorsed by the key it replaces (a signature over its id,
//! public key and start), so a peer that trusts the old key learns the new
//! one from the published list alone ([`trusted_keys`]).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::private_file;
use crate::time::UnixTime;

/// File name of the key ring inside the data directory.
pub const FILE_NAME: &str = "federation_keys.json";

/// A key as published: its id, public half and validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub keyid: String,
    /// Always `ed25519`.
    pub alg: String,
    /// The 32-byte public key, base64.
    pub public_key: String,
    /// Unix seconds from which it signs.
    pub valid_from: i64,
    /// Unix seconds after which nothing it signed is accepted; `None` while
    /// it is the current key.
    pub valid_until: Option<i64>,
    /// The key it replaced, which endorsed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsed_by: Option<String>,
    /// That key's signature over [`endorsement_message`], base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement: Option<String>,
}

/// What the previous key signs to endorse a new one.
pub fn endorsement_message(keyid: &str, public_key: &str, valid_from: i64) -> String {
    format!("rpibroker key endorsement\n{keyid}\n{public_key}\n{valid_from}")
}

/// The keys of `offered` to trust, given the keys `known` (trusted) now:
/// those already known, and new ones endorsed, in a chain, by a trusted
/// key. At most [`super::wire::MAX_KEYS`] are kept.
pub fn trusted_keys(known: &[PublicKey], offered: &[PublicKey]) -> Vec<PublicKey> {
    let same = |a: &PublicKey, b: &PublicKey| a.keyid == b.keyid && a.public_key == b.public_key;
    let mut trusted: Vec<PublicKey> = offered
        .iter()
        .filter(|o| known.iter().any(|k| same(k, o)))
        .cloned()
        .collect();
    loop {
        let endorsed = offered.iter().find(|o| {
            !trusted.iter().any(|t| same(t, o))
                && o.endorsed_by.as_ref().is_some_and(|by| {
                    let Some(signer) = trusted
                        .iter()
                        .chain(known)
                        .find(|t| &t.keyid == by)
                        .and_then(|t| t.verifying_key())
                    else {
                        return false;
                    };
                    let Some(signature) = o
                        .endorsement
                        .as_ref()
                        .and_then(|e| STANDARD.decode(e).ok())
                        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
                    else {
                        return false;
                    };
                    let message = endorsement_message(&o.keyid, &o.public_key, o.valid_from);
                    o.verifying_key().is_some_and(|k| key_id(&k) == o.keyid)
                        && ed25519_dalek::Verifier::verify(&signer, message.as_bytes(), &signature)
                            .is_ok()
                })
        });
        match endorsed {
            Some(key) if trusted.len() < super::wire::MAX_KEYS => trusted.push(key.clone()),
            _ => return trusted,
        }
    }
}

impl PublicKey {
    /// The verifying key, if `public_key` is one.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        if self.alg != "ed25519" {
            return None;
        }
        let bytes: [u8; 32] = STANDARD.decode(&self.public_key).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }

    /// Whether the key may sign at `now`.
    pub fn valid_at(&self, now: UnixTime) -> bool {
        self.valid_from <= now.0 + super::signature::ALLOWED_SKEW_SECS
            && self.valid_until.is_none_or(|until| now.0 <= until)
    }
}

/// A key id: the first 16 hex digits of the public key's SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    keyid: String,
    /// The 32-byte secret, base64.
    secret: String,
    created_at: i64,
    expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endorsed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endorsement: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

/// Errors reading or writing the key ring.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("federation key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("federation key file {path} is damaged: {why}")]
    Damaged { path: String, why: String },
}

/// The broker's key pairs, newest last.
pub struct KeyRing {
    path: PathBuf,
    keys: Vec<(StoredKey, SigningKey)>,
}

impl KeyRing {
    /// Loads the key ring from `data_dir`, creating it with one key on first use.
    pub fn load_or_create(data_dir: &Path, now: UnixTime) -> Result<Self, IdentityError> {
        let path = data_dir.join(FILE_NAME);
        let shown = path.display().to_string();
        let file = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<KeyFile>(&bytes).map_err(|e| IdentityError::Damaged {
                    path: shown.clone(),
                    why: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyFile::default(),
            Err(source) => {
                return Err(IdentityError::Io {
                    path: shown,
                    source,
                });
            }
        };
        let mut keys = Vec::new();
        for stored in file.keys {
            let secret: [u8; 32] = STANDARD
                .decode(&stored.secret)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| IdentityError::Damaged {
                    path: shown.clone(),
                    why: format!("key {} is not a 32-byte base64 secret", stored.keyid),
                })?;
            keys.push((stored, SigningKey::from_bytes(&secret)));
        }
        let mut ring = Self { path, keys };
        if ring.keys.is_empty() {
            ring.push_new(now);
            ring.save()?;
            tracing::info!(keyid = %ring.current().0, "generated a federation key");
        }
        Ok(ring)
    }

    /// Adds a new current key, endorsed by the one it replaces.
    fn push_new(&mut self, now: UnixTime) {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let key = SigningKey::from_bytes(&secret);
        let keyid = key_id(&key.verifying_key());
        let public = STANDARD.encode(key.verifying_key().as_bytes());
        let (endorsed_by, endorsement) = match self.keys.last() {
            Some((previous, previous_key)) => {
                let message = endorsement_message(&keyid, &public, now.0);
                let signature = previous_key.sign(message.as_bytes());
                (
                    Some(previous.keyid.clone()),
                    Some(STANDARD.encode(signature.to_bytes())),
                )
            }
            None => (None, None),
        };
        let stored = StoredKey {
            keyid,
            secret: STANDARD.encode(secret),
            created_at: now.0,
            expires_at: None,
            endorsed_by,
            endorsement,
        };
        self.keys.push((stored, key));
    }

    fn save(&self) -> Result<(), IdentityError> {
        let file = KeyFile {
            keys: self.keys.iter().map(|(s, _)| s.clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("key file serializes");
        private_file::write(&self.path, &bytes).map_err(|source| IdentityError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// The signing key: its id and key.
    pub fn current(&self) -> (&str, &SigningKey) {
        let (stored, key) = self.keys.last().expect("a key ring holds a key");
        (&stored.keyid, key)
    }

    /// Signs `message` with the current key.
    pub fn sign(&self, message: &[u8]) -> (String, ed25519_dalek::Signature) {
        let (id, key) = self.current();
        (id.to_string(), key.sign(message))
    }

    /// Makes a new current key; the old one stays listed until `now +
    /// keep_old_for` and is then dropped from the file. Returns the new key id.
    pub fn rotate(
        &mut self,
        now: UnixTime,
        keep_old_for: std::time::Duration,
    ) -> Result<String, IdentityError> {
        let until = now.0 + i64::try_from(keep_old_for.as_secs()).unwrap_or(i64::MAX / 2);
        for (stored, _) in &mut self.keys {
            if stored.expires_at.is_none() {
                stored.expires_at = Some(until);
            }
        }
        self.keys
            .retain(|(s, _)| s.expires_at.is_none_or(|at| at >= now.0));
        self.push_new(now);
        self.save()?;
        Ok(self.current().0.to_string())
    }

    /// Every key not yet expired at `now`, oldest first, as published.
    pub fn published(&self, now: UnixTime) -> Vec<PublicKey> {
        self.keys
            .iter()
            .filter(|(s, _)| s.expires_at.is_none_or(|at| at >= now.0))
            .map(|(s, k)| PublicKey {
                keyid: s.keyid.clone(),
                alg: "ed25519".into(),
                public_key: STANDARD.encode(k.verifying_key().as_bytes()),
                valid_from: s.created_at,
                valid_until: s.expires_at,
                endorsed_by: s.endorsed_by.clone(),
                endorsement: s.endorsement.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn the_key_is_created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyRing::load_or_create(dir.path(), UnixTime(100)).unwrap();
        let b = KeyRing::load_or_create(dir.path(), UnixTime(200)).unwrap();
        assert_eq!(a.current().0, b.current().0);
        assert_eq!(a.published(UnixTime(300)), b.published(UnixTime(300)));
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let published = a.published(UnixTime(300));
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].valid_from, 100);
        assert_eq!(published[0].valid_until, None);
        assert!(published[0].verifying_key().is_some());
    }

    #[test]
    fn a_rotated_key_stays_listed_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::load_or_create(dir.path(), UnixTime(100)).unwrap();
        let old = ring.current().0.to_string();
        let new = ring
            .rotate(UnixTime(1000), Duration::from_secs(500))
            .unwrap();
        assert_ne!(old, new);
        let ring = KeyRing::load_or_create(dir.path(), UnixTime(1001)).unwrap();
        assert_eq!(ring.current().0, new);
        let listed = ring.published(UnixTime(1200));
        assert_eq!(listed.len(), 2);
        assert_eq!(
            (listed[0].keyid.as_str(), listed[0].valid_until),
            (old.as_str(), Some(1500))
        );
        assert!(listed[0].valid_at(UnixTime(1500)) && !listed[0].valid_at(UnixTime(1501)));
        assert_eq!(
            (listed[1].keyid.as_str(), listed[1].valid_until),
            (new.as_str(), None)
        );
        assert_eq!(ring.published(UnixTime(1501)).len(), 1);
    }

    #[test]
    fn a_peer_trusts_a_new_key_endorsed_by_one_it_trusts() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::load_or_create(dir.path(), UnixTime(100)).unwrap();
        let first = ring.published(UnixTime(100));
        ring.rotate(UnixTime(200), Duration::from_secs(10)).unwrap();
        ring.rotate(UnixTime(300), Duration::from_secs(1000))
            .unwrap();
        // The first key expired and is no longer listed; the chain still
        // starts from it.
        let offered = ring.published(UnixTime(300));
        assert_eq!(offered.len(), 2);
        assert_eq!(trusted_keys(&first, &offered), offered);
        assert!(trusted_keys(&[], &offered).is_empty());

        // A key endorsed by a stranger, or with a forged endorsement, is not.
        let other = tempfile::tempdir().unwrap();
        let mut stranger = KeyRing::load_or_create(other.path(), UnixTime(100)).unwrap();
        stranger
            .rotate(UnixTime(200), Duration::from_secs(10))
            .unwrap();
        assert!(trusted_keys(&first, &stranger.published(UnixTime(200))).is_empty());
        let mut forged = offered.clone();
        forged[1].endorsement = forged[0].endorsement.clone();
        assert_eq!(trusted_keys(&first, &forged).len(), 1);
    }
}
