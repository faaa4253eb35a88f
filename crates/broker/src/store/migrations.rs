//! Versioned schema migrations. Each file in `crates/broker/migrations/` is
//! applied once, in order, inside a transaction; SQLite's `user_version`
//! records how many have been applied.

use rusqlite::Connection;

/// The migrations, oldest first. Never edit one that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_devices.sql"),
    include_str!("../../migrations/0002_sandboxes.sql"),
    include_str!("../../migrations/0003_accounts.sql"),
    include_str!("../../migrations/0004_device_owners.sql"),
    include_str!("../../migrations/0005_listings.sql"),
    include_str!("../../migrations/0006_login_failures.sql"),
    include_str!("../../migrations/0007_rental_end_reason.sql"),
    include_str!("../../migrations/0008_password_resets.sql"),
    include_str!("../../migrations/0009_api_tokens.sql"),
    include_str!("../../migrations/0010_uptime_and_rental_rate.sql"),
    include_str!("../../migrations/0011_device_suspensions.sql"),
    include_str!("../../migrations/0012_rental_ending_at.sql"),
];

pub fn apply(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
