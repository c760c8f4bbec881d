//! [`TrafficCounters`]: the six traffic counters every plugin keeps, counted from any task without
//! a lock, and read as a [`TransportCounters`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::TransportCounters;

/// The traffic counters a plugin reports through [`Transport::counters`](crate::Transport::counters),
/// kept as atomics so the plugin's tasks can count from any thread. Each method is named for the
/// moment to call it; [`snapshot`](Self::snapshot) reads them all.
///
/// Counts use relaxed ordering: a snapshot taken while other threads count may see a packet before
/// its bytes; once counting stops, it sees every count.
#[derive(Debug, Default)]
pub struct TrafficCounters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    send_errors: AtomicU64,
    dropped_in: AtomicU64,
}

impl TrafficCounters {
    /// All counters at zero.
    pub const fn new() -> Self {
        TrafficCounters {
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            dropped_in: AtomicU64::new(0),
        }
    }

    /// Call when a packet or frame of `bytes` bytes has arrived: one more in `packets_in`, `bytes`
    /// more in `bytes_in`.
    pub fn received(&self, bytes: usize) {
        add(&self.packets_in, 1);
        add(&self.bytes_in, bytes as u64);
    }

    /// Call when a packet or frame of `bytes` bytes has been sent (or handed to the queue that
    /// sends it): one more in `packets_out`, `bytes` more in `bytes_out`.
    pub fn sent(&self, bytes: usize) {
        add(&self.packets_out, 1);
        add(&self.bytes_out, bytes as u64);
    }

    /// Call when a send fails: one more in `send_errors`.
    pub fn send_failed(&self) {
        add(&self.send_errors, 1);
    }

    /// Call when the plugin itself drops incoming data (oversized, malformed, a full queue): one
    /// more in `dropped_in`.
    pub fn dropped_in(&self) {
        add(&self.dropped_in, 1);
    }

    /// The counts so far. Call whenever the figures are wanted (the plugin's
    /// [`Transport::counters`](crate::Transport::counters)).
    pub fn snapshot(&self) -> TransportCounters {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportCounters {
            packets_in: load(&self.packets_in),
            bytes_in: load(&self.bytes_in),
            packets_out: load(&self.packets_out),
            bytes_out: load(&self.bytes_out),
            send_errors: load(&self.send_errors),
            dropped_in: load(&self.dropped_in),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_counters_report_zero() {
        assert_eq!(TrafficCounters::new().snapshot(), TransportCounters::default());
        assert_eq!(TrafficCounters::default().snapshot(), TransportCounters::default());
    }

    #[test]
    fn counters_report_what_was_counted_from_every_thread() {
        const THREADS: u64 = 4;
        let c = TrafficCounters::new();
        // Each method is called a different number of times with different sizes, so every field
        // ends at a different figure: a method counting into the wrong field shows.
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    c.received(7);
                    for _ in 0..2 {
                        c.sent(11);
                    }
                    for _ in 0..3 {
                        c.send_failed();
                    }
                    for _ in 0..5 {
                        c.dropped_in();
                    }
                });
            }
        });
        let expected = TransportCounters {
            packets_in: THREADS,
            bytes_in: 7 * THREADS,
            packets_out: 2 * THREADS,
            bytes_out: 2 * 11 * THREADS,
            send_errors: 3 * THREADS,
            dropped_in: 5 * THREADS,
        };
        assert_eq!(c.snapshot(), expected);
    }
}
