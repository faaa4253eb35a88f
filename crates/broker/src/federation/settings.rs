//! The `[federation]` table: the name this broker goes by among peers, how
//! often it pulls their listings and looks at leases on peers, and how long
//! it keeps the tombstones of its own removed listings for them.

use std::time::Duration;

use serde::Deserialize;

/// Federation settings, resolved.
#[derive(Debug, Clone)]
pub struct FederationSettings {
    /// This broker's name among its peers [default: the domain].
    pub name: String,
    /// Time between pulls of a peer's listings (each wait varies by up to
    /// a fifth either way, so brokers do not pull in lockstep).
    pub pull_interval: Duration,
    /// Time between full pulls, which catch anything incremental ones missed.
    pub full_resync_interval: Duration,
    /// A peer whose pulls failed this many times in a row has its devices
    /// hidden from the marketplace until a pull works again.
    pub hide_after_missed_pulls: i64,
    /// Time between looks at each open lease on the peer that runs it, to
    /// learn of leases ended there.
    pub lease_poll_interval: Duration,
    /// How long the tombstone of a device no longer listed is kept for
    /// peers pulling changes; a peer whose cursor is older then gets the
    /// full listing.
    pub tombstone_retention: Duration,
    /// Shortest time between two prunings of old tombstones.
    pub tombstone_prune_interval: Duration,
}

/// The `[federation]` table of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFederation {
    pub name: Option<String>,
    pub pull_interval_secs: Option<u64>,
    pub full_resync_secs: Option<u64>,
    pub hide_after_missed_pulls: Option<u32>,
    pub lease_poll_secs: Option<u64>,
    pub tombstone_retention_secs: Option<u64>,
    pub tombstone_prune_secs: Option<u64>,
}

/// A broker name: 1 to 63 lowercase letters, digits, dots and dashes.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "broker name {name:?} must be 1 to 63 lowercase letters, digits, dots and dashes"
        ))
    }
}

pub fn resolve(file: FileFederation, domain: &str) -> anyhow::Result<FederationSettings> {
    let name = file.name.unwrap_or_else(|| domain.to_string());
    check_name(&name).map_err(anyhow::Error::msg)?;
    let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default).max(1));
    Ok(FederationSettings {
        name,
        pull_interval: secs(file.pull_interval_secs, 180),
        full_resync_interval: secs(file.full_resync_secs, 86_400),
        hide_after_missed_pulls: i64::from(file.hide_after_missed_pulls.unwrap_or(3).max(1)),
        lease_poll_interval: secs(file.lease_poll_secs, 60),
        tombstone_retention: secs(file.tombstone_retention_secs, 7 * 86_400),
        tombstone_prune_interval: secs(file.tombstone_prune_secs, 3600),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_defaults_to_the_domain_and_is_checked() {
        let s = resolve(FileFederation::default(), "broker.example").unwrap();
        assert_eq!(s.name, "broker.example");
        assert_eq!(s.pull_interval, Duration::from_secs(180));
        assert_eq!(s.hide_after_missed_pulls, 3);
        assert_eq!(s.tombstone_retention, Duration::from_secs(7 * 86_400));
        assert_eq!(s.tombstone_prune_interval, Duration::from_secs(3600));
        let bad = FileFederation {
            name: Some("Bad Name".into()),
            ..Default::default()
        };
        assert!(resolve(bad, "x").is_err());
    }
}
