//! Time as the core sees it: an opaque millisecond counter handed in by the driver.
//!
//! The core never reads a clock. Every input (`handle_packet`, `handle_timeout`, commands) carries the
//! driver's `now`, and every deadline the core hands back is an [`Instant`] on the same scale. Drivers
//! usually count milliseconds since they started (`std::time::Instant`, `performance.now()`); the
//! simulator counts virtual milliseconds. Only differences matter, so any epoch works as long as it
//! never goes backwards. A clock that does go backwards is tolerated: elapsed times saturate at zero.

use core::ops::{Add, AddAssign};
use core::time::Duration;

/// A point in time, in milliseconds since an epoch the driver picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(0);

    /// Builds an instant from milliseconds since the driver's epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    /// Milliseconds since the driver's epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`; zero when `earlier` is later (a clock that stepped back).
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_millis(rhs)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

/// Whole milliseconds of a duration, saturating instead of overflowing. For drivers and tools
/// that keep time in milliseconds (the simulator's network model, for one).
pub fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Multiplies a duration by a float factor, rounding to whole milliseconds and never going below 1 ms.
pub(crate) fn scale(d: Duration, factor: f64) -> Duration {
    let ms = libm::round(duration_millis(d) as f64 * factor);
    let ms = if ms.is_finite() && ms >= 1.0 { ms as u64 } else { 1 };
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_duration_moves_forward_in_whole_milliseconds() {
        assert_eq!(Instant::from_millis(10) + Duration::from_micros(2_500), Instant::from_millis(12));
    }

    #[test]
    fn elapsed_time_saturates_when_the_clock_steps_back() {
        let early = Instant::from_millis(5);
        let late = Instant::from_millis(9);
        assert_eq!(early.saturating_duration_since(late), Duration::ZERO);
        assert_eq!(late.saturating_duration_since(early), Duration::from_millis(4));
    }

    #[test]
    fn adding_never_overflows() {
        assert_eq!(Instant::from_millis(u64::MAX) + Duration::from_secs(1), Instant::from_millis(u64::MAX));
    }

    #[test]
    fn scaling_rounds_and_keeps_at_least_one_millisecond() {
        assert_eq!(scale(Duration::from_millis(10), 1.26), Duration::from_millis(13));
        assert_eq!(scale(Duration::from_millis(10), 0.0), Duration::from_millis(1));
        assert_eq!(scale(Duration::from_millis(10), f64::NAN), Duration::from_millis(1));
    }
}
