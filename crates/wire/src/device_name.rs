//! Device names. A device name is the left-most label of the device's
//! subdomain (`<name>.<domain>`) and the SSH user name a device logs in with,
//! so it follows DNS label rules and may not take names the broker itself needs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest DNS label (RFC 1035).
pub const MAX_LEN: usize = 63;

/// Names kept for the broker's own hosts or commonly expected to be the
/// operator's (a device called `www` would capture the broker's web site).
pub const RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "assets",
    "auth",
    "autoconfig",
    "autodiscover",
    "billing",
    "broker",
    "cdn",
    "dashboard",
    "docs",
    "ftp",
    "help",
    "imap",
    "localhost",
    "login",
    "mail",
    "market",
    "ns1",
    "ns2",
    "pop",
    "pop3",
    "root",
    "smtp",
    "ssh",
    "static",
    "status",
    "support",
    "webmail",
];

/// A validated device name: 1 to 63 characters of `a-z`, `0-9` and `-`, not
/// starting or ending with `-`, not a punycode (`xn--`) label, not reserved.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceName(String);

/// Why a string is not a valid device name. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceNameError {
    #[error("device name is empty")]
    Empty,
    #[error("device name is {0} characters long; the limit is {MAX_LEN} (it becomes a DNS label)")]
    TooLong(usize),
    #[error(
        "device name {0:?} has uppercase letters; device names are lowercase (try {lower:?})",
        lower = .0.to_ascii_lowercase()
    )]
    Uppercase(String),
    #[error(
        "device name {name:?} has the character {ch:?}; only a-z, 0-9 and '-' are allowed (it becomes a DNS label)"
    )]
    BadCharacter { name: String, ch: char },
    #[error("device name {0:?} starts or ends with '-', which DNS labels may not")]
    EdgeHyphen(String),
    #[error("device name {0:?} looks like a punycode label ('xn--'); pick another name")]
    Punycode(String),
    #[error("device name {0:?} is reserved for the broker; pick another name")]
    Reserved(String),
}

impl DeviceName {
    /// Checks `s` against the rules above.
    pub fn parse(s: &str) -> Result<Self, DeviceNameError> {
        if s.is_empty() {
            return Err(DeviceNameError::Empty);
        }
        let len = s.chars().count();
        if len > MAX_LEN {
            return Err(DeviceNameError::TooLong(len));
        }
        if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(DeviceNameError::BadCharacter {
                name: s.to_string(),
                ch,
            });
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(DeviceNameError::Uppercase(s.to_string()));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(DeviceNameError::EdgeHyphen(s.to_string()));
        }
        if s.starts_with("xn--") {
            return Err(DeviceNameError::Punycode(s.to_string()));
        }
        if RESERVED.contains(&s) {
            return Err(DeviceNameError::Reserved(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceName {
    type Error = DeviceNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<DeviceName> for String {
    fn from(name: DeviceName) -> Self {
        name.0
    }
}

impl std::str::FromStr for DeviceName {
    type Err = DeviceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["pi", "pi-4", "a", "0day", &"x".repeat(63)] {
            assert_eq!(DeviceName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_each_rule_with_its_own_error() {
        assert_eq!(DeviceName::parse(""), Err(DeviceNameError::Empty));
        assert_eq!(
            DeviceName::parse(&"x".repeat(64)),
            Err(DeviceNameError::TooLong(64))
        );
        assert!(matches!(
            DeviceName::parse("Pi"),
            Err(DeviceNameError::Uppercase(_))
        ));
        assert!(matches!(
            DeviceName::parse("pi.home"),
            Err(DeviceNameError::BadCharacter { ch: '.', .. })
        ));
        assert!(matches!(
            DeviceName::parse("pi_1"),
            Err(DeviceNameError::BadCharacter { ch: '_', .. })
        ));
        assert!(matches!(
            DeviceName::parse("<script>"),
            Err(DeviceNameError::BadCharacter { ch: '<', .. })
        ));
        assert!(matches!(
            DeviceName::parse("-pi"),
            Err(DeviceNameError::EdgeHyphen(_))
        ));
        assert!(matches!(
            DeviceName::parse("xn--pi"),
            Err(DeviceNameError::Punycode(_))
        ));
        for r in ["www", "api", "admin"] {
            assert!(matches!(
                DeviceName::parse(r),
                Err(DeviceNameError::Reserved(_))
            ));
        }
    }

    #[test]
    fn uppercase_error_suggests_lowercase() {
        let err = DeviceName::parse("MyPi").unwrap_err().to_string();
        assert!(err.contains("\"mypi\""), "{err}");
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<DeviceName>("\"pi\"").is_ok());
        assert!(serde_json::from_str::<DeviceName>("\"p i\"").is_err());
    }
}
