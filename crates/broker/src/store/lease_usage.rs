//! Usage records of leases in the store: the chains of records this broker
//! issued to each peer (for the leases it runs) and received from each
//! (for the leases its renters hold), and how far each lease is metered,
//! held and settled.

use rusqlite::{OptionalExtension, params};

use super::leases::{LEASE_COLUMNS, lease_row};
use super::{Batch, LeaseRecord, LeaseRole, Store, StoreError};
use crate::federation::usage::{ChainHead, RecordBody, SignedRecord};
use crate::time::UnixTime;

/// Which chain between this broker and a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Records this broker issued to the peer.
    Issued,
    /// Records the peer issued to this broker.
    Received,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Issued => "issued",
            Direction::Received => "received",
        }
    }
}

/// A lease this broker runs whose usage it has not finished recording,
/// with its rental.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meterable {
    pub lease: LeaseRecord,
    pub rental: Option<MeteredRental>,
}

/// The rental behind a lease, as metering needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteredRental {
    pub device_id: i64,
    /// The device's owner; `None` for the operator's devices.
    pub owner_id: Option<i64>,
    pub started_at: i64,
    /// When the renter's access ended, if it has.
    pub access_end: Option<i64>,
    pub end_reason: Option<String>,
}

/// The rental a lease (`leases`, in an `UPDATE`) of this broker's has if
/// the broker stopped before recording it: the open rental of its device by
/// the peer's account, started since the lease, that no lease has.
const ORPHAN_RENTAL: &str = "SELECT r.id FROM rentals r JOIN devices d ON d.id = r.device_id
     WHERE d.name = leases.device AND r.renter_id = leases.renter_id
         AND r.state != 'ended' AND r.started_at >= leases.created_at
         AND NOT EXISTS (SELECT 1 FROM leases o WHERE o.rental_id = r.id)";

/// The leases this broker runs with their rentals, to be narrowed with a
/// `WHERE` clause.
fn meterable_sql(filter: &str) -> String {
    format!(
        "SELECT {LEASE_COLUMNS}, r.device_id, d.owner_id, r.started_at,
                COALESCE(r.ending_at, r.ended_at), r.end_reason
         FROM leases l JOIN peers p ON p.id = l.peer_id
         LEFT JOIN rentals r ON r.id = l.rental_id
         LEFT JOIN devices d ON d.id = r.device_id
         WHERE l.role = 'lessor' AND {filter}"
    )
}

fn meterable_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Meterable> {
    let lease = lease_row(r)?;
    let device_id: Option<i64> = r.get(23)?;
    let rental = match device_id {
        Some(device_id) => Some(MeteredRental {
            device_id,
            owner_id: r.get(24)?,
            started_at: r.get(25)?,
            access_end: r.get(26)?,
            end_reason: r.get(27)?,
        }),
        None => None,
    };
    Ok(Meterable { lease, rental })
}

/// What one lease's records add up to, for a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTotal {
    pub lease: String,
    pub device: String,
    pub periods: i64,
    pub corrections: i64,
    pub total: i64,
    pub ended: bool,
}

/// Issue times `[from, until)` a statement covers; every record when
/// `None`.
pub type Span = Option<(i64, i64)>;

/// The number and hash of the last record of a chain issued in `span`
/// (`0` and empty when it has none): one row read, however long the chain.
fn tip_on(
    conn: &rusqlite::Connection,
    direction: Direction,
    peer_id: i64,
    span: Span,
) -> Result<(i64, String), StoreError> {
    let (from, until) = span.unwrap_or((i64::MIN, i64::MAX));
    Ok(conn
        .prepare_cached(
            "SELECT seq, hash FROM lease_usage
             WHERE direction = ?1 AND peer_id = ?2 AND issued_at >= ?3 AND issued_at < ?4
             ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![direction.as_str(), peer_id, from, until], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
        .unwrap_or_default())
}

fn head_on(
    conn: &rusqlite::Connection,
    direction: Direction,
    peer_id: i64,
    span: Span,
) -> Result<ChainHead, StoreError> {
    let (from, until) = span.unwrap_or((i64::MIN, i64::MAX));
    let (seq, hash) = tip_on(conn, direction, peer_id, span)?;
    let total: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(amount), 0) FROM lease_usage
             WHERE direction = ?1 AND peer_id = ?2 AND issued_at >= ?3 AND issued_at < ?4",
        )?
        .query_row(params![direction.as_str(), peer_id, from, until], |r| {
            r.get(0)
        })?;
    Ok(ChainHead { seq, hash, total })
}

fn records_of_lease_on(
    conn: &rusqlite::Connection,
    direction: Direction,
    peer_id: i64,
    lease: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT body FROM lease_usage WHERE direction = ?1 AND peer_id = ?2 AND lease = ?3
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![direction.as_str(), peer_id, lease], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Batch<'_> {
    /// A lease this broker runs, with its rental, as it is now (metering
    /// reads it again in the transaction that meters it).
    pub fn meterable(&self, peer_id: i64, id: &str) -> Result<Option<Meterable>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&meterable_sql("l.peer_id = ?1 AND l.id = ?2"))?
            .query_row(params![peer_id, id], meterable_row)
            .optional()?)
    }

    /// The records of one lease in a chain, in order (bodies as signed).
    pub fn records_of_lease(
        &self,
        direction: Direction,
        peer_id: i64,
        lease: &str,
    ) -> Result<Vec<String>, StoreError> {
        records_of_lease_on(self.conn, direction, peer_id, lease)
    }

    /// The number and hash of the chain's last record, which the next one
    /// follows.
    pub fn chain_tip(
        &self,
        direction: Direction,
        peer_id: i64,
    ) -> Result<(i64, String), StoreError> {
        tip_on(self.conn, direction, peer_id, None)
    }

    /// Adds a record to a chain (its place was checked by the caller).
    pub fn append_record(
        &self,
        direction: Direction,
        peer_id: i64,
        body: &RecordBody,
        signed: &SignedRecord,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO lease_usage (direction, peer_id, seq, lease, kind, period, amount,
                     currency, body, hash, keyid, signature, recorded_at, issued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                direction.as_str(),
                peer_id,
                body.seq,
                body.lease,
                body.kind.as_str(),
                body.period,
                body.amount,
                body.currency,
                signed.body,
                signed.hash,
                signed.keyid,
                signed.signature,
                now.0,
                body.issued_at
            ])?;
        Ok(())
    }

    /// Records how many periods of a lease are done (metered by the
    /// lessor, held by the lessee).
    pub fn set_periods_done(
        &self,
        role: LeaseRole,
        peer_id: i64,
        id: &str,
        periods: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE leases SET periods_done = MAX(periods_done, ?4)
                 WHERE role = ?1 AND peer_id = ?2 AND id = ?3",
            )?
            .execute(params![role.as_str(), peer_id, id, periods])?;
        Ok(())
    }

    /// Records that the renter's wallet could not hold `period` of a lease
    /// (the first such period is kept).
    pub fn set_lease_unpaid(&self, peer_id: i64, id: &str, period: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE leases SET unpaid_period = ?3
                 WHERE role = 'lessee' AND peer_id = ?1 AND id = ?2 AND unpaid_period IS NULL",
            )?
            .execute(params![peer_id, id, period])?;
        Ok(())
    }

    /// The lease's last record is issued (lessor) or received (lessee).
    pub fn close_lease_usage(
        &self,
        role: LeaseRole,
        peer_id: i64,
        id: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE leases SET usage_closed = 1 WHERE role = ?1 AND peer_id = ?2 AND id = ?3",
            )?
            .execute(params![role.as_str(), peer_id, id])?;
        Ok(())
    }

    /// Whether the chain has a usage record of `period` of `lease`.
    pub fn has_usage_record(
        &self,
        direction: Direction,
        peer_id: i64,
        lease: &str,
        period: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM lease_usage WHERE direction = ?1 AND peer_id = ?2 AND lease = ?3
                     AND kind = 'usage' AND period = ?4",
            )?
            .query_row(params![direction.as_str(), peer_id, lease, period], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// How many usage records (hours) of one lease a chain has.
    pub fn usage_records(
        &self,
        direction: Direction,
        peer_id: i64,
        lease: &str,
    ) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM lease_usage
                 WHERE direction = ?1 AND peer_id = ?2 AND lease = ?3 AND kind = 'usage'",
            )?
            .query_row(params![direction.as_str(), peer_id, lease], |r| r.get(0))?)
    }

    /// The sum of the records of one lease in a chain.
    pub fn lease_total(
        &self,
        direction: Direction,
        peer_id: i64,
        lease: &str,
    ) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COALESCE(SUM(amount), 0) FROM lease_usage
                 WHERE direction = ?1 AND peer_id = ?2 AND lease = ?3",
            )?
            .query_row(params![direction.as_str(), peer_id, lease], |r| r.get(0))?)
    }
}

impl Store {
    /// The last record of the chain and its total.
    pub fn chain_head(&self, direction: Direction, peer_id: i64) -> Result<ChainHead, StoreError> {
        head_on(&self.conn(), direction, peer_id, None)
    }

    /// The number and hash of the chain's last record.
    pub fn chain_tip(
        &self,
        direction: Direction,
        peer_id: i64,
    ) -> Result<(i64, String), StoreError> {
        tip_on(&self.conn(), direction, peer_id, None)
    }

    /// The last record of the chain issued in `span`, and the total of
    /// those issued in it.
    pub fn chain_head_in(
        &self,
        direction: Direction,
        peer_id: i64,
        span: Span,
    ) -> Result<ChainHead, StoreError> {
        head_on(&self.conn(), direction, peer_id, span)
    }

    /// Up to `limit` records of a chain after `after`, in order.
    pub fn records_after(
        &self,
        direction: Direction,
        peer_id: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<SignedRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT body, hash, keyid, signature FROM lease_usage
             WHERE direction = ?1 AND peer_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![direction.as_str(), peer_id, after, limit as i64],
            |r| {
                Ok(SignedRecord {
                    body: r.get(0)?,
                    hash: r.get(1)?,
                    keyid: r.get(2)?,
                    signature: r.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The records of one lease, in order (bodies as signed).
    pub fn records_of_lease(
        &self,
        direction: Direction,
        peer_id: i64,
        lease: &str,
    ) -> Result<Vec<String>, StoreError> {
        records_of_lease_on(&self.conn(), direction, peer_id, lease)
    }

    /// Each lease's records in a chain issued in `span`, summed, the
    /// latest lease first.
    pub fn lease_totals(
        &self,
        direction: Direction,
        peer_id: i64,
        span: Span,
    ) -> Result<Vec<LeaseTotal>, StoreError> {
        let (from, until) = span.unwrap_or((i64::MIN, i64::MAX));
        let role = match direction {
            Direction::Issued => LeaseRole::Lessor,
            Direction::Received => LeaseRole::Lessee,
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT u.lease, COALESCE(l.device, ''),
                    SUM(u.kind = 'usage'), SUM(u.kind = 'correction'), SUM(u.amount),
                    MAX(u.kind = 'end')
             FROM lease_usage u
             LEFT JOIN leases l ON l.role = ?3 AND l.peer_id = u.peer_id AND l.id = u.lease
             WHERE u.direction = ?1 AND u.peer_id = ?2 AND u.issued_at >= ?4 AND u.issued_at < ?5
             GROUP BY u.lease ORDER BY MIN(u.seq) DESC",
        )?;
        let rows = stmt.query_map(
            params![direction.as_str(), peer_id, role.as_str(), from, until],
            |r| {
                Ok(LeaseTotal {
                    lease: r.get(0)?,
                    device: r.get(1)?,
                    periods: r.get(2)?,
                    corrections: r.get(3)?,
                    total: r.get(4)?,
                    ended: r.get(5)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The leases this broker runs whose usage it has not finished
    /// recording, with their rentals.
    pub fn leases_to_meter(&self) -> Result<Vec<Meterable>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&meterable_sql("l.usage_closed = 0"))?;
        let rows = stmt.query_map([], meterable_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Links each open lease this broker runs that has had no rental for
    /// five minutes (longer than setting one up takes) to its rental, if
    /// one is found ([`ORPHAN_RENTAL`]): a broker stopped between starting
    /// a leased rental and recording it on the lease would otherwise leave
    /// that rental unbilled.
    pub fn link_lessor_rentals(&self, now: UnixTime) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            &format!(
                "UPDATE leases SET rental_id = ({ORPHAN_RENTAL})
                 WHERE role = 'lessor' AND state = 'open' AND rental_id IS NULL
                     AND created_at < ?1 - 300 AND ({ORPHAN_RENTAL}) IS NOT NULL"
            ),
            [now.0],
        )?)
    }

    /// [`Store::link_lessor_rentals`] for lease `id` of peer `peer_id` now,
    /// whatever its age (its peer is stopping it); its rental, if it has one.
    pub fn link_lessor_rental(&self, peer_id: i64, id: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        conn.execute(
            &format!(
                "UPDATE leases SET rental_id = ({ORPHAN_RENTAL})
                 WHERE role = 'lessor' AND peer_id = ?1 AND id = ?2 AND rental_id IS NULL"
            ),
            params![peer_id, id],
        )?;
        Ok(conn
            .query_row(
                "SELECT rental_id FROM leases WHERE role = 'lessor' AND peer_id = ?1 AND id = ?2",
                params![peer_id, id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// The open leases this broker's renters hold at a price (the peer
    /// granted them: they have a login), whose wallet has covered every
    /// period so far.
    pub fn leases_to_hold(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases l JOIN peers p ON p.id = l.peer_id
             WHERE l.role = 'lessee' AND l.state = 'open' AND l.hourly_rate > 0
                 AND l.unpaid_period IS NULL AND l.username IS NOT NULL AND p.state = 'active'"
        ))?;
        let rows = stmt.query_map([], lease_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The leases this broker's renters held from peer `peer_id` whose
    /// last record is not in.
    pub fn unsettled_leases(&self, peer_id: i64) -> Result<Vec<LeaseRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases l JOIN peers p ON p.id = l.peer_id
             WHERE l.role = 'lessee' AND l.peer_id = ?1 AND l.usage_closed = 0"
        ))?;
        let rows = stmt.query_map([peer_id], lease_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records when the lessee said its renter stopped a lease this broker
    /// runs (the first time it said so).
    pub fn set_lease_stop_at(&self, peer_id: i64, id: &str, at: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE leases SET stop_at = ?3
             WHERE role = 'lessor' AND peer_id = ?1 AND id = ?2 AND stop_at IS NULL",
            params![peer_id, id, at],
        )?;
        Ok(())
    }

    /// Records the outcome of comparing a peer's chain with this broker's
    /// copy: `problem` is `None` when they agree.
    pub fn set_usage_check(
        &self,
        peer_id: i64,
        problem: Option<&str>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE peers SET usage_checked_at = ?2, usage_problem = ?3 WHERE id = ?1",
            params![peer_id, now.0, problem],
        )?;
        Ok(())
    }
}
