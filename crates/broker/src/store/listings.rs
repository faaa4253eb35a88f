//! The marketplace's view of the store: every listed device with its owner,
//! price, claimed hardware, sandbox state, last verification and whether a
//! rental is open, read in one query however many devices are listed.

use rpibroker_wire::verification::{Figures, Measured, Verdict, Verification};
use rpibroker_wire::{DeviceName, HardwareReport};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// A listed device as the store knows it. Whether it is online is not here:
/// only the live registry knows that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDevice {
    pub id: i64,
    pub name: DeviceName,
    /// The account that registered it; `None` for the operator's devices.
    pub owner_id: Option<i64>,
    /// Price per hour in minor units (cents).
    pub hourly_rate: Option<i64>,
    /// What the agent reported at its last handshake (claimed, not verified).
    pub hardware: Option<HardwareReport>,
    /// The sandbox's state as its agent last reported it.
    pub sandbox_state: Option<String>,
    /// The broker's last measurement of the sandbox.
    pub verification: Option<Verification>,
    /// A rental of it has not ended.
    pub rented: bool,
}

/// One row per listed device; the last verification is the newest by time,
/// then by insertion (the index on `(device_id, at)` carries the rowid).
const LISTED: &str = "
    SELECT d.id, d.name, d.owner_id, d.hourly_rate, d.hardware, s.state,
           v.at, v.verdict, v.claimed, v.measured, v.reasons,
           EXISTS (SELECT 1 FROM rentals r WHERE r.device_id = d.id AND r.state != 'ended')
    FROM devices d
    LEFT JOIN sandboxes s ON s.device_id = d.id
    LEFT JOIN verifications v ON v.id = (
        SELECT id FROM verifications WHERE device_id = d.id ORDER BY at DESC, id DESC LIMIT 1)
    WHERE d.listed = 1";

fn listed_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ListedDevice> {
    let name: String = r.get(1)?;
    let hardware: Option<String> = r.get(4)?;
    let verified_at: Option<i64> = r.get(6)?;
    let verification = match verified_at {
        Some(at) => {
            let verdict: String = r.get(7)?;
            let claimed: String = r.get(8)?;
            let measured: Option<String> = r.get(9)?;
            Some(Verification {
                at,
                verdict: Verdict::parse(&verdict),
                reasons: r.get(10)?,
                claimed: serde_json::from_str::<Figures>(&claimed).unwrap_or_default(),
                measured: measured.and_then(|m| serde_json::from_str::<Measured>(&m).ok()),
            })
        }
        None => None,
    };
    Ok(ListedDevice {
        id: r.get(0)?,
        // Names were validated before they were stored.
        name: DeviceName::parse(&name).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
        })?,
        owner_id: r.get(2)?,
        hourly_rate: r.get(3)?,
        hardware: hardware.and_then(|h| serde_json::from_str(&h).ok()),
        sandbox_state: r.get(5)?,
        verification,
        rented: r.get(11)?,
    })
}

impl Store {
    /// Every device on the marketplace, by name.
    pub fn listed_devices(&self) -> Result<Vec<ListedDevice>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{LISTED} ORDER BY d.name"))?;
        let rows = stmt.query_map([], listed_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The device called `name` if it is on the marketplace.
    pub fn listed_device(&self, name: &DeviceName) -> Result<Option<ListedDevice>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{LISTED} AND d.name = ?1"))?;
        Ok(stmt
            .query_row(params![name.as_str()], listed_from_row)
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VerificationRecord;
    use crate::time::UnixTime;
    use rpibroker_wire::control::RentalId;

    fn name(s: &str) -> DeviceName {
        DeviceName::parse(s).unwrap()
    }

    fn verification(at: i64, verdict: Verdict, cores: u64) -> VerificationRecord {
        VerificationRecord {
            at: UnixTime(at),
            verdict,
            claimed: "{}".into(),
            measured: Some(format!(r#"{{"cpu_millicores":{cores}}}"#)),
            reasons: String::new(),
        }
    }

    #[test]
    fn lists_only_listed_devices_with_their_latest_verification_and_rental() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let a = store
            .add_device(&name("a"), "ha", None, UnixTime(1))
            .unwrap();
        let b = store
            .add_device(&name("b"), "hb", None, UnixTime(1))
            .unwrap();
        store
            .add_device(&name("hidden"), "hc", None, UnixTime(1))
            .unwrap();
        store.set_listing(a.id, true, Some(150)).unwrap();
        store.set_listing(b.id, true, None).unwrap();
        store
            .add_verification(a.id, &verification(10, Verdict::Flagged, 500))
            .unwrap();
        store
            .add_verification(a.id, &verification(20, Verdict::Verified, 2000))
            .unwrap();
        store
            .add_verification(a.id, &verification(20, Verdict::Verified, 4000))
            .unwrap();
        store.set_sandbox(a.id, "ready", None, UnixTime(5)).unwrap();
        store
            .begin_rental(
                b.id,
                &RentalId::parse("r1").unwrap(),
                &[],
                None,
                UnixTime(6),
            )
            .unwrap();

        let listed = store.listed_devices().unwrap();
        let names: Vec<&str> = listed.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let (la, lb) = (&listed[0], &listed[1]);
        assert_eq!(la.hourly_rate, Some(150));
        assert_eq!(la.sandbox_state.as_deref(), Some("ready"));
        let v = la.verification.as_ref().unwrap();
        assert_eq!((v.at, v.verdict), (20, Verdict::Verified));
        assert_eq!(
            v.measured.as_ref().unwrap().figures.cpu_millicores,
            Some(4000),
            "the newest of two verifications at the same second"
        );
        assert!(!la.rented && lb.rented);
        assert_eq!(lb.verification, None);
        assert_eq!(lb.sandbox_state, None);

        assert_eq!(store.listed_device(&name("a")).unwrap().as_ref(), Some(la));
        assert_eq!(store.listed_device(&name("hidden")).unwrap(), None);
        assert_eq!(store.listed_device(&name("nope")).unwrap(), None);
    }
}
