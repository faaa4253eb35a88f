//! Who may reach a device's services through the edge.
//!
//! - An unlisted device is its owner's own: visitors always pass.
//! - A device with an active rental admits visitors for that rental.
//! - A listed device between rentals (or one whose rental is being set up
//!   or wiped) admits no one: its subdomain shows a "not rented" page and
//!   its public ports reset connections.
//!
//! The store is the source of truth; this keeps a copy per device so the
//! edge does not query the store for every connection. Whatever changes a
//! listing or a rental calls [`Access::reload`]. Each admitted connection
//! holds a [`Pass`]; when the device's access changes (a rental ends, the
//! device is listed), every pass issued before is revoked and the
//! connections holding them are cut.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;
use tokio::sync::watch;

use crate::store::{AccessFacts, RentalState, Store, StoreError};

/// Whom the device's services are open to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Unlisted and not rented: the owner's own.
    Own,
    /// Rented: open for this rental.
    Rented(RentalId),
    /// Listed between rentals: closed.
    Closed,
}

impl Mode {
    fn admits(&self) -> bool {
        !matches!(self, Mode::Closed)
    }

    /// The mode the store's facts give: an active rental opens the device
    /// to its renter; otherwise a listed device is closed.
    pub fn of(facts: AccessFacts) -> Self {
        match facts.open_rental {
            Some((id, RentalState::Active)) => Mode::Rented(id),
            Some(_) => Mode::Closed,
            None if facts.listed => Mode::Closed,
            None => Mode::Own,
        }
    }
}

struct Entry {
    mode: Mode,
    /// Dropped (and replaced) to revoke every pass issued under `mode`.
    revoke: watch::Sender<()>,
}

/// A visitor connection's permission; [`Pass::revoked`] completes when the
/// device's access changes.
pub struct Pass(watch::Receiver<()>);

impl Pass {
    /// Waits until the pass is revoked.
    pub async fn revoked(&mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

/// What the edge does with a visitor.
pub enum Admission {
    Open(Pass),
    /// Listed and not rented now.
    NotRented,
    /// The device is not (or no longer) registered.
    Unknown,
}

/// Per-device access, cached from the store.
pub struct Access {
    store: Store,
    entries: Mutex<HashMap<DeviceName, Entry>>,
    /// Reloads one at a time, so an older read never overwrites a newer one.
    reloads: tokio::sync::Mutex<()>,
}

impl Access {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            entries: Mutex::new(HashMap::new()),
            reloads: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceName, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn read(&self, device: &DeviceName) -> Result<Option<Mode>, StoreError> {
        let device = device.clone();
        self.store
            .blocking(move |s| s.access_facts(&device))
            .await
            .map(|facts| facts.map(Mode::of))
    }

    /// Whether a visitor may reach `device` now.
    pub async fn admit(&self, device: &DeviceName) -> Result<Admission, StoreError> {
        if let Some(admission) = self.cached(device) {
            return Ok(admission);
        }
        let Some(mode) = self.read(device).await? else {
            return Ok(Admission::Unknown);
        };
        let mut entries = self.lock();
        // A reload since the read above knows better than it.
        let entry = entries.entry(device.clone()).or_insert_with(|| Entry {
            mode,
            revoke: watch::Sender::new(()),
        });
        Ok(admission_of(entry))
    }

    fn cached(&self, device: &DeviceName) -> Option<Admission> {
        self.lock().get(device).map(admission_of)
    }

    /// Reads `device`'s access from the store again; passes issued under a
    /// different mode are revoked.
    pub async fn reload(&self, device: &DeviceName) -> Result<(), StoreError> {
        let _one = self.reloads.lock().await;
        let mode = self.read(device).await?;
        let mut entries = self.lock();
        match mode {
            None => {
                if entries.remove(device).is_some() {
                    tracing::debug!(%device, "access: device gone; visitors cut");
                }
            }
            Some(mode) => match entries.get_mut(device) {
                Some(entry) if entry.mode == mode => {}
                Some(entry) => {
                    tracing::info!(%device, from = ?entry.mode, to = ?mode, "access changed");
                    entry.mode = mode;
                    // Dropping the old sender ends every pass it issued.
                    entry.revoke = watch::Sender::new(());
                }
                None => {
                    entries.insert(
                        device.clone(),
                        Entry {
                            mode,
                            revoke: watch::Sender::new(()),
                        },
                    );
                }
            },
        }
        Ok(())
    }

    /// [`Access::reload`], logging a failure instead of returning it: the
    /// caller's action has already happened in the store.
    pub async fn refresh(&self, device: &DeviceName) {
        if let Err(e) = self.reload(device).await {
            tracing::error!(%device, error = %e, "could not reload the device's access");
            // Forget the copy; the next visitor reads the store.
            self.lock().remove(device);
        }
    }
}

fn admission_of(entry: &Entry) -> Admission {
    if entry.mode.admits() {
        Admission::Open(Pass(entry.revoke.subscribe()))
    } else {
        Admission::NotRented
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(s: &str) -> RentalId {
        RentalId::parse(s).unwrap()
    }

    #[test]
    fn mode_follows_listing_and_rental() {
        let of = |listed, open_rental| {
            Mode::of(AccessFacts {
                listed,
                open_rental,
            })
        };
        assert_eq!(of(false, None), Mode::Own);
        assert_eq!(of(true, None), Mode::Closed);
        assert_eq!(
            of(true, Some((rid("rnt-1"), RentalState::Active))),
            Mode::Rented(rid("rnt-1"))
        );
        assert_eq!(
            of(false, Some((rid("rnt-1"), RentalState::Active))),
            Mode::Rented(rid("rnt-1")),
            "a rental of an unlisted device still belongs to its renter"
        );
        for state in [RentalState::Provisioning, RentalState::Ending] {
            assert_eq!(of(false, Some((rid("rnt-1"), state))), Mode::Closed);
        }
    }

    #[tokio::test]
    async fn a_change_of_mode_revokes_earlier_passes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let name = DeviceName::parse("pi").unwrap();
        store
            .add_device(&name, "hash", None, crate::time::UnixTime(1))
            .unwrap();
        let access = Access::new(store.clone());
        let Admission::Open(mut pass) = access.admit(&name).await.unwrap() else {
            panic!("an unlisted device is open");
        };
        access.reload(&name).await.unwrap();
        let still = tokio::time::timeout(std::time::Duration::from_millis(50), pass.revoked());
        assert!(still.await.is_err(), "no change, no revocation");
        let id = store.device(&name).unwrap().unwrap().id;
        store.set_listing(id, true, Some(100)).unwrap();
        access.reload(&name).await.unwrap();
        pass.revoked().await;
        assert!(matches!(
            access.admit(&name).await.unwrap(),
            Admission::NotRented
        ));
        let unknown = DeviceName::parse("nope").unwrap();
        assert!(matches!(
            access.admit(&unknown).await.unwrap(),
            Admission::Unknown
        ));
    }
}
