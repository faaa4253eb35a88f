//! When devices were connected, and what that makes their uptime over the
//! last 7 and 30 days; and what owners earned from rentals.
//!
//! Each stretch of connection is one row, opened when a session starts,
//! moved forward by the presence heartbeat and closed when the session ends.
//! A device that reconnects within [`JOIN_GAP_SECS`] continues its stretch,
//! so a flapping connection does not grow the table.

use std::collections::HashMap;

use rpibroker_wire::status::{Earnings, Uptime};
use rusqlite::params;

use super::{Store, StoreError};
use crate::time::UnixTime;

const DAY: i64 = 24 * 3600;
const WEEK: i64 = 7 * DAY;
const MONTH: i64 = 30 * DAY;
/// A reconnection this soon after the last stretch ended continues it.
pub const JOIN_GAP_SECS: i64 = 60;

/// Connected seconds over a window, as tenths of a percent of the part of
/// the window the device existed.
fn permille(connected: i64, created_at: i64, now: i64, window: i64) -> u16 {
    let span = now - created_at.max(now - window);
    if span <= 0 {
        return 0;
    }
    (connected.clamp(0, span) * 1000 / span) as u16
}

/// Statements that keep the stretches, run inside the presence writes.
pub(super) fn opened(tx: &rusqlite::Connection, device_id: i64, now: i64) -> rusqlite::Result<()> {
    let continued = tx.execute(
        "UPDATE device_uptime SET until = MAX(until, ?2)
         WHERE rowid = (SELECT MAX(rowid) FROM device_uptime WHERE device_id = ?1)
           AND until >= ?2 - ?3",
        params![device_id, now, JOIN_GAP_SECS],
    )?;
    if continued == 0 {
        tx.execute(
            "INSERT INTO device_uptime (device_id, since, until) VALUES (?1, ?2, ?2)",
            params![device_id, now],
        )?;
    }
    Ok(())
}

/// Moves the device's latest stretch forward to `now`, if the store has
/// the device online (a heartbeat that runs before the session's "online"
/// is written must not stretch the previous, closed one over the gap).
pub(super) fn extended(
    tx: &rusqlite::Connection,
    device_id: i64,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE device_uptime SET until = MAX(until, ?2)
         WHERE rowid = (SELECT MAX(rowid) FROM device_uptime WHERE device_id = ?1)
           AND EXISTS (SELECT 1 FROM devices WHERE id = ?1 AND online_since IS NOT NULL)",
        params![device_id, now],
    )?;
    Ok(())
}

impl Store {
    /// Every device's uptime, by device id, in one query.
    pub fn uptimes(&self, now: UnixTime) -> Result<HashMap<i64, Uptime>, StoreError> {
        self.uptimes_where(now, None)
    }

    /// One device's uptime.
    pub fn uptime(&self, device_id: i64, now: UnixTime) -> Result<Option<Uptime>, StoreError> {
        Ok(self.uptimes_where(now, Some(device_id))?.remove(&device_id))
    }

    /// Uptimes of every device, or only of `device`.
    fn uptimes_where(
        &self,
        now: UnixTime,
        device: Option<i64>,
    ) -> Result<HashMap<i64, Uptime>, StoreError> {
        let conn = self.conn();
        // A stretch still open (the device is online now) runs to now, not
        // to the last heartbeat.
        let mut stmt = conn.prepare_cached(
            "SELECT d.id, d.created_at,
                COALESCE(SUM(MAX(0, MIN(CASE WHEN d.online_since IS NOT NULL AND u.until >= d.last_seen
                                             THEN ?1 ELSE u.until END, ?1) - MAX(u.since, ?1 - ?2))), 0),
                COALESCE(SUM(MAX(0, MIN(CASE WHEN d.online_since IS NOT NULL AND u.until >= d.last_seen
                                             THEN ?1 ELSE u.until END, ?1) - MAX(u.since, ?1 - ?3))), 0)
             FROM devices d
             LEFT JOIN device_uptime u ON u.device_id = d.id AND u.until >= ?1 - ?3
             WHERE ?4 IS NULL OR d.id = ?4
             GROUP BY d.id",
        )?;
        let rows = stmt.query_map(params![now.0, WEEK, MONTH, device], |r| {
            let (id, created): (i64, i64) = (r.get(0)?, r.get(1)?);
            let (week, month): (i64, i64) = (r.get(2)?, r.get(3)?);
            Ok((
                id,
                Uptime {
                    week_permille: permille(week, created, now.0, WEEK),
                    month_permille: permille(month, created, now.0, MONTH),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the rentals of `owner_id`'s devices were worth, by device id:
    /// each rental's time until it was stopped (to now while it runs) at the
    /// rate agreed when it started.
    pub fn earnings_of_owner(
        &self,
        owner_id: i64,
        now: UnixTime,
    ) -> Result<HashMap<i64, Earnings>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.device_id, r.started_at, COALESCE(r.ending_at, r.ended_at, ?2),
                    COALESCE(r.hourly_rate, 0)
             FROM rentals r JOIN devices d ON d.id = r.device_id
             WHERE d.owner_id = ?1 AND r.username IS NOT NULL",
        )?;
        let mut out: HashMap<i64, Earnings> = HashMap::new();
        let rows = stmt.query_map(params![owner_id, now.0], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (device, started, ended, rate) = row?;
            let secs = (ended - started).max(0);
            let e = out.entry(device).or_default();
            e.rentals += 1;
            e.rented_secs += secs;
            e.cents += secs.saturating_mul(rate) / 3600;
        }
        Ok(out)
    }

    /// Forgets stretches, connected and unhealthy, that ended before the
    /// longest window.
    pub fn purge_uptime(&self, now: UnixTime) -> Result<usize, StoreError> {
        let conn = self.conn();
        let before = now.0 - MONTH - DAY;
        Ok(
            conn.execute("DELETE FROM device_uptime WHERE until < ?1", [before])?
                + conn.execute("DELETE FROM sandbox_unhealthy WHERE until < ?1", [before])?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpibroker_wire::DeviceName;

    #[test]
    fn permille_is_of_the_part_of_the_window_the_device_existed() {
        assert_eq!(permille(3600, 0, 7200, WEEK), 500);
        assert_eq!(permille(WEEK, 0, 10 * WEEK, WEEK), 1000);
        assert_eq!(permille(WEEK / 2, 0, 10 * WEEK, WEEK), 500);
        assert_eq!(permille(5, 100, 100, WEEK), 0, "no time yet");
        assert_eq!(permille(9999, 0, 100, WEEK), 1000, "clamped");
    }

    #[test]
    fn earnings_count_rented_time_until_the_stop_at_the_agreed_rate() {
        use rpibroker_wire::control::RentalId;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let owner = store
            .add_user("o@example.org", "h", false, UnixTime(0))
            .unwrap();
        let name = DeviceName::parse("pi").unwrap();
        let id = store
            .add_owned_device(&name, "h", owner.id, 20, UnixTime(0))
            .unwrap()
            .id;
        // 36.00 per hour is one cent a second.
        store.set_listing(id, true, Some(3600)).unwrap();
        let r = RentalId::parse("rnt-1").unwrap();
        store
            .begin_rental(id, &r, &[], None, UnixTime(1000))
            .unwrap();
        assert!(
            store
                .earnings_of_owner(owner.id, UnixTime(1100))
                .unwrap()
                .is_empty(),
            "nothing before the renter has a login"
        );
        store.set_rental_active(&r, "renter").unwrap();
        // The owner raising the price later does not change the agreed rate.
        store.set_listing(id, true, Some(999_999)).unwrap();
        let e = store.earnings_of_owner(owner.id, UnixTime(1100)).unwrap()[&id];
        assert_eq!((e.cents, e.rented_secs, e.rentals), (100, 100, 1));
        // Stopped at 1250; the wipe only finishes at 5000: 250 s are paid.
        store.set_rental_ending(&r, None, UnixTime(1250)).unwrap();
        store.end_rental(&r, UnixTime(5000)).unwrap();
        let e = store.earnings_of_owner(owner.id, UnixTime(9000)).unwrap()[&id];
        assert_eq!((e.cents, e.rented_secs), (250, 250));
    }

    #[test]
    fn stretches_make_uptime_and_reconnects_continue_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let name = DeviceName::parse("pi").unwrap();
        let id = store.add_device(&name, "h", None, UnixTime(0)).unwrap().id;
        let t0 = 10 * DAY;
        // Registered at 0, connected from t0 - 3 days to t0 - 2 days.
        store.set_online(id, UnixTime(t0 - 3 * DAY)).unwrap();
        store.touch_online(&[id], UnixTime(t0 - 2 * DAY)).unwrap();
        store.set_offline(id, UnixTime(t0 - 2 * DAY)).unwrap();
        let u = store.uptimes(UnixTime(t0)).unwrap()[&id];
        assert_eq!(u.week_permille, 1000 / 7);
        assert_eq!(u.month_permille, 100, "1 day of the 10 it existed");

        // A heartbeat that comes before the next "online" is written does
        // not stretch the closed stretch over the time offline.
        store.touch_online(&[id], UnixTime(t0 - DAY - 10)).unwrap();
        assert_eq!(store.uptimes(UnixTime(t0)).unwrap()[&id], u);
        // Online again: the open stretch counts to now.
        store.set_online(id, UnixTime(t0 - DAY)).unwrap();
        let u = store.uptimes(UnixTime(t0)).unwrap()[&id];
        assert_eq!(u.week_permille, 2000 / 7);
        // A quick reconnect continues the stretch instead of adding one.
        store.set_offline(id, UnixTime(t0)).unwrap();
        store.set_online(id, UnixTime(t0 + 30)).unwrap();
        let rows: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM device_uptime", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
        assert_eq!(store.purge_uptime(UnixTime(t0 + 40 * DAY)).unwrap(), 2);
    }
}
