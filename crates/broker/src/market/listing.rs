//! One marketplace row per listed device, and the search over them:
//! filtering, ordering and paging a [`MarketQuery`]. The figures a row is
//! judged by are the broker's measurements when it has them, the device's
//! claims otherwise, the same figures the row shows. Peers' devices are
//! searched the same way ([`MarketRow`]).

use std::cmp::Ordering;

use rpibroker_wire::status::Uptime;
use rpibroker_wire::verification::{Figures, Verdict};

use super::query::{MarketQuery, Order, SortKey};
use crate::store::ListedDevice;

/// Rows on one page of the marketplace.
pub const PAGE_SIZE: usize = 50;

/// Why a listed device cannot be rented right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("offline")]
    Offline,
    #[error("rented")]
    Rented,
    #[error("not verified")]
    NotVerified,
    /// Its claims changed (new sandbox limits) since the last verification.
    #[error("being verified again")]
    Reverifying,
    #[error("sandbox not ready")]
    SandboxNotReady,
    #[error("no price")]
    NoPrice,
}

/// A listed device with what only the running broker knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub device: ListedDevice,
    /// Its tunnel session is up (from the live registry, not the store).
    pub online: bool,
    /// Share of the last 7 and 30 days it was connected; `None` while the
    /// broker has no record of it. Filters and sorting use the 30 days.
    pub uptime: Option<Uptime>,
}

impl Listing {
    /// What a renter gets according to the claims: the machine's figures
    /// capped by the sandbox's limits.
    pub fn claimed(&self) -> Figures {
        self.device
            .hardware
            .as_ref()
            .map(crate::verify::claimed)
            .unwrap_or_default()
    }

    /// The broker's last measurement of the sandbox, if it could measure.
    pub fn measured(&self) -> Option<&Figures> {
        self.device
            .verification
            .as_ref()
            .and_then(|v| v.measured.as_ref())
            .map(|m| &m.figures)
    }

    /// The figures the row is shown and judged by: measured, else claimed.
    pub fn figures(&self) -> Figures {
        self.measured().cloned().unwrap_or_else(|| self.claimed())
    }

    pub fn verified(&self) -> bool {
        self.device.verification.as_ref().map(|v| v.verdict) == Some(Verdict::Verified)
    }

    /// The CPU architecture the device claims.
    pub fn arch(&self) -> Option<&str> {
        self.device
            .hardware
            .as_ref()
            .map(|h| h.arch.as_str())
            .filter(|a| !a.is_empty())
    }

    /// Whether it can be rented now: online, idle, verified, with a ready
    /// sandbox and a price.
    pub fn availability(&self) -> Result<(), Unavailable> {
        if !self.online {
            return Err(Unavailable::Offline);
        }
        if self.device.rented {
            return Err(Unavailable::Rented);
        }
        if !self.verified() {
            return Err(Unavailable::NotVerified);
        }
        // A verification vouches for the claims it compared, not for ones
        // made since.
        if self
            .device
            .verification
            .as_ref()
            .is_some_and(|v| v.claimed != self.claimed())
        {
            return Err(Unavailable::Reverifying);
        }
        if self.device.sandbox_state.as_deref() != Some("ready") {
            return Err(Unavailable::SandboxNotReady);
        }
        if self.device.hourly_rate.is_none() {
            return Err(Unavailable::NoPrice);
        }
        Ok(())
    }
}

/// What filters and sort orders judge a marketplace row by: this broker's
/// own listings and its peers' devices alike, so a filter means the same
/// for both, and a figure a row lacks counts the same wherever it is from.
pub trait MarketRow {
    fn name(&self) -> &str;
    /// The broker that manages it; `None` for this broker.
    fn broker(&self) -> Option<&str>;
    /// The figures it is judged by (measured, else claimed).
    fn judged_figures(&self) -> Figures;
    fn architecture(&self) -> Option<&str>;
    /// Its price per hour in minor units of this broker's currency.
    fn rate(&self) -> Option<i64>;
    /// Share of the last 30 days connected, in thousandths.
    fn uptime_permille(&self) -> Option<u16>;
    fn is_verified(&self) -> bool;
    /// Whether it can be rented right now.
    fn is_available(&self) -> bool;

    /// Whether the row passes every filter of `q`, this broker being
    /// called `own`; a filter on a figure the row does not have excludes it.
    fn matches(&self, q: &MarketQuery, own: &str) -> bool {
        let at_least = |value: Option<u64>, min: Option<u64>| {
            min.is_none_or(|min| value.is_some_and(|v| v >= min))
        };
        let rate = self.rate();
        let figures = self.judged_figures();
        q.min_price.is_none_or(|min| rate.is_some_and(|r| r >= min))
            && q.max_price.is_none_or(|max| rate.is_some_and(|r| r <= max))
            && at_least(figures.cpu_millicores, q.min_millicores)
            && at_least(figures.memory_bytes, q.min_memory_bytes)
            && at_least(figures.disk_bytes, q.min_disk_bytes)
            && q.arch
                .as_deref()
                .is_none_or(|a| self.architecture() == Some(a))
            && q.min_uptime_permille
                .is_none_or(|min| self.uptime_permille().is_some_and(|u| u >= min))
            && (!q.verified_only || self.is_verified())
            && (!q.available_only || self.is_available())
            && q.broker
                .as_deref()
                .is_none_or(|b| self.broker().unwrap_or(own) == b)
    }

    /// The value the row is sorted by, for keys other than the name.
    fn sort_value(&self, key: SortKey) -> Option<u64> {
        let figures = self.judged_figures();
        match key {
            SortKey::Name => Some(0),
            SortKey::Price => self.rate().and_then(|r| u64::try_from(r).ok()),
            SortKey::Cores => figures.cpu_millicores,
            SortKey::Memory => figures.memory_bytes,
            SortKey::Disk => figures.disk_bytes,
            SortKey::Uptime => self.uptime_permille().map(u64::from),
        }
    }
}

impl MarketRow for Listing {
    fn name(&self) -> &str {
        self.device.name.as_str()
    }

    fn broker(&self) -> Option<&str> {
        None
    }

    fn judged_figures(&self) -> Figures {
        self.figures()
    }

    fn architecture(&self) -> Option<&str> {
        self.arch()
    }

    fn rate(&self) -> Option<i64> {
        self.device.hourly_rate
    }

    fn uptime_permille(&self) -> Option<u16> {
        self.uptime.map(|u| u.month_permille)
    }

    fn is_verified(&self) -> bool {
        self.verified()
    }

    fn is_available(&self) -> bool {
        self.availability().is_ok()
    }
}

/// One page of a search.
#[derive(Debug)]
pub struct Page<'a, R = Listing> {
    pub rows: Vec<&'a R>,
    /// Rows that match the filters, on every page.
    pub matching: usize,
    /// The page shown, from 1; a page past the end shows the last one.
    pub page: u32,
    /// How many pages there are (at least 1).
    pub pages: u32,
}

/// The rows of `all` that match `q` (this broker being called `own`), in
/// `q`'s order.
pub fn matching<'a, R: MarketRow>(all: &'a [R], q: &MarketQuery, own: &str) -> Vec<&'a R> {
    let mut rows: Vec<(Option<u64>, &R)> = all
        .iter()
        .filter(|r| r.matches(q, own))
        .map(|r| (r.sort_value(q.sort), r))
        .collect();
    rows.sort_by(|(a, ra), (b, rb)| {
        let by_value = match (a, b) {
            (Some(a), Some(b)) => match q.order {
                Order::Asc => a.cmp(b),
                Order::Desc => b.cmp(a),
            },
            // Rows without the value go last, whichever the direction.
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let by_name = match (q.sort, q.order) {
            (SortKey::Name, Order::Desc) => rb.name().cmp(ra.name()),
            _ => ra.name().cmp(rb.name()),
        };
        by_value
            .then(by_name)
            .then_with(|| ra.broker().cmp(&rb.broker()))
    });
    rows.into_iter().map(|(_, r)| r).collect()
}

/// The rows of `all` that match `q`, in `q`'s order, on `q`'s page.
pub fn search<'a, R: MarketRow>(all: &'a [R], q: &MarketQuery, own: &str) -> Page<'a, R> {
    let rows = matching(all, q, own);
    let matching = rows.len();
    let pages = u32::try_from(matching.div_ceil(PAGE_SIZE).max(1)).unwrap_or(u32::MAX);
    let page = q.page.clamp(1, pages);
    let start = (page as usize - 1) * PAGE_SIZE;
    Page {
        rows: rows.into_iter().skip(start).take(PAGE_SIZE).collect(),
        matching,
        page,
        pages,
    }
}

/// The architectures of `all`, each once, sorted: the choices of the filter.
pub fn architectures<R: MarketRow>(all: &[R]) -> Vec<&str> {
    let mut arches: Vec<&str> = all.iter().filter_map(R::architecture).collect();
    arches.sort_unstable();
    arches.dedup();
    arches
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpibroker_wire::verification::{Measured, Verification};
    use rpibroker_wire::{DeviceName, HardwareReport};

    struct Row {
        name: &'static str,
        rate: Option<i64>,
        cores: Option<u32>,
        memory_gib: Option<u64>,
        arch: &'static str,
        verified: bool,
        online: bool,
        uptime: Option<u16>,
    }

    fn listing(r: Row) -> Listing {
        let hardware = HardwareReport {
            arch: r.arch.into(),
            cpu_cores: r.cores,
            memory_bytes: r.memory_gib.map(|g| g << 30),
            disk_bytes: Some(16 << 30),
            ..HardwareReport::default()
        };
        let verification = r.verified.then(|| Verification {
            at: 1,
            verdict: Verdict::Verified,
            reasons: String::new(),
            claimed: crate::verify::claimed(&hardware),
            measured: Some(Measured {
                figures: crate::verify::claimed(&hardware),
                ..Measured::default()
            }),
        });
        Listing {
            device: ListedDevice {
                id: 1,
                name: DeviceName::parse(r.name).unwrap(),
                owner_id: Some(1),
                hourly_rate: r.rate,
                hardware: Some(hardware),
                sandbox_state: Some("ready".into()),
                verification,
                rented: false,
            },
            online: r.online,
            uptime: r.uptime.map(|permille| Uptime {
                week_permille: permille,
                month_permille: permille,
            }),
        }
    }

    fn market() -> Vec<Listing> {
        let row = |name, rate, cores, memory_gib, arch| Row {
            name,
            rate,
            cores,
            memory_gib,
            arch,
            verified: false,
            online: false,
            uptime: None,
        };
        vec![
            listing(Row {
                verified: true,
                online: true,
                uptime: Some(999),
                ..row("alpha", Some(100), Some(4), Some(8), "aarch64")
            }),
            listing(Row {
                uptime: Some(900),
                ..row("bravo", Some(50), Some(2), Some(2), "aarch64")
            }),
            listing(row("charlie", Some(300), Some(8), Some(32), "x86_64")),
            listing(row("delta", None, None, None, "x86_64")),
        ]
    }

    fn names<'a>(page: &Page<'a>) -> Vec<&'a str> {
        page.rows.iter().map(|l| l.device.name.as_str()).collect()
    }

    fn query(raw: &str) -> MarketQuery {
        let (q, problems) = MarketQuery::parse(Some(raw));
        assert_eq!(problems, vec![], "{raw}");
        q
    }

    #[test]
    fn filters_keep_only_rows_that_have_and_pass_the_figure() {
        let all = market();
        let cases = [
            ("", vec!["alpha", "bravo", "charlie", "delta"]),
            ("min_price=1", vec!["alpha", "charlie"]),
            ("max_price=1", vec!["alpha", "bravo"]),
            ("min_price=0.5&max_price=0.5", vec!["bravo"]),
            ("min_cores=3", vec!["alpha", "charlie"]),
            ("min_memory=8", vec!["alpha", "charlie"]),
            ("min_disk=16", vec!["alpha", "bravo", "charlie", "delta"]),
            ("min_disk=16.01", vec![]),
            ("arch=x86_64", vec!["charlie", "delta"]),
            ("min_uptime=95", vec!["alpha"]),
            ("min_uptime=0", vec!["alpha", "bravo"]),
            ("verified=on", vec!["alpha"]),
            ("available=on", vec!["alpha"]),
            ("arch=riscv64", vec![]),
        ];
        for (raw, expected) in cases {
            assert_eq!(names(&search(&all, &query(raw), "here")), expected, "{raw}");
        }
    }

    #[test]
    fn sorting_puts_unknown_values_last_in_both_directions() {
        let all = market();
        let cases = [
            ("sort=price", vec!["bravo", "alpha", "charlie", "delta"]),
            (
                "sort=price&order=desc",
                vec!["charlie", "alpha", "bravo", "delta"],
            ),
            ("sort=cores", vec!["bravo", "alpha", "charlie", "delta"]),
            (
                "sort=memory&order=desc",
                vec!["charlie", "alpha", "bravo", "delta"],
            ),
            ("sort=disk", vec!["alpha", "bravo", "charlie", "delta"]),
            (
                "sort=uptime&order=desc",
                vec!["alpha", "bravo", "charlie", "delta"],
            ),
            ("sort=uptime", vec!["bravo", "alpha", "charlie", "delta"]),
            ("order=desc", vec!["delta", "charlie", "bravo", "alpha"]),
        ];
        for (raw, expected) in cases {
            assert_eq!(names(&search(&all, &query(raw), "here")), expected, "{raw}");
        }
    }

    #[test]
    fn availability_says_why_not() {
        let mut l = market().remove(0);
        assert_eq!(l.availability(), Ok(()));
        // New sandbox limits change the claims the last verification vouched for.
        let hardware = l.device.hardware.clone().unwrap();
        let mut capped = hardware.clone();
        capped.memory_bytes = Some(1 << 28);
        l.device.hardware = Some(capped);
        assert_eq!(l.availability(), Err(Unavailable::Reverifying));
        l.device.hardware = Some(hardware);
        l.device.sandbox_state = Some("wiping".into());
        assert_eq!(l.availability(), Err(Unavailable::SandboxNotReady));
        l.device.verification = None;
        assert_eq!(l.availability(), Err(Unavailable::NotVerified));
        l.device.rented = true;
        assert_eq!(l.availability(), Err(Unavailable::Rented));
        l.online = false;
        assert_eq!(l.availability(), Err(Unavailable::Offline));
    }

    #[test]
    fn pages_hold_at_most_a_page_size_and_past_the_end_shows_the_last() {
        let names: Vec<String> = (0..120).map(|i| format!("d{i:03}")).collect();
        let all: Vec<Listing> = names
            .iter()
            .map(|n| {
                let mut l = market().remove(1);
                l.device.name = DeviceName::parse(n).unwrap();
                l
            })
            .collect();
        let first = search(&all, &MarketQuery::default(), "here");
        assert_eq!(
            (first.rows.len(), first.matching, first.pages),
            (50, 120, 3)
        );
        assert_eq!(first.rows[0].device.name.as_str(), "d000");
        let third = search(&all, &query("page=3"), "here");
        assert_eq!((third.rows.len(), third.page), (20, 3));
        assert_eq!(third.rows[0].device.name.as_str(), "d100");
        let past = search(&all, &query("page=9"), "here");
        assert_eq!((past.page, past.rows.len()), (3, 20));
        let none = search::<Listing>(&[], &query("page=2"), "here");
        assert_eq!((none.page, none.pages, none.rows.len()), (1, 1, 0));
    }

    #[test]
    fn architectures_are_listed_once() {
        assert_eq!(architectures(&market()), ["aarch64", "x86_64"]);
    }
}
