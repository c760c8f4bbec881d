//! The sending side: one outbound connection per peer socket address, opened on first use and
//! reused for every later frame until it fails or goes idle.
//!
//! Each peer has a slot behind an async mutex. A sender locks the slot, connects if it is empty
//! (within `connect_timeout`, then sends the handshake), and writes its frame (within
//! `io_timeout`), so frames to one peer never interleave and concurrent first sends open one
//! connection, not several. A write that fails drops the connection and, if that connection was
//! an old one (the peer may have restarted), is retried once on a fresh one.
//!
//! Every connection gets a reader task too ([`crate::inbound::read_frames`]): a peer may answer on
//! the connection we opened, and the reader notices when the peer closes it, when the system
//! fails it (the peer acknowledged nothing for `ack_timeout`, see [`crate::socket`]) or when the
//! peer made no progress for `idle_timeout`: no frame read and none of our bytes acknowledged.
//! Writing into the socket buffer is not progress, so a connection we keep writing into a black
//! hole is not kept open by those writes. The reader then empties the slot and forgets the peer,
//! and the next frame to the peer opens a fresh connection.
//!
//! Best-effort packets (TCP-only mode) must not hold up the protocol loop: they never wait for a
//! connect (the first packet to a peer is sent by a spawned task), wait at most
//! [`BEST_EFFORT_WAIT`] for the slot or the socket, and are dropped when a recent connect to the
//! peer failed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shoal_transport::{Addr, TransportError};
use tokio::io::BufReader;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::frame::{self, ReadEnd};
use crate::inbound::{note_end, read_frames, READ_BUFFER};
use crate::shared::{add, sub, Activity, Shared};
use crate::socket::{self, SendQueue};

/// Longest a best-effort send waits for a busy connection or a full socket buffer.
pub const BEST_EFFORT_WAIT: Duration = Duration::from_millis(50);

/// After a failed connect, best-effort packets to that peer are dropped for this long.
const CONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// Peers remembered before unused entries are swept.
const PRUNE_FLOOR: usize = 1_024;

pub(crate) struct Pool {
    shared: Arc<Shared>,
    peers: Mutex<Peers>,
    next_id: AtomicU64,
}

struct Peers {
    map: HashMap<SocketAddr, Arc<Peer>>,
    prune_at: usize,
}

#[derive(Default)]
struct Peer {
    /// Connects in progress or about to start: best-effort senders skip the peer meanwhile.
    connecting: AtomicUsize,
    state: tokio::sync::Mutex<PeerState>,
}

#[derive(Default)]
struct PeerState {
    conn: Option<Conn>,
    /// Removed from the pool: a sender holding a stale `Arc<Peer>` must look the peer up again.
    retired: bool,
    backoff_until: Option<Instant>,
}

struct Conn {
    id: u64,
    wr: OwnedWriteHalf,
    /// Cleared by the reader when the peer closed the connection or it went idle.
    alive: Arc<AtomicBool>,
    activity: Arc<Activity>,
    scratch: Vec<u8>,
}

impl Conn {
    /// Writes one frame within `limit`. Success means the kernel took the bytes, not that the
    /// peer got them: the reader watches for their acknowledgement.
    async fn write(&mut self, shared: &Shared, bytes: &[u8], limit: Duration) -> io::Result<()> {
        match timeout(limit, frame::write_frame(&mut self.wr, bytes, &mut self.scratch)).await {
            Ok(Ok(())) => {
                self.activity.wrote(frame::HEADER_LEN + bytes.len());
                Ok(())
            }
            Ok(Err(e)) => {
                // The system gave up on the peer (ack_timeout); whichever of the writer and the
                // reader sees the error first counts it, the other one sees a closed socket.
                if e.kind() == io::ErrorKind::TimedOut {
                    add(&shared.counters.timed_out, 1);
                }
                Err(e)
            }
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "frame write timed out")),
        }
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

/// Decrements a peer's `connecting` count when dropped (also when the future is cancelled).
struct Connecting(Arc<Peer>);

impl Connecting {
    fn start(peer: &Arc<Peer>) -> Connecting {
        peer.connecting.fetch_add(1, Ordering::AcqRel);
        Connecting(peer.clone())
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, Ordering::AcqRel);
    }
}

fn dropped(why: &'static str) -> TransportError {
    TransportError::Io(io::Error::new(io::ErrorKind::WouldBlock, why))
}

impl Pool {
    pub fn new(shared: Arc<Shared>) -> Arc<Pool> {
        Arc::new(Pool {
            shared,
            peers: Mutex::new(Peers { map: HashMap::new(), prune_at: PRUNE_FLOOR }),
            next_id: AtomicU64::new(0),
        })
    }

    /// Forgets every peer (their connections close once their readers stop). Call after closing.
    pub fn clear(&self) {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner).map.clear();
    }

    fn peer(&self, sa: SocketAddr) -> Arc<Peer> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.map.get(&sa) {
            return peer.clone();
        }
        if peers.map.len() >= peers.prune_at {
            // Sweep peers nobody is using and that have no connection (failed or never connected).
            peers.map.retain(|_, p| match p.state.try_lock() {
                Ok(mut st) if st.conn.is_none() && Arc::strong_count(p) == 1 => {
                    st.retired = true;
                    false
                }
                _ => true,
            });
            peers.prune_at = (peers.map.len() * 2).max(PRUNE_FLOOR);
        }
        let peer = Arc::new(Peer::default());
        peers.map.insert(sa, peer.clone());
        peer
    }

    /// Sends one frame, connecting first if needed. `to` is the address as the caller gave it;
    /// frames the peer sends back on this connection are reported as coming from it.
    pub async fn send_reliable(
        self: &Arc<Self>,
        to: &Addr,
        sa: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        loop {
            let peer = self.peer(sa);
            let mut st = peer.state.lock().await;
            if st.retired {
                continue;
            }
            let result = self.write_or_reconnect(to, sa, &peer, &mut st, bytes).await;
            match &result {
                Ok(()) => self.shared.counters.traffic.sent(bytes.len()),
                Err(_) => self.shared.counters.traffic.send_failed(),
            }
            return result;
        }
    }

    async fn write_or_reconnect(
        self: &Arc<Self>,
        to: &Addr,
        sa: SocketAddr,
        peer: &Arc<Peer>,
        st: &mut PeerState,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        let io_timeout = self.shared.options.io_timeout;
        if let Some(conn) = st.conn.as_mut().filter(|c| c.is_alive()) {
            match conn.write(&self.shared, bytes, io_timeout).await {
                Ok(()) => return Ok(()),
                // An old connection may have died without us noticing (peer restarted): retry once.
                Err(e) => tracing::debug!(%to, error = %e, "write on a reused connection failed; reconnecting"),
            }
        }
        st.conn = None;
        let mut conn = match self.connect(to, sa, peer).await {
            Ok(conn) => conn,
            Err(e) => {
                st.backoff_until = Some(Instant::now() + CONNECT_BACKOFF);
                return Err(e);
            }
        };
        st.backoff_until = None;
        conn.write(&self.shared, bytes, io_timeout).await?;
        st.conn = Some(conn);
        Ok(())
    }

    /// Sends one best-effort packet without holding up the caller: see the module docs.
    pub async fn send_best_effort(
        self: &Arc<Self>,
        to: &Addr,
        sa: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        let result = self.try_best_effort(to, sa, bytes).await;
        match &result {
            Ok(true) => self.shared.counters.traffic.sent(bytes.len()),
            Ok(false) => {} // handed to a connecting task, which counts it
            Err(_) => self.shared.counters.traffic.send_failed(),
        }
        result.map(drop)
    }

    /// `Ok(true)` when written, `Ok(false)` when a spawned task will connect and send it.
    async fn try_best_effort(
        self: &Arc<Self>,
        to: &Addr,
        sa: SocketAddr,
        bytes: &[u8],
    ) -> Result<bool, TransportError> {
        let peer = self.peer(sa);
        let mut st = if peer.connecting.load(Ordering::Acquire) > 0 {
            // A connect is under way. Its connection may be up already (the task that opened it
            // has written its frame and not yet finished): use it if the slot is free, never wait.
            match peer.state.try_lock() {
                Ok(st) if st.conn.as_ref().is_some_and(|c| c.is_alive()) => st,
                _ => return Err(dropped("connection being opened; best-effort packet dropped")),
            }
        } else {
            let Ok(st) = timeout(BEST_EFFORT_WAIT, peer.state.lock()).await else {
                return Err(dropped("connection busy; best-effort packet dropped"));
            };
            st
        };
        if st.retired {
            return Err(dropped("peer being forgotten; best-effort packet dropped"));
        }
        if let Some(conn) = st.conn.as_mut().filter(|c| c.is_alive()) {
            return match conn.write(&self.shared, bytes, BEST_EFFORT_WAIT).await {
                Ok(()) => Ok(true),
                Err(e) => {
                    // A partly written frame ruins the stream: start over on a new connection.
                    st.conn = None;
                    Err(TransportError::Io(e))
                }
            };
        }
        st.conn = None;
        if st.backoff_until.is_some_and(|t| Instant::now() < t) {
            return Err(TransportError::Unreachable(to.clone()));
        }
        // Mark the peer before releasing the slot so the next packets skip it rather than wait.
        let connecting = Connecting::start(&peer);
        drop(st);
        let (pool, to, bytes) = (self.clone(), to.clone(), bytes.to_vec());
        tokio::spawn(async move {
            let _connecting = connecting;
            let shared = pool.shared.clone();
            tokio::select! {
                () = shared.closing.wait() => {}
                r = pool.send_reliable(&to, sa, &bytes) => {
                    if let Err(e) = r {
                        tracing::debug!(%to, error = %e, "best-effort connect failed");
                    }
                }
            }
        });
        Ok(false)
    }

    /// Opens a connection, sends our handshake and starts its reader.
    async fn connect(self: &Arc<Self>, to: &Addr, sa: SocketAddr, peer: &Arc<Peer>) -> Result<Conn, TransportError> {
        let options = &self.shared.options;
        let _connecting = Connecting::start(peer);
        let stream = match timeout(options.connect_timeout, TcpStream::connect(sa)).await {
            Ok(stream) => stream?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out").into()),
        };
        socket::configure(&stream, options);
        let queue = SendQueue::of(&stream);
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            wr,
            alive: Arc::new(AtomicBool::new(true)),
            activity: Arc::new(Activity::new()),
            scratch: Vec::new(),
        };
        conn.write(&self.shared, &frame::handshake(&self.shared.advertise), options.io_timeout).await?;
        add(&self.shared.counters.dialled, 1);
        add(&self.shared.counters.outbound_open, 1);
        let (pool, peer, from) = (self.clone(), peer.clone(), to.clone());
        let (id, alive, activity) = (conn.id, conn.alive.clone(), conn.activity.clone());
        tokio::spawn(async move {
            let shared = pool.shared.clone();
            // `rd` holds the socket open for as long as `queue` is read (inside read_frames).
            let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
            let end = tokio::select! {
                () = shared.closing.wait() => ReadEnd::Closed,
                end = read_frames(&shared, &mut rd, &from, &activity, queue) => end,
            };
            note_end(&shared, &end, "outbound", sa);
            alive.store(false, Ordering::Release);
            pool.forget(sa, &peer, id).await;
            sub(&shared.counters.outbound_open, 1);
        });
        Ok(conn)
    }

    /// Called by a connection's reader when it stops: empties the slot if it still holds that
    /// connection (closing it), and removes the peer from the pool when nothing else is there.
    async fn forget(&self, sa: SocketAddr, peer: &Arc<Peer>, id: u64) {
        let mut st = peer.state.lock().await;
        if st.conn.as_ref().is_some_and(|c| c.id == id) {
            st.conn = None;
        }
        if st.conn.is_none() && !st.retired {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            if peers.map.get(&sa).is_some_and(|p| Arc::ptr_eq(p, peer)) {
                peers.map.remove(&sa);
                st.retired = true;
            }
        }
    }
}
