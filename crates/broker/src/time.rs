//! Wall-clock time as stored and shown: whole seconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime(pub i64);

impl UnixTime {
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self(secs)
    }

    /// "5s ago", "3m ago", "2h ago", "4d ago", relative to `now`.
    pub fn ago(self, now: UnixTime) -> String {
        let s = (now.0 - self.0).max(0);
        match s {
            0..60 => format!("{s}s ago"),
            60..3600 => format!("{}m ago", s / 60),
            3600..86400 => format!("{}h ago", s / 3600),
            _ => format!("{}d ago", s / 86400),
        }
    }

    /// The UTC date, like `2026-11-28`.
    pub fn date(self) -> String {
        // Days to civil date (Howard Hinnant's algorithm), in integers.
        let days = self.0.div_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}-{day:02}")
    }

    /// The start of UTC day `day` of `month` (1–12) in `year`.
    pub fn from_date(year: i64, month: i64, day: i64) -> Self {
        // Civil date to days (Howard Hinnant's algorithm), in integers.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Self((era * 146_097 + doe - 719_468) * 86_400)
    }

    /// The UTC date and time to the minute, like `2026-11-28 01:05`.
    pub fn date_time(self) -> String {
        let secs = self.0.rem_euclid(86_400);
        format!("{} {:02}:{:02}", self.date(), secs / 3600, secs % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::UnixTime;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(UnixTime(0).date(), "1970-01-01");
        assert_eq!(UnixTime(951_782_400).date(), "2000-02-29");
        assert_eq!(UnixTime(1_795_834_800).date_time(), "2026-11-28 03:00");
        assert_eq!(UnixTime(-1).date(), "1969-12-31");
        for t in [0, 951_782_400, 1_795_834_800 - 10_800, -86_400] {
            let date = UnixTime(t).date();
            let parts: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
            assert_eq!(
                UnixTime::from_date(parts[0], parts[1], parts[2]),
                UnixTime(t),
                "{date}"
            );
        }
        assert_eq!(UnixTime::from_date(2026, 12, 1).date(), "2026-12-01");
        assert_eq!(UnixTime::from_date(2027, 1, 1).date(), "2027-01-01");
    }
}
