//! State shared by the transport handle and its background tasks: options, counters, the close
//! signal, the inbox of received frames, the memory budget for frames waiting for `recv`, and the
//! count of inbound connections per source address that the caps are checked against.
//!
//! Every task (the accept loop, one reader per connection, spawned connects) holds an
//! `Arc<Shared>` and stops when [`Closing::wait`] completes, so [`Closing::close`] is the single
//! switch that ends them all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shoal_transport::{Addr, TrafficCounters, TransportCounters};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::socket::SendQueue;
use crate::TcpOptions;

/// Frames waiting for `recv`: past this, readers wait (then drop) instead of queueing more.
pub(crate) const INBOX_CAPACITY: usize = 1_024;

/// Bytes of received frames that may wait for `recv` at once (or `max_frame`, if larger).
pub(crate) const MEMORY_BUDGET: usize = 64 << 20;

/// A frame read from a connection, waiting for [`Transport::recv`](shoal_transport::Transport::recv).
#[derive(Debug)]
pub(crate) struct Inbound {
    pub from: Addr,
    pub bytes: Vec<u8>,
    /// Its share of [`Shared::budget`], returned when `recv` takes the frame.
    pub _permit: OwnedSemaphorePermit,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub options: TcpOptions,
    /// The address sent in our handshakes (options.advertise or `tcp://<bound addr>`).
    pub advertise: Addr,
    pub counters: Counters,
    pub closing: Closing,
    pub inbox: mpsc::Sender<Inbound>,
    pub budget: Arc<Semaphore>,
    /// Inbound connections open now per source address (canonical form: an IPv4-mapped IPv6
    /// address counts as the IPv4 one). Entries go when their count drops to zero.
    inbound_per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Shared {
    pub fn new(options: TcpOptions, advertise: Addr, inbox: mpsc::Sender<Inbound>) -> Shared {
        let budget = MEMORY_BUDGET.max(options.frame_limit()).min(Semaphore::MAX_PERMITS);
        Shared {
            options,
            advertise,
            counters: Counters::default(),
            closing: Closing::default(),
            inbox,
            budget: Arc::new(Semaphore::new(budget)),
            inbound_per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Admits an inbound connection from `ip` under [`TcpOptions::max_inbound`] and
    /// [`TcpOptions::max_inbound_per_ip`], or says which cap refuses it. Call for every accepted
    /// connection before serving it; the slot is given back when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<InboundSlot, &'static str> {
        let ip = ip.to_canonical();
        let mut per_ip = self.inbound_per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if load(&self.counters.inbound_open) >= self.options.max_inbound as u64 {
            return Err("max_inbound reached");
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.options.max_inbound_per_ip {
            return Err("max_inbound_per_ip reached");
        }
        *n += 1;
        add(&self.counters.inbound_open, 1);
        Ok(InboundSlot { shared: self.clone(), ip })
    }
}

/// An admitted inbound connection's place under the caps, given back when dropped.
#[derive(Debug)]
pub(crate) struct InboundSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for InboundSlot {
    fn drop(&mut self) {
        let mut per_ip = self.shared.inbound_per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        sub(&self.shared.counters.inbound_open, 1);
    }
}

/// Traffic counters ([`TransportCounters`]) plus connection counts ([`ConnectionStats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub traffic: TrafficCounters,
    pub accepted: AtomicU64,
    pub dialled: AtomicU64,
    pub inbound_open: AtomicU64,
    pub outbound_open: AtomicU64,
    pub refused: AtomicU64,
    pub idle_closed: AtomicU64,
    pub timed_out: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

pub(crate) fn sub(counter: &AtomicU64, n: usize) {
    counter.fetch_sub(n as u64, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    pub fn traffic(&self) -> TransportCounters {
        self.traffic.snapshot()
    }

    pub fn connections(&self) -> ConnectionStats {
        ConnectionStats {
            accepted: load(&self.accepted),
            dialled: load(&self.dialled),
            inbound_open: load(&self.inbound_open),
            outbound_open: load(&self.outbound_open),
            refused: load(&self.refused),
            idle_closed: load(&self.idle_closed),
            timed_out: load(&self.timed_out),
        }
    }
}

/// Connection counts of a [`TcpTransport`](crate::TcpTransport), for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Inbound connections accepted since bind (including ones later rejected at the handshake,
    /// not those refused at a cap).
    pub accepted: u64,
    /// Outbound connections opened since bind (one per peer while it stays up).
    pub dialled: u64,
    /// Inbound connections open now.
    pub inbound_open: u64,
    /// Outbound connections open now.
    pub outbound_open: u64,
    /// Inbound connections refused at once because [`TcpOptions::max_inbound`] or
    /// [`TcpOptions::max_inbound_per_ip`] was reached (also counted in `dropped_in`).
    ///
    /// [`TcpOptions::max_inbound`]: crate::TcpOptions::max_inbound
    /// [`TcpOptions::max_inbound_per_ip`]: crate::TcpOptions::max_inbound_per_ip
    pub refused: u64,
    /// Connections, either way, closed because the peer made no progress for
    /// [`TcpOptions::idle_timeout`](crate::TcpOptions::idle_timeout).
    pub idle_closed: u64,
    /// Connections the system failed because the peer acknowledged nothing, neither data nor
    /// keepalive probes, for [`TcpOptions::ack_timeout`](crate::TcpOptions::ack_timeout).
    pub timed_out: u64,
}

/// The close signal: a flag plus a wake-up for everyone waiting on it.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    closed: AtomicBool,
    notify: Notify,
}

impl Closing {
    /// Flips the switch and wakes every waiter. Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Completes once [`Closing::close`] has been called (at once if it already was).
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking the flag, so a close in between cannot be missed.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// Progress on one connection, for closing idle and dead ones. The connection's reader asks
/// [`Activity::idle_at`] when to give up; readers and writers report what they did.
///
/// Progress is a non-empty frame read ([`Activity::frame_read`]), or bytes we wrote that the peer
/// has since acknowledged. A write alone ([`Activity::wrote`]) is not progress: into a black hole,
/// writes keep succeeding until the kernel's send buffer is full. Acknowledgements are read from
/// the socket's [`SendQueue`] only when the idle deadline comes, so a busy connection costs one
/// system call per `idle_timeout`. Where the send queue cannot be read, a write counts as
/// progress (the best left to go on); `TCP_USER_TIMEOUT` does not exist there either.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Last progress, in milliseconds since `epoch`.
    progress_ms: AtomicU64,
    /// Bytes handed to the kernel so far, and when the last of them were.
    written: AtomicU64,
    written_ms: AtomicU64,
    /// Bytes the peer had acknowledged when we last looked (`written` minus the send queue).
    acked: AtomicU64,
}

impl Activity {
    /// Starts the idle clock: a new connection has until `now + idle_timeout` to make progress.
    pub fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            progress_ms: AtomicU64::new(0),
            written: AtomicU64::new(0),
            written_ms: AtomicU64::new(0),
            acked: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis().min(u128::from(u64::MAX)) as u64
    }

    /// Call when a non-empty frame has arrived whole. Zero-length frames are not progress.
    pub fn frame_read(&self) {
        self.progress_ms.fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    /// Call after every complete write of `n` bytes into the connection.
    pub fn wrote(&self, n: usize) {
        let now = self.now_ms();
        self.written_ms.store(now, Ordering::Relaxed);
        // Release: whoever sees the new total also sees the time above.
        self.written.fetch_add(n as u64, Ordering::Release);
        if !SendQueue::SUPPORTED {
            self.progress_ms.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// When the connection becomes idle unless the peer makes progress before. Once that moment
    /// has come, first counts the acknowledgements that arrived since the last look (from
    /// `queue`, the connection's send queue) and answers with the deadline they push back.
    pub fn idle_at(&self, idle: Duration, queue: &SendQueue) -> Instant {
        let at = self.deadline(idle);
        if at > Instant::now() || !self.saw_acks(queue) {
            return at;
        }
        self.deadline(idle)
    }

    fn deadline(&self, idle: Duration) -> Instant {
        let last = Duration::from_millis(self.progress_ms.load(Ordering::Relaxed));
        // A huge idle_timeout means "never": saturate instead of overflowing the clock.
        match self.epoch.checked_add(last).and_then(|t| t.checked_add(idle)) {
            Some(t) => t,
            None => crate::frame::deadline_after(idle),
        }
    }

    /// True when the peer acknowledged bytes since the last look; records that progress. Only
    /// the connection's reader calls this.
    fn saw_acks(&self, queue: &SendQueue) -> bool {
        // Read the total before the queue: a write landing in between makes the acknowledged
        // count look smaller, never larger, so progress is never invented.
        let written = self.written.load(Ordering::Acquire);
        let written_ms = self.written_ms.load(Ordering::Relaxed);
        let Some(unacked) = queue.unacknowledged() else {
            return false;
        };
        let acked = written.saturating_sub(unacked);
        if acked <= self.acked.load(Ordering::Relaxed) {
            return false;
        }
        self.acked.store(acked, Ordering::Relaxed);
        // All acknowledged: the last write was the last use (its bytes were acknowledged soon
        // after, at least on a healthy link). Some still in flight: acknowledgements are arriving
        // now.
        let at = if unacked == 0 { written_ms } else { self.now_ms() };
        self.progress_ms.fetch_max(at, Ordering::Relaxed);
        true
    }
}
