//! Peering takes consent on both sides: the inviting broker's operator
//! makes a one-time invite (`rpibroker peer invite`), the other broker's
//! operator accepts it (`rpibroker peer accept`), which calls the inviting
//! broker with the invite's secret, signed with the accepting broker's key.
//! Each then holds the other as a peer with the other's keys.
//!
//! An invite carries the inviting broker's URL, name and current key (so
//! the answer to the accepting call is checked against a key the operator
//! was given, not one the network supplied) and a random secret, stored
//! only as a hash, expiring, usable once.

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::client::{self, CallError};
use super::identity::{KeyRing, PublicKey};
use super::url::Origin;
use super::wire::{BrokerDocument, PEERING_PATH, PeeringAnswer, PeeringRequest};
use crate::store::{NewPeer, Store, StoreError};
use crate::time::UnixTime;

/// What every invite string starts with.
pub const INVITE_PREFIX: &str = "rpibroker-invite:";
/// Longest invite string read.
const MAX_INVITE: usize = 2048;

/// What an invite string holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    /// The inviting broker's name and URL.
    pub name: String,
    pub url: String,
    /// Its current key, which signs its answer.
    pub key: PublicKey,
    /// The one-time secret.
    pub secret: String,
}

impl Invite {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("invites serialize");
        format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() > MAX_INVITE {
            return Err("this is too long to be an invite".into());
        }
        let encoded = text
            .strip_prefix(INVITE_PREFIX)
            .ok_or_else(|| format!("an invite starts with {INVITE_PREFIX}"))?;
        let json = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| "the invite is damaged (not base64url)".to_string())?;
        let invite: Invite =
            serde_json::from_slice(&json).map_err(|e| format!("the invite is damaged: {e}"))?;
        super::settings::check_name(&invite.name)?;
        Origin::parse(&invite.url)?;
        if invite.key.verifying_key().is_none() {
            return Err("the invite's key is not an ed25519 key".into());
        }
        if invite.secret.is_empty() || invite.secret.len() > 128 {
            return Err("the invite's secret is damaged".into());
        }
        Ok(invite)
    }
}

/// Makes an invite: stores its secret's hash with the terms offered.
pub fn create_invite(
    store: &Store,
    document: &BrokerDocument,
    ring: &KeyRing,
    credit_limit: i64,
    currency: &str,
    valid_for: std::time::Duration,
    now: UnixTime,
) -> Result<Invite, StoreError> {
    let secret = crate::token::generate_with("rpbi_");
    let expires = UnixTime(now.0 + i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX / 2));
    store.create_invite(
        &crate::token::hash(&secret),
        credit_limit,
        currency,
        now,
        expires,
    )?;
    let current = ring.current().0;
    let key = document
        .keys
        .iter()
        .find(|k| k.keyid == current)
        .cloned()
        .expect("the current key is published");
    Ok(Invite {
        name: document.name.clone(),
        url: document.url.clone(),
        key,
        secret,
    })
}

/// Why accepting an invite failed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the inviting broker answered something unexpected: {0}")]
    BadAnswer(String),
    #[error(
        "this broker and the inviting one are both called {0}; give one another name in [federation]"
    )]
    SameName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Presents `invite` to the inviting broker and, once it agreed, records it
/// as a peer here. The same idempotency key makes a retry safe.
pub async fn accept(
    store: &Store,
    http: &reqwest::Client,
    ring: &KeyRing,
    own: &BrokerDocument,
    invite: &Invite,
) -> Result<NewPeer, AcceptError> {
    if own.name == invite.name {
        return Err(AcceptError::SameName(own.name.clone()));
    }
    let origin = Origin::parse(&invite.url).map_err(AcceptError::BadAnswer)?;
    let request = PeeringRequest {
        invite: invite.secret.clone(),
        broker: own.clone(),
    };
    let body = serde_json::to_vec(&request).expect("requests serialize");
    // The same invite and broker make the same key, so a retry after a lost
    // answer is recognised.
    let idempotency_key = format!(
        "peering-{}",
        &crate::token::hash(&format!("{}:{}", invite.secret, own.name))[..32]
    );
    let expected = invite.key.clone();
    let key_of = move |id: &str| (id == expected.keyid).then(|| expected.clone());
    let answer = client::call(
        http,
        ring,
        &origin,
        Method::POST,
        PEERING_PATH,
        body,
        Some(&idempotency_key),
        &key_of,
    )
    .await?;
    let answer: PeeringAnswer =
        serde_json::from_slice(&answer.body).map_err(|e| AcceptError::BadAnswer(e.to_string()))?;
    answer.broker.check().map_err(AcceptError::BadAnswer)?;
    if answer.broker.name != invite.name || !answer.broker.keys.contains(&invite.key) {
        return Err(AcceptError::BadAnswer(
            "its name or keys differ from the invite's".into(),
        ));
    }
    let peer = NewPeer {
        name: answer.broker.name,
        base_url: answer.broker.url,
        keys: answer.broker.keys,
        credit_limit: answer.credit_limit.max(0),
        currency: answer.currency,
    };
    let stored = peer.clone();
    store
        .blocking(move |s| s.add_peer(&stored, UnixTime::now()))
        .await?;
    Ok(peer)
}

/// Largest self-description read from a peer.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Learns keys `peer` rotated to: reads its published keys and keeps those
/// endorsed by keys already trusted. Returns the keys when they changed.
pub async fn refresh_keys(
    store: &Store,
    http: &reqwest::Client,
    peer: &crate::store::PeerRecord,
) -> Result<Option<Vec<PublicKey>>, String> {
    let origin = Origin::parse(&peer.base_url)?;
    let url = origin.target(super::wire::WELL_KNOWN_PATH);
    let mut response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("could not reach {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url} answered too much"));
        }
        body.extend_from_slice(&chunk);
    }
    let document: BrokerDocument =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
    document.check()?;
    if document.name != peer.name {
        return Err(format!("{url} now calls itself {}", document.name));
    }
    let trusted = super::identity::trusted_keys(&peer.keys, &document.keys);
    if trusted.iter().all(|t| peer.keys.contains(t)) {
        return Ok(None);
    }
    let (id, keys) = (peer.id, trusted.clone());
    store
        .blocking(move |s| s.set_peer_keys(id, &keys))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(peer = %peer.name, "learned a peer's new federation key");
    Ok(Some(trusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_survives_its_string_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path(), UnixTime(1)).unwrap();
        let invite = Invite {
            name: "a.example".into(),
            url: "https://a.example".into(),
            key: ring.published(UnixTime(2))[0].clone(),
            secret: "rpbi_00".into(),
        };
        let text = invite.encode();
        assert!(text.starts_with(INVITE_PREFIX));
        assert_eq!(Invite::decode(&format!(" {text}\n")).unwrap(), invite);
        assert!(Invite::decode("hello").is_err());
        assert!(Invite::decode(&format!("{INVITE_PREFIX}!!")).is_err());
        assert!(Invite::decode(&"x".repeat(5000)).is_err());
        let bad_url = Invite {
            url: "a.example/path".into(),
            ..invite
        };
        assert!(Invite::decode(&bad_url.encode()).is_err());
    }
}
