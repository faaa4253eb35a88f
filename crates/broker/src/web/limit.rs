//! Per-address rate limits for the actions attackers repeat (signing in,
//! signing up): a fixed window per IPv4 address or IPv6 /64, with a bounded
//! table so a flood of addresses cannot grow it without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::time::UnixTime;

/// Most addresses tracked at once; past this, expired entries are dropped,
/// and if none are, the table is cleared (a flood of addresses then only
/// resets counts, it cannot exhaust memory).
const MAX_TRACKED: usize = 100_000;

/// The unit one person controls: an IPv4 address, or an IPv6 /64 (a single
/// host usually has a whole /64 to pick addresses from).
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

pub struct RateLimit {
    what: &'static str,
    limit: u32,
    window_secs: i64,
    seen: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl RateLimit {
    pub fn new(what: &'static str, limit: u32, window_secs: i64) -> Self {
        Self {
            what,
            limit,
            window_secs,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt from `ip`; `Err(seconds)` to wait when over the limit.
    pub fn check(&self, ip: IpAddr, now: UnixTime) -> Result<(), i64> {
        let ip = network_of(ip);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&ip) {
            seen.retain(|_, (start, _)| now.0 - *start < self.window_secs);
            if seen.len() >= MAX_TRACKED {
                seen.clear();
            }
        }
        let entry = seen.entry(ip).or_insert((now.0, 0));
        if now.0 - entry.0 >= self.window_secs {
            *entry = (now.0, 0);
        }
        if entry.1 >= self.limit {
            let wait = entry.0 + self.window_secs - now.0;
            tracing::info!(%ip, action = self.what, wait, "rate limited");
            return Err(wait.max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_window() {
        let limit = RateLimit::new("test", 3, 60);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limit.check(a, UnixTime(100)).is_ok());
        }
        assert_eq!(limit.check(a, UnixTime(110)), Err(50));
        assert!(
            limit.check(b, UnixTime(110)).is_ok(),
            "other addresses are not affected"
        );
        assert!(limit.check(a, UnixTime(160)).is_ok(), "a new window");
    }

    #[test]
    fn an_ipv6_64_counts_as_one_address() {
        let limit = RateLimit::new("test", 2, 60);
        for ip in ["2001:db8::1", "2001:db8::2:3"] {
            assert!(limit.check(ip.parse().unwrap(), UnixTime(0)).is_ok());
        }
        assert!(
            limit
                .check("2001:db8::ffff".parse().unwrap(), UnixTime(0))
                .is_err()
        );
        assert!(
            limit
                .check("2001:db8:0:1::1".parse().unwrap(), UnixTime(0))
                .is_ok()
        );
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        let plain: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(limit.check(mapped, UnixTime(0)).is_ok());
        assert!(limit.check(plain, UnixTime(0)).is_ok());
        assert!(
            limit.check(plain, UnixTime(0)).is_err(),
            "mapped and plain IPv4 are one address"
        );
    }
}
