//! Sandboxes, verifications and rentals in the store.

use rpibroker_wire::DeviceName;
use rpibroker_wire::HardwareReport;
use rpibroker_wire::control::{RentalId, SandboxLimits, SandboxStatus};
use rpibroker_wire::status::{RentalSummary, SandboxReport};
use rpibroker_wire::verification::{Figures, Measured, Verdict, Verification};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::time::UnixTime;

/// One verification as stored; `claimed` and `measured` are JSON documents
/// ([`Figures`] and [`Measured`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    pub at: UnixTime,
    pub verdict: Verdict,
    pub claimed: String,
    pub measured: Option<String>,
    pub reasons: String,
}

impl VerificationRecord {
    pub fn report(&self) -> Verification {
        Verification {
            at: self.at.0,
            verdict: self.verdict,
            reasons: self.reasons.clone(),
            claimed: serde_json::from_str::<Figures>(&self.claimed).unwrap_or_default(),
            measured: self
                .measured
                .as_deref()
                .and_then(|m| serde_json::from_str::<Measured>(m).ok()),
        }
    }
}

/// A rental's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RentalState {
    /// The broker asked the agent for the account and has no answer yet.
    Provisioning,
    Active,
    /// The broker asked for the wipe and has no answer yet.
    Ending,
    Ended,
}

impl RentalState {
    pub fn as_str(self) -> &'static str {
        match self {
            RentalState::Provisioning => "provisioning",
            RentalState::Active => "active",
            RentalState::Ending => "ending",
            RentalState::Ended => "ended",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "provisioning" => RentalState::Provisioning,
            "active" => RentalState::Active,
            "ending" => RentalState::Ending,
            _ => RentalState::Ended,
        }
    }
}

/// What a renter agreed to, checked in the transaction that takes the
/// device, so a price raised a moment before is never charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenterTerms {
    pub renter_id: i64,
    /// The hourly rate the renter was shown; `None` accepts the current one.
    pub hourly_rate: Option<i64>,
    /// Open rentals the account may hold at once.
    pub max_open: i64,
    /// Billing is on: the rental is charged by the hour. A rental started
    /// while billing is off is never charged, even if billing is turned on.
    pub billed: bool,
}

/// What decides whom a device admits (see [`crate::access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFacts {
    pub listed: bool,
    /// The rental that has not ended, with its state.
    pub open_rental: Option<(RentalId, RentalState)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RentalRecord {
    pub id: RentalId,
    pub device_id: i64,
    pub state: RentalState,
    pub username: Option<String>,
    pub ssh_keys: Vec<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// The account that rents; `None` when the operator started it.
    pub renter_id: Option<i64>,
    /// Why the owner or an administrator ended it.
    pub end_reason: Option<String>,
}

impl RentalRecord {
    pub fn summary(&self) -> RentalSummary {
        RentalSummary {
            id: self.id.clone(),
            state: self.state.as_str().to_string(),
            username: self.username.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
        }
    }
}

fn rental_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RentalRecord> {
    let id: String = r.get(0)?;
    let state: String = r.get(2)?;
    let keys: String = r.get(4)?;
    Ok(RentalRecord {
        id: RentalId::parse(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })?,
        device_id: r.get(1)?,
        state: RentalState::parse(&state),
        username: r.get(3)?,
        ssh_keys: serde_json::from_str(&keys).unwrap_or_default(),
        started_at: r.get(5)?,
        ended_at: r.get(6)?,
        renter_id: r.get(7)?,
        end_reason: r.get(8)?,
    })
}

const RENTAL_COLUMNS: &str =
    "id, device_id, state, username, ssh_keys, started_at, ended_at, renter_id, end_reason";

impl Store {
    /// Stores the agent's report of the device's sandbox, and whether that
    /// makes or ends a stretch of it being unhealthy.
    pub fn set_sandbox(
        &self,
        device_id: i64,
        state: &str,
        status: Option<&SandboxStatus>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let json = status.map(|s| serde_json::to_string(s).unwrap_or_default());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO sandboxes (device_id, state, status, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id) DO UPDATE SET state = ?2, status = ?3, updated_at = ?4",
            params![device_id, state, json, now.0],
        )?;
        super::health::observed(&tx, device_id, state, now.0)?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces the sandbox limits in the device's stored hardware report
    /// (its claims), as the agent reported them after the owner changed
    /// them. A device that never reported hardware is left as it is.
    pub fn set_claimed_limits(
        &self,
        device_id: i64,
        limits: &SandboxLimits,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT hardware FROM devices WHERE id = ?1",
                [device_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        if let Some(mut report) =
            stored.and_then(|h| serde_json::from_str::<HardwareReport>(&h).ok())
        {
            report.sandbox = Some(limits.clone());
            let json = serde_json::to_string(&report).expect("report serializes");
            tx.execute(
                "UPDATE devices SET hardware = ?1 WHERE id = ?2",
                params![json, device_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn sandbox(&self, device_id: i64) -> Result<Option<SandboxReport>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT state, status, updated_at FROM sandboxes WHERE device_id = ?1",
                [device_id],
                |r| {
                    let status: Option<String> = r.get(1)?;
                    Ok(SandboxReport {
                        state: r.get(0)?,
                        status: status.and_then(|s| serde_json::from_str(&s).ok()),
                        updated_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn add_verification(
        &self,
        device_id: i64,
        record: &VerificationRecord,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO verifications (device_id, at, verdict, claimed, measured, reasons)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                device_id,
                record.at.0,
                record.verdict.as_str(),
                record.claimed,
                record.measured,
                record.reasons
            ],
        )?;
        Ok(())
    }

    pub fn last_verification(
        &self,
        device_id: i64,
    ) -> Result<Option<VerificationRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT at, verdict, claimed, measured, reasons FROM verifications
                 WHERE device_id = ?1 ORDER BY at DESC, id DESC LIMIT 1",
                [device_id],
                |r| {
                    let verdict: String = r.get(1)?;
                    Ok(VerificationRecord {
                        at: UnixTime(r.get(0)?),
                        verdict: Verdict::parse(&verdict),
                        claimed: r.get(2)?,
                        measured: r.get(3)?,
                        reasons: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// The device's rental that has not ended, if any.
    pub fn open_rental(&self, device_id: i64) -> Result<Option<RentalRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {RENTAL_COLUMNS} FROM rentals WHERE device_id = ?1 AND state != 'ended'"
                ),
                [device_id],
                rental_row,
            )
            .optional()?)
    }

    /// Whether `device` is listed, and its rental that has not ended, in one
    /// read; `None` when no such device is registered.
    pub fn access_facts(&self, device: &DeviceName) -> Result<Option<AccessFacts>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT d.listed, r.id, r.state FROM devices d
                 LEFT JOIN rentals r ON r.device_id = d.id AND r.state != 'ended'
                 WHERE d.name = ?1",
                [device.as_str()],
                |r| {
                    let id: Option<String> = r.get(1)?;
                    let state: Option<String> = r.get(2)?;
                    Ok(AccessFacts {
                        listed: r.get(0)?,
                        open_rental: id
                            .and_then(|id| RentalId::parse(&id).ok())
                            .zip(state.map(|s| RentalState::parse(&s))),
                    })
                },
            )
            .optional()?)
    }

    /// Records a new rental in `provisioning` state, unless the device has an
    /// open one: then that one is returned and nothing is written.
    pub fn begin_rental(
        &self,
        device_id: i64,
        id: &RentalId,
        ssh_keys: &[String],
        renter: Option<RenterTerms>,
        now: UnixTime,
    ) -> Result<RentalRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let open = tx
            .query_row(
                &format!(
                    "SELECT {RENTAL_COLUMNS} FROM rentals WHERE device_id = ?1 AND state != 'ended'"
                ),
                [device_id],
                rental_row,
            )
            .optional()?;
        if let Some(open) = open {
            return Ok(open);
        }
        if let Some(terms) = renter {
            let rate: Option<i64> = tx.query_row(
                "SELECT hourly_rate FROM devices WHERE id = ?1",
                [device_id],
                |r| r.get(0),
            )?;
            if terms.hourly_rate.is_some_and(|agreed| Some(agreed) != rate) {
                return Err(StoreError::RateChanged(rate));
            }
            let open: i64 = tx.query_row(
                "SELECT COUNT(*) FROM rentals WHERE renter_id = ?1 AND state != 'ended'",
                [terms.renter_id],
                |r| r.get(0),
            )?;
            if open >= terms.max_open {
                return Err(StoreError::TooManyRentals(terms.max_open));
            }
        }
        let renter_id = renter.map(|t| t.renter_id);
        let billed = renter.is_some_and(|t| t.billed);
        let keys = serde_json::to_string(ssh_keys).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "INSERT INTO rentals (id, device_id, state, ssh_keys, started_at, renter_id, hourly_rate, billing_closed)
             VALUES (?1, ?2, 'provisioning', ?3, ?4, ?5,
                     (SELECT hourly_rate FROM devices WHERE id = ?2), ?6)",
            params![id.as_str(), device_id, keys, now.0, renter_id, !billed],
        )?;
        let record = tx.query_row(
            &format!("SELECT {RENTAL_COLUMNS} FROM rentals WHERE id = ?1"),
            [id.as_str()],
            rental_row,
        )?;
        tx.commit()?;
        Ok(record)
    }

    /// The rentals of account `renter_id` with their device's name: the open
    /// ones (at most a handful), then the latest ended ones; 50 in all.
    pub fn rentals_of_renter(
        &self,
        renter_id: i64,
    ) -> Result<Vec<(String, RentalRecord)>, StoreError> {
        let conn = self.conn();
        let columns = RENTAL_COLUMNS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT {columns}, d.name FROM rentals r JOIN devices d ON d.id = r.device_id
             WHERE r.renter_id = ?1
             ORDER BY r.ended_at IS NULL DESC, r.started_at DESC, r.rowid DESC LIMIT 50"
        ))?;
        let rows = stmt.query_map([renter_id], |r| {
            Ok((r.get::<_, String>(9)?, rental_row(r)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The open rental of account `renter_id` with id `rental`, or of the
    /// device named `device`, with its device's name; however old it is.
    pub fn open_rental_of_renter(
        &self,
        renter_id: i64,
        rental: Option<&str>,
        device: Option<&str>,
    ) -> Result<Option<(String, RentalId)>, StoreError> {
        let found = self
            .conn()
            .query_row(
                "SELECT d.name, r.id FROM rentals r JOIN devices d ON d.id = r.device_id
                 WHERE r.renter_id = ?1 AND r.state != 'ended'
                   AND (r.id = ?2 OR d.name = ?3)",
                params![renter_id, rental, device],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        Ok(found.and_then(|(name, id)| Some((name, RentalId::parse(&id).ok()?))))
    }

    pub fn rental(&self, id: &RentalId) -> Result<Option<RentalRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {RENTAL_COLUMNS} FROM rentals WHERE id = ?1"),
                [id.as_str()],
                rental_row,
            )
            .optional()?)
    }

    /// Marks a provisioning rental active; false if it is no longer
    /// provisioning (it was stopped meanwhile).
    pub fn set_rental_active(&self, id: &RentalId, username: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE rentals SET state = 'active', username = ?2 WHERE id = ?1 AND state = 'provisioning'",
            params![id.as_str(), username],
        )?;
        Ok(changed == 1)
    }

    /// Marks a rental ending, with the reason when its owner or an
    /// administrator ends it.
    pub fn set_rental_ending(
        &self,
        id: &RentalId,
        reason: Option<&str>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE rentals SET state = 'ending', end_reason = COALESCE(?2, end_reason),
                ending_at = COALESCE(ending_at, ?3)
             WHERE id = ?1 AND state != 'ended'",
            params![id.as_str(), reason, now.0],
        )?;
        Ok(())
    }

    pub fn end_rental(&self, id: &RentalId, now: UnixTime) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE rentals SET state = 'ended', ended_at = ?2 WHERE id = ?1 AND state != 'ended'",
            params![id.as_str(), now.0],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpibroker_wire::DeviceName;

    fn store_with_device() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let d = store
            .add_device(&DeviceName::parse("pi").unwrap(), "h", None, UnixTime(1))
            .unwrap();
        (dir, store, d.id)
    }

    #[test]
    fn one_open_rental_per_device() {
        let (_dir, store, device) = store_with_device();
        let a = RentalId::parse("a").unwrap();
        let b = RentalId::parse("b").unwrap();
        let first = store
            .begin_rental(device, &a, &[], None, UnixTime(2))
            .unwrap();
        assert_eq!(first.state, RentalState::Provisioning);
        let again = store
            .begin_rental(device, &b, &[], None, UnixTime(3))
            .unwrap();
        assert_eq!(again.id, a, "an open rental is returned, not replaced");
        assert!(store.set_rental_active(&a, "ruser").unwrap());
        store.set_rental_ending(&a, None, UnixTime(2)).unwrap();
        assert!(
            !store.set_rental_active(&a, "ruser").unwrap(),
            "an ending rental stays ending"
        );
        store.end_rental(&a, UnixTime(4)).unwrap();
        assert!(store.open_rental(device).unwrap().is_none());
        let next = store
            .begin_rental(device, &b, &[], None, UnixTime(5))
            .unwrap();
        assert_eq!(next.id, b);
    }

    #[test]
    fn a_renter_gets_the_agreed_rate_and_no_more_rentals_than_allowed() {
        let (_dir, store, device) = store_with_device();
        let renter = store
            .add_user("r@example.org", "hash", false, UnixTime(1))
            .unwrap()
            .id;
        store.set_listing(device, true, Some(75)).unwrap();
        let terms = |hourly_rate, max_open| RenterTerms {
            renter_id: renter,
            hourly_rate,
            max_open,
            billed: false,
        };
        let a = RentalId::parse("a").unwrap();
        let stale = store.begin_rental(device, &a, &[], Some(terms(Some(50), 10)), UnixTime(2));
        assert!(matches!(stale, Err(StoreError::RateChanged(Some(75)))));
        assert!(
            store.open_rental(device).unwrap().is_none(),
            "nothing rented"
        );
        let limited = store.begin_rental(device, &a, &[], Some(terms(Some(75), 0)), UnixTime(2));
        assert!(matches!(limited, Err(StoreError::TooManyRentals(0))));
        let rented = store
            .begin_rental(device, &a, &[], Some(terms(Some(75), 1)), UnixTime(2))
            .unwrap();
        assert_eq!((rented.id, rented.renter_id), (a, Some(renter)));
        let other = store
            .add_device(&DeviceName::parse("pi2").unwrap(), "h2", None, UnixTime(1))
            .unwrap();
        let b = RentalId::parse("b").unwrap();
        let second = store.begin_rental(other.id, &b, &[], Some(terms(None, 1)), UnixTime(3));
        assert!(matches!(second, Err(StoreError::TooManyRentals(1))));
    }

    #[test]
    fn a_renter_sees_their_rentals_with_the_device_name() {
        let (_dir, store, device) = store_with_device();
        let renter = store
            .add_user("r@example.org", "hash", false, UnixTime(1))
            .unwrap()
            .id;
        let a = RentalId::parse("a").unwrap();
        store
            .begin_rental(
                device,
                &a,
                &[],
                Some(RenterTerms {
                    renter_id: renter,
                    hourly_rate: None,
                    max_open: 10,
                    billed: false,
                }),
                UnixTime(2),
            )
            .unwrap();
        let mine = store.rentals_of_renter(renter).unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].0, "pi");
        assert_eq!(mine[0].1.id, a);
        assert_eq!(mine[0].1.end_reason, None);
        store
            .set_rental_ending(&a, Some("maintenance"), UnixTime(2))
            .unwrap();
        let mine = store.rentals_of_renter(renter).unwrap();
        assert_eq!(mine[0].0, "pi");
        assert_eq!(mine[0].1.end_reason.as_deref(), Some("maintenance"));
        assert!(store.rentals_of_renter(renter + 1).unwrap().is_empty());
    }

    #[test]
    fn last_verification_is_the_newest() {
        let (_dir, store, device) = store_with_device();
        for (at, verdict) in [(10, Verdict::Flagged), (20, Verdict::Verified)] {
            store
                .add_verification(
                    device,
                    &VerificationRecord {
                        at: UnixTime(at),
                        verdict,
                        claimed: "{}".into(),
                        measured: None,
                        reasons: String::new(),
                    },
                )
                .unwrap();
        }
        let last = store.last_verification(device).unwrap().unwrap();
        assert_eq!(last.verdict, Verdict::Verified);
    }
}
