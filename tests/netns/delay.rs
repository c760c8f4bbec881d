//! A userspace delay line between two interfaces of one namespace (the kernel here has no
//! `sch_netem`): every Ethernet frame that arrives on one side leaves on the other after a delay
//! drawn uniformly from a range, independently per frame (so frames may overtake each other, as on
//! a path with that much jitter). Frames are never dropped on purpose.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::sys::{in_netns, PacketSocket, VNET_HDR_LEN};

/// Room for a TSO-coalesced TCP segment (64 KiB) with its headers.
const FRAME_BUFFER: usize = 256 << 10;

struct Pending {
    due: Instant,
    seq: u64,
    to: usize,
    frame: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed, so the max-heap pops the earliest due frame first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    queue: Mutex<BinaryHeap<Pending>>,
    wake: Condvar,
    forwarded: [AtomicU64; 2],
    errors: AtomicU64,
    seq: AtomicU64,
}

/// Frames forwarded so far, per direction (`[a→b, b→a]`), and frames lost to errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayStats {
    pub forwarded: [u64; 2],
    pub errors: u64,
}

/// A running delay line; stops (and closes its sockets) when dropped.
pub struct DelayLine {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayLine {
    /// Forwards frames between interfaces `a` and `b` of the namespace `ns`, both ways, each after
    /// a delay drawn from `delay`.
    pub fn start(ns: &File, a: &str, b: &str, delay: RangeInclusive<Duration>, seed: u64) -> io::Result<DelayLine> {
        let (sa, sb) = in_netns(ns, || -> io::Result<_> { Ok((PacketSocket::bind(a)?, PacketSocket::bind(b)?)) })??;
        let sockets = Arc::new([sa, sb]);
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for from in 0..2 {
            let (sockets, shared, delay) = (sockets.clone(), shared.clone(), delay.clone());
            let mut rng = SmallRng::seed_from_u64(seed ^ (from as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; FRAME_BUFFER];
                while !shared.stop.load(Ordering::Relaxed) {
                    let n = match sockets[from].recv(&mut buf) {
                        Ok(Some(n)) if n > VNET_HDR_LEN => n,
                        Ok(_) => continue,
                        Err(_) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let ms = rng.random_range(delay.start().as_millis() as u64..=delay.end().as_millis() as u64);
                    let pending = Pending {
                        due: Instant::now() + Duration::from_millis(ms),
                        seq: shared.seq.fetch_add(1, Ordering::Relaxed),
                        to: 1 - from,
                        frame: buf[..n].to_vec(),
                    };
                    shared.queue.lock().unwrap_or_else(PoisonError::into_inner).push(pending);
                    shared.wake.notify_one();
                }
            }));
        }
        let (sockets, sender) = (sockets.clone(), shared.clone());
        threads.push(std::thread::spawn(move || {
            let mut queue = sender.queue.lock().unwrap_or_else(PoisonError::into_inner);
            while !sender.stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let wait = match queue.peek() {
                    Some(p) if p.due <= now => {
                        let p = queue.pop().expect("peeked");
                        drop(queue);
                        match sockets[p.to].send(&p.frame) {
                            Ok(()) => sender.forwarded[1 - p.to].fetch_add(1, Ordering::Relaxed),
                            Err(_) => sender.errors.fetch_add(1, Ordering::Relaxed),
                        };
                        queue = sender.queue.lock().unwrap_or_else(PoisonError::into_inner);
                        continue;
                    }
                    Some(p) => (p.due - now).min(Duration::from_millis(100)),
                    None => Duration::from_millis(100),
                };
                queue = sender.wake.wait_timeout(queue, wait).unwrap_or_else(PoisonError::into_inner).0;
            }
        }));
        Ok(DelayLine { shared, threads })
    }

    pub fn stats(&self) -> DelayStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DelayStats {
            forwarded: [load(&self.shared.forwarded[0]), load(&self.shared.forwarded[1])],
            errors: load(&self.shared.errors),
        }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
