//! The accept loop's answer to accept errors: wait and try again, never stop.
//!
//! An accept fails when the process is out of file descriptors (EMFILE, ENFILE), the kernel is
//! short of memory (ENOBUFS, ENOMEM), or a connection was aborted in the queue. None of these is a
//! reason to stop serving: the listener is still good, and descriptors come back as connections
//! close. So each error is counted, the wait before the next try doubles from
//! [`Backoff::FIRST`] to [`Backoff::MAX`] (a failing accept returns at once, so retrying without a
//! pause would spin), and it resets at the next success. Logging follows the streak, not every
//! error: a warning at its first error, one every [`LOG_EVERY`] while it lasts, and a note when
//! accepting works again.

use std::time::Duration;

use tokio::time::Instant;

/// While accept errors continue, a warning at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// The pause before the next accept after errors.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    streak: u64,
    last_log: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Backoff::FIRST, streak: 0, last_log: None }
    }
}

impl Backoff {
    /// The pause after the first error of a streak.
    pub const FIRST: Duration = Duration::from_millis(5);
    /// The longest pause.
    pub const MAX: Duration = Duration::from_millis(500);

    /// Records an accept error; the pause before the next try and whether to log this one.
    pub fn failed(&mut self, now: Instant) -> (Duration, bool) {
        let pause = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        self.streak += 1;
        let log = match self.last_log {
            None => true,
            Some(at) => now.duration_since(at) >= LOG_EVERY,
        };
        if log {
            self.last_log = Some(now);
        }
        (pause, log)
    }

    /// Records a successful accept; the length of the error streak it ended (0 if none).
    pub fn succeeded(&mut self) -> u64 {
        let streak = self.streak;
        *self = Backoff::default();
        streak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_maximum_and_reset_on_success() {
        let mut b = Backoff::default();
        let now = Instant::now();
        let pauses: Vec<Duration> = (0..10).map(|_| b.failed(now).0).collect();
        assert_eq!(pauses[0], Backoff::FIRST);
        assert_eq!(pauses[1], Backoff::FIRST * 2);
        assert_eq!(*pauses.last().unwrap(), Backoff::MAX);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(b.succeeded(), 10);
        assert_eq!(b.failed(now).0, Backoff::FIRST);
    }

    #[test]
    fn a_streak_of_errors_is_logged_at_its_start_and_then_at_most_every_log_period() {
        let mut b = Backoff::default();
        let start = Instant::now();
        assert!(b.failed(start).1, "the first error is logged");
        assert!(!b.failed(start + Duration::from_millis(10)).1);
        assert!(!b.failed(start + LOG_EVERY - Duration::from_millis(1)).1);
        assert!(b.failed(start + LOG_EVERY).1);
        b.succeeded();
        assert!(b.failed(start + LOG_EVERY + Duration::from_millis(1)).1, "a new streak is logged at once");
    }
}
