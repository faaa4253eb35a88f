//! What administrators read: every account, device and rental with the
//! names that make them recognisable; and device suspensions.

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError};
use crate::time::UnixTime;

/// Most rows an administrators' table shows.
pub const MAX_ROWS: i64 = 500;

/// An account, as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminUser {
    pub id: i64,
    pub email: String,
    pub is_admin: bool,
    pub created_at: i64,
    pub suspended_at: Option<i64>,
    /// Until when sign-in is locked after failed attempts.
    pub locked_until: Option<i64>,
    pub devices: i64,
}

/// A device, as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminDevice {
    #[serde(skip)]
    pub id: i64,
    pub name: DeviceName,
    pub owner_email: Option<String>,
    pub listed: bool,
    /// In minor units (cents).
    #[serde(rename = "hourly_rate_cents")]
    pub hourly_rate: Option<i64>,
    pub suspension: Option<Suspension>,
}

/// Why and since when a device is suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suspension {
    pub at: i64,
    pub reason: String,
}

/// A rental, as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminRental {
    pub id: RentalId,
    pub device: DeviceName,
    pub renter_email: Option<String>,
    pub state: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

fn name_of(index: usize, text: String) -> rusqlite::Result<DeviceName> {
    DeviceName::parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

impl Store {
    /// Accounts, newest first, with how many devices each owns.
    pub fn admin_users(&self, now: UnixTime) -> Result<Vec<AdminUser>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT u.id, u.email, u.is_admin, u.created_at, u.suspended_at,
                    (SELECT f.locked_until FROM login_failures f
                      WHERE f.email = u.email AND f.locked_until > ?1),
                    (SELECT COUNT(*) FROM devices d WHERE d.owner_id = u.id)
             FROM users u ORDER BY u.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now.0, MAX_ROWS], |r| {
            Ok(AdminUser {
                id: r.get(0)?,
                email: r.get(1)?,
                is_admin: r.get(2)?,
                created_at: r.get(3)?,
                suspended_at: r.get(4)?,
                locked_until: r.get(5)?,
                devices: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Devices by name, with their owner and any suspension.
    pub fn admin_devices(&self) -> Result<Vec<AdminDevice>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT d.id, d.name, u.email, d.listed, d.hourly_rate, s.at, s.reason
             FROM devices d
             LEFT JOIN users u ON u.id = d.owner_id
             LEFT JOIN device_suspensions s ON s.device_id = d.id
             ORDER BY d.name LIMIT ?1",
        )?;
        let rows = stmt.query_map([MAX_ROWS], |r| {
            let at: Option<i64> = r.get(5)?;
            let reason: Option<String> = r.get(6)?;
            Ok(AdminDevice {
                id: r.get(0)?,
                name: name_of(1, r.get(1)?)?,
                owner_email: r.get(2)?,
                listed: r.get(3)?,
                hourly_rate: r.get(4)?,
                suspension: at.zip(reason).map(|(at, reason)| Suspension { at, reason }),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Rentals that have not ended, then the latest ended ones.
    pub fn admin_rentals(&self) -> Result<Vec<AdminRental>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.id, d.name, u.email, r.state, r.started_at, r.ended_at, r.end_reason
             FROM rentals r
             JOIN devices d ON d.id = r.device_id
             LEFT JOIN users u ON u.id = r.renter_id
             ORDER BY r.state = 'ended', r.started_at DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([MAX_ROWS], |r| {
            let id: String = r.get(0)?;
            Ok(AdminRental {
                id: RentalId::parse(&id).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?,
                device: name_of(1, r.get(1)?)?,
                renter_email: r.get(2)?,
                state: r.get(3)?,
                started_at: r.get(4)?,
                ended_at: r.get(5)?,
                end_reason: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The device whose rental `rental` has not ended, if it has not.
    pub fn device_of_open_rental(
        &self,
        rental: &RentalId,
    ) -> Result<Option<DeviceName>, StoreError> {
        let conn = self.conn();
        let name = conn
            .query_row(
                "SELECT d.name FROM rentals r JOIN devices d ON d.id = r.device_id
                 WHERE r.id = ?1 AND r.state != 'ended'",
                [rental.as_str()],
                |r| name_of(0, r.get(0)?),
            )
            .optional()?;
        Ok(name)
    }

    /// Suspends the device (taking it off the market) or reinstates it
    /// (`None`). False if there is no such device.
    pub fn set_device_suspension(
        &self,
        device: &DeviceName,
        suspension: Option<Suspension>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(id) = tx
            .query_row(
                "SELECT id FROM devices WHERE name = ?1",
                [device.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
        else {
            return Ok(false);
        };
        match suspension {
            Some(s) => {
                tx.execute(
                    "INSERT INTO device_suspensions (device_id, at, reason) VALUES (?1, ?2, ?3)
                     ON CONFLICT (device_id) DO UPDATE SET at = excluded.at, reason = excluded.reason",
                    params![id, s.at, s.reason],
                )?;
                tx.execute("UPDATE devices SET listed = 0 WHERE id = ?1", [id])?;
            }
            None => {
                tx.execute("DELETE FROM device_suspensions WHERE device_id = ?1", [id])?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// The device's suspension, if it is suspended.
    pub fn device_suspension(&self, device_id: i64) -> Result<Option<Suspension>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT at, reason FROM device_suspensions WHERE device_id = ?1",
                [device_id],
                |r| {
                    Ok(Suspension {
                        at: r.get(0)?,
                        reason: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_unlists_the_device_until_it_is_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let name = DeviceName::parse("pi").unwrap();
        let id = store.add_device(&name, "h", None, UnixTime(0)).unwrap().id;
        store.set_listing(id, true, Some(50)).unwrap();
        let s = Suspension {
            at: 5,
            reason: "abuse report".into(),
        };
        assert!(store.set_device_suspension(&name, Some(s.clone())).unwrap());
        assert_eq!(store.device_suspension(id).unwrap(), Some(s.clone()));
        let d = &store.admin_devices().unwrap()[0];
        assert_eq!(d.suspension, Some(s));
        assert!(!d.listed);
        assert!(store.set_device_suspension(&name, None).unwrap());
        assert_eq!(store.device_suspension(id).unwrap(), None);
        let unknown = DeviceName::parse("nope").unwrap();
        assert!(!store.set_device_suspension(&unknown, None).unwrap());
    }
}
