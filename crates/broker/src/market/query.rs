//! What a visitor asks of the marketplace: filters, sort order and page,
//! parsed from a URL query string. Each value is parsed strictly; the query
//! as a whole kindly: a bad value is reported and left out, and the rest of
//! the query still applies. The web page and the JSON listing share it.

use std::fmt;

use crate::price::{parse_price, show_price};

/// Longest query string read; a longer one is ignored as a whole.
pub const MAX_QUERY_LEN: usize = 2048;
/// Most parameters read from one query string.
pub const MAX_PARAMS: usize = 24;
/// Longest value of one parameter.
pub const MAX_VALUE_LEN: usize = 32;
/// Highest page number asked for.
pub const MAX_PAGE: u32 = 100_000;
/// Longest architecture name.
const MAX_ARCH_LEN: usize = 16;
const GIB: u64 = 1 << 30;
/// Largest amount of memory or disk a filter may ask for, in GiB.
const MAX_GIB: u64 = 1 << 20;
/// Most cores a filter may ask for.
const MAX_CORES: u64 = 1 << 20;

/// What the listing is ordered by; devices without a value for it come last
/// either way, and ties go by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Name,
    Price,
    Cores,
    Memory,
    Disk,
    Uptime,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::Name,
        SortKey::Price,
        SortKey::Cores,
        SortKey::Memory,
        SortKey::Disk,
        SortKey::Uptime,
    ];

    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Price => "price",
            SortKey::Cores => "cores",
            SortKey::Memory => "memory",
            SortKey::Disk => "disk",
            SortKey::Uptime => "uptime",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// A parsed marketplace query. Sizes are in bytes, cores in thousandths of a
/// core, prices in minor units: the units the listing compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketQuery {
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub min_millicores: Option<u64>,
    pub min_memory_bytes: Option<u64>,
    pub min_disk_bytes: Option<u64>,
    /// An architecture as agents report it (`x86_64`, `aarch64`, `arm`).
    pub arch: Option<String>,
    /// Share of the last 30 days connected, in tenths of a percent.
    pub min_uptime_permille: Option<u16>,
    /// Only devices whose last verification found what they claim.
    pub verified_only: bool,
    /// Only devices that can be rented right now.
    pub available_only: bool,
    /// Only devices the broker of this name manages: a peer's name for its
    /// devices, this broker's own name for its own.
    pub broker: Option<String>,
    pub sort: SortKey,
    pub order: Order,
    /// From 1.
    pub page: u32,
}

impl Default for MarketQuery {
    fn default() -> Self {
        Self {
            min_price: None,
            max_price: None,
            min_millicores: None,
            min_memory_bytes: None,
            min_disk_bytes: None,
            arch: None,
            min_uptime_permille: None,
            verified_only: false,
            available_only: false,
            broker: None,
            sort: SortKey::default(),
            order: Order::default(),
            page: 1,
        }
    }
}

/// A part of the query that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryProblem {
    #[error("The search is longer than {MAX_QUERY_LEN} characters, so none of it was applied.")]
    TooLong,
    #[error("The search has more than {MAX_PARAMS} parts; the rest were ignored.")]
    TooMany,
    #[error("\u{201c}{0}\u{201d} is not a marketplace filter; it was ignored.")]
    Unknown(String),
    #[error("{0} was given more than once; it was ignored.")]
    Repeated(&'static str),
    #[error("{label} \u{201c}{value}\u{201d} was ignored: {expected}.")]
    Invalid {
        label: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("The lowest price is above the highest; the price range was ignored.")]
    PriceRange,
}

/// A parameter the marketplace understands: its name and how it is called
/// in messages.
struct Param {
    name: &'static str,
    label: &'static str,
}

const PARAMS: [Param; 13] = [
    Param {
        name: "min_price",
        label: "The lowest price",
    },
    Param {
        name: "max_price",
        label: "The highest price",
    },
    Param {
        name: "min_cores",
        label: "The minimum of cores",
    },
    Param {
        name: "min_memory",
        label: "The minimum of memory",
    },
    Param {
        name: "min_disk",
        label: "The minimum of disk",
    },
    Param {
        name: "arch",
        label: "The architecture",
    },
    Param {
        name: "min_uptime",
        label: "The minimum uptime",
    },
    Param {
        name: "verified",
        label: "Verified only",
    },
    Param {
        name: "available",
        label: "Available now",
    },
    Param {
        name: "broker",
        label: "The broker",
    },
    Param {
        name: "sort",
        label: "The sort order",
    },
    Param {
        name: "order",
        label: "The direction",
    },
    Param {
        name: "page",
        label: "The page",
    },
];

/// `value` cut to [`MAX_VALUE_LEN`] characters, to echo in a message.
fn echo(value: &str) -> String {
    let mut out: String = value.chars().take(MAX_VALUE_LEN).collect();
    if value.chars().count() > MAX_VALUE_LEN {
        out.push('\u{2026}');
    }
    out
}

/// Parses `whole[.frac]` with at most `decimals` digits after the point into
/// `whole * scale + frac * scale / 10^decimals`, rounded down; `None` unless
/// it is plain digits and `whole <= max_whole`.
fn parse_decimal(text: &str, decimals: u32, scale: u64, max_whole: u64) -> Option<u64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 9
        || !digits(whole)
        || !digits(frac)
        || frac.len() > decimals as usize
        || (text.contains('.') && frac.is_empty())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    if whole > max_whole {
        return None;
    }
    let unit = 10u64.pow(decimals);
    let frac: u64 = format!("{frac:0<width$}", width = decimals as usize)
        .parse()
        .unwrap_or(0);
    let frac = u64::try_from(u128::from(frac) * u128::from(scale) / u128::from(unit)).ok()?;
    whole.checked_mul(scale)?.checked_add(frac)
}

/// A number with up to two decimals, rounded to two decimals, in `unit`s.
fn show_decimal(value: u64, unit: u64) -> String {
    let hundredths = (u128::from(value) * 100 + u128::from(unit) / 2) / u128::from(unit);
    let (whole, frac) = (hundredths / 100, hundredths % 100);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:02}")
            .trim_end_matches('0')
            .to_string()
    }
}

fn parse_flag(value: &str) -> Option<bool> {
    match value {
        "on" | "true" | "1" | "yes" => Some(true),
        "off" | "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

impl MarketQuery {
    /// Parses the query string of a marketplace URL (without the `?`).
    /// Returns what could be read, and what was left out with why.
    pub fn parse(raw: Option<&str>) -> (Self, Vec<QueryProblem>) {
        let mut query = Self::default();
        let mut problems = Vec::new();
        let raw = raw.unwrap_or_default();
        if raw.len() > MAX_QUERY_LEN {
            return (query, vec![QueryProblem::TooLong]);
        }
        let mut seen = [false; PARAMS.len()];
        for (i, (key, value)) in form_urlencoded::parse(raw.as_bytes()).enumerate() {
            if i == MAX_PARAMS {
                problems.push(QueryProblem::TooMany);
                break;
            }
            let Some(index) = PARAMS.iter().position(|p| p.name == key) else {
                problems.push(QueryProblem::Unknown(echo(&key)));
                continue;
            };
            let param = &PARAMS[index];
            if std::mem::replace(&mut seen[index], true) {
                problems.push(QueryProblem::Repeated(param.label));
                continue;
            }
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            if let Err(expected) = query.set(param.name, value) {
                problems.push(QueryProblem::Invalid {
                    label: param.label,
                    value: echo(value),
                    expected,
                });
            }
        }
        if let (Some(low), Some(high)) = (query.min_price, query.max_price)
            && low > high
        {
            query.min_price = None;
            query.max_price = None;
            problems.push(QueryProblem::PriceRange);
        }
        (query, problems)
    }

    /// Sets the field behind parameter `name` from `value`, or says what
    /// was expected.
    fn set(&mut self, name: &str, value: &str) -> Result<(), &'static str> {
        let too_long = value.chars().count() > MAX_VALUE_LEN;
        let price = || {
            parse_price(value)
                .ok()
                .filter(|_| !too_long)
                .ok_or("a price per hour like 0.50 or 2")
        };
        let gib = |what| {
            parse_decimal(value, 2, GIB, MAX_GIB)
                .filter(|_| !too_long)
                .ok_or(what)
        };
        match name {
            "min_price" => self.min_price = Some(price()?),
            "max_price" => self.max_price = Some(price()?),
            "min_cores" => {
                self.min_millicores = Some(
                    parse_decimal(value, 2, 1000, MAX_CORES)
                        .ok_or("a number of cores like 2 or 0.5")?,
                );
            }
            "min_memory" => self.min_memory_bytes = Some(gib("a size in GiB like 4 or 0.5")?),
            "min_disk" => self.min_disk_bytes = Some(gib("a size in GiB like 32 or 0.5")?),
            "arch" => {
                let ok = value.len() <= MAX_ARCH_LEN
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !ok {
                    return Err("an architecture like x86_64 or aarch64");
                }
                if value != "any" {
                    self.arch = Some(value.to_string());
                }
            }
            "min_uptime" => {
                let permille = parse_decimal(value, 1, 10, 100)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p <= 1000)
                    .ok_or("a percentage from 0 to 100, like 99.5")?;
                self.min_uptime_permille = Some(permille);
            }
            "verified" => self.verified_only = parse_flag(value).ok_or("on or off")?,
            "available" => self.available_only = parse_flag(value).ok_or("on or off")?,
            "broker" => {
                crate::federation::settings::check_name(value)
                    .map_err(|_| "a broker's name like broker-b.example")?;
                self.broker = Some(value.to_string());
            }
            "sort" => {
                self.sort =
                    SortKey::parse(value).ok_or("name, price, cores, memory, disk or uptime")?;
            }
            "order" => {
                self.order = match value {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => return Err("asc or desc"),
                };
            }
            "page" => {
                self.page = value
                    .parse::<u32>()
                    .ok()
                    .filter(|p| (1..=MAX_PAGE).contains(p) && value.len() <= 6)
                    .ok_or("a page number from 1")?;
            }
            _ => unreachable!("every parameter in PARAMS is handled"),
        }
        Ok(())
    }

    /// Whether any filter is set (sort order and page aside).
    pub fn filters(&self) -> bool {
        let plain = Self {
            sort: self.sort,
            order: self.order,
            page: self.page,
            ..Self::default()
        };
        *self != plain
    }

    /// The same query on another page, as a query string (without the
    /// `?`); parameters at their default are left out.
    pub fn query_string(&self, page: u32) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        let gib = |b: u64| show_decimal(b, GIB);
        for (key, value) in [
            ("min_price", self.min_price.map(show_price)),
            ("max_price", self.max_price.map(show_price)),
            (
                "min_cores",
                self.min_millicores.map(|m| show_decimal(m, 1000)),
            ),
            ("min_memory", self.min_memory_bytes.map(gib)),
            ("min_disk", self.min_disk_bytes.map(gib)),
            ("arch", self.arch.clone()),
            (
                "min_uptime",
                self.min_uptime_permille
                    .map(|p| show_decimal(u64::from(p), 10)),
            ),
            ("verified", self.verified_only.then(|| "on".into())),
            ("available", self.available_only.then(|| "on".into())),
            ("broker", self.broker.clone()),
            (
                "sort",
                (self.sort != SortKey::default()).then(|| self.sort.as_str().into()),
            ),
            (
                "order",
                (self.order != Order::default()).then(|| self.order.as_str().into()),
            ),
            ("page", (page > 1).then(|| page.to_string())),
        ] {
            if let Some(value) = value {
                out.append_pair(key, &value);
            }
        }
        out.finish()
    }

    /// The form fields' values for this query, as people type them.
    pub fn field(&self, name: &str) -> String {
        let gib = |b: u64| show_decimal(b, GIB);
        match name {
            "min_price" => self.min_price.map(show_price),
            "max_price" => self.max_price.map(show_price),
            "min_cores" => self.min_millicores.map(|m| show_decimal(m, 1000)),
            "min_memory" => self.min_memory_bytes.map(gib),
            "min_disk" => self.min_disk_bytes.map(gib),
            "min_uptime" => self
                .min_uptime_permille
                .map(|p| show_decimal(u64::from(p), 10)),
            _ => None,
        }
        .unwrap_or_default()
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> (MarketQuery, Vec<QueryProblem>) {
        MarketQuery::parse(Some(raw))
    }

    #[test]
    fn an_empty_query_is_the_default() {
        assert_eq!(MarketQuery::parse(None), (MarketQuery::default(), vec![]));
        assert_eq!(parse(""), (MarketQuery::default(), vec![]));
        // An empty form field means "no filter".
        let (q, problems) = parse("min_price=&max_price=&arch=any&min_cores=+");
        assert_eq!((q, problems), (MarketQuery::default(), vec![]));
    }

    #[test]
    fn reads_every_filter_in_the_units_the_listing_compares() {
        let (q, problems) = parse(
            "min_price=0.5&max_price=2&min_cores=1.5&min_memory=0.5&min_disk=32&arch=aarch64\
             &min_uptime=99.5&verified=on&available=on&broker=broker-b.example&sort=memory\
             &order=desc&page=3",
        );
        assert_eq!(problems, vec![]);
        assert_eq!(
            q,
            MarketQuery {
                min_price: Some(50),
                max_price: Some(200),
                min_millicores: Some(1500),
                min_memory_bytes: Some(512 << 20),
                min_disk_bytes: Some(32 << 30),
                arch: Some("aarch64".into()),
                min_uptime_permille: Some(995),
                verified_only: true,
                available_only: true,
                broker: Some("broker-b.example".into()),
                sort: SortKey::Memory,
                order: Order::Desc,
                page: 3,
            }
        );
        assert!(q.filters());
    }

    #[test]
    fn the_query_string_round_trips() {
        let raw = "min_price=0.50&max_price=2.00&min_cores=1.5&min_memory=0.33&min_disk=32\
                   &arch=aarch64&min_uptime=99.5&verified=on&available=on&broker=beta&sort=memory\
                   &order=desc&page=3";
        let (q, _) = parse(raw);
        let again = q.query_string(q.page);
        assert_eq!(parse(&again).0, q, "{again}");
        assert_eq!(q.field("min_memory"), "0.33");
        assert_eq!(q.field("min_cores"), "1.5");
        assert_eq!(q.field("min_uptime"), "99.5");
        assert_eq!(MarketQuery::default().query_string(1), "");
        let sorted = parse("sort=price&page=2").0;
        assert_eq!(sorted.query_string(1), "sort=price");
        assert!(!sorted.filters());
    }

    #[test]
    fn bad_values_are_reported_and_left_out() {
        let (q, problems) = parse(
            "min_price=cheap&min_cores=-1&min_memory=1e3&min_disk=1.234&arch=X86&min_uptime=101\
             &verified=maybe&broker=Beta!&sort=colour&order=up&page=0&max_price=3",
        );
        assert_eq!(
            q,
            MarketQuery {
                max_price: Some(300),
                ..MarketQuery::default()
            }
        );
        let labels: Vec<&str> = problems
            .iter()
            .map(|p| match p {
                QueryProblem::Invalid { label, .. } => *label,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            labels,
            [
                "The lowest price",
                "The minimum of cores",
                "The minimum of memory",
                "The minimum of disk",
                "The architecture",
                "The minimum uptime",
                "Verified only",
                "The broker",
                "The sort order",
                "The direction",
                "The page",
            ]
        );
        assert_eq!(
            problems[0].to_string(),
            "The lowest price \u{201c}cheap\u{201d} was ignored: a price per hour like 0.50 or 2."
        );
    }

    #[test]
    fn unknown_repeated_and_contradictory_parameters_are_reported() {
        let (q, problems) = parse("colour=red&sort=price&sort=cores&min_price=5&max_price=1");
        assert_eq!(q.sort, SortKey::Price, "the first value counts");
        assert_eq!((q.min_price, q.max_price), (None, None));
        assert_eq!(
            problems,
            vec![
                QueryProblem::Unknown("colour".into()),
                QueryProblem::Repeated("The sort order"),
                QueryProblem::PriceRange,
            ]
        );
    }

    #[test]
    fn sizes_are_bounded() {
        let long = "x".repeat(MAX_QUERY_LEN + 1);
        assert_eq!(
            parse(&format!("arch={long}")),
            (MarketQuery::default(), vec![QueryProblem::TooLong])
        );
        let many = vec!["a=1"; MAX_PARAMS + 5].join("&");
        let (_, problems) = parse(&many);
        assert_eq!(problems.len(), MAX_PARAMS + 1);
        assert_eq!(problems.last(), Some(&QueryProblem::TooMany));
        let echoed = parse(&format!("{}=1", "k".repeat(100))).1;
        let QueryProblem::Unknown(name) = &echoed[0] else {
            panic!("{echoed:?}")
        };
        assert_eq!(
            name.chars().count(),
            MAX_VALUE_LEN + 1,
            "cut, with an ellipsis"
        );
        for huge in [
            "min_cores=99999999999",
            "min_memory=999999999",
            "page=100001",
            "page=99999999999999999999",
        ] {
            let (q, problems) = parse(huge);
            assert_eq!(q, MarketQuery::default(), "{huge}");
            assert_eq!(problems.len(), 1, "{huge}");
        }
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("2", 2, 1000, 10), Some(2000));
        assert_eq!(parse_decimal("0.25", 2, 1000, 10), Some(250));
        assert_eq!(parse_decimal("0.5", 1, 10, 100), Some(5));
        assert_eq!(parse_decimal("100", 1, 10, 100), Some(1000));
        for bad in ["", ".5", "1.", "1.234", "+1", "1,5", "11", "0x1"] {
            assert_eq!(parse_decimal(bad, 2, 1000, 10), None, "{bad:?}");
        }
        assert_eq!(show_decimal(1500, 1000), "1.5");
        assert_eq!(show_decimal(2000, 1000), "2");
        assert_eq!(show_decimal(354_334_801, GIB), "0.33");
    }
}
