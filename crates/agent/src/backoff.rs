//! Exponential backoff with jitter, so a broker restart is not met by every
//! device reconnecting in the same instant.

use std::time::Duration;

use rand::RngExt;

/// Delays start at `initial`, double on each failure up to `max`, and each
/// is spread uniformly over [50%, 100%] of its nominal value.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.current;
        self.current = (self.current * 2).min(self.max);
        nominal.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Back to the initial delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        for (d, nominal) in delays.iter().zip([1, 2, 4, 8, 8, 8]) {
            let nominal = Duration::from_secs(nominal);
            assert!(*d >= nominal / 2 && *d <= nominal, "{d:?} vs {nominal:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
