//! [`Protocol`], the class exported to JavaScript: the sans-IO [`Node`] with JS-friendly
//! arguments, and nothing else.
//!
//! The member's I/O lives in the npm package's JS (`wasm/js/member.js`): the relay WebSocket, the
//! timer, the clock, the random seed and the WebRTC direct paths. It drives this object the way
//! every Shoal driver drives a node:
//!
//! 1. hand it what happened: [`Protocol::handle_frame`] for a relay frame, [`Protocol::handle_packet`]
//!    for a packet from a direct path, [`Protocol::handle_timeout`] when the deadline of
//!    [`Protocol::poll_timeout`] has passed, and commands (`join`, `broadcast`, `send`, `leave` …);
//! 2. then take what it produced until there is nothing left: [`Protocol::poll_transmit`] (relay
//!    frames to send) and [`Protocol::poll_event`] (event objects), and re-arm the timer at the new
//!    [`Protocol::poll_timeout`].
//!
//! Every time argument (`now`) is milliseconds on one monotonic clock the caller picks. No futures,
//! no promises and no callbacks cross into the wasm: that glue cost more code than the protocol.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use js_sys::{Array, Object, Reflect, Uint8Array};
use shoal_core::addr::Addr;
use shoal_core::relay::{decode_ws_frame, encode_ws_frame};
use shoal_core::security::OVERHEAD;
use shoal_core::{Config, Event, Instant, Keyring, Member, MemberState, MessageKind, Node, NodeId, SecurityMode};
use wasm_bindgen::prelude::*;

/// Parsed sources of recent relay frames: a frame's source is parsed once, not per packet.
const SOURCE_CACHE: usize = 32;

/// The protocol state machine of one member. Create it once the relay has welcomed the member
/// (its address is in the welcome), then drive it as the module docs say.
#[wasm_bindgen]
pub struct Protocol {
    node: Node<Addr>,
    sources: Vec<Addr>,
}

#[wasm_bindgen]
impl Protocol {
    /// Builds the member. `options`, as normalised by `normalizeJoinOptions` (`wasm/js/common.js`)
    /// plus what the driver knows: `name`, `addr` (our relay address, from the welcome), `meta` and
    /// `key` (Uint8Arrays), `label`, `preset`, `joinTimeoutMs`, `relayMaxFrame` (the relay's frame
    /// limit: reliable traffic is kept under it), `seed` (8 random bytes), `entropy` (32 random
    /// bytes, for the nonces of encrypted packets) and `now`.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<Protocol, JsError> {
        let o = &options;
        let text = |key: &str| get(o, key).and_then(|v| v.as_string());
        let number = |key: &str| get(o, key).and_then(|v| v.as_f64());
        let bytes = |key: &str| get(o, key).map(|v| Uint8Array::new(&v).to_vec());
        let mut config = match text("preset").as_deref() {
            Some("local") => Config::local(),
            Some("lan") => Config::lan(),
            Some("wan") => Config::wan(),
            _ => Config::browser(),
        };
        // Everything reliable (push-pull state, reliable messages, large metadata) must fit in one
        // relay frame: `[len][address][sealed packet]`.
        let relay_max_frame = number("relayMaxFrame").map_or(64 << 10, |n| n as usize);
        let budget = relay_max_frame.saturating_sub(1 + 255 + OVERHEAD);
        if budget < config.max_packet_size {
            return Err(JsError::new("options.relayMaxFrame is too small for the preset's packet size"));
        }
        config.max_reliable_size = config.max_reliable_size.min(budget);
        config.relayed_packet_size = config.relayed_packet_size.min(config.max_reliable_size);
        config.max_meta_size = config.max_meta_size.min(config.max_reliable_size / 4);
        if let Some(ms) = number("joinTimeoutMs") {
            config.join_timeout = Duration::from_millis(ms as u64);
        }
        config.label = text("label").unwrap_or_default();
        let key = bytes("key").and_then(|k| <[u8; 32]>::try_from(k).ok());
        if key.is_some() {
            config.security = SecurityMode::Encrypted;
        }
        let name = text("name").unwrap_or_default();
        let id = NodeId::new(&name).map_err(|e| JsError::new(&format!("invalid node name: {e}")))?;
        let addr = Addr::parse(&text("addr").unwrap_or_default())
            .map_err(|e| JsError::new(&format!("invalid address: {e}")))?;
        let mut seed = [0u8; 8];
        copy_into(&mut seed, bytes("seed"));
        let now = at(number("now").unwrap_or(0.0));
        let mut node =
            Node::new(now, config, id, addr, u64::from_le_bytes(seed)).map_err(|e| JsError::new(&e.to_string()))?;
        if let Some(key) = key {
            let mut entropy = [0u8; 32];
            copy_into(&mut entropy, bytes("entropy"));
            node.set_keyring(Keyring::new(key), entropy);
        }
        let meta = bytes("meta").unwrap_or_default();
        if !meta.is_empty() {
            node.set_metadata(&meta).map_err(|e| JsError::new(&e.to_string()))?;
        }
        Ok(Protocol { node, sources: Vec::new() })
    }

    /// Joins through `seeds` (addresses). The `joined` or `join-failed` event says how it went;
    /// re-announcing to the seeds goes on either way.
    pub fn join(&mut self, now: f64, seeds: Vec<String>) -> Result<(), JsError> {
        let mut parsed = Vec::with_capacity(seeds.len());
        for s in &seeds {
            let a = Addr::parse(s).map_err(|e| JsError::new(&format!("invalid seed address \"{s}\": {e}")))?;
            parsed.push(a);
        }
        self.node.join(at(now), &parsed).map_err(|e| JsError::new(&e.to_string()))
    }

    /// Hands over a frame from the relay (`[len][source address][packet]`). False when the frame
    /// or its packet was dropped (the node counts the packets it drops; the caller counts frames
    /// it could not even split).
    #[wasm_bindgen(js_name = handleFrame)]
    pub fn handle_frame(&mut self, now: f64, frame: &[u8]) -> Result<bool, JsValue> {
        let Ok((source, packet)) = decode_ws_frame(frame) else { return Err(JsValue::NULL) };
        let from = match self.sources.iter().position(|a| a.as_str() == source) {
            Some(i) => {
                let a = self.sources.remove(i);
                self.sources.insert(0, a.clone());
                a
            }
            None => {
                let Ok(a) = Addr::parse(source) else { return Err(JsValue::NULL) };
                self.sources.truncate(SOURCE_CACHE - 1);
                self.sources.insert(0, a.clone());
                a
            }
        };
        Ok(self.node.handle_packet(at(now), from, packet).is_ok())
    }

    /// Hands over a packet that arrived from `from` outside the relay (a WebRTC data channel).
    #[wasm_bindgen(js_name = handlePacket)]
    pub fn handle_packet(&mut self, now: f64, from: &str, packet: &[u8]) -> bool {
        match Addr::parse(from) {
            Ok(a) => self.node.handle_packet(at(now), a, packet).is_ok(),
            Err(_) => false,
        }
    }

    /// Call when the deadline of [`Protocol::poll_timeout`] has passed (late is fine: a timer that
    /// comes a whole probe interval late is taken as a stall of this member).
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now: f64) {
        self.node.handle_timeout(at(now));
    }

    /// When to call [`Protocol::handle_timeout`] next, on the caller's clock.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.node.poll_timeout().map(|t| t.as_millis() as f64)
    }

    /// The next thing to send, as `[destination, relayFrame, reliable]`: the frame is the packet
    /// with the relay envelope `[len][destination]` in front (a direct path sends what follows it),
    /// or `undefined` when there is nothing to send. A destination too long for the envelope gets
    /// an empty frame: count it as a send error.
    #[wasm_bindgen(js_name = pollTransmit)]
    pub fn poll_transmit(&mut self) -> JsValue {
        let Some(t) = self.node.poll_transmit() else { return JsValue::UNDEFINED };
        let frame = encode_ws_frame(t.to.as_str(), &t.bytes).unwrap_or_default();
        Array::of3(&t.to.as_str().into(), &Uint8Array::from(&frame[..]), &t.reliable.into()).into()
    }

    /// Our departure, built without leaving: the relay frames (`[len][destination][packet]`) of
    /// what `leave` would send first, each preceded by its length (`u16`, big-endian): the tail of
    /// the body the page posts to the relay's `/farewell` (`navigator.sendBeacon`) if the tab
    /// closes before the worker can call `leave`. At most `max_frames` frames of at most
    /// `max_frame` bytes, `max_bytes` in all. Call again whenever the membership or our
    /// incarnation changes; empty once leaving or with nobody to tell.
    pub fn farewell(&mut self, max_frames: usize, max_frame: usize, max_bytes: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for t in self.node.farewell(max_frames) {
            let Some(frame) = encode_ws_frame(t.to.as_str(), &t.bytes) else { continue };
            if frame.len() <= max_frame && out.len() + 2 + frame.len() <= max_bytes {
                out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
                out.extend_from_slice(&frame);
            }
        }
        out
    }

    /// The next event as the object the npm package hands out (`type` is the event's name in
    /// Shoal's one vocabulary, [`Event::name`]), or `undefined`.
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> JsValue {
        while let Some(event) = self.node.poll_event() {
            if let Some(e) = event_to_js(&event) {
                return e;
            }
        }
        JsValue::UNDEFINED
    }

    /// Our name.
    pub fn name(&self) -> String {
        self.node.local_id().as_str().to_owned()
    }

    /// Our relay address.
    #[wasm_bindgen(js_name = localAddr)]
    pub fn local_addr(&self) -> String {
        self.node.local_addr().as_str().to_owned()
    }

    /// Every other known member, in any state, as `{name, addr, state, incarnation, meta, rttMs}`.
    pub fn members(&self) -> Array {
        self.node.members().map(|m| member_to_js(m, self.node.rtt(&m.id))).collect()
    }

    /// Our own record as others see it.
    pub fn local(&self) -> JsValue {
        Obj::new()
            .set("name", self.node.local_id().as_str())
            .set("addr", self.node.local_addr().as_str())
            .set("state", "alive")
            .set("incarnation", self.node.incarnation())
            .set("meta", Uint8Array::from(self.node.metadata()))
            .set("rttMs", JsValue::NULL)
            .done()
    }

    /// Broadcasts to every member; with `key`, latest-value semantics per topic and key, and with
    /// `ttl_ms` too, a value that expires (an `expire` event everywhere) unless set again.
    pub fn broadcast(
        &mut self,
        topic: &str,
        data: &[u8],
        key: Option<Vec<u8>>,
        ttl_ms: Option<f64>,
    ) -> Result<(), JsError> {
        let sent = match (key, ttl_ms) {
            (Some(key), Some(ms)) => {
                self.node.broadcast_with_ttl(topic, data, &key, Duration::from_millis(ms.max(1.0) as u64))
            }
            (key, _) => self.node.broadcast(topic, data, key.as_deref()),
        };
        sent.map(|_| ()).map_err(|e| JsError::new(&e.to_string()))
    }

    /// Sends to the member named `name`: one packet, or reliable (returns its id, which a
    /// `send-failed` event names if it is never acknowledged).
    pub fn send(
        &mut self,
        now: f64,
        name: &str,
        topic: &str,
        data: &[u8],
        reliable: bool,
    ) -> Result<Option<f64>, JsError> {
        let to = NodeId::new(name).map_err(|e| JsError::new(&format!("invalid member name: {e}")))?;
        let result = if reliable {
            self.node.send_reliable(at(now), &to, topic, data).map(|id| Some(id as f64))
        } else {
            self.node.send(at(now), &to, topic, data, false).map(|()| None)
        };
        result.map_err(|e| JsError::new(&e.to_string()))
    }

    /// Sends to an address, member or not.
    #[wasm_bindgen(js_name = sendTo)]
    pub fn send_to(&mut self, now: f64, addr: &str, topic: &str, data: &[u8], reliable: bool) -> Result<(), JsError> {
        let to = Addr::parse(addr).map_err(|e| JsError::new(&format!("invalid address \"{addr}\": {e}")))?;
        self.node.send_to_addr(at(now), to, topic, data, reliable).map_err(|e| JsError::new(&e.to_string()))
    }

    /// Replaces our metadata and announces it.
    #[wasm_bindgen(js_name = setMetadata)]
    pub fn set_metadata(&mut self, meta: &[u8]) -> Result<(), JsError> {
        self.node.set_metadata(meta).map_err(|e| JsError::new(&e.to_string()))
    }

    /// Starts a graceful leave; [`Protocol::leave_disseminated`] says when it has been gossiped.
    pub fn leave(&mut self, now: f64) {
        self.node.leave(at(now));
    }

    /// After `leave`: true once the departure has been gossiped its full number of times.
    #[wasm_bindgen(js_name = leaveDisseminated)]
    pub fn leave_disseminated(&self) -> bool {
        self.node.leave_disseminated()
    }

    /// Call with `false` when the relay connection drops and `true` once it is back: while our own
    /// link is down the member accuses nobody.
    #[wasm_bindgen(js_name = setLinkUp)]
    pub fn set_link_up(&mut self, now: f64, up: bool) {
        self.node.set_link_up(at(now), up);
    }

    /// Asks the members that `filter` selects to answer `topic` and `data` within `timeout_ms`
    /// (Serf's `query`; the protocol side is `shoal_core::node::queries`), or for the default time
    /// when `timeout_ms` is 0 (`Node::default_query_timeout`, as the `shoal` crate's). Returns the
    /// query's number, which its `query-ack`, `query-response` and `query-done` events carry as `query`.
    /// `filter` is `name\0key\0pattern\0key\0pattern...`: members whose name matches `name`
    /// (`*` and `?` wildcards; any name when empty) and whose tags match every pair (patterns with
    /// wildcards too). Refuses in a build without the `queries` feature.
    pub fn query(&mut self, now: f64, topic: &str, data: &[u8], filter: &str, timeout_ms: f64) -> Result<f64, JsError> {
        #[cfg(feature = "queries")]
        {
            let mut words = filter.split('\0');
            let mut filter = shoal_core::tags::MemberFilter::new();
            if let Some(name) = words.next().filter(|n| !n.is_empty()) {
                filter = filter.name(name);
            }
            while let (Some(key), Some(pattern)) = (words.next(), words.next()) {
                filter = filter.tag(key, pattern);
            }
            let timeout = if timeout_ms > 0.0 {
                Duration::from_millis(timeout_ms.max(1.0) as u64)
            } else {
                self.node.default_query_timeout()
            };
            let id =
                self.node.query(at(now), topic, data, &filter, timeout).map_err(|e| JsError::new(&e.to_string()))?;
            Ok(id.id as f64)
        }
        #[cfg(not(feature = "queries"))]
        {
            let _ = (now, topic, data, filter, timeout_ms);
            Err(no_queries())
        }
    }

    /// Answers a query that a `query` event brought, with that event's `from`, `addr`, `epoch` and
    /// `query`: once, before its timeout runs out. Refuses in a build without the `queries`
    /// feature.
    pub fn respond(
        &mut self,
        now: f64,
        from: &str,
        addr: &str,
        epoch: f64,
        query: f64,
        data: &[u8],
    ) -> Result<(), JsError> {
        #[cfg(feature = "queries")]
        {
            let (Ok(origin), Ok(addr)) = (NodeId::new(from), Addr::parse(addr)) else {
                return Err(JsError::new("not a query event"));
            };
            let id = shoal_core::QueryId { epoch: epoch as u32, id: query as u64 };
            let inquiry = shoal_core::Inquiry { origin, addr, id };
            self.node.respond(at(now), &inquiry, data).map_err(|e| JsError::new(&e.to_string()))
        }
        #[cfg(not(feature = "queries"))]
        {
            let _ = (now, from, addr, epoch, query, data);
            Err(no_queries())
        }
    }

    /// Call when a relay of the fleet welcomed us again at another address (the same peer id on
    /// another relay, after ours went away), before sending through it: our address changes and
    /// the cluster takes the move (see `shoal_core::node::relay_move`). The driver checks the
    /// address came from a welcome; an unparsable one changes nothing.
    #[wasm_bindgen(js_name = moveTo)]
    pub fn move_to(&mut self, now: f64, addr: &str) {
        if let Ok(addr) = Addr::parse(addr) {
            self.node.move_to(at(now), addr);
        }
    }

    /// The node's counters and gauges, in this order: members alive, suspect, failed and left;
    /// packets sent and received, bytes sent and received, decode errors, probes, probes failed,
    /// suspicions raised, failures declared, refutations, broadcasts delivered, dropped, missed and
    /// repaired, direct messages delivered, reliable retries and failures, push-pulls; queued
    /// membership updates and broadcasts, health score, incarnation; link outages, stalls; then
    /// encrypted sent, decrypted, unauthenticated, replays, plaintext rejected. `wasm/js/member.js`
    /// adds the driver's own and names them.
    #[wasm_bindgen(js_name = metricValues)]
    pub fn metric_values(&self) -> Vec<f64> {
        let n = &self.node;
        let mut states = [0u64; 4];
        for m in n.members() {
            states[m.state as usize] += 1;
        }
        let (s, sec) = (n.stats(), n.security_stats());
        let (membership, broadcasts) = n.queued_updates();
        let values = [
            states[MemberState::Alive as usize],
            states[MemberState::Suspect as usize],
            states[MemberState::Dead as usize],
            states[MemberState::Left as usize],
            s.packets_sent,
            s.packets_received,
            s.bytes_sent,
            s.bytes_received,
            s.decode_errors,
            s.pings_sent,
            s.probes_failed,
            s.suspicions_raised,
            s.failures_declared,
            s.refutations,
            s.broadcasts_delivered,
            s.broadcasts_dropped,
            s.broadcasts_missed,
            s.broadcasts_repaired,
            s.direct_delivered,
            s.reliable_retries,
            s.reliable_failed,
            s.push_pulls_sent,
            membership as u64,
            broadcasts as u64,
            u64::from(n.health_score()),
            u64::from(n.incarnation()),
            s.link_outages,
            s.stalls,
            sec.encrypted_sent,
            sec.decrypted,
            sec.unauthenticated,
            sec.replays,
            sec.plaintext_rejected,
        ];
        values.iter().map(|v| *v as f64).collect()
    }
}

/// What is wrong with `addr` as a member address, or `undefined` when it is fine. For checking
/// seeds before connecting to the relay.
#[wasm_bindgen(js_name = checkAddress)]
pub fn check_address(addr: &str) -> Option<String> {
    Addr::parse(addr).err().map(|e| e.to_string())
}

/// Milliseconds from JS as an instant (negative and NaN clamp to zero).
fn at(ms: f64) -> Instant {
    Instant::from_millis(ms.max(0.0) as u64)
}

/// Copies what fits of `from` into `to` (missing bytes stay zero).
fn copy_into(to: &mut [u8], from: Option<Vec<u8>>) {
    if let Some(from) = from {
        let n = from.len().min(to.len());
        to[..n].copy_from_slice(&from[..n]);
    }
}

/// `options[key]`, with `undefined` and `null` as absent.
fn get(o: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(o, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// The event as the npm package's plain object, or `None` for events it does not hand out.
fn event_to_js(event: &Event<Addr>) -> Option<JsValue> {
    let ev = Obj::new().set("type", event.name());
    Some(
        match event {
            Event::Joined(m) | Event::Updated(m) => ev.set("member", m.id.as_str()).set("info", member_to_js(m, None)),
            Event::Suspected { id, incarnation, by } | Event::Failed { id, incarnation, by } => {
                ev.set("member", id.as_str()).set("incarnation", *incarnation).set("by", by.as_str())
            }
            Event::Alive { id, incarnation } | Event::Left { id, incarnation } => {
                ev.set("member", id.as_str()).set("incarnation", *incarnation)
            }
            Event::Message { from, topic, payload, kind } => ev
                .set("from", from.as_str())
                .set("topic", topic.as_str())
                .set("data", Uint8Array::from(&payload[..]))
                .set(
                    "kind",
                    match kind {
                        MessageKind::Broadcast => "broadcast",
                        MessageKind::Direct => "direct",
                    },
                ),
            Event::HealthChanged { score, multiplier } => ev.set("score", *score).set("multiplier", *multiplier),
            Event::JoinSucceeded { via } => ev.set("via", via.as_str()),
            Event::JoinFailed { seeds } => {
                ev.set("seeds", seeds.iter().map(|s| JsValue::from_str(s.as_str())).collect::<Array>())
            }
            Event::AddressConflict { id, known, claimed } => {
                ev.set("member", id.as_str()).set("known", known.as_str()).set("claimed", claimed.as_str())
            }
            Event::Refuted { incarnation } => ev.set("incarnation", *incarnation),
            Event::SendFailed { id, to, topic } => {
                ev.set("id", *id as f64).set("to", to.as_str()).set("topic", topic.as_str())
            }
            Event::BroadcastsMissed { origin, count, .. } => {
                ev.set("origin", origin.as_str()).set("count", *count as f64)
            }
            Event::BroadcastDropped { topic, .. } => ev.set("topic", topic.as_str()),
            #[cfg(feature = "queries")]
            Event::Query { inquiry, topic, payload } => ev
                .set("from", inquiry.origin.as_str())
                .set("addr", inquiry.addr.as_str())
                .set("epoch", inquiry.id.epoch)
                .set("query", inquiry.id.id as f64)
                .set("topic", topic.as_str())
                .set("data", Uint8Array::from(&payload[..])),
            #[cfg(feature = "queries")]
            Event::QueryAck { id, from } => ev.set("query", id.id as f64).set("from", from.as_str()),
            #[cfg(feature = "queries")]
            Event::QueryResponse { id, from, payload } => {
                ev.set("query", id.id as f64).set("from", from.as_str()).set("data", Uint8Array::from(&payload[..]))
            }
            #[cfg(feature = "queries")]
            Event::QueryDone { id, acks, responses } => {
                ev.set("query", id.id as f64).set("acks", *acks).set("responses", *responses)
            }
            Event::StateExpired { origin, topic, key } => {
                ev.set("origin", origin.as_str()).set("topic", topic.as_str()).set("key", Uint8Array::from(&key[..]))
            }
            #[allow(unreachable_patterns)]
            _ => return None,
        }
        .done(),
    )
}

/// What `query` and `respond` say in the build without queries.
#[cfg(not(feature = "queries"))]
fn no_queries() -> JsError {
    JsError::new("queries are not in this build of the wasm: join with `queries: true`")
}

fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Dead => "failed",
        MemberState::Left => "left",
    }
}

/// A member as the npm package's plain object; `rtt` is the last measured round trip (events
/// carry none: the member is new, or its record is what changed).
fn member_to_js(m: &Member<Addr>, rtt: Option<core::time::Duration>) -> JsValue {
    Obj::new()
        .set("name", m.id.as_str())
        .set("addr", m.addr.as_str())
        .set("state", state_name(m.state))
        .set("incarnation", m.incarnation)
        .set("meta", Uint8Array::from(m.meta.as_bytes()))
        .set("rttMs", rtt.map_or(JsValue::NULL, |d| JsValue::from_f64(d.as_secs_f64() * 1_000.0)))
        .done()
}

/// A plain JS object under construction.
struct Obj(Object);

impl Obj {
    fn new() -> Self {
        Obj(Object::new())
    }

    fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), &value.into());
        self
    }

    fn done(self) -> JsValue {
        self.0.into()
    }
}
