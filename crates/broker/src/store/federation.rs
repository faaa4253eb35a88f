//! Federation in the store: peers and their keys, one-time invites (kept as
//! hashes), the devices peers list, and this broker's own listings as
//! exported, each change numbered so a peer pulls only what changed since
//! its cursor, removals included as tombstones until they are pruned.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::federation::identity::PublicKey;
use crate::time::UnixTime;

/// A peer broker as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    pub id: i64,
    pub name: String,
    pub base_url: String,
    pub keys: Vec<PublicKey>,
    /// How much it may owe this broker, in minor units of `currency`.
    pub credit_limit: i64,
    pub currency: String,
    pub active: bool,
    pub added_at: i64,
    pub removed_at: Option<i64>,
    /// The last change of its listings this broker has.
    pub listings_cursor: i64,
    pub last_pull_ok_at: Option<i64>,
    pub last_full_at: Option<i64>,
    /// Pulls that failed since the last one that worked.
    pub missed_pulls: i64,
    /// When this broker last compared the peer's usage records with its
    /// own copy, and what was wrong, if anything.
    pub usage_checked_at: Option<i64>,
    pub usage_problem: Option<String>,
    /// Its ledger account here, in `currency`: positive, this broker owes
    /// it (for leases it ran for renters here); negative, it owes this one.
    pub balance: i64,
}

/// What became of removing a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Removed: the peer's id.
    Removed(i64),
    NoSuchPeer,
    /// This many leases with it are open.
    OpenLeases(i64),
}

/// A peer to add (or renew) with its terms.
#[derive(Debug, Clone)]
pub struct NewPeer {
    pub name: String,
    pub base_url: String,
    pub keys: Vec<PublicKey>,
    pub credit_limit: i64,
    pub currency: String,
}

/// What became of an invite presented by a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The peer is added with these terms (or was, by the same request).
    Peered { credit_limit: i64, currency: String },
    /// No such invite, or it expired, or another request used it.
    Refused(&'static str),
}

/// One entry of the exported listings: a device's listing, or its tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub seq: i64,
    pub name: String,
    /// JSON of the listing; `None` once the device is no longer listed.
    pub listing: Option<String>,
}

/// Exported changes as a peer asked for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exports {
    pub rows: Vec<ExportRow>,
    /// The newest number there is.
    pub latest: i64,
    /// The cursor asked for was below the pruned tombstones: `rows` begin
    /// the full listing instead.
    pub resync: bool,
}

/// A device a peer lists, as pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDeviceRow {
    pub peer: String,
    pub peer_url: String,
    pub name: String,
    pub listing: String,
}

const PEER_COLUMNS: &str = "id, name, base_url, keys, credit_limit, currency, state, added_at, removed_at, listings_cursor, last_pull_ok_at, last_full_at, missed_pulls, usage_checked_at, usage_problem,
    (SELECT COALESCE(SUM(a.balance), 0) FROM ledger_accounts a
     WHERE a.kind = 'peer' AND a.holder = CAST(peers.id AS TEXT) AND a.currency = peers.currency)";

fn peer_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PeerRecord> {
    let keys: String = r.get(3)?;
    let state: String = r.get(6)?;
    Ok(PeerRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        base_url: r.get(2)?,
        keys: serde_json::from_str(&keys).unwrap_or_default(),
        credit_limit: r.get(4)?,
        currency: r.get(5)?,
        active: state == "active",
        added_at: r.get(7)?,
        removed_at: r.get(8)?,
        listings_cursor: r.get(9)?,
        last_pull_ok_at: r.get(10)?,
        last_full_at: r.get(11)?,
        missed_pulls: r.get(12)?,
        usage_checked_at: r.get(13)?,
        usage_problem: r.get(14)?,
        balance: r.get(15)?,
    })
}

fn upsert_peer(conn: &rusqlite::Connection, peer: &NewPeer, now: UnixTime) -> rusqlite::Result<()> {
    let keys = serde_json::to_string(&peer.keys).expect("keys serialize");
    conn.execute(
        "INSERT INTO peers (name, base_url, keys, credit_limit, currency, state, added_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)
         ON CONFLICT (name) DO UPDATE SET base_url = ?2, keys = ?3, credit_limit = ?4,
             currency = ?5, state = 'active', added_at = ?6, removed_at = NULL,
             listings_cursor = 0, last_full_at = NULL, missed_pulls = 0",
        params![
            peer.name,
            peer.base_url,
            keys,
            peer.credit_limit,
            peer.currency,
            now.0
        ],
    )?;
    Ok(())
}

impl Store {
    /// Records a new invite by the hash of its secret.
    pub fn create_invite(
        &self,
        secret_hash: &str,
        credit_limit: i64,
        currency: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO peer_invites (secret_hash, credit_limit, currency, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![secret_hash, credit_limit, currency, now.0, expires_at.0],
        )?;
        Ok(())
    }

    /// Whether the invite with `secret_hash` can still be presented by the
    /// broker called `name`: unused and unexpired, or used by that broker
    /// (whose retry gets the same answer).
    pub fn invite_open(
        &self,
        secret_hash: &str,
        name: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM peer_invites WHERE secret_hash = ?1
                 AND ((used_by IS NULL AND expires_at >= ?3) OR used_by = ?2))",
            params![secret_hash, name, now.0],
            |r| r.get(0),
        )?)
    }

    /// Uses the invite with `secret_hash` to add `peer`, once: the same
    /// request again (same peer and idempotency key) gets the same answer.
    pub fn redeem_invite(
        &self,
        secret_hash: &str,
        peer: &NewPeer,
        idempotency_key: &str,
        now: UnixTime,
    ) -> Result<Redeemed, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        type Invite = (i64, String, i64, Option<String>, Option<String>);
        let invite: Option<Invite> = tx
            .query_row(
                "SELECT credit_limit, currency, expires_at, used_by, used_key
                 FROM peer_invites WHERE secret_hash = ?1",
                [secret_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((credit_limit, currency, expires_at, used_by, used_key)) = invite else {
            return Ok(Redeemed::Refused("no such invite"));
        };
        let peered = Redeemed::Peered {
            credit_limit,
            currency: currency.clone(),
        };
        if used_by.is_some() {
            let same = used_by.as_deref() == Some(peer.name.as_str())
                && used_key.as_deref() == Some(idempotency_key);
            return Ok(if same {
                peered
            } else {
                Redeemed::Refused("this invite was already used")
            });
        }
        if expires_at < now.0 {
            return Ok(Redeemed::Refused("this invite expired"));
        }
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM peers WHERE name != ?1 AND base_url = ?2 AND state = 'active')",
            params![peer.name, peer.base_url],
            |r| r.get(0),
        )?;
        if taken {
            return Ok(Redeemed::Refused(
                "another active peer has this URL; remove it first",
            ));
        }
        let terms = NewPeer {
            credit_limit,
            currency,
            ..peer.clone()
        };
        upsert_peer(&tx, &terms, now)?;
        tx.execute(
            "UPDATE peer_invites SET used_at = ?2, used_by = ?3, used_key = ?4 WHERE secret_hash = ?1",
            params![secret_hash, now.0, peer.name, idempotency_key],
        )?;
        tx.commit()?;
        Ok(peered)
    }

    /// Adds `peer`, or makes a removed peer of that name active again with
    /// new keys and terms.
    pub fn add_peer(&self, peer: &NewPeer, now: UnixTime) -> Result<(), StoreError> {
        upsert_peer(&self.conn(), peer, now)?;
        Ok(())
    }

    /// Replaces the keys of peer `peer_id` (after it rotated).
    pub fn set_peer_keys(&self, peer_id: i64, keys: &[PublicKey]) -> Result<(), StoreError> {
        let keys = serde_json::to_string(keys).expect("keys serialize");
        self.conn().execute(
            "UPDATE peers SET keys = ?2 WHERE id = ?1",
            params![peer_id, keys],
        )?;
        Ok(())
    }

    /// Every peer, active first, by name.
    pub fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {PEER_COLUMNS} FROM peers ORDER BY state = 'removed', name"
        ))?;
        let rows = stmt.query_map([], peer_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The active peer that publishes key `keyid`.
    pub fn peer_with_key(&self, keyid: &str) -> Result<Option<PeerRecord>, StoreError> {
        Ok(self
            .peers()?
            .into_iter()
            .find(|p| p.active && p.keys.iter().any(|k| k.keyid == keyid)))
    }

    /// A peer that published key `keyid` and was removed, if any.
    pub fn removed_peer_with_key(&self, keyid: &str) -> Result<Option<PeerRecord>, StoreError> {
        Ok(self
            .peers()?
            .into_iter()
            .find(|p| !p.active && p.keys.iter().any(|k| k.keyid == keyid)))
    }

    /// Stops peering with the active peer `name`, unless a lease with it
    /// is open in either direction (end those first: what they cost is
    /// settled through the peer). Its devices leave the marketplace.
    pub fn remove_peer(&self, name: &str, now: UnixTime) -> Result<Removal, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM peers WHERE name = ?1 AND state = 'active'",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Ok(Removal::NoSuchPeer);
        };
        let open: i64 = tx.query_row(
            "SELECT COUNT(*) FROM leases WHERE peer_id = ?1 AND state = 'open'",
            [id],
            |r| r.get(0),
        )?;
        if open > 0 {
            return Ok(Removal::OpenLeases(open));
        }
        tx.execute(
            "UPDATE peers SET state = 'removed', removed_at = ?2 WHERE id = ?1",
            params![id, now.0],
        )?;
        tx.execute("DELETE FROM peer_devices WHERE peer_id = ?1", [id])?;
        tx.commit()?;
        Ok(Removal::Removed(id))
    }

    /// Brings the exported listings up to date with `current` (name, digest,
    /// listing JSON of every device listed now): a changed or new device
    /// gets the next number, a device no longer listed a tombstone.
    pub fn refresh_exports(
        &self,
        current: &[(String, String, String)],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut known: HashMap<String, Option<String>> = HashMap::new();
        {
            let mut stmt = tx.prepare_cached("SELECT name, digest FROM federation_exports")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            for row in rows {
                let (name, digest) = row?;
                known.insert(name, digest);
            }
        }
        let mut seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM federation_exports",
            [],
            |r| r.get(0),
        )?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO federation_exports (name, seq, digest, listing, changed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET seq = ?2, digest = ?3, listing = ?4, changed_at = ?5",
            )?;
            let mut listed = HashSet::new();
            for (name, digest, listing) in current {
                listed.insert(name.as_str());
                if known
                    .get(name)
                    .is_some_and(|d| d.as_deref() == Some(digest))
                {
                    continue;
                }
                seq += 1;
                upsert.execute(params![name, seq, digest, listing, now.0])?;
            }
            for (name, digest) in &known {
                if digest.is_some() && !listed.contains(name.as_str()) {
                    seq += 1;
                    upsert.execute(params![name, seq, None::<String>, None::<String>, now.0])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` exported changes after `cursor`, oldest first, and the
    /// newest number there is. From cursor 0 tombstones are left out: a
    /// full listing has nothing to remove. A cursor below the pruned
    /// tombstones may have missed removals: the answer is then the full
    /// listing from the start, marked as such.
    pub fn exports_since(&self, cursor: i64, limit: usize) -> Result<Exports, StoreError> {
        let conn = self.conn();
        let pruned: i64 = conn.query_row(
            "SELECT COALESCE(MAX(through_seq), 0) FROM federation_export_pruned",
            [],
            |r| r.get(0),
        )?;
        let resync = cursor > 0 && cursor < pruned;
        let from = if resync { 0 } else { cursor };
        let latest: i64 = conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM federation_exports",
            [],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, name, listing FROM federation_exports
             WHERE seq > ?1 AND (?1 > 0 OR listing IS NOT NULL) ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![from, limit as i64], |r| {
            Ok(ExportRow {
                seq: r.get(0)?,
                name: r.get(1)?,
                listing: r.get(2)?,
            })
        })?;
        Ok(Exports {
            rows: rows.collect::<Result<_, _>>()?,
            latest,
            resync,
        })
    }

    /// Deletes the tombstones of devices removed before `before`, and
    /// remembers the highest number deleted. Devices still listed under a
    /// number at or below it are numbered again after every other, so
    /// paging through a full listing never passes a cursor below it (which
    /// would start the listing over). Returns how many were deleted.
    pub fn prune_export_tombstones(&self, before: UnixTime) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let through: Option<i64> = tx.query_row(
            "SELECT MAX(seq) FROM federation_exports WHERE listing IS NULL AND changed_at < ?1",
            [before.0],
            |r| r.get(0),
        )?;
        let Some(through) = through else {
            return Ok(0);
        };
        let deleted = tx.execute(
            "DELETE FROM federation_exports WHERE listing IS NULL AND seq <= ?1",
            [through],
        )?;
        let mut seq: i64 = tx
            .query_row("SELECT MAX(seq) FROM federation_exports", [], |r| r.get(0))
            .map(|s: Option<i64>| s.unwrap_or(0))?;
        let listed: Vec<String> = {
            let mut stmt = tx.prepare_cached(
                "SELECT name FROM federation_exports WHERE seq <= ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([through], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        {
            let mut renumber =
                tx.prepare_cached("UPDATE federation_exports SET seq = ?2 WHERE name = ?1")?;
            for name in &listed {
                seq += 1;
                renumber.execute(params![name, seq])?;
            }
        }
        tx.execute(
            "INSERT INTO federation_export_pruned (id, through_seq) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET through_seq = MAX(through_seq, ?1)",
            [through],
        )?;
        tx.commit()?;
        Ok(deleted)
    }

    /// Stores what a pull from peer `peer_id` brought: listings set,
    /// tombstones removed; a full pull also removes every device it did not
    /// list. Moves the peer's cursor and clears its missed pulls.
    pub fn apply_peer_listings(
        &self,
        peer_id: i64,
        changes: &[(String, Option<String>, i64)],
        full: bool,
        cursor: i64,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if full {
            tx.execute("DELETE FROM peer_devices WHERE peer_id = ?1", [peer_id])?;
        }
        {
            let mut set = tx.prepare_cached(
                "INSERT INTO peer_devices (peer_id, name, listing, seq, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (peer_id, name) DO UPDATE SET listing = ?3, seq = ?4, updated_at = ?5",
            )?;
            let mut delete =
                tx.prepare_cached("DELETE FROM peer_devices WHERE peer_id = ?1 AND name = ?2")?;
            for (name, listing, seq) in changes {
                match listing {
                    Some(listing) => set.execute(params![peer_id, name, listing, seq, now.0])?,
                    None => delete.execute(params![peer_id, name])?,
                };
            }
        }
        tx.execute(
            "UPDATE peers SET listings_cursor = ?2, last_pull_ok_at = ?3, missed_pulls = 0,
                 last_full_at = CASE WHEN ?4 THEN ?3 ELSE last_full_at END
             WHERE id = ?1",
            params![peer_id, cursor, now.0, full],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Counts a failed pull from peer `peer_id`.
    pub fn record_missed_pull(&self, peer_id: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE peers SET missed_pulls = missed_pulls + 1 WHERE id = ?1",
            [peer_id],
        )?;
        Ok(())
    }

    /// Devices of active peers that missed fewer than `hide_after` pulls in
    /// a row, by peer and name.
    pub fn visible_peer_devices(&self, hide_after: i64) -> Result<Vec<PeerDeviceRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT p.name, p.base_url, d.name, d.listing FROM peer_devices d
             JOIN peers p ON p.id = d.peer_id
             WHERE p.state = 'active' AND p.missed_pulls < ?1
             ORDER BY p.name, d.name",
        )?;
        let rows = stmt.query_map([hide_after], |r| {
            Ok(PeerDeviceRow {
                peer: r.get(0)?,
                peer_url: r.get(1)?,
                name: r.get(2)?,
                listing: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    fn peer(name: &str) -> NewPeer {
        NewPeer {
            name: name.into(),
            base_url: format!("http://{name}.example"),
            keys: Vec::new(),
            credit_limit: 0,
            currency: "USD".into(),
        }
    }

    #[test]
    fn an_invite_is_used_once_but_a_retry_gets_the_same_answer() {
        let (_d, store) = store();
        store
            .create_invite("h", 5000, "EUR", UnixTime(10), UnixTime(100))
            .unwrap();
        let ok = Redeemed::Peered {
            credit_limit: 5000,
            currency: "EUR".into(),
        };
        assert_eq!(
            store
                .redeem_invite("h", &peer("b"), "k1", UnixTime(20))
                .unwrap(),
            ok
        );
        assert_eq!(
            store
                .redeem_invite("h", &peer("b"), "k1", UnixTime(21))
                .unwrap(),
            ok
        );
        assert!(matches!(
            store
                .redeem_invite("h", &peer("c"), "k2", UnixTime(21))
                .unwrap(),
            Redeemed::Refused(_)
        ));
        assert!(matches!(
            store
                .redeem_invite("nope", &peer("c"), "k2", UnixTime(21))
                .unwrap(),
            Redeemed::Refused(_)
        ));
        store
            .create_invite("old", 0, "USD", UnixTime(10), UnixTime(100))
            .unwrap();
        assert_eq!(
            store
                .redeem_invite("old", &peer("c"), "k3", UnixTime(101))
                .unwrap(),
            Redeemed::Refused("this invite expired")
        );
        let peers = store.peers().unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(
            (peers[0].credit_limit, peers[0].currency.as_str()),
            (5000, "EUR")
        );
    }

    fn row(n: &str, d: &str) -> (String, String, String) {
        (n.to_string(), d.to_string(), format!("{{\"v\":\"{d}\"}}"))
    }

    /// The (seq, name, listed) of each exported change after `cursor`.
    fn changes(store: &Store, cursor: i64) -> Vec<(i64, String, bool)> {
        store
            .exports_since(cursor, 100)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| (r.seq, r.name, r.listing.is_some()))
            .collect()
    }

    #[test]
    fn exports_number_changes_and_keep_tombstones() {
        let (_d, store) = store();
        store
            .refresh_exports(&[row("a", "1"), row("b", "1")], UnixTime(1))
            .unwrap();
        let all = store.exports_since(0, 100).unwrap();
        assert_eq!((all.rows.len(), all.latest, all.resync), (2, 2, false));
        store
            .refresh_exports(&[row("a", "1"), row("b", "1")], UnixTime(2))
            .unwrap();
        let none = store.exports_since(2, 100).unwrap();
        assert_eq!((none.rows, none.latest), (vec![], 2));
        store
            .refresh_exports(&[row("b", "2")], UnixTime(3))
            .unwrap();
        assert_eq!(
            changes(&store, 2),
            [(3, "b".to_string(), true), (4, "a".to_string(), false)]
        );
        // A full listing has no tombstones.
        assert_eq!(changes(&store, 0), [(3, "b".to_string(), true)]);
        // Paging.
        assert_eq!(store.exports_since(2, 1).unwrap().rows.len(), 1);
    }

    #[test]
    fn pruned_tombstones_send_older_cursors_back_to_the_full_listing() {
        let (_d, store) = store();
        store
            .refresh_exports(&[row("a", "1"), row("b", "1"), row("c", "1")], UnixTime(10))
            .unwrap();
        // b is removed at 20, c at 40.
        store
            .refresh_exports(&[row("a", "1"), row("c", "1")], UnixTime(20))
            .unwrap();
        store
            .refresh_exports(&[row("a", "1")], UnixTime(40))
            .unwrap();
        assert_eq!(store.exports_since(3, 100).unwrap().rows.len(), 2);
        // Nothing removed before 20 yet.
        assert_eq!(store.prune_export_tombstones(UnixTime(20)).unwrap(), 0);
        assert_eq!(store.prune_export_tombstones(UnixTime(30)).unwrap(), 1);
        // b's tombstone (4) is gone; a (1) is numbered after everything.
        let listed = changes(&store, 0);
        assert_eq!(listed, [(6, "a".to_string(), true)]);
        // A peer that has 4 missed nothing; one before it might have.
        let current = store.exports_since(4, 100).unwrap();
        assert!(!current.resync);
        assert_eq!(
            changes(&store, 4),
            [(5, "c".to_string(), false), (6, "a".to_string(), true)]
        );
        let stale = store.exports_since(3, 100).unwrap();
        assert!(stale.resync);
        assert_eq!(stale.rows.len(), 1);
        assert_eq!(stale.latest, 6);
        // A full listing is never told to start over.
        assert!(!store.exports_since(0, 100).unwrap().resync);
        // Pruning later ones moves the mark on, never back.
        assert_eq!(store.prune_export_tombstones(UnixTime(50)).unwrap(), 1);
        assert!(store.exports_since(4, 100).unwrap().resync);
        assert!(!store.exports_since(5, 100).unwrap().resync);
        assert_eq!(changes(&store, 0), [(6, "a".to_string(), true)]);
        assert_eq!(store.prune_export_tombstones(UnixTime(60)).unwrap(), 0);
        assert!(store.exports_since(4, 100).unwrap().resync);
        // A device listed again after its tombstone went is a plain change.
        store
            .refresh_exports(&[row("a", "1"), row("b", "1")], UnixTime(70))
            .unwrap();
        assert_eq!(changes(&store, 6), [(7, "b".to_string(), true)]);
    }

    #[test]
    fn pulled_devices_are_hidden_after_missed_pulls_and_dropped_with_their_peer() {
        let (_d, store) = store();
        store.add_peer(&peer("b"), UnixTime(1)).unwrap();
        let id = store.peers().unwrap()[0].id;
        let changes = vec![
            ("x".to_string(), Some("{}".to_string()), 1),
            ("y".to_string(), Some("{}".to_string()), 2),
        ];
        store
            .apply_peer_listings(id, &changes, true, 2, UnixTime(2))
            .unwrap();
        assert_eq!(store.visible_peer_devices(3).unwrap().len(), 2);
        store
            .apply_peer_listings(id, &[("x".into(), None, 3)], false, 3, UnixTime(3))
            .unwrap();
        assert_eq!(store.visible_peer_devices(3).unwrap().len(), 1);
        for _ in 0..3 {
            store.record_missed_pull(id).unwrap();
        }
        assert!(store.visible_peer_devices(3).unwrap().is_empty());
        assert_eq!(
            store.visible_peer_devices(4).unwrap().len(),
            1,
            "hidden, not deleted"
        );
        assert!(matches!(
            store.remove_peer("b", UnixTime(4)).unwrap(),
            Removal::Removed(_)
        ));
        assert_eq!(
            store.remove_peer("b", UnixTime(4)).unwrap(),
            Removal::NoSuchPeer
        );
        assert!(store.visible_peer_devices(100).unwrap().is_empty());
    }
}
