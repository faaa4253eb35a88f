//! The arithmetic of billing, in whole minor units: how long a device was
//! reachable in a period (connected, and its sandbox not unhealthy), what that costs at the agreed rate, and how a
//! charge splits between the owner and the broker's fee. Every division
//! rounds down, in the renter's favour.

/// Seconds of `[from, to)` covered by `stretches` (each `[since, until)`;
/// they do not overlap).
pub fn covered(stretches: &[(i64, i64)], from: i64, to: i64) -> i64 {
    stretches
        .iter()
        .map(|&(since, until)| (until.min(to) - since.max(from)).max(0))
        .sum()
}

/// `stretches` sorted, with overlapping or touching ones merged.
fn merged(stretches: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut sorted: Vec<(i64, i64)> = stretches.iter().copied().filter(|s| s.1 > s.0).collect();
    sorted.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(sorted.len());
    for (since, until) in sorted {
        match out.last_mut() {
            Some(last) if since <= last.1 => last.1 = last.1.max(until),
            _ => out.push((since, until)),
        }
    }
    out
}

/// Seconds of `[from, to)` the device was reachable: covered by its
/// `connected` stretches and not by its sandbox's `unhealthy` ones.
pub fn reachable(connected: &[(i64, i64)], unhealthy: &[(i64, i64)], from: i64, to: i64) -> i64 {
    let connected = merged(connected);
    let unhealthy = merged(unhealthy);
    let down: i64 = connected
        .iter()
        .flat_map(|&(cs, cu)| {
            unhealthy
                .iter()
                .map(move |&(us, uu)| (cs.max(us), cu.min(uu)))
        })
        .map(|(since, until)| (until.min(to) - since.max(from)).max(0))
        .sum();
    covered(&connected, from, to) - down
}

/// What `reachable` seconds of a period of `period` seconds cost at `rate`
/// per period.
pub fn charge(rate: i64, reachable: i64, period: i64) -> i64 {
    if period <= 0 {
        return 0;
    }
    let reachable = reachable.clamp(0, period);
    (i128::from(rate) * i128::from(reachable) / i128::from(period)) as i64
}

/// `(owner's part, broker's fee)` of `charge` at `fee_percent`.
pub fn split(charge: i64, fee_percent: u8) -> (i64, i64) {
    let fee = (i128::from(charge) * i128::from(fee_percent.min(100)) / 100) as i64;
    (charge - fee, fee)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_minutes_are_charged_and_split_rounding_down() {
        let stretches = [(0, 600), (1800, 4000)];
        assert_eq!(covered(&stretches, 0, 3600), 600 + 1800);
        assert_eq!(covered(&stretches, 3600, 7200), 400);
        assert_eq!(covered(&[], 0, 3600), 0);
        // Down for 20 minutes of the hour: 40 minutes are charged.
        assert_eq!(charge(600, 2400, 3600), 400);
        assert_eq!(charge(100, 1, 3600), 0, "rounds down");
        assert_eq!(charge(100, 9999, 3600), 100, "never more than the rate");
        assert_eq!(split(400, 10), (360, 40));
        assert_eq!(split(9, 10), (9, 0));
        assert_eq!(split(100, 200), (0, 100), "the fee is at most everything");
        // Connected all hour, the sandbox down 20 minutes of it (and
        // again after the hour): 40 minutes are reachable.
        let all = [(0, 3600)];
        assert_eq!(reachable(&all, &[(600, 1800), (4000, 5000)], 0, 3600), 2400);
        // Down while disconnected counts once; overlapping reports merge.
        let gappy = [(0, 1000), (2000, 3600)];
        assert_eq!(
            reachable(&gappy, &[(500, 2500), (900, 1200)], 0, 3600),
            500 + 1100
        );
        assert_eq!(reachable(&gappy, &[], 0, 3600), covered(&gappy, 0, 3600));
        assert_eq!(reachable(&[(0, 10), (5, 20)], &[], 0, 100), 20, "merged");
        assert_eq!(reachable(&all, &[(-50, 9000)], 0, 3600), 0);
        assert_eq!(
            charge(i64::MAX / 2, 3600, 3600),
            i64::MAX / 2,
            "no overflow"
        );
    }
}
