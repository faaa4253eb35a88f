//! Versioned schema migrations. Each file in `crates/broker/migrations/` is
//! applied once, in order, inside a transaction, and recorded by name in
//! `schema_migrations`, so migrations written side by side (and merged in
//! any order) are each applied exactly once.
//!
//! Databases from before the names were recorded counted applied migrations
//! in SQLite's `user_version`; their first seven are the same files in the
//! same order, and a later one is recognised by the table it created.

use rusqlite::{Connection, OptionalExtension};

/// A migration's name (its file name without `.sql`) and its SQL.
type Migration = (&'static str, &'static str);

macro_rules! migration {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../migrations/", $name, ".sql")),
        )
    };
}

/// The migrations, oldest first. Never edit one that has shipped: add a new one.
const MIGRATIONS: &[Migration] = &[
    migration!("0001_devices"),
    migration!("0002_sandboxes"),
    migration!("0003_accounts"),
    migration!("0004_device_owners"),
    migration!("0005_listings"),
    migration!("0006_login_failures"),
    migration!("0007_rental_end_reason"),
    migration!("0008_password_resets"),
    migration!("0009_api_tokens"),
    migration!("0010_uptime_and_rental_rate"),
    migration!("0011_device_suspensions"),
    migration!("0012_rental_ending_at"),
    migration!("0013_ledger"),
    migration!("0014_rental_billing"),
    migration!("0015_sandbox_health_and_unpaid_periods"),
    migration!("0016_topups"),
    migration!("0017_federation"),
    migration!("0018_payouts"),
    migration!("0019_leases"),
    migration!("0020_payout_send_attempts"),
    migration!("0021_topup_refunded_total"),
    migration!("0022_lease_usage"),
    migration!("0023_federation_export_prunes"),
];

/// How many migrations databases counted by `user_version` always applied
/// in this order.
const COUNTED: usize = 7;

/// Migrations after [`COUNTED`] that a counted database may hold, each
/// recognised by a table it created.
const RECOGNISED: &[(&str, &str)] = &[
    ("0008_password_resets", "password_resets"),
    ("0009_api_tokens", "api_tokens"),
    ("0010_uptime_and_rental_rate", "device_uptime"),
    ("0011_device_suspensions", "device_suspensions"),
];

fn has_table(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Records, by name, what a database counted by `user_version` holds.
fn adopt_counted(conn: &Connection) -> rusqlite::Result<()> {
    let counted: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if counted == 0 {
        return Ok(());
    }
    let mut names: Vec<&str> = MIGRATIONS
        .iter()
        .take(counted.min(COUNTED))
        .map(|(name, _)| *name)
        .collect();
    if counted > COUNTED {
        for (name, table) in RECOGNISED {
            if has_table(conn, table)? {
                names.push(name);
            }
        }
    }
    for name in names {
        conn.execute(
            "INSERT OR IGNORE INTO schema_migrations (name) VALUES (?1)",
            [name],
        )?;
    }
    Ok(())
}

pub fn apply(conn: &mut Connection) -> rusqlite::Result<()> {
    {
        let tx = conn.transaction()?;
        if !has_table(&tx, "schema_migrations")? {
            tx.execute_batch("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY)")?;
            adopt_counted(&tx)?;
        }
        tx.commit()?;
    }
    for (name, sql) in MIGRATIONS {
        let tx = conn.transaction()?;
        let done = tx
            .query_row(
                "SELECT 1 FROM schema_migrations WHERE name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !done {
            tx.execute_batch(sql)?;
            tx.execute("INSERT INTO schema_migrations (name) VALUES (?1)", [name])?;
        }
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_fresh_database_gets_every_migration_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let n: usize = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len());
    }

    /// A database counted by `user_version` that ran 0001-0008, 0010 and
    /// 0011 (in that order) gets 0009 and 0012, and nothing twice.
    #[test]
    fn a_counted_database_gets_only_what_it_lacks() {
        let mut conn = Connection::open_in_memory().unwrap();
        let ran = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10];
        for i in ran {
            conn.execute_batch(MIGRATIONS[i].1).unwrap();
        }
        conn.pragma_update(None, "user_version", ran.len()).unwrap();
        apply(&mut conn).unwrap();
        assert!(has_table(&conn, "api_tokens").unwrap());
        assert!(columns(&conn, "rentals").contains(&"ending_at".to_string()));
        let n: usize = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len());
    }
}
