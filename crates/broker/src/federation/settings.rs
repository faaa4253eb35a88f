//! The `[federation]` table: the name this broker goes by among peers, and
//! how often it pulls their listings and looks at leases on peers.

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
        let bad = FileFederation {
            name: Some("Bad Name".into()),
            ..Default::default()
        };
        assert!(resolve(bad, "x").is_err());
    }
}
