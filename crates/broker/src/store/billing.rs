//! What the billing job reads and records: the rentals it has not finished
//! billing, when their devices were connected, and how far each is billed.

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;
use rusqlite::{OptionalExtension, params};

use super::{Batch, Store, StoreError};
use crate::time::UnixTime;

/// A rental the billing job has not finished with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Billable {
    pub id: RentalId,
    pub device_id: i64,
    pub device: DeviceName,
    pub renter_id: i64,
    pub renter_email: String,
    /// The device's owner; `None` for the operator's devices.
    pub owner_id: Option<i64>,
    /// Agreed at the start, in minor units per period.
    pub rate: i64,
    pub started_at: i64,
    /// When the renter's access ended (the stop), if it has.
    pub ended_at: Option<i64>,
    pub billed_periods: i64,
    /// The period whose hold the wallet could not cover, if one could not.
    pub unpaid_period: Option<i64>,
}

impl Store {
    /// Rentals by renters at a price whose billing is not finished.
    pub fn rentals_to_bill(&self) -> Result<Vec<Billable>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.id, r.device_id, d.name, r.renter_id, u.email, d.owner_id, r.hourly_rate,
                    r.started_at, COALESCE(r.ending_at, r.ended_at), r.billed_periods, r.unpaid_period
             FROM rentals r
             JOIN devices d ON d.id = r.device_id
             JOIN users u ON u.id = r.renter_id
             WHERE r.billing_closed = 0 AND r.hourly_rate > 0 AND r.username IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            let id: String = r.get(0)?;
            let name: String = r.get(2)?;
            let bad = |i, e: String| {
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            };
            Ok(Billable {
                id: RentalId::parse(&id).map_err(|e| bad(0, e.to_string()))?,
                device_id: r.get(1)?,
                device: DeviceName::parse(&name).map_err(|e| bad(2, e.to_string()))?,
                renter_id: r.get(3)?,
                renter_email: r.get(4)?,
                owner_id: r.get(5)?,
                rate: r.get(6)?,
                started_at: r.get(7)?,
                ended_at: r.get(8)?,
                billed_periods: r.get(9)?,
                unpaid_period: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The device's connected stretches that overlap `[from, to)`; one still
    /// open runs to `now`.
    pub fn connected_stretches(
        &self,
        device_id: i64,
        from: i64,
        to: i64,
        now: UnixTime,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        Batch { conn: &self.conn() }.connected_stretches(device_id, from, to, now)
    }
}

impl Batch<'_> {
    /// The device's connected stretches that overlap `[from, to)`; one still
    /// open runs to `now`.
    pub fn connected_stretches(
        &self,
        device_id: i64,
        from: i64,
        to: i64,
        now: UnixTime,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.since,
                    CASE WHEN d.online_since IS NOT NULL AND u.until >= d.last_seen THEN ?4 ELSE u.until END
             FROM device_uptime u JOIN devices d ON d.id = u.device_id
             WHERE u.device_id = ?1 AND u.since < ?3
               AND (u.until > ?2 OR (d.online_since IS NOT NULL AND u.until >= d.last_seen))",
        )?;
        let rows = stmt.query_map(params![device_id, from, to, now.0], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that the wallet could not cover the hold of `period` (the
    /// first such period is kept).
    pub fn set_unpaid(&self, rental: &RentalId, period: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE rentals SET unpaid_period = ?2 WHERE id = ?1 AND unpaid_period IS NULL",
            )?
            .execute(params![rental.as_str(), period])?;
        Ok(())
    }

    /// Records that `periods` of the rental are billed, and whether that is
    /// all of them.
    pub fn set_billed(
        &self,
        rental: &RentalId,
        periods: i64,
        closed: bool,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE rentals SET billed_periods = MAX(billed_periods, ?2), billing_closed = MAX(billing_closed, ?3)
                 WHERE id = ?1 AND (billed_periods < ?2 OR billing_closed < ?3)",
            )?
            .execute(params![rental.as_str(), periods, closed])?;
        Ok(())
    }
}

/// A rental as its usage is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RentalBilling {
    pub id: RentalId,
    pub device_id: i64,
    pub device: String,
    /// `None` when the operator started it.
    pub renter_id: Option<i64>,
    /// Agreed at the start, in minor units per period; 0 when unpriced.
    pub rate: i64,
    pub started_at: i64,
    /// When the renter's access ended (the stop), if it has.
    pub ended_at: Option<i64>,
    pub billed_periods: i64,
    /// Billing is done with the rental (or never billed it).
    pub closed: bool,
    pub unpaid_period: Option<i64>,
}

/// One leg of a rental's hold or settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RentalLeg {
    /// `hold` or `settle`.
    pub kind: String,
    pub period: i64,
    /// The account's kind (`wallet`, `held`, `payable`, `revenue`).
    pub account: String,
    pub amount: i64,
}

impl Store {
    /// The rental with id `id`, as billing sees it.
    pub fn rental_billing(&self, id: &str) -> Result<Option<RentalBilling>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.id, r.device_id, d.name, r.renter_id, COALESCE(r.hourly_rate, 0), r.started_at,
                    COALESCE(r.ending_at, r.ended_at), r.billed_periods, r.billing_closed, r.unpaid_period
             FROM rentals r JOIN devices d ON d.id = r.device_id WHERE r.id = ?1",
        )?;
        let found = stmt
            .query_row([id], |r| {
                let id: String = r.get(0)?;
                Ok(RentalBilling {
                    id: RentalId::parse(&id).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            e.to_string().into(),
                        )
                    })?,
                    device_id: r.get(1)?,
                    device: r.get(2)?,
                    renter_id: r.get(3)?,
                    rate: r.get(4)?,
                    started_at: r.get(5)?,
                    ended_at: r.get(6)?,
                    billed_periods: r.get(7)?,
                    closed: r.get(8)?,
                    unpaid_period: r.get(9)?,
                })
            })
            .optional()?;
        Ok(found)
    }

    /// Every leg of the rental's holds and settlements.
    pub fn rental_legs(&self, rental: &RentalId) -> Result<Vec<RentalLeg>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT e.transfer_id, a.kind, e.amount FROM ledger_entries e
             JOIN ledger_accounts a ON a.id = e.account_id
             WHERE e.transfer_id IN (
                SELECT id FROM ledger_transfers
                WHERE (id > ?1 AND id < ?2) OR (id > ?3 AND id < ?4))",
        )?;
        // Transfer ids are `<kind>:<rental>:<period>`; ';' follows ':'.
        let (hold, settle) = (format!("hold:{rental}:"), format!("settle:{rental}:"));
        let bound = |p: &str| format!("{};", &p[..p.len() - 1]);
        let rows = stmt.query_map(params![hold, bound(&hold), settle, bound(&settle)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        let mut legs = Vec::new();
        for row in rows {
            let (transfer, account, amount) = row?;
            let mut parts = transfer.rsplitn(2, ':');
            let period = parts.next().and_then(|k| k.parse().ok());
            let kind = transfer.split(':').next().unwrap_or_default().to_string();
            if let Some(period) = period {
                legs.push(RentalLeg {
                    kind,
                    period,
                    account,
                    amount,
                });
            }
        }
        Ok(legs)
    }
}
