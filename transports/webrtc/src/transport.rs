//! [`WebRtcTransport`]: the plugin. It only touches shared state (the set of browsers with open
//! channels, invite times, counters) and bounded queues to and from the task in [`crate::task`],
//! which runs every str0m connection.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shoal_transport::{Addr, Received, TrafficCounters, Transport, TransportCounters, TransportError};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::signal::SignalConnection;
use crate::task::Task;

/// Packets and commands queued between the plugin and its task.
const QUEUE: usize = 1_024;
/// Invite times remembered before the stale ones are forgotten.
const MAX_INVITED: usize = 4_096;

/// How a native member reaches its browsers directly.
#[derive(Clone, Debug)]
pub struct WebRtcOptions {
    /// The relay's URL (`ws://host:port`, `?token=...` appended when the relay wants one).
    pub relay: String,
    /// Our signalling peer id on the relay (`<name>.rtc` by convention).
    pub peer: String,
    /// Our member address (what the cluster knows us by, e.g. `udp://10.0.0.5:7946`): browsers
    /// use it for the packets of the channel, and it is this plugin's `local_addr`.
    pub member: Addr,
    /// The IP of our host candidate. Default: the interface holding the default route.
    pub ip: Option<IpAddr>,
    /// Minimum time between two invites to the same browser.
    pub invite_interval: Duration,
}

impl WebRtcOptions {
    /// Options for reaching the browsers of the relay at `relay` (its URL) as signalling peer
    /// `peer`, for the member at `member`; the host candidate's IP is found from the default route
    /// and invites go out at most every 5 seconds. Call, then set the other fields as needed.
    pub fn new(relay: &str, peer: &str, member: Addr) -> Self {
        WebRtcOptions {
            relay: relay.to_owned(),
            peer: peer.to_owned(),
            member,
            ip: None,
            invite_interval: Duration::from_secs(5),
        }
    }
}

pub(crate) enum Command {
    Send { to: Addr, bytes: Vec<u8>, reliable: bool },
    Invite(Addr),
}

#[derive(Default)]
pub(crate) struct Shared {
    /// Browsers with both channels open.
    pub(crate) open: HashSet<Addr>,
    /// When each browser was last invited.
    pub(crate) invited: HashMap<Addr, Instant>,
}

/// Direct data channels to browsers. See the crate docs.
pub struct WebRtcTransport {
    shared: Arc<Mutex<Shared>>,
    /// Shared with the task, which counts inbound drops.
    counters: Arc<TrafficCounters>,
    commands: mpsc::Sender<Command>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<(Addr, Vec<u8>, bool)>>,
    /// `relay://<relay>/`: the browsers we may invite.
    relay_prefix: String,
    member: Addr,
    invite_interval: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WebRtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcTransport").field("relay", &self.relay_prefix).finish_non_exhaustive()
    }
}

pub(crate) fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The IP of the interface holding the default route (no packet is sent), else loopback.
fn default_ip() -> IpAddr {
    StdUdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and_then(|_| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

impl WebRtcTransport {
    /// Connects the signalling WebSocket, binds the UDP socket for ICE, and starts the task.
    pub async fn connect(options: WebRtcOptions) -> Result<Arc<WebRtcTransport>, String> {
        let signals = SignalConnection::connect(&options.relay, &options.peer, Duration::from_secs(10)).await?;
        let ip = options.ip.unwrap_or_else(default_ip);
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await.map_err(|e| format!("bind udp {ip}: {e}"))?;
        let candidate = socket.local_addr().map_err(|e| e.to_string())?;
        let relay_prefix = {
            let own = signals.local_addr().as_str();
            own[..own.rfind('/').map_or(own.len(), |i| i + 1)].to_owned()
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let counters = Arc::new(TrafficCounters::new());
        let (commands, command_rx) = mpsc::channel(QUEUE);
        let (inbox_tx, inbox) = mpsc::channel(QUEUE);
        let task = Task {
            socket,
            candidate,
            signals: Some(signals),
            relay: (options.relay.clone(), options.peer.clone()),
            member: options.member.clone(),
            peers: HashMap::new(),
            shared: shared.clone(),
            counters: counters.clone(),
            inbox: inbox_tx,
        };
        let task = tokio::spawn(task.run(command_rx));
        Ok(Arc::new(WebRtcTransport {
            shared,
            counters,
            commands,
            inbox: tokio::sync::Mutex::new(inbox),
            relay_prefix,
            member: options.member,
            invite_interval: options.invite_interval,
            task,
        }))
    }

    /// Browsers with both channels open now.
    pub fn open_peers(&self) -> Vec<Addr> {
        lock(&self.shared).open.iter().cloned().collect()
    }
}

impl Drop for WebRtcTransport {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait::async_trait]
impl Transport for WebRtcTransport {
    fn name(&self) -> &'static str {
        "webrtc"
    }

    /// True only while both channels to `to` are open; otherwise, for a browser of our relay, an
    /// invite goes out (at most one per `invite_interval`) and the packet takes the relay path.
    fn claims(&self, to: &Addr, _reliable: bool) -> bool {
        if !to.as_str().starts_with(&self.relay_prefix) {
            return false;
        }
        let mut shared = lock(&self.shared);
        if shared.open.contains(to) {
            return true;
        }
        let now = Instant::now();
        let due = shared.invited.get(to).is_none_or(|t| now.duration_since(*t) >= self.invite_interval);
        if due && self.commands.try_send(Command::Invite(to.clone())).is_ok() {
            if shared.invited.len() >= MAX_INVITED {
                let interval = self.invite_interval;
                shared.invited.retain(|_, t| now.duration_since(*t) < interval);
            }
            shared.invited.insert(to.clone(), now);
        }
        false
    }

    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        self.queue(to, bytes, false)
    }

    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        self.queue(to, bytes, true)
    }

    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError> {
        let (from, bytes, reliable) = self.inbox.lock().await.recv().await.ok_or(TransportError::Closed)?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        self.counters.received(bytes.len());
        Ok(Received { from, reliable })
    }

    fn local_addr(&self) -> Addr {
        self.member.clone()
    }

    fn counters(&self) -> TransportCounters {
        self.counters.snapshot()
    }

    async fn close(&self) {
        self.task.abort();
        lock(&self.shared).open.clear();
    }
}

impl WebRtcTransport {
    fn queue(&self, to: &Addr, bytes: &[u8], reliable: bool) -> Result<(), TransportError> {
        match self.commands.try_send(Command::Send { to: to.clone(), bytes: bytes.to_vec(), reliable }) {
            Ok(()) => {
                self.counters.sent(bytes.len());
                Ok(())
            }
            Err(_) => {
                self.counters.send_failed();
                Err(TransportError::Unreachable(to.clone()))
            }
        }
    }
}
