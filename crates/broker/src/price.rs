//! Hourly prices as people write them (`0.50`, `2`) and as the broker keeps
//! them: whole minor units of its currency (cents), never floats.

/// Parses a price like `1.25` or `2` into minor units (cents), exactly.
pub fn parse_price(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let frac_ok = frac.is_none_or(|f| digits(f) && f.len() <= 2);
    if !digits(whole) || !frac_ok || whole.len() > 6 {
        return Err(format!(
            "{text:?} is not a price per hour like 0.50 or 2 (at most two decimals)"
        ));
    }
    let whole: i64 = whole.parse().map_err(|_| "price too large".to_string())?;
    let cents: i64 = format!("{:0<2}", frac.unwrap_or("")).parse().unwrap_or(0);
    Ok(whole * 100 + cents)
}

/// An amount in minor units, as people write it (`-0.50` below zero).
pub fn show_price(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    #[test]
    fn prices_parse_exactly() {
        assert_eq!(super::parse_price("1.25"), Ok(125));
        assert_eq!(super::parse_price("2"), Ok(200));
        assert_eq!(super::parse_price("0.5"), Ok(50));
        assert_eq!(super::parse_price(" 10.05 "), Ok(1005));
        for bad in ["", "-1", "1.234", "1e3", "abc", "1.", ".5", "9999999"] {
            assert!(super::parse_price(bad).is_err(), "{bad:?}");
        }
        assert_eq!(super::show_price(1005), "10.05");
        assert_eq!(super::show_price(-50), "-0.50");
        assert_eq!(super::show_price(-1005), "-10.05");
        assert_eq!(super::show_price(i64::MIN), "-92233720368547758.08");
    }
}
