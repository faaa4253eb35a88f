//! When devices' sandboxes were not healthy, as their agents reported:
//! stretches opened when a report says the sandbox is failed, starting,
//! wiping or gone, and closed by the next report that says it is up. Only
//! changes write: a steady state costs nothing. They are purged with the
//! connected stretches (`Store::purge_uptime`).

use rusqlite::params;

use super::{Batch, Store, StoreError};
use crate::time::UnixTime;

/// Whether a sandbox in `state` (as stored) serves its renter.
pub fn healthy(state: &str) -> bool {
    matches!(state, "ready" | "rented")
}

/// Records a report of the device's sandbox at `now`, inside the write
/// that stores the report.
pub(super) fn observed(
    tx: &rusqlite::Connection,
    device_id: i64,
    state: &str,
    now: i64,
) -> rusqlite::Result<()> {
    if healthy(state) {
        tx.prepare_cached(
            "UPDATE sandbox_unhealthy SET until = MAX(since, ?2)
             WHERE device_id = ?1 AND until IS NULL",
        )?
        .execute(params![device_id, now])?;
    } else {
        tx.prepare_cached(
            "INSERT INTO sandbox_unhealthy (device_id, since)
             SELECT ?1, ?2 WHERE NOT EXISTS
                (SELECT 1 FROM sandbox_unhealthy WHERE device_id = ?1 AND until IS NULL)",
        )?
        .execute(params![device_id, now])?;
    }
    Ok(())
}

impl Store {
    /// The device's unhealthy stretches that overlap `[from, to)`; one still
    /// open runs to `now`.
    pub fn unhealthy_stretches(
        &self,
        device_id: i64,
        from: i64,
        to: i64,
        now: UnixTime,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        Batch { conn: &self.conn() }.unhealthy_stretches(device_id, from, to, now)
    }
}

impl Batch<'_> {
    /// [`Store::unhealthy_stretches`], in the batch's transaction.
    pub fn unhealthy_stretches(
        &self,
        device_id: i64,
        from: i64,
        to: i64,
        now: UnixTime,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT since, COALESCE(until, MAX(since, ?4)) FROM sandbox_unhealthy
             WHERE device_id = ?1 AND since < ?3 AND COALESCE(until, ?4) > ?2
             ORDER BY since",
        )?;
        let rows = stmt.query_map(params![device_id, from, to, now.0], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpibroker_wire::DeviceName;

    #[test]
    fn reports_open_and_close_unhealthy_stretches() {
        let store = Store::open(std::path::Path::new(":memory:")).unwrap();
        let name = DeviceName::parse("pi").unwrap();
        let id = store.add_device(&name, "h", None, UnixTime(0)).unwrap().id;
        store.set_sandbox(id, "rented", None, UnixTime(10)).unwrap();
        store
            .set_sandbox(id, "failed", None, UnixTime(100))
            .unwrap();
        store
            .set_sandbox(id, "starting", None, UnixTime(150))
            .unwrap();
        let open = store
            .unhealthy_stretches(id, 0, 1000, UnixTime(300))
            .unwrap();
        assert_eq!(open, vec![(100, 300)], "one stretch, open to now");
        store
            .set_sandbox(id, "rented", None, UnixTime(400))
            .unwrap();
        store.set_sandbox(id, "ready", None, UnixTime(500)).unwrap();
        store
            .set_sandbox(id, "failed", None, UnixTime(600))
            .unwrap();
        assert_eq!(
            store
                .unhealthy_stretches(id, 0, 1000, UnixTime(700))
                .unwrap(),
            vec![(100, 400), (600, 700)]
        );
        assert_eq!(
            store
                .unhealthy_stretches(id, 400, 600, UnixTime(700))
                .unwrap(),
            Vec::<(i64, i64)>::new(),
            "none overlaps a healthy window"
        );
    }
}
