//! Checking a device's SSH credentials: its token as password, or a public
//! key registered for it. The SSH user name is the device name. A device an
//! administrator suspended is refused either way.

use rpibroker_wire::{DeviceName, ServicePorts};
use russh::keys::{HashAlg, PublicKey};

use crate::broker::Shared;
use crate::registry::Credential;
use crate::store::{Store, StoreError, TokenLookup};
use crate::token;

/// A device that proved who it is.
pub struct Authenticated {
    pub device: DeviceName,
    pub device_id: i64,
    pub ports: ServicePorts,
    pub credential: Credential,
}

/// Whether an administrator suspended the device: it may not connect.
fn suspended(store: &Store, device_id: i64) -> Result<bool, StoreError> {
    let suspension = store.device_suspension(device_id)?;
    if suspension.is_some() {
        tracing::info!(device_id, "refusing a suspended device");
    }
    Ok(suspension.is_some())
}

/// The device `user` names, if `password` is its current token.
pub async fn password(shared: &Shared, user: &str, password: &str) -> Option<Authenticated> {
    let device = DeviceName::parse(user).ok()?;
    let hash = token::hash(password);
    let pool = shared.settings.port_pool;
    let lookup = {
        let hash = hash.clone();
        shared
            .store
            .blocking(move |s| -> Result<_, StoreError> {
                match s.lookup_token(&hash)? {
                    TokenLookup::Current(d) if suspended(s, d.id)? => Ok(None),
                    TokenLookup::Current(d) => {
                        // A stock OpenSSH device never called the handshake API,
                        // so its ports may not be assigned yet.
                        let ports = s.ensure_ports(d.id, pool)?;
                        Ok(Some((d, ports)))
                    }
                    _ => Ok(None),
                }
            })
            .await
    };
    match lookup {
        Ok(Some((d, ports))) if d.name == device => Some(Authenticated {
            device,
            device_id: d.id,
            ports,
            credential: Credential::Token(hash),
        }),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(%device, error = %e, "cannot authenticate device");
            None
        }
    }
}

/// The device `user` names, if `key` is registered for it.
pub async fn public_key(shared: &Shared, user: &str, key: &PublicKey) -> Option<Authenticated> {
    let device = DeviceName::parse(user).ok()?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let pool = shared.settings.port_pool;
    let lookup = {
        let (device, fingerprint) = (device.clone(), fingerprint.clone());
        shared
            .store
            .blocking(move |s| -> Result<_, StoreError> {
                if !s.key_matches(&device, &fingerprint)? {
                    return Ok(None);
                }
                let Some(d) = s.device(&device)? else {
                    return Ok(None);
                };
                if suspended(s, d.id)? {
                    return Ok(None);
                }
                let ports = s.ensure_ports(d.id, pool)?;
                Ok(Some((d.id, ports)))
            })
            .await
    };
    match lookup {
        Ok(Some((device_id, ports))) => Some(Authenticated {
            device,
            device_id,
            ports,
            credential: Credential::Key(fingerprint),
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(%device, error = %e, "cannot authenticate device");
            None
        }
    }
}

/// Whether the key is registered for the device, without proof of ownership
/// yet (the client asks before it signs).
pub async fn key_is_known(shared: &Shared, user: &str, key: &PublicKey) -> bool {
    let Ok(device) = DeviceName::parse(user) else {
        return false;
    };
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    shared
        .store
        .blocking(move |s| s.key_matches(&device, &fingerprint))
        .await
        .unwrap_or(false)
}

/// Whether a session's credential still lets the device in (checked when
/// the device's token or keys change).
pub fn still_valid(shared: &Shared, device: &DeviceName, credential: &Credential) -> bool {
    let result = match credential {
        Credential::Token(hash) => shared.store.token_matches(device, hash),
        Credential::Key(fingerprint) => shared.store.key_matches(device, fingerprint),
    };
    result.unwrap_or(false)
}
