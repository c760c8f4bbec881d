//! Connection caps: at most [`Limits::total`] connections open at once, at most
//! [`Limits::per_ip`] from one source IP.
//!
//! A connection is *idle* while it waits for its request head or lingers after its answer, and
//! *busy* while a request is answered (milliseconds). When a newcomer would exceed a cap, the
//! oldest idle connection in the cap's scope (the same source IP, or all) is evicted to make room;
//! only if every connection in scope is busy is the newcomer refused. Favouring the newcomer is
//! what keeps the endpoint open under a flood: an idle connection is an attacker's or a client
//! gone quiet, a newcomer is most likely a live client (a health check) that sends its head at
//! once and so stops being evictable, and an attacker opening connections faster than they time
//! out mostly evicts its own. After an accept error (out of descriptors), the oldest idle
//! connection is shed too, so the next accept finds a descriptor free.
//!
//! The registry is shared by the accept loop (admission, eviction) and the connection tasks (each
//! holds a [`Slot`] that leaves the registry when dropped, that is when the task ends or is
//! aborted by an eviction, which closes its socket).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::AbortHandle;

/// The caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_ip: usize,
}

impl Default for Limits {
    /// 256 in all, 32 per source IP: far above what status clients need, far below the usual
    /// 1,024 descriptors of a process.
    fn default() -> Self {
        Limits { total: 256, per_ip: 32 }
    }
}

/// Which cap a newcomer ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    PerIp,
    Total,
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    idle: Arc<AtomicBool>,
    /// Set right after the connection's task is spawned; a connection without one is never evicted.
    abort: Option<AbortHandle>,
}

impl Entry {
    fn evictable(&self) -> bool {
        self.abort.is_some() && self.idle.load(Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    /// By id, so in order of arrival: the first idle one found is the oldest.
    open: BTreeMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Registry {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&entry.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&entry.ip);
            }
        }
        Some(entry)
    }

    /// Evicts the oldest idle connection (from `ip` only, if given); false if none is idle.
    fn evict_oldest_idle(&mut self, ip: Option<IpAddr>) -> bool {
        let victim =
            self.open.iter().find(|(_, e)| e.evictable() && (ip.is_none() || ip == Some(e.ip))).map(|(id, _)| *id);
        let Some(entry) = victim.and_then(|id| self.remove(id)) else { return false };
        if let Some(abort) = entry.abort {
            abort.abort();
        }
        true
    }
}

/// The open connections of one endpoint.
#[derive(Debug, Default)]
pub struct Connections {
    limits: Limits,
    registry: Mutex<Registry>,
}

/// A connection's place in the registry; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    idle: Arc<AtomicBool>,
    connections: Arc<Connections>,
}

impl Slot {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Marks the connection idle (evictable) or busy.
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Release);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().remove(self.id);
    }
}

impl Connections {
    pub fn new(limits: Limits) -> Arc<Connections> {
        Arc::new(Connections { limits, registry: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for a connection from `ip`: its slot (idle until its head is read) and the cap
    /// an eviction was needed for, if any; or the cap that refused it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<(Slot, Option<Cap>), Cap> {
        let mut registry = self.lock();
        let mut evicted = None;
        if registry.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_ip {
            if !registry.evict_oldest_idle(Some(ip)) {
                return Err(Cap::PerIp);
            }
            evicted = Some(Cap::PerIp);
        }
        if registry.open.len() >= self.limits.total {
            if !registry.evict_oldest_idle(None) {
                return Err(Cap::Total);
            }
            evicted = Some(Cap::Total);
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let idle = Arc::new(AtomicBool::new(true));
        registry.open.insert(id, Entry { ip, idle: Arc::clone(&idle), abort: None });
        *registry.per_ip.entry(ip).or_default() += 1;
        Ok((Slot { id, idle, connections: Arc::clone(self) }, evicted))
    }

    /// Records how to close connection `id` (its task); until then it cannot be evicted.
    pub fn attach(&self, id: u64, abort: AbortHandle) {
        if let Some(entry) = self.lock().open.get_mut(&id) {
            entry.abort = Some(abort);
        }
    }

    /// Evicts the oldest idle connection, to free a descriptor; false if none is idle.
    pub fn shed_oldest_idle(&self) -> bool {
        self.lock().evict_oldest_idle(None)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection admitted from `ip` whose task (a pending future) can be evicted; the task
    /// holds the slot, as the endpoint's do, so an eviction drops it.
    fn connect(c: &Arc<Connections>, ip: &str) -> Result<(tokio::task::JoinHandle<()>, Option<Cap>), Cap> {
        let (slot, evicted) = c.admit(ip.parse().unwrap())?;
        let id = slot.id();
        let task = tokio::spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await
        });
        c.attach(id, task.abort_handle());
        Ok((task, evicted))
    }

    #[tokio::test]
    async fn a_newcomer_over_the_per_ip_cap_evicts_the_oldest_idle_connection_of_that_ip() {
        let c = Connections::new(Limits { total: 10, per_ip: 2 });
        let (first, _) = connect(&c, "10.0.0.1").unwrap();
        let (_second, _) = connect(&c, "10.0.0.1").unwrap();
        let (_other, _) = connect(&c, "10.0.0.2").unwrap();
        let (_third, evicted) = connect(&c, "10.0.0.1").unwrap();
        assert_eq!(evicted, Some(Cap::PerIp));
        assert!(first.await.unwrap_err().is_cancelled(), "the oldest of that IP was closed");
        assert_eq!(c.open(), 3);
    }

    #[tokio::test]
    async fn a_newcomer_over_the_total_cap_evicts_the_oldest_idle_connection_of_any_ip() {
        let c = Connections::new(Limits { total: 2, per_ip: 2 });
        let (first, _) = connect(&c, "10.0.0.1").unwrap();
        let (_second, _) = connect(&c, "10.0.0.2").unwrap();
        let (_third, evicted) = connect(&c, "10.0.0.3").unwrap();
        assert_eq!(evicted, Some(Cap::Total));
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(c.open(), 2);
    }

    #[tokio::test]
    async fn busy_connections_are_never_evicted_so_a_newcomer_is_refused_instead() {
        let c = Connections::new(Limits { total: 1, per_ip: 1 });
        let (slot, _) = c.admit("10.0.0.1".parse().unwrap()).unwrap();
        let task = tokio::spawn(std::future::pending::<()>());
        c.attach(slot.id(), task.abort_handle());
        slot.set_idle(false);
        assert_eq!(c.admit("10.0.0.1".parse().unwrap()).unwrap_err(), Cap::PerIp);
        assert_eq!(c.admit("10.0.0.2".parse().unwrap()).unwrap_err(), Cap::Total);
        assert!(!c.shed_oldest_idle());
        drop(slot);
        assert_eq!(c.open(), 0, "a dropped slot frees its place");
        assert!(c.admit("10.0.0.2".parse().unwrap()).is_ok());
        task.abort();
    }

    #[tokio::test]
    async fn shedding_closes_the_oldest_idle_connection() {
        let c = Connections::new(Limits::default());
        let (first, _) = connect(&c, "10.0.0.1").unwrap();
        let (second, _) = connect(&c, "10.0.0.1").unwrap();
        assert!(c.shed_oldest_idle());
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(c.open(), 1);
        second.abort();
    }
}
