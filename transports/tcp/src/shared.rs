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

use shoal_core::driver::{Addr, TransportCounters};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::TcpOptions;

/// Frames waiting for `recv`: past this, readers wait (then drop) instead of queueing more.
pub(crate) const INBOX_CAPACITY: usize = 1_024;

/// Bytes of received frames that may wait for `recv` at once (or `max_frame`, if larger).
pub(crate) const MEMORY_BUDGET: usize = 64 << 20;

/// A frame read from a connection, waiting for [`Transport::recv`](shoal_core::driver::Transport::recv).
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
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub send_errors: AtomicU64,
    pub dropped_in: AtomicU64,
    pub accepted: AtomicU64,
    pub dialled: AtomicU64,
    pub inbound_open: AtomicU64,
    pub outbound_open: AtomicU64,
    pub refused: AtomicU64,
    pub idle_closed: AtomicU64,
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
        TransportCounters {
            packets_in: load(&self.packets_in),
            bytes_in: load(&self.bytes_in),
            packets_out: load(&self.packets_out),
            bytes_out: load(&self.bytes_out),
            send_errors: load(&self.send_errors),
            dropped_in: load(&self.dropped_in),
        }
    }

    pub fn connections(&self) -> ConnectionStats {
        ConnectionStats {
            accepted: load(&self.accepted),
            dialled: load(&self.dialled),
            inbound_open: load(&self.inbound_open),
            outbound_open: load(&self.outbound_open),
            refused: load(&self.refused),
            idle_closed: load(&self.idle_closed),
        }
    }
}

/// Connection counts of a [`TcpTransport`](crate::TcpTransport), for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// Connections, either way, closed after
    /// [`TcpOptions::idle_timeout`](crate::TcpOptions::idle_timeout) without a frame.
    pub idle_closed: u64,
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

/// When a connection last carried a non-empty frame, for closing idle ones. Readers and writers
/// touch it.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Activity {
        Activity { epoch: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection becomes idle if nothing happens before.
    pub fn idle_at(&self, idle: Duration) -> Instant {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        // A huge idle_timeout means "never": saturate instead of overflowing the clock.
        match self.epoch.checked_add(last).and_then(|t| t.checked_add(idle)) {
            Some(t) => t,
            None => crate::frame::deadline_after(idle),
        }
    }
}
