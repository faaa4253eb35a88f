//! Leases in the store: rentals across peered brokers, kept by both sides
//! (the lessee whose renter rents, the lessor that runs the rental), and the
//! outbox of messages to peers that are retried until delivered.

use rusqlite::{OptionalExtension, params};

use super::{Batch, Store, StoreError};
use crate::time::UnixTime;

/// Which side of a lease this broker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRole {
    /// Its renter rents a peer's device.
    Lessee,
    /// It runs the rental of its own device for a peer.
    Lessor,
}

impl LeaseRole {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            LeaseRole::Lessee => "lessee",
            LeaseRole::Lessor => "lessor",
        }
    }
}

/// How a renter reaches a leased sandbox (never its password).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseLogin {
    pub username: String,
    pub ssh_host: String,
    pub ssh_port: Option<u16>,
    pub http_url: String,
    pub https_url: String,
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub peer_id: i64,
    pub peer: String,
    pub id: String,
    pub device: String,
    pub hourly_rate: i64,
    pub currency: String,
    pub renter_id: i64,
    pub rental_id: Option<String>,
    pub open: bool,
    pub login: Option<LeaseLogin>,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    /// The lessor's billing period; the rate is per period.
    pub period_secs: i64,
    /// Lessor: periods with a usage record. Lessee: periods held.
    pub periods_done: i64,
    /// Lessee: the period the renter's wallet could not hold.
    pub unpaid_period: Option<i64>,
    /// When the renter stopped it, as the lessee said.
    pub stop_at: Option<i64>,
    /// Lessor: its end record is issued. Lessee: received.
    pub usage_closed: bool,
    /// What its usage records add up to so far, in minor units.
    pub charged: i64,
}

/// A new lease.
#[derive(Debug, Clone)]
pub struct NewLease {
    pub peer_id: i64,
    pub id: String,
    pub device: String,
    pub hourly_rate: i64,
    pub currency: String,
    pub renter_id: i64,
    pub idempotency_key: Option<String>,
    pub period_secs: i64,
}

/// What became of a request to record a lease as lessor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Recorded now, or earlier by the same request.
    Lease(Box<LeaseRecord>),
    /// The peer's open leases and this one would owe more than its limit.
    OverLimit { exposure: i64, limit: i64 },
    /// The id or the idempotency key is another lease's.
    Conflict,
}

/// A message to a peer waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: i64,
    pub peer_id: i64,
    pub path: String,
    pub body: String,
    pub idempotency_key: String,
    pub attempts: i64,
}

pub(super) const LEASE_COLUMNS: &str = "l.peer_id, p.name, l.id, l.device, l.hourly_rate, l.currency, l.renter_id, l.rental_id, l.state, l.username, l.ssh_host, l.ssh_port, l.http_url, l.https_url, l.created_at, l.ended_at, l.end_reason, l.period_secs, l.periods_done, l.unpaid_period, l.stop_at, l.usage_closed,
    (SELECT COALESCE(SUM(u.amount), 0) FROM lease_usage u
     WHERE u.peer_id = l.peer_id AND u.lease = l.id
         AND u.direction = CASE l.role WHEN 'lessee' THEN 'received' ELSE 'issued' END)";

pub(super) fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LeaseRecord> {
    let state: String = r.get(8)?;
    let username: Option<String> = r.get(9)?;
    let login = match username {
        Some(username) => Some(LeaseLogin {
            username,
            ssh_host: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
            ssh_port: r.get(11)?,
            http_url: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
            https_url: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(LeaseRecord {
        peer_id: r.get(0)?,
        peer: r.get(1)?,
        id: r.get(2)?,
        device: r.get(3)?,
        hourly_rate: r.get(4)?,
        currency: r.get(5)?,
        renter_id: r.get(6)?,
        rental_id: r.get(7)?,
        open: state == "open",
        login,
        created_at: r.get(14)?,
        ended_at: r.get(15)?,
        end_reason: r.get(16)?,
        period_secs: r.get(17)?,
        periods_done: r.get(18)?,
        unpaid_period: r.get(19)?,
        stop_at: r.get(20)?,
        usage_closed: r.get(21)?,
        charged: r.get(22)?,
    })
}

pub(super) fn lease_in(
    conn: &rusqlite::Connection,
    role: LeaseRole,
    peer_id: i64,
    id: &str,
) -> rusqlite::Result<Option<LeaseRecord>> {
    conn.query_row(
        &format!(
            "SELECT {LEASE_COLUMNS} FROM leases l JOIN peers p ON p.id = l.peer_id
             WHERE l.role = ?1 AND l.peer_id = ?2 AND l.id = ?3"
        ),
        params![role.as_str(), peer_id, id],
        lease_row,
    )
    .optional()
}

impl Store {
    /// The account that stands for peer `peer` as a renter here (made on
    /// first use; it has no password, so no one signs in as it).
    pub fn peer_renter(&self, peer: &str, now: UnixTime) -> Result<i64, StoreError> {
        let email = format!("peer-{peer}@peers.invalid");
        let conn = self.conn();
        conn.execute(
            "INSERT INTO users (email, password_hash, is_admin, created_at, password_changed_at)
             VALUES (?1, '!', 0, ?2, ?2) ON CONFLICT (email) DO NOTHING",
            params![email, now.0],
        )?;
        Ok(
            conn.query_row("SELECT id FROM users WHERE email = ?1", [&email], |r| {
                r.get(0)
            })?,
        )
    }

    /// Records a lease this broker runs for a peer, unless what the peer
    /// owes, its open leases' hours and this one's first would pass
    /// `credit_limit`. A retry of the
    /// same request (same id and key) returns the lease recorded first.
    pub fn open_lessor_lease(
        &self,
        lease: &NewLease,
        credit_limit: i64,
        now: UnixTime,
    ) -> Result<Opened, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(found) = lease_in(&tx, LeaseRole::Lessor, lease.peer_id, &lease.id)? {
            let key: Option<String> = tx.query_row(
                "SELECT idempotency_key FROM leases WHERE role = 'lessor' AND peer_id = ?1 AND id = ?2",
                params![lease.peer_id, lease.id],
                |r| r.get(0),
            )?;
            return Ok(
                if key == lease.idempotency_key && found.device == lease.device {
                    Opened::Lease(Box::new(found))
                } else {
                    Opened::Conflict
                },
            );
        }
        let open: i64 = tx.query_row(
            "SELECT COALESCE(SUM(l.hourly_rate), 0) FROM leases l
             LEFT JOIN rentals r ON r.id = l.rental_id
             WHERE l.role = 'lessor' AND l.peer_id = ?1 AND l.state = 'open'
                 AND (r.state IS NULL OR r.state != 'ended')",
            [lease.peer_id],
            |r| r.get(0),
        )?;
        // What the peer owes already (its ledger account here is negative
        // then) counts against its limit too.
        let balance: i64 = tx.query_row(
            "SELECT COALESCE(SUM(balance), 0) FROM ledger_accounts
             WHERE kind = 'peer' AND holder = ?1 AND currency = ?2",
            params![lease.peer_id.to_string(), lease.currency],
            |r| r.get(0),
        )?;
        let exposure = open + lease.hourly_rate + (-balance).max(0);
        if exposure > credit_limit {
            return Ok(Opened::OverLimit {
                exposure,
                limit: credit_limit,
            });
        }
        let inserted = tx.execute(
            "INSERT INTO leases (role, peer_id, id, device, hourly_rate, currency, renter_id,
                 idempotency_key, state, created_at, period_secs)
             VALUES ('lessor', ?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9)",
            params![
                lease.peer_id,
                lease.id,
                lease.device,
                lease.hourly_rate,
                lease.currency,
                lease.renter_id,
                lease.idempotency_key,
                now.0,
                lease.period_secs
            ],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Ok(Opened::Conflict);
            }
            other => other?,
        };
        let found = lease_in(&tx, LeaseRole::Lessor, lease.peer_id, &lease.id)?
            .expect("the lease was just inserted");
        tx.commit()?;
        Ok(Opened::Lease(Box::new(found)))
    }

    /// Records a lease this broker's renter asks a peer for, before asking:
    /// whatever the peer does with the request, a record of it finds its
    /// lease here. It has no login until [`Store::set_lessee_login`]. The
    /// message that would stop it on the peer (`stop`) is queued with it,
    /// due at `stop_due`: unless the answer arrives first and cancels it, a
    /// request whose answer never came (a crash, a dropped connection) is
    /// stopped there.
    pub fn add_lessee_lease(
        &self,
        lease: &NewLease,
        stop: (&str, &str, &str),
        stop_due: UnixTime,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.batch(|b| {
            b.conn
                .prepare_cached(
                    "INSERT INTO leases (role, peer_id, id, device, hourly_rate, currency, renter_id,
                         state, created_at, period_secs)
                     VALUES ('lessee', ?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?8)",
                )?
                .execute(params![
                    lease.peer_id,
                    lease.id,
                    lease.device,
                    lease.hourly_rate,
                    lease.currency,
                    lease.renter_id,
                    now.0,
                    lease.period_secs
                ])?;
            b.queue_message_at(lease.peer_id, stop, stop_due, now)
        })
    }

    /// Sets the login the peer gave for a lease this broker's renter holds,
    /// and the period its rate is for, and cancels the stop queued in case
    /// no answer came (`stop_key`); false, changing nothing, if the lease
    /// ended meanwhile (its renter stopped it, or the stop went out): that
    /// stop stands.
    pub fn set_lessee_login(
        &self,
        peer_id: i64,
        id: &str,
        login: &LeaseLogin,
        period_secs: i64,
        stop_key: &str,
    ) -> Result<bool, StoreError> {
        self.batch(|b| {
            let set = b
                .conn
                .prepare_cached(
                    "UPDATE leases SET username = ?3, ssh_host = ?4, ssh_port = ?5, http_url = ?6,
                         https_url = ?7, period_secs = ?8
                     WHERE role = 'lessee' AND peer_id = ?1 AND id = ?2 AND state = 'open'
                         AND usage_closed = 0",
                )?
                .execute(params![
                    peer_id,
                    id,
                    login.username,
                    login.ssh_host,
                    login.ssh_port,
                    login.http_url,
                    login.https_url,
                    period_secs
                ])?
                == 1;
            if set {
                cancel_message(b.conn, stop_key)?;
            }
            Ok(set)
        })
    }

    /// Ends a lease the peer refused: it has nothing to report of it, and
    /// the stop queued in case no answer came (`stop_key`) is cancelled.
    pub fn drop_lessee_lease(
        &self,
        peer_id: i64,
        id: &str,
        reason: &str,
        stop_key: &str,
    ) -> Result<(), StoreError> {
        self.batch(|b| {
            cancel_message(b.conn, stop_key)?;
            b.end_lease(
                LeaseRole::Lessee,
                peer_id,
                id,
                Some(reason),
                UnixTime::now(),
            )?;
            b.close_lease_usage(LeaseRole::Lessee, peer_id, id)
        })
    }

    /// Sets the rental and login of a lease this broker runs.
    pub fn set_lessor_rental(
        &self,
        peer_id: i64,
        id: &str,
        rental_id: &str,
        login: &LeaseLogin,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE leases SET rental_id = ?3, username = ?4, ssh_host = ?5, ssh_port = ?6,
                 http_url = ?7, https_url = ?8
             WHERE role = 'lessor' AND peer_id = ?1 AND id = ?2",
            params![
                peer_id,
                id,
                rental_id,
                login.username,
                login.ssh_host,
                login.ssh_port,
                login.http_url,
                login.https_url
            ],
        )?;
        Ok(())
    }

    /// The lease `id` of peer `peer_id` in `role`.
    pub fn lease(
        &self,
        role: LeaseRole,
        peer_id: i64,
        id: &str,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        Ok(lease_in(&self.conn(), role, peer_id, id)?)
    }

    /// The lease `id` held by renter `renter_id` here, whatever the peer.
    pub fn lease_of_renter(
        &self,
        renter_id: i64,
        id: &str,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {LEASE_COLUMNS} FROM leases l JOIN peers p ON p.id = l.peer_id
                     WHERE l.role = 'lessee' AND l.renter_id = ?1 AND l.id = ?2"
                ),
                params![renter_id, id],
                lease_row,
            )
            .optional()?)
    }

    /// The leases renter `renter_id` holds from peers, open first, then the
    /// latest; 50 in all.
    pub fn leases_of_renter(&self, renter_id: i64) -> Result<Vec<LeaseRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases l JOIN peers p ON p.id = l.peer_id
             WHERE l.role = 'lessee' AND l.renter_id = ?1
             ORDER BY l.state = 'open' DESC, l.created_at DESC LIMIT 50"
        ))?;
        let rows = stmt.query_map([renter_id], lease_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every open lease in `role`.
    pub fn open_leases(&self, role: LeaseRole) -> Result<Vec<LeaseRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases l JOIN peers p ON p.id = l.peer_id
             WHERE l.role = ?1 AND l.state = 'open'"
        ))?;
        let rows = stmt.query_map([role.as_str()], lease_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends a lease (once: an ended lease keeps its first end); true if it
    /// was open.
    pub fn end_lease(
        &self,
        role: LeaseRole,
        peer_id: i64,
        id: &str,
        reason: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        Batch { conn: &self.conn() }.end_lease(role, peer_id, id, reason, now)
    }

    /// Ends a lease this broker's renter holds and queues the message that
    /// tells the peer, in one transaction, so the stop is never lost. False
    /// if it was not open.
    pub fn end_lease_and_tell(
        &self,
        peer_id: i64,
        id: &str,
        reason: Option<&str>,
        message: (&str, &str, &str),
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.batch(|b| b.end_lease_and_tell(peer_id, id, reason, message, now))
    }

    /// Undelivered messages due at `now`, oldest first.
    pub fn due_messages(
        &self,
        now: UnixTime,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, peer_id, path, body, idempotency_key, attempts FROM peer_outbox
             WHERE delivered_at IS NULL AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now.0, limit as i64], |r| {
            Ok(OutboxMessage {
                id: r.get(0)?,
                peer_id: r.get(1)?,
                path: r.get(2)?,
                body: r.get(3)?,
                idempotency_key: r.get(4)?,
                attempts: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks message `id` delivered.
    pub fn message_delivered(&self, id: i64, now: UnixTime) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE peer_outbox SET delivered_at = ?2, last_error = NULL WHERE id = ?1",
            params![id, now.0],
        )?;
        Ok(())
    }

    /// Makes every undelivered message to peer `peer_id` due at `now` (the
    /// peer answers again, so their backoff is over).
    pub fn messages_due_now(&self, peer_id: i64, now: UnixTime) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE peer_outbox SET next_attempt_at = ?2
             WHERE peer_id = ?1 AND delivered_at IS NULL AND attempts > 0 AND next_attempt_at > ?2",
            params![peer_id, now.0],
        )?;
        Ok(())
    }

    /// Counts a failed delivery of message `id` and sets its next attempt.
    pub fn message_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE peer_outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
             WHERE id = ?1",
            params![id, error, next_attempt_at],
        )?;
        Ok(())
    }
}

/// Drops the undelivered message with idempotency key `key`, if any.
fn cancel_message(conn: &rusqlite::Connection, key: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "DELETE FROM peer_outbox WHERE idempotency_key = ?1 AND delivered_at IS NULL",
    )?
    .execute([key])?;
    Ok(())
}

impl Batch<'_> {
    /// [`Store::end_lease`], in the batch's transaction.
    pub fn end_lease(
        &self,
        role: LeaseRole,
        peer_id: i64,
        id: &str,
        reason: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE leases SET state = 'ended', ended_at = ?4, end_reason = ?5
                 WHERE role = ?1 AND peer_id = ?2 AND id = ?3 AND state = 'open'",
            )?
            .execute(params![role.as_str(), peer_id, id, now.0, reason])?
            == 1)
    }

    /// [`Store::end_lease_and_tell`], in the batch's transaction; the
    /// renter's access ends at `now`.
    pub fn end_lease_and_tell(
        &self,
        peer_id: i64,
        id: &str,
        reason: Option<&str>,
        message: (&str, &str, &str),
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (path, body, key) = message;
        let ended = self
            .conn
            .prepare_cached(
                "UPDATE leases SET state = 'ended', ended_at = ?3, stop_at = ?3, end_reason = ?4
                 WHERE role = 'lessee' AND peer_id = ?1 AND id = ?2 AND state = 'open'",
            )?
            .execute(params![peer_id, id, now.0, reason])?
            == 1;
        if ended {
            self.queue_message(peer_id, (path, body, key), now)?;
        }
        Ok(ended)
    }

    /// Queues `message` (path, body, idempotency key) for peer `peer_id`,
    /// due now; a message with the same key is queued once (and made due
    /// now if it was not yet).
    pub fn queue_message(
        &self,
        peer_id: i64,
        message: (&str, &str, &str),
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.queue_message_at(peer_id, message, now, now)
    }

    /// [`Batch::queue_message`], due at `due`.
    pub fn queue_message_at(
        &self,
        peer_id: i64,
        message: (&str, &str, &str),
        due: UnixTime,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let (path, body, key) = message;
        self.conn
            .prepare_cached(
                "INSERT INTO peer_outbox (peer_id, path, body, idempotency_key, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (idempotency_key) DO UPDATE
                     SET next_attempt_at = MIN(next_attempt_at, excluded.next_attempt_at)
                     WHERE delivered_at IS NULL",
            )?
            .execute(params![peer_id, path, body, key, due.0, now.0])?;
        Ok(())
    }

    /// The lease `id` of peer `peer_id` in `role`.
    pub fn lease(
        &self,
        role: LeaseRole,
        peer_id: i64,
        id: &str,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        Ok(lease_in(self.conn, role, peer_id, id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewPeer;

    fn store_with_peer() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let peer = NewPeer {
            name: "alpha".into(),
            base_url: "http://alpha.example".into(),
            keys: Vec::new(),
            credit_limit: 100,
            currency: "USD".into(),
        };
        store.add_peer(&peer, UnixTime(1)).unwrap();
        let id = store.peers().unwrap()[0].id;
        (dir, store, id)
    }

    fn lease(peer_id: i64, renter_id: i64, id: &str, rate: i64, key: &str) -> NewLease {
        NewLease {
            peer_id,
            id: id.into(),
            device: "pi".into(),
            hourly_rate: rate,
            currency: "USD".into(),
            renter_id,
            idempotency_key: Some(key.into()),
            period_secs: 3600,
        }
    }

    #[test]
    fn a_retry_gets_the_same_lease_and_open_leases_stay_within_the_credit_limit() {
        let (_dir, store, peer) = store_with_peer();
        let renter = store.peer_renter("alpha", UnixTime(2)).unwrap();
        assert_eq!(store.peer_renter("alpha", UnixTime(3)).unwrap(), renter);
        let first = lease(peer, renter, "lse-1", 60, "k1");
        let Opened::Lease(opened) = store.open_lessor_lease(&first, 100, UnixTime(5)).unwrap()
        else {
            panic!("the first lease opens");
        };
        assert_eq!(
            store.open_lessor_lease(&first, 100, UnixTime(6)).unwrap(),
            Opened::Lease(opened.clone()),
            "a retry of the same request gets the same lease"
        );
        // The same id with another key, or another id with the same key, is
        // someone else's.
        let other_key = lease(peer, renter, "lse-1", 60, "k2");
        assert_eq!(
            store
                .open_lessor_lease(&other_key, 100, UnixTime(6))
                .unwrap(),
            Opened::Conflict
        );
        let same_key = lease(peer, renter, "lse-2", 10, "k1");
        assert_eq!(
            store
                .open_lessor_lease(&same_key, 100, UnixTime(6))
                .unwrap(),
            Opened::Conflict
        );
        // 60 + 50 per hour would pass the limit of 100; 60 + 40 does not.
        let over = lease(peer, renter, "lse-3", 50, "k3");
        assert_eq!(
            store.open_lessor_lease(&over, 100, UnixTime(7)).unwrap(),
            Opened::OverLimit {
                exposure: 110,
                limit: 100
            }
        );
        assert!(
            store
                .lease(LeaseRole::Lessor, peer, "lse-3")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store.remove_peer("alpha", UnixTime(7)).unwrap(),
            crate::store::Removal::OpenLeases(1),
            "not while a lease with it is open"
        );
        let within = lease(peer, renter, "lse-4", 40, "k4");
        assert!(matches!(
            store.open_lessor_lease(&within, 100, UnixTime(8)).unwrap(),
            Opened::Lease(_)
        ));
        // An ended lease no longer counts.
        assert!(
            store
                .end_lease(LeaseRole::Lessor, peer, "lse-1", Some("done"), UnixTime(9))
                .unwrap()
        );
        assert!(
            !store
                .end_lease(LeaseRole::Lessor, peer, "lse-1", None, UnixTime(10))
                .unwrap(),
            "a lease ends once"
        );
        assert!(matches!(
            store.open_lessor_lease(&over, 100, UnixTime(11)).unwrap(),
            Opened::Lease(_)
        ));
        let ended = store
            .lease(LeaseRole::Lessor, peer, "lse-1")
            .unwrap()
            .unwrap();
        assert_eq!(
            (ended.open, ended.ended_at, ended.end_reason.as_deref()),
            (false, Some(9), Some("done"))
        );
    }

    #[test]
    fn what_a_peer_owes_counts_against_its_credit_limit() {
        use crate::ledger::{Account, Currency, Transfer, TransferId};
        let (_dir, store, peer) = store_with_peer();
        let renter = store.peer_renter("alpha", UnixTime(2)).unwrap();
        let owed = Transfer::simple(
            TransferId::parse("lease:1:lse-0:0").unwrap(),
            Currency::parse("USD").unwrap(),
            "an hour of an earlier lease",
            Account::Peer(peer),
            Account::Revenue,
            70,
        )
        .unwrap();
        store.post(&owed, UnixTime(3)).unwrap();
        assert_eq!(
            store
                .open_lessor_lease(&lease(peer, renter, "lse-1", 40, "k1"), 100, UnixTime(4))
                .unwrap(),
            Opened::OverLimit {
                exposure: 110,
                limit: 100
            },
            "70 owed and 40 an hour"
        );
        assert!(matches!(
            store
                .open_lessor_lease(&lease(peer, renter, "lse-1", 30, "k1"), 100, UnixTime(4))
                .unwrap(),
            Opened::Lease(_)
        ));
    }

    #[test]
    fn a_renters_stop_is_queued_with_the_end_and_retried_until_delivered() {
        let (_dir, store, peer) = store_with_peer();
        let renter = store
            .add_user("renter@example.org", "!", false, UnixTime(1))
            .unwrap()
            .id;
        let mut held = lease(peer, renter, "lse-9", 25, "unused");
        held.idempotency_key = None;
        let message = ("/federation/v1/leases/lse-9/stop", "{}", "stop-lse-9");
        store
            .add_lessee_lease(&held, message, UnixTime(100), UnixTime(2))
            .unwrap();
        assert!(
            store
                .end_lease_and_tell(peer, "lse-9", None, message, UnixTime(3))
                .unwrap()
        );
        assert!(
            !store
                .end_lease_and_tell(peer, "lse-9", None, message, UnixTime(4))
                .unwrap(),
            "a second stop queues nothing"
        );
        let due = store.due_messages(UnixTime(3), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].idempotency_key, "stop-lse-9");
        store.message_failed(due[0].id, "unreachable", 5).unwrap();
        assert!(store.due_messages(UnixTime(4), 10).unwrap().is_empty());
        store.message_failed(due[0].id, "unreachable", 600).unwrap();
        assert!(store.due_messages(UnixTime(5), 10).unwrap().is_empty());
        store.messages_due_now(peer + 1, UnixTime(5)).unwrap();
        assert!(
            store.due_messages(UnixTime(5), 10).unwrap().is_empty(),
            "only the messages to the peer that answers"
        );
        store.messages_due_now(peer, UnixTime(5)).unwrap();
        let again = store.due_messages(UnixTime(5), 10).unwrap();
        assert_eq!(again[0].attempts, 2);
        store.message_delivered(again[0].id, UnixTime(6)).unwrap();
        assert!(store.due_messages(UnixTime(100), 10).unwrap().is_empty());
        let mine = store.leases_of_renter(renter).unwrap();
        assert_eq!((mine.len(), mine[0].open), (1, false));
    }
}
