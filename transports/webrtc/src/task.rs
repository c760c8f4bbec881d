//! The task that owns the UDP socket, the signalling connection and one `str0m::Rtc` per browser.
//!
//! Each turn of its loop takes ONE input (a datagram, a signal, a command from the plugin or the
//! earliest deadline), hands it to the connection concerned and drains that connection's output
//! until `Timeout`: datagrams go out on the socket, channel opens and closes update the shared set
//! of open peers, channel data goes to the plugin's bounded inbox. That is str0m's run-loop
//! contract (mutate, then drain to `Timeout`, before the next mutation).
//!
//! Browsers offer; we answer with our single host candidate and open the two pre-negotiated
//! channels (id 0: unordered, no retransmits; id 1: reliable, ordered). A browser's new offer
//! replaces its old connection (a reloaded page), a bye or an ICE disconnection removes it. When
//! the signalling connection drops (relay restarted), open channels keep carrying traffic and the
//! task reconnects every [`RECONNECT_DELAY`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_transport::relay::SignalKind;
use shoal_transport::{Addr, TrafficCounters};
use str0m::change::SdpOffer;
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Wait before reconnecting a lost signalling connection, and the connect timeout.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

use crate::signal::{Signal, SignalConnection};
use crate::transport::{lock, Command, Shared};

/// One browser connection.
pub(crate) struct Peer {
    rtc: Rtc,
    dgram: Option<ChannelId>,
    rel: Option<ChannelId>,
    open: HashSet<ChannelId>,
    deadline: Instant,
}

pub(crate) struct Task {
    pub(crate) socket: UdpSocket,
    pub(crate) candidate: SocketAddr,
    /// The signalling connection; `None` while it is down (open channels keep working).
    pub(crate) signals: Option<SignalConnection>,
    /// Where to reconnect it: the relay URL and our peer id.
    pub(crate) relay: (String, String),
    pub(crate) member: Addr,
    pub(crate) peers: HashMap<Addr, Peer>,
    pub(crate) shared: Arc<Mutex<Shared>>,
    /// The plugin's traffic counters (this task counts what its inbox had no room for).
    pub(crate) counters: Arc<TrafficCounters>,
    pub(crate) inbox: mpsc::Sender<(Addr, Vec<u8>, bool)>,
}

impl Task {
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2_048];
        let mut reconnect: Option<JoinHandle<Result<SignalConnection, String>>> = None;
        loop {
            if self.signals.is_none() && reconnect.is_none() {
                let (relay, peer) = self.relay.clone();
                reconnect = Some(tokio::spawn(async move {
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    SignalConnection::connect(&relay, &peer, RECONNECT_DELAY).await
                }));
            }
            let deadline = self.peers.values().map(|p| p.deadline).min();
            let sleep =
                tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)).into());
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = r {
                        self.on_datagram(source, &buf[..n]);
                    }
                }
                signal = next_signal(&mut self.signals) => match signal {
                    Some(s) => self.on_signal(s).await,
                    None => {
                        tracing::warn!("webrtc: the signalling connection to the relay closed; reconnecting");
                        self.signals = None;
                    }
                },
                done = async { reconnect.as_mut().expect("guarded").await }, if reconnect.is_some() => {
                    reconnect = None;
                    match done {
                        Ok(Ok(conn)) => self.signals = Some(conn),
                        Ok(Err(e)) => tracing::debug!("webrtc: signalling reconnect failed: {e}"),
                        Err(_) => {}
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Send { to, bytes, reliable }) => self.on_send(&to, &bytes, reliable),
                    Some(Command::Invite(to)) => {
                        let body = format!("{{\"member\":{}}}", json_string(self.member.as_str()));
                        if let Some(signals) = self.signals.as_mut() {
                            let _ = signals.send(&to, SignalKind::Invite, &body).await;
                        }
                    }
                    None => break,
                },
                _ = sleep => {
                    let now = Instant::now();
                    let due: Vec<Addr> = self.peers.iter().filter(|(_, p)| p.deadline <= now).map(|(a, _)| a.clone()).collect();
                    for addr in due {
                        if let Some(p) = self.peers.get_mut(&addr) {
                            let _ = p.rtc.handle_input(Input::Timeout(now));
                        }
                        self.drain(&addr);
                    }
                }
            }
        }
        if let Some(r) = reconnect {
            r.abort();
        }
        lock(&self.shared).open.clear();
    }

    fn on_datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else { return };
        let input = Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source, destination: self.candidate, contents },
        );
        let Some(addr) = self.peers.iter().find(|(_, p)| p.rtc.accepts(&input)).map(|(a, _)| a.clone()) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&addr) {
            let _ = p.rtc.handle_input(input);
        }
        self.drain(&addr);
    }

    fn on_send(&mut self, to: &Addr, bytes: &[u8], reliable: bool) {
        let Some(p) = self.peers.get_mut(to) else { return };
        let id = if reliable { p.rel } else { p.dgram };
        if let Some(mut ch) = id.and_then(|id| p.rtc.channel(id)) {
            let _ = ch.write(true, bytes);
        }
        self.drain(to);
    }

    async fn on_signal(&mut self, s: Signal) {
        match s.kind {
            SignalKind::Offer => match self.accept(&s) {
                Ok(answer) => {
                    let body = format!("{{\"sdp\":{}}}", json_string(&answer));
                    if let Some(signals) = self.signals.as_mut() {
                        let _ = signals.send(&s.from, SignalKind::Answer, &body).await;
                    }
                }
                Err(e) => tracing::debug!(from = %s.from, "webrtc: offer refused: {e}"),
            },
            SignalKind::Candidate => {
                let candidate = serde_json::from_str::<serde_json::Value>(&s.body)
                    .ok()
                    .and_then(|v| v.get("candidate")?.as_str().map(str::to_owned))
                    .filter(|c| !c.is_empty());
                let parsed = candidate.and_then(|c| Candidate::from_sdp_string(&c).ok());
                if let (Some(c), Some(p)) = (parsed, self.peers.get_mut(&s.from)) {
                    p.rtc.add_remote_candidate(c);
                    self.drain(&s.from);
                }
            }
            SignalKind::Bye => self.remove(&s.from),
            SignalKind::Answer | SignalKind::Invite => {}
        }
    }

    /// A browser's offer: a new connection (replacing any older one from it), answered with our
    /// host candidate, and the two pre-negotiated channels.
    fn accept(&mut self, s: &Signal) -> Result<String, String> {
        let sdp = serde_json::from_str::<serde_json::Value>(&s.body)
            .ok()
            .and_then(|v| v.get("sdp")?.as_str().map(str::to_owned))
            .ok_or("offer without sdp")?;
        let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
        self.remove(&s.from);
        let mut rtc = Rtc::new(Instant::now());
        let candidate = Candidate::host(self.candidate, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| e.to_string())?;
        let peer = Peer { rtc, dgram: None, rel: None, open: HashSet::new(), deadline: Instant::now() };
        self.peers.insert(s.from.clone(), peer);
        self.drain(&s.from);
        let dgram = ChannelConfig {
            label: "shoal-dgram".into(),
            ordered: false,
            reliability: Reliability::MaxRetransmits { retransmits: 0 },
            negotiated: Some(0),
            protocol: String::new(),
        };
        let rel = ChannelConfig { label: "shoal-rel".into(), negotiated: Some(1), ..ChannelConfig::default() };
        for (config, reliable) in [(dgram, false), (rel, true)] {
            if let Some(p) = self.peers.get_mut(&s.from) {
                let id = p.rtc.direct_api().create_data_channel(config);
                if reliable {
                    p.rel = Some(id);
                } else {
                    p.dgram = Some(id);
                }
            }
            self.drain(&s.from);
        }
        if !self.peers.contains_key(&s.from) {
            return Err("connection failed while answering".into());
        }
        Ok(answer.to_sdp_string())
    }

    fn remove(&mut self, addr: &Addr) {
        if let Some(mut p) = self.peers.remove(addr) {
            p.rtc.disconnect();
        }
        lock(&self.shared).open.remove(addr);
    }

    /// Drains `addr`'s output until its next timeout (str0m's contract after every change).
    fn drain(&mut self, addr: &Addr) {
        let Some(p) = self.peers.get_mut(addr) else { return };
        let mut dead = false;
        loop {
            match p.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    p.deadline = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => match e {
                    Event::ChannelOpen(id, _) => {
                        p.open.insert(id);
                        let both = [p.dgram, p.rel].iter().all(|c| c.is_some_and(|c| p.open.contains(&c)));
                        if both {
                            lock(&self.shared).open.insert(addr.clone());
                        }
                    }
                    Event::ChannelData(d) => {
                        let full = self.inbox.try_send((addr.clone(), d.data, Some(d.id) == p.rel)).is_err();
                        if full {
                            self.counters.dropped_in();
                        }
                    }
                    Event::ChannelClose(_) => dead = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => dead = true,
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!(%addr, "webrtc: connection error: {e}");
                    dead = true;
                    break;
                }
            }
        }
        if dead || !p.rtc.is_alive() {
            self.remove(addr);
        }
    }
}

/// The next signal, never resolving while the connection is down.
async fn next_signal(signals: &mut Option<SignalConnection>) -> Option<Signal> {
    match signals {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
