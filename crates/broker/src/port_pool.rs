//! The range of public ports the broker hands out to devices, three per device.

use std::fmt;
use std::str::FromStr;

/// An inclusive range of ports, parsed from `FIRST-LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPool {
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortPoolError {
    #[error("port pool {0:?} is not of the form FIRST-LAST, e.g. 20000-20999")]
    Format(String),
    #[error("port pool {0:?}: the first port is after the last")]
    Reversed(String),
    #[error("port pool {0:?}: ports below 1024 are privileged; use a range above 1023")]
    Privileged(String),
    #[error("port pool {0:?} has fewer than 3 ports, not enough for one device")]
    TooSmall(String),
}

impl PortPool {
    pub fn iter(self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl FromStr for PortPool {
    type Err = PortPoolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| PortPoolError::Format(s.into()))?;
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| PortPoolError::Format(s.into()))
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if first > last {
            return Err(PortPoolError::Reversed(s.into()));
        }
        if first < 1024 {
            return Err(PortPoolError::Privileged(s.into()));
        }
        if last - first < 2 {
            return Err(PortPoolError::TooSmall(s.into()));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl serde::Serialize for PortPool {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PortPool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        let p: PortPool = "20000-20999".parse().unwrap();
        assert_eq!((p.first, p.last, p.iter().count()), (20000, 20999, 1000));
        assert!(matches!(
            "20000".parse::<PortPool>(),
            Err(PortPoolError::Format(_))
        ));
        assert!(matches!(
            "3-2".parse::<PortPool>(),
            Err(PortPoolError::Reversed(_))
        ));
        assert!(matches!(
            "80-90".parse::<PortPool>(),
            Err(PortPoolError::Privileged(_))
        ));
        assert!(matches!(
            "2000-2001".parse::<PortPool>(),
            Err(PortPoolError::TooSmall(_))
        ));
    }
}
