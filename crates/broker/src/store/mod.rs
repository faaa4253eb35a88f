//! The broker's persistent state: devices, their public ports, their SSH keys,
//! retired tokens, sandboxes, verifications, rentals, accounts, sessions, API
//! tokens, connected stretches (uptime), unhealthy stretches of sandboxes, and the marketplace's listing of
//! them, in one SQLite file in the data directory.
//!
//! Every method is one transaction, so a crash leaves either all of a change or
//! none of it. Methods are synchronous (SQLite answers in microseconds); async
//! code calls them through [`Store::blocking`] so a slow disk never stalls the
//! tunnel's event loop.

mod accounts;
mod admin;
mod api_tokens;
mod batch;
mod billing;
mod federation;
mod health;
mod lease_usage;
mod leases;
mod ledger;
mod listings;
mod migrations;
mod password_resets;
mod payouts;
mod sandboxes;
mod topups;
mod uptime;

pub use accounts::{SessionRecord, UserRecord};
pub use admin::{AdminDevice, AdminRental, AdminUser, Suspension};
pub use api_tokens::ApiTokenRecord;
pub use batch::Batch;
pub use billing::{Billable, RentalBilling, RentalLeg};
pub use federation::{ExportRow, Exports, NewPeer, PeerDeviceRow, PeerRecord, Redeemed, Removal};
pub use lease_usage::{Direction, LeaseTotal, Meterable, MeteredRental, Span};
pub use leases::{LeaseLogin, LeaseRecord, LeaseRole, NewLease, Opened, OutboxMessage};
pub use ledger::{CurrencyTotal, Movement, Posted};
pub use listings::ListedDevice;
pub use password_resets::PasswordResetRecord;
pub use payouts::{
    BucketSum, Earning, Outcome, PayoutRecord, PayoutState, Settled, Started, Sum, payout_id,
};
pub use sandboxes::{AccessFacts, RentalRecord, RentalState, RenterTerms, VerificationRecord};
pub use topups::{Credit, Refund, TopupRecord, TopupState};
pub use uptime::JOIN_GAP_SECS;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rpibroker_wire::{DeviceName, HardwareReport, Service, ServicePorts};
use rusqlite::{Connection, OptionalExtension, params};

use crate::port_pool::PortPool;
use crate::time::UnixTime;

/// Errors from the store. Constraint failures that a user can cause have their
/// own variants; everything else is [`StoreError::Sqlite`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a device named {0} already exists")]
    NameTaken(DeviceName),
    #[error("no device named {0}")]
    NoSuchDevice(DeviceName),
    #[error("an account with this email address already exists")]
    EmailTaken,
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The device's hourly rate now, which is not the one agreed.
    #[error("the price changed since it was shown")]
    RateChanged(Option<i64>),
    #[error("an account may have at most {0} open rentals")]
    TooManyRentals(i64),
    #[error("an account may register at most {0} devices")]
    TooManyDevices(i64),
    #[error("the device port pool {0} has no three free ports left")]
    PoolExhausted(PortPool),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database file {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: i64,
    pub name: DeviceName,
    pub created_at: UnixTime,
    /// Assigned at the first handshake.
    pub ports: Option<ServicePorts>,
    pub hardware: Option<HardwareReport>,
    pub last_connect: Option<UnixTime>,
    pub online_since: Option<UnixTime>,
    pub last_seen: Option<UnixTime>,
    /// The account that registered it; `None` for the operator's devices.
    pub owner_id: Option<i64>,
    /// Offered on the marketplace.
    pub listed: bool,
    /// Price per hour in minor units (cents).
    pub hourly_rate: Option<i64>,
}

impl DeviceRecord {
    /// The record as reported to people and scripts; `online` comes from the
    /// caller, who knows best whether the session is live.
    pub fn status(self, domain: &str, online: bool) -> rpibroker_wire::DeviceStatus {
        rpibroker_wire::DeviceStatus {
            id: self.id,
            subdomain: format!("{}.{domain}", self.name),
            name: self.name,
            ports: self.ports,
            online,
            online_since: self.online_since.filter(|_| online).map(|t| t.0),
            last_seen: self.last_seen.map(|t| t.0),
            created_at: self.created_at.0,
            last_handshake: self.last_connect.map(|t| t.0),
            claimed: self.hardware.as_ref().map(crate::verify::claimed),
            hardware: self.hardware,
            listed: self.listed,
            hourly_rate: self.hourly_rate,
            sandbox: None,
            verification: None,
            rental: None,
            uptime: None,
            suspended: None,
            earnings: None,
        }
    }
}

/// Why a token that is not current was retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetiredReason {
    Revoked,
    Removed,
}

/// What a token hash refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    Current(Box<DeviceRecord>),
    Retired {
        device: String,
        reason: RetiredReason,
        at: UnixTime,
    },
    Unknown,
}

/// Where an SSH key for a device came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Agent,
    Owner,
}

impl KeySource {
    fn as_str(self) -> &'static str {
        match self {
            KeySource::Agent => "agent",
            KeySource::Owner => "owner",
        }
    }
}

/// A handle to the database; clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

const DEVICE_COLUMNS: &str = "id, name, created_at, hardware, last_connect, online_since, last_seen, owner_id, listed, hourly_rate";

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut conn = conn;
        migrations::apply(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on a blocking thread with a clone of this store.
    pub async fn blocking<R, F>(&self, f: F) -> R
    where
        F: FnOnce(&Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .expect("store task panicked")
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (the
        // transaction rolls back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes whenever anything in the store changes: a write through this
    /// broker's connection, or a commit by another process (`rpibroker
    /// device add` and the like).
    pub fn change_stamp(&self) -> Result<(u64, i64), StoreError> {
        let conn = self.conn();
        let others: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok((conn.total_changes(), others))
    }

    /// The device's status with its sandbox, last verification and open
    /// rental filled in.
    pub fn full_status(
        &self,
        device: DeviceRecord,
        domain: &str,
        online: bool,
    ) -> Result<rpibroker_wire::DeviceStatus, StoreError> {
        let id = device.id;
        let mut status = device.status(domain, online);
        status.sandbox = self.sandbox(id)?;
        status.verification = self.last_verification(id)?.map(|v| v.report());
        status.rental = self.open_rental(id)?.map(|r| r.summary());
        status.uptime = self.uptime(id, UnixTime::now())?;
        status.suspended = self.device_suspension(id)?.map(|s| s.reason);
        Ok(status)
    }

    pub fn add_device(
        &self,
        name: &DeviceName,
        token_hash: &str,
        owner_key: Option<(&str, &str)>,
        now: UnixTime,
    ) -> Result<DeviceRecord, StoreError> {
        self.insert_device(name, token_hash, owner_key, None, now)
    }

    /// Adds a device that belongs to account `owner_id`, unless the account
    /// already has `max_devices` (checked in the same transaction, so two
    /// registrations at once cannot both slip under the limit).
    pub fn add_owned_device(
        &self,
        name: &DeviceName,
        token_hash: &str,
        owner_id: i64,
        max_devices: i64,
        now: UnixTime,
    ) -> Result<DeviceRecord, StoreError> {
        self.insert_device(name, token_hash, None, Some((owner_id, max_devices)), now)
    }

    /// Lists or unlists a device, with its hourly rate.
    pub fn set_listing(
        &self,
        device_id: i64,
        listed: bool,
        hourly_rate: Option<i64>,
    ) -> Result<(), StoreError> {
        // A suspended device stays off the market whatever its owner asks.
        self.conn().execute(
            "UPDATE devices SET hourly_rate = ?3,
                listed = ?2 AND NOT EXISTS (SELECT 1 FROM device_suspensions WHERE device_id = ?1)
             WHERE id = ?1",
            params![device_id, listed, hourly_rate],
        )?;
        Ok(())
    }

    fn devices_where(
        &self,
        condition: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE {condition} ORDER BY name"
        ))?;
        let rows = stmt.query_map(params, device_from_row)?;
        let mut devices = Vec::new();
        for row in rows {
            let mut d = row?;
            d.ports = ports_of(&conn, d.id)?;
            devices.push(d);
        }
        Ok(devices)
    }

    /// The devices that belong to account `owner_id`, by name.
    pub fn devices_of_owner(&self, owner_id: i64) -> Result<Vec<DeviceRecord>, StoreError> {
        self.devices_where("owner_id = ?1", [owner_id])
    }

    fn insert_device(
        &self,
        name: &DeviceName,
        token_hash: &str,
        owner_key: Option<(&str, &str)>,
        owner: Option<(i64, i64)>,
        now: UnixTime,
    ) -> Result<DeviceRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some((owner_id, max_devices)) = owner {
            let count: i64 = tx.query_row(
                "SELECT COUNT(*) FROM devices WHERE owner_id = ?1",
                [owner_id],
                |r| r.get(0),
            )?;
            if count >= max_devices {
                return Err(StoreError::TooManyDevices(max_devices));
            }
        }
        let owner_id = owner.map(|(id, _)| id);
        let inserted = tx.execute(
            "INSERT INTO devices (name, token_hash, created_at, owner_id) VALUES (?1, ?2, ?3, ?4)",
            params![name.as_str(), token_hash, now.0, owner_id],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::NameTaken(name.clone()));
            }
            other => other?,
        };
        let id = tx.last_insert_rowid();
        if let Some((fingerprint, key)) = owner_key {
            insert_key(&tx, id, fingerprint, key, KeySource::Owner, now)?;
        }
        let record = device_where(&tx, "id = ?1", params![id])?.expect("just inserted");
        tx.commit()?;
        Ok(record)
    }

    pub fn device(&self, name: &DeviceName) -> Result<Option<DeviceRecord>, StoreError> {
        device_where(&self.conn(), "name = ?1", params![name.as_str()])
    }

    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY name"
        ))?;
        let rows = stmt.query_map([], device_from_row)?;
        let mut devices = Vec::new();
        for row in rows {
            let mut d = row?;
            d.ports = ports_of(&conn, d.id)?;
            devices.push(d);
        }
        Ok(devices)
    }

    /// Removes a device with its ports and keys; its token is kept as retired.
    pub fn remove_device(&self, name: &DeviceName, now: UnixTime) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let hash: Option<String> = tx
            .query_row(
                "SELECT token_hash FROM devices WHERE name = ?1",
                params![name.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        let hash = hash.ok_or_else(|| StoreError::NoSuchDevice(name.clone()))?;
        retire(&tx, &hash, name, RetiredReason::Removed, now)?;
        tx.execute(
            "DELETE FROM devices WHERE name = ?1",
            params![name.as_str()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces a device's token. The old token and the keys the agent
    /// registered with it stop working; keys the owner added stay.
    pub fn replace_token(
        &self,
        name: &DeviceName,
        new_hash: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, token_hash FROM devices WHERE name = ?1",
                params![name.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (id, old_hash) = row.ok_or_else(|| StoreError::NoSuchDevice(name.clone()))?;
        retire(&tx, &old_hash, name, RetiredReason::Revoked, now)?;
        tx.execute(
            "UPDATE devices SET token_hash = ?1 WHERE id = ?2",
            params![new_hash, id],
        )?;
        tx.execute(
            "DELETE FROM device_keys WHERE device_id = ?1 AND source = 'agent'",
            params![id],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn lookup_token(&self, token_hash: &str) -> Result<TokenLookup, StoreError> {
        let conn = self.conn();
        if let Some(mut d) = device_where(&conn, "token_hash = ?1", params![token_hash])? {
            d.ports = ports_of(&conn, d.id)?;
            return Ok(TokenLookup::Current(Box::new(d)));
        }
        let retired = conn
            .query_row(
                "SELECT device_name, reason, retired_at FROM retired_tokens WHERE token_hash = ?1",
                params![token_hash],
                |r| {
                    let reason: String = r.get(1)?;
                    Ok(TokenLookup::Retired {
                        device: r.get(0)?,
                        reason: if reason == "removed" {
                            RetiredReason::Removed
                        } else {
                            RetiredReason::Revoked
                        },
                        at: UnixTime(r.get(2)?),
                    })
                },
            )
            .optional()?;
        Ok(retired.unwrap_or(TokenLookup::Unknown))
    }

    /// Whether `token_hash` is the current token of `name`.
    pub fn token_matches(&self, name: &DeviceName, token_hash: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT id FROM devices WHERE name = ?1 AND token_hash = ?2",
                params![name.as_str(), token_hash],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// Whether the key with this fingerprint may log in as `name`.
    pub fn key_matches(&self, name: &DeviceName, fingerprint: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT k.device_id FROM device_keys k JOIN devices d ON d.id = k.device_id
                 WHERE d.name = ?1 AND k.fingerprint = ?2",
                params![name.as_str(), fingerprint],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// The device's ports, assigning three from `pool` if it has none yet.
    pub fn ensure_ports(&self, device_id: i64, pool: PortPool) -> Result<ServicePorts, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let ports = match ports_of(&tx, device_id)? {
            Some(p) => p,
            None => assign_ports(&tx, device_id, pool)?,
        };
        tx.commit()?;
        Ok(ports)
    }

    /// Records a successful handshake in one transaction: assigns the device
    /// its three ports from `pool` if it has none, replaces the key the agent
    /// registered before (an agent has one key), stores the hardware report.
    /// If the pool is exhausted nothing is changed.
    pub fn record_handshake(
        &self,
        device_id: i64,
        pool: PortPool,
        agent_key: Option<(&str, &str)>,
        hardware: &HardwareReport,
        now: UnixTime,
    ) -> Result<ServicePorts, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let ports = match ports_of(&tx, device_id)? {
            Some(p) => p,
            None => assign_ports(&tx, device_id, pool)?,
        };
        if let Some((fingerprint, key)) = agent_key {
            tx.execute(
                "DELETE FROM device_keys WHERE device_id = ?1 AND source = 'agent'",
                params![device_id],
            )?;
            insert_key(&tx, device_id, fingerprint, key, KeySource::Agent, now)?;
        }
        let hardware = serde_json::to_string(hardware).expect("report serializes");
        tx.execute(
            "UPDATE devices SET hardware = ?1, last_connect = ?2 WHERE id = ?3",
            params![hardware, now.0, device_id],
        )?;
        tx.commit()?;
        Ok(ports)
    }

    pub fn set_online(&self, device_id: i64, now: UnixTime) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE devices SET online_since = ?1, last_seen = ?1 WHERE id = ?2",
            params![now.0, device_id],
        )?;
        uptime::opened(&tx, device_id, now.0)?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_offline(&self, device_id: i64, now: UnixTime) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        uptime::extended(&tx, device_id, now.0)?;
        tx.execute(
            "UPDATE devices SET online_since = NULL, last_seen = ?1 WHERE id = ?2",
            params![now.0, device_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Refreshes `last_seen` of the devices that are online.
    pub fn touch_online(&self, device_ids: &[i64], now: UnixTime) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare("UPDATE devices SET last_seen = ?1 WHERE id = ?2")?;
            for id in device_ids {
                stmt.execute(params![now.0, id])?;
                uptime::extended(&tx, *id, now.0)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks every device offline: at start (whatever the last run left,
    /// keeping its last heartbeat as `last_seen` and as the end of its
    /// connected stretch) and at shutdown (`now`).
    pub fn mark_all_offline(&self, now: Option<UnixTime>) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(now) = now {
            let online: Vec<i64> = tx
                .prepare("SELECT id FROM devices WHERE online_since IS NOT NULL")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in online {
                uptime::extended(&tx, id, now.0)?;
            }
        }
        tx.execute(
            "UPDATE devices SET online_since = NULL, last_seen = COALESCE(?1, last_seen)
             WHERE online_since IS NOT NULL",
            params![now.map(|t| t.0)],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let name: String = r.get(1)?;
    let hardware: Option<String> = r.get(3)?;
    Ok(DeviceRecord {
        id: r.get(0)?,
        // Names are validated before they are stored.
        name: DeviceName::parse(&name).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
        })?,
        created_at: UnixTime(r.get(2)?),
        ports: None,
        hardware: hardware.and_then(|h| serde_json::from_str(&h).ok()),
        last_connect: r.get::<_, Option<i64>>(4)?.map(UnixTime),
        online_since: r.get::<_, Option<i64>>(5)?.map(UnixTime),
        last_seen: r.get::<_, Option<i64>>(6)?.map(UnixTime),
        owner_id: r.get(7)?,
        listed: r.get(8)?,
        hourly_rate: r.get(9)?,
    })
}

fn device_where(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Option<DeviceRecord>, StoreError> {
    let found = conn
        .query_row(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE {condition}"),
            params,
            device_from_row,
        )
        .optional()?;
    match found {
        Some(mut d) => {
            d.ports = ports_of(conn, d.id)?;
            Ok(Some(d))
        }
        None => Ok(None),
    }
}

fn ports_of(conn: &Connection, device_id: i64) -> Result<Option<ServicePorts>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT service, port FROM device_ports WHERE device_id = ?1")?;
    let rows = stmt.query_map(params![device_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, u16>(1)?))
    })?;
    let (mut ssh, mut http, mut https) = (None, None, None);
    for row in rows {
        let (service, port) = row?;
        match service.as_str() {
            "ssh" => ssh = Some(port),
            "http" => http = Some(port),
            _ => https = Some(port),
        }
    }
    Ok(match (ssh, http, https) {
        (Some(ssh), Some(http), Some(https)) => Some(ServicePorts { ssh, http, https }),
        _ => None,
    })
}

fn assign_ports(
    conn: &Connection,
    device_id: i64,
    pool: PortPool,
) -> Result<ServicePorts, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT port FROM device_ports WHERE port BETWEEN ?1 AND ?2 ORDER BY port",
    )?;
    let taken: std::collections::BTreeSet<u16> = stmt
        .query_map(params![pool.first, pool.last], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let free: Vec<u16> = pool.iter().filter(|p| !taken.contains(p)).take(3).collect();
    let [ssh, http, https] = free[..] else {
        return Err(StoreError::PoolExhausted(pool));
    };
    let ports = ServicePorts { ssh, http, https };
    for service in Service::ALL {
        conn.execute(
            "INSERT INTO device_ports (port, device_id, service) VALUES (?1, ?2, ?3)",
            params![ports.get(service), device_id, service.as_str()],
        )?;
    }
    Ok(ports)
}

fn insert_key(
    conn: &Connection,
    device_id: i64,
    fingerprint: &str,
    key: &str,
    source: KeySource,
    now: UnixTime,
) -> Result<(), StoreError> {
    // A key the owner registered stays the owner's even if the agent then
    // presents the same key: it must survive `device revoke`.
    conn.execute(
        "INSERT INTO device_keys (device_id, fingerprint, public_key, source, added_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (device_id, fingerprint) DO NOTHING",
        params![device_id, fingerprint, key, source.as_str(), now.0],
    )?;
    Ok(())
}

fn retire(
    conn: &Connection,
    token_hash: &str,
    name: &DeviceName,
    reason: RetiredReason,
    now: UnixTime,
) -> Result<(), StoreError> {
    let reason = match reason {
        RetiredReason::Revoked => "revoked",
        RetiredReason::Removed => "removed",
    };
    conn.execute(
        "INSERT OR REPLACE INTO retired_tokens (token_hash, device_name, reason, retired_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![token_hash, name.as_str(), reason, now.0],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    fn name(s: &str) -> DeviceName {
        DeviceName::parse(s).unwrap()
    }

    #[test]
    fn ports_are_assigned_once_and_kept() {
        let (_dir, store) = store();
        let pool: PortPool = "30000-30005".parse().unwrap();
        let a = store
            .add_device(&name("a"), "ha", None, UnixTime(1))
            .unwrap();
        let hw = HardwareReport::default();
        let first = store
            .record_handshake(a.id, pool, None, &hw, UnixTime(2))
            .unwrap();
        let again = store
            .record_handshake(a.id, pool, None, &hw, UnixTime(3))
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(
            first,
            ServicePorts {
                ssh: 30000,
                http: 30001,
                https: 30002
            }
        );
    }

    #[test]
    fn registrations_racing_for_the_last_slots_stop_at_the_limit() {
        let (_dir, store) = store();
        let owner = store
            .add_user("o@example.org", "h", false, UnixTime(0))
            .unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let (device, hash) = (name(&format!("d{i}")), format!("h{i}"));
                    store.add_owned_device(&device, &hash, owner.id, 5, UnixTime(1))
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let added = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::TooManyDevices(5))))
            .count();
        assert_eq!((added, refused), (5, 3), "{results:?}");
        assert_eq!(store.devices_of_owner(owner.id).unwrap().len(), 5);
    }

    #[test]
    fn exhausted_pool_changes_nothing() {
        let (_dir, store) = store();
        let pool: PortPool = "30000-30004".parse().unwrap();
        let hw = HardwareReport::default();
        let a = store
            .add_device(&name("a"), "ha", None, UnixTime(1))
            .unwrap();
        let b = store
            .add_device(&name("b"), "hb", None, UnixTime(1))
            .unwrap();
        store
            .record_handshake(a.id, pool, None, &hw, UnixTime(2))
            .unwrap();
        let err = store
            .record_handshake(b.id, pool, Some(("fp", "key")), &hw, UnixTime(2))
            .unwrap_err();
        assert!(matches!(err, StoreError::PoolExhausted(_)));
        let b = store.device(&name("b")).unwrap().unwrap();
        assert_eq!(b.ports, None);
        assert_eq!(b.last_connect, None);
        assert!(!store.key_matches(&name("b"), "fp").unwrap());
    }

    #[test]
    fn removed_devices_free_their_ports_and_retire_their_token() {
        let (_dir, store) = store();
        let pool: PortPool = "30000-30002".parse().unwrap();
        let hw = HardwareReport::default();
        let a = store
            .add_device(&name("a"), "ha", None, UnixTime(1))
            .unwrap();
        store
            .record_handshake(a.id, pool, None, &hw, UnixTime(2))
            .unwrap();
        store.remove_device(&name("a"), UnixTime(3)).unwrap();
        assert!(matches!(
            store.lookup_token("ha").unwrap(),
            TokenLookup::Retired {
                reason: RetiredReason::Removed,
                ..
            }
        ));
        let b = store
            .add_device(&name("b"), "hb", None, UnixTime(4))
            .unwrap();
        assert!(
            store
                .record_handshake(b.id, pool, None, &hw, UnixTime(5))
                .is_ok()
        );
    }

    #[test]
    fn revoking_drops_agent_keys_but_keeps_owner_keys() {
        let (_dir, store) = store();
        let pool: PortPool = "30000-30002".parse().unwrap();
        let hw = HardwareReport::default();
        let a = store
            .add_device(&name("a"), "ha", Some(("owner-fp", "k1")), UnixTime(1))
            .unwrap();
        store
            .record_handshake(a.id, pool, Some(("agent-fp", "k2")), &hw, UnixTime(2))
            .unwrap();
        store.replace_token(&name("a"), "ha2", UnixTime(3)).unwrap();
        assert!(store.key_matches(&name("a"), "owner-fp").unwrap());
        assert!(!store.key_matches(&name("a"), "agent-fp").unwrap());
        assert!(matches!(
            store.lookup_token("ha").unwrap(),
            TokenLookup::Retired {
                reason: RetiredReason::Revoked,
                ..
            }
        ));
        assert!(store.token_matches(&name("a"), "ha2").unwrap());
    }

    #[test]
    fn an_agent_presenting_the_owners_key_does_not_take_it_over() {
        let (_dir, store) = store();
        let pool: PortPool = "30000-30002".parse().unwrap();
        let a = store
            .add_device(&name("a"), "ha", Some(("same-fp", "k")), UnixTime(1))
            .unwrap();
        store
            .record_handshake(
                a.id,
                pool,
                Some(("same-fp", "k")),
                &HardwareReport::default(),
                UnixTime(2),
            )
            .unwrap();
        store.replace_token(&name("a"), "ha2", UnixTime(3)).unwrap();
        assert!(store.key_matches(&name("a"), "same-fp").unwrap());
    }

    #[test]
    fn duplicate_names_are_refused() {
        let (_dir, store) = store();
        store
            .add_device(&name("a"), "h1", None, UnixTime(1))
            .unwrap();
        assert!(matches!(
            store.add_device(&name("a"), "h2", None, UnixTime(1)),
            Err(StoreError::NameTaken(_))
        ));
    }
}
