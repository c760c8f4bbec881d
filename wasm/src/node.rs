//! [`ShoalNode`], the class exported to JavaScript. Deliberately small: the npm package's JS layer
//! (`wasm/js/shoal.js`) adds string payloads, listeners, async iteration and `pagehide`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use shoal_core::driver::relay::valid_peer_id;
use shoal_core::driver::{Addr, Cluster, ClusterError, EventStream, Transport};
use shoal_core::{Config, Event, Keyring, Member, MemberState, MessageKind, NodeId, SecurityMode};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;

use crate::runtime::BrowserRuntime;
use crate::transport::{WebSocketTransport, WsOptions, DEFAULT_MAX_FRAME};

type Callback = Rc<RefCell<Option<Function>>>;

/// A member of a Shoal cluster, connected through a relay. Create it with `ShoalNode.join(options)`.
#[wasm_bindgen]
pub struct ShoalNode {
    cluster: Cluster,
    transport: Arc<WebSocketTransport>,
    callback: Callback,
}

/// What `join` read from its options object.
struct JoinOptions {
    relay: String,
    name: String,
    peer: Option<String>,
    token: Option<String>,
    meta: Vec<u8>,
    key: Option<[u8; 32]>,
    seeds: Vec<Addr>,
    config: Config,
    websocket: Option<Function>,
    on_event: Option<Function>,
    connect_timeout: Option<Duration>,
    event_capacity: Option<usize>,
    relay_max_frame: usize,
}

#[wasm_bindgen]
impl ShoalNode {
    /// Connects to the relay, starts the member and, when `seeds` are given, joins through them
    /// (rejecting if none answers within the join timeout). Without seeds the member founds a new
    /// cluster that others join through its address.
    ///
    /// Options: `relay` (`ws://host:port`, required), `name` (required, unique in the cluster),
    /// `meta` (string or Uint8Array), `key` (64 hex digits or a 32-byte Uint8Array: AES-256-GCM on
    /// every packet), `label` (cluster label), `token` (relay admission token), `seeds` (array of
    /// addresses), `preset` (`"browser"` default, `"local"`, `"lan"`, `"wan"`), `peer` (relay peer id,
    /// default the name), `joinTimeoutMs`, `connectTimeoutMs`, `eventCapacity`, `relayMaxFrame` (the
    /// relay's frame limit, default 64 KiB: reliable traffic is kept under it), `WebSocket` (a
    /// constructor, for runtimes without a global one) and `onEvent` (a callback that sees every
    /// event from the very start, including the joins of the initial join).
    pub async fn join(options: JsValue) -> Result<ShoalNode, JsError> {
        let opts = JoinOptions::parse(&options).map_err(|e| JsError::new(&e))?;
        let runtime = Arc::new(BrowserRuntime::new().map_err(|e| JsError::new(&crate::transport::describe(&e)))?);
        if opts.key.is_some() {
            let mut probe = [0u8; 8];
            getrandom::fill(&mut probe).map_err(|_| {
                JsError::new("encryption needs crypto.getRandomValues, which this JavaScript environment lacks")
            })?;
        }
        let peer = match &opts.peer {
            Some(p) if valid_peer_id(p) => p.clone(),
            Some(p) => return Err(JsError::new(&format!("invalid relay peer id \"{p}\": use 1-64 of [A-Za-z0-9._-]"))),
            None => default_peer(&opts.name, runtime.as_ref()),
        };
        let url = relay_url(&opts.relay, &peer, opts.token.as_deref());
        let mut ws_options = WsOptions { max_frame: opts.relay_max_frame, ..WsOptions::default() };
        if let Some(t) = opts.connect_timeout {
            ws_options.connect_timeout = t;
        }
        let transport = Arc::new(
            WebSocketTransport::connect(&url, opts.websocket.clone(), ws_options)
                .await
                .map_err(|e| JsError::new(&e))?,
        );

        let mut builder = Cluster::builder(&opts.name).map_err(js_error)?.config(opts.config).metadata(opts.meta);
        if let Some(key) = opts.key {
            builder = builder.keyring(Keyring::new(key));
        }
        if let Some(n) = opts.event_capacity {
            builder = builder.event_capacity(n);
        }
        let transports: Vec<Arc<dyn Transport>> = vec![transport.clone()];
        let (cluster, driver) = match builder.build(transports, runtime) {
            Ok(pair) => pair,
            Err(e) => {
                transport.close().await;
                return Err(js_error(e));
            }
        };
        // Subscribe before the driver runs, so the callback sees every event.
        let callback: Callback = Rc::new(RefCell::new(opts.on_event));
        wasm_bindgen_futures::spawn_local(pump(cluster.events(), callback.clone(), transport.clone()));
        wasm_bindgen_futures::spawn_local(driver.run());
        if !opts.seeds.is_empty() {
            if let Err(e) = cluster.join(&opts.seeds).await {
                cluster.shutdown().await;
                return Err(js_error(e));
            }
        }
        Ok(ShoalNode { cluster, transport, callback })
    }

    /// Replaces the event callback (`null` removes it). Events are plain objects with a `type`.
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&self, callback: Option<Function>) {
        *self.callback.borrow_mut() = callback;
    }

    /// Our name.
    pub fn name(&self) -> String {
        self.cluster.name().as_str().to_owned()
    }

    /// The address other members reach us at (`relay://host:port/peer`).
    #[wasm_bindgen(js_name = localAddr)]
    pub fn local_addr(&self) -> String {
        self.cluster.local_addr().as_str().to_owned()
    }

    /// Every other known member, in any state, as `{name, addr, state, incarnation, meta, rttMs}`
    /// objects (the JS layer adds `metaText`).
    pub fn members(&self) -> Array {
        self.cluster.members().iter().map(member_to_js).collect()
    }

    /// Our own record, as others see it.
    pub fn local(&self) -> JsValue {
        member_to_js(&self.cluster.local_member())
    }

    /// Broadcasts to every member. With `key`, a newer broadcast with the same topic and key replaces
    /// this one wherever it is still queued (latest-value semantics).
    pub fn broadcast(&self, topic: &str, data: &[u8], key: Option<Vec<u8>>) -> Result<(), JsError> {
        match key {
            Some(k) => self.cluster.broadcast_keyed(topic, &k, data),
            None => self.cluster.broadcast(topic, data),
        }
        .map_err(js_error)
    }

    /// Sends a message to the member named `name`: best-effort (one packet) unless `reliable`.
    pub fn send(&self, name: &str, topic: &str, data: &[u8], reliable: Option<bool>) -> Result<(), JsError> {
        let to = NodeId::new(name).map_err(|e| JsError::new(&format!("invalid member name: {e}")))?;
        if reliable.unwrap_or(false) {
            self.cluster.send_reliable(&to, topic, data)
        } else {
            self.cluster.send(&to, topic, data)
        }
        .map_err(js_error)
    }

    /// Sends a message to an address, member or not.
    #[wasm_bindgen(js_name = sendTo)]
    pub fn send_to(&self, addr: &str, topic: &str, data: &[u8], reliable: Option<bool>) -> Result<(), JsError> {
        let to = Addr::parse(addr).map_err(|e| JsError::new(&format!("invalid address \"{addr}\": {e}")))?;
        self.cluster.send_to_addr(&to, topic, data, reliable.unwrap_or(false)).map_err(js_error)
    }

    /// Replaces our metadata and announces it.
    #[wasm_bindgen(js_name = setMetadata)]
    pub fn set_metadata(&self, meta: &[u8]) -> Result<(), JsError> {
        self.cluster.set_metadata(meta).map_err(js_error)
    }

    /// Leaves gracefully and shuts down. Resolves to `true` when the departure was gossiped within
    /// `timeoutMs` (default 2,000), `false` when the member shut down without confirming it.
    pub fn leave(&self, timeout_ms: Option<f64>) -> Promise {
        let cluster = self.cluster.clone();
        let timeout = Duration::from_millis(timeout_ms.unwrap_or(2_000.0).max(0.0) as u64);
        future_to_promise(async move {
            match cluster.leave(timeout).await {
                Ok(()) => Ok(JsValue::TRUE),
                Err(ClusterError::LeaveTimeout) | Err(ClusterError::Shutdown) => Ok(JsValue::FALSE),
                Err(e) => Err(js_error(e).into()),
            }
        })
    }

    /// Stops at once without telling anyone (others detect a failure). Resolves once stopped.
    pub fn shutdown(&self) -> Promise {
        let cluster = self.cluster.clone();
        future_to_promise(async move {
            cluster.shutdown().await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Counters and gauges as a plain object (numbers).
    pub fn metrics(&self) -> JsValue {
        let m = self.cluster.metrics();
        let (s, t, sec) = (&m.stats, &m.transport, &m.security);
        Obj::new()
            .num("membersAlive", m.members_alive)
            .num("membersSuspect", m.members_suspect)
            .num("membersFailed", m.members_dead)
            .num("membersLeft", m.members_left)
            .num("packetsSent", s.packets_sent)
            .num("packetsReceived", s.packets_received)
            .num("bytesSent", s.bytes_sent)
            .num("bytesReceived", s.bytes_received)
            .num("decodeErrors", s.decode_errors)
            .num("probes", s.pings_sent)
            .num("probesFailed", s.probes_failed)
            .num("suspicionsRaised", s.suspicions_raised)
            .num("failuresDeclared", s.failures_declared)
            .num("refutations", s.refutations)
            .num("broadcastsDelivered", s.broadcasts_delivered)
            .num("broadcastsDropped", s.broadcasts_dropped)
            .num("directDelivered", s.direct_delivered)
            .num("pushPulls", s.push_pulls_sent)
            .num("queuedMembershipUpdates", m.queued_membership_updates)
            .num("queuedBroadcasts", m.queued_broadcasts)
            .num("healthScore", m.health_score)
            .num("incarnation", m.incarnation)
            .num("transportErrors", m.transport_errors)
            .num("droppedEvents", m.dropped_events)
            .num("reliableDropped", m.reliable_dropped)
            .set(
                "transport",
                Obj::new()
                    .num("packetsIn", t.packets_in)
                    .num("bytesIn", t.bytes_in)
                    .num("packetsOut", t.packets_out)
                    .num("bytesOut", t.bytes_out)
                    .num("sendErrors", t.send_errors)
                    .num("droppedIn", t.dropped_in)
                    .done(),
            )
            .set(
                "security",
                Obj::new()
                    .num("encryptedSent", sec.encrypted_sent)
                    .num("decrypted", sec.decrypted)
                    .num("unauthenticated", sec.unauthenticated)
                    .num("replays", sec.replays)
                    .num("plaintextRejected", sec.plaintext_rejected)
                    .done(),
            )
            .done()
    }

    /// Why the relay connection closed, once it has (`undefined` while open).
    #[wasm_bindgen(js_name = closeReason)]
    pub fn close_reason(&self) -> Option<String> {
        self.transport.close_reason()
    }
}

impl JoinOptions {
    fn parse(o: &JsValue) -> Result<Self, String> {
        if !o.is_object() {
            return Err("join needs an options object: { relay, name, ... }".into());
        }
        let relay = string(o, "relay")?.ok_or("options.relay (the relay's ws:// URL) is required")?;
        let name = string(o, "name")?.ok_or("options.name is required")?;
        let mut config = match string(o, "preset")?.as_deref() {
            None | Some("browser") => Config::browser(),
            Some("local") => Config::local(),
            Some("lan") => Config::lan(),
            Some("wan") => Config::wan(),
            Some(p) => return Err(format!("unknown preset \"{p}\": use browser, local, lan or wan")),
        };
        // Everything reliable (push-pull state, reliable messages, large metadata) must fit in one
        // relay frame: `[len][address][sealed packet]`.
        let relay_max_frame = number(o, "relayMaxFrame")?.map_or(DEFAULT_MAX_FRAME, |n| n as usize);
        let budget = relay_max_frame.saturating_sub(1 + 255 + shoal_core::security::OVERHEAD);
        if budget < config.max_packet_size {
            return Err(format!("options.relayMaxFrame must leave room for {} byte packets", config.max_packet_size));
        }
        config.max_reliable_size = config.max_reliable_size.min(budget);
        config.max_meta_size = config.max_meta_size.min(config.max_reliable_size / 4);
        if let Some(ms) = number(o, "joinTimeoutMs")? {
            config.join_timeout = Duration::from_millis(ms as u64);
        }
        config.label = string(o, "label")?.unwrap_or_default();
        let key = match get(o, "key") {
            None => None,
            Some(k) => Some(parse_key(&k)?),
        };
        if key.is_some() {
            config.security = SecurityMode::Encrypted;
        }
        let meta = match get(o, "meta") {
            None => Vec::new(),
            Some(m) => bytes(&m).ok_or("options.meta must be a string or a Uint8Array")?,
        };
        let seeds = match get(o, "seeds") {
            None => Vec::new(),
            Some(s) if Array::is_array(&s) => Array::from(&s)
                .iter()
                .map(|v| {
                    let text = v.as_string().ok_or("options.seeds must hold address strings")?;
                    Addr::parse(&text).map_err(|e| format!("invalid seed address \"{text}\": {e}"))
                })
                .collect::<Result<_, String>>()?,
            Some(s) => match s.as_string() {
                Some(text) => vec![Addr::parse(&text).map_err(|e| format!("invalid seed address \"{text}\": {e}"))?],
                None => return Err("options.seeds must be an array of addresses".into()),
            },
        };
        let function = |key: &str| -> Result<Option<Function>, String> {
            match get(o, key) {
                None => Ok(None),
                Some(f) => f.dyn_into::<Function>().map(Some).map_err(|_| format!("options.{key} must be a function")),
            }
        };
        Ok(JoinOptions {
            relay,
            name,
            peer: string(o, "peer")?,
            token: string(o, "token")?,
            meta,
            key,
            seeds,
            config,
            websocket: function("WebSocket")?,
            on_event: function("onEvent")?,
            connect_timeout: number(o, "connectTimeoutMs")?.map(|ms| Duration::from_millis(ms as u64)),
            event_capacity: number(o, "eventCapacity")?.map(|n| n.max(1.0) as usize),
            relay_max_frame,
        })
    }
}

/// `options[key]`, with `undefined` and `null` as absent.
fn get(o: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(o, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn string(o: &JsValue, key: &str) -> Result<Option<String>, String> {
    get(o, key).map(|v| v.as_string().ok_or_else(|| format!("options.{key} must be a string"))).transpose()
}

fn number(o: &JsValue, key: &str) -> Result<Option<f64>, String> {
    get(o, key)
        .map(|v| v.as_f64().filter(|n| *n >= 0.0).ok_or_else(|| format!("options.{key} must be a non-negative number")))
        .transpose()
}

/// A string (as UTF-8), a Uint8Array or any ArrayBuffer view, or an ArrayBuffer.
fn bytes(v: &JsValue) -> Option<Vec<u8>> {
    if let Some(s) = v.as_string() {
        return Some(s.into_bytes());
    }
    if let Some(b) = v.dyn_ref::<ArrayBuffer>() {
        return Some(Uint8Array::new(b).to_vec());
    }
    if ArrayBuffer::is_view(v) {
        let buffer = Reflect::get(v, &JsValue::from_str("buffer")).ok()?;
        let offset = Reflect::get(v, &JsValue::from_str("byteOffset")).ok()?.as_f64()? as u32;
        let len = Reflect::get(v, &JsValue::from_str("byteLength")).ok()?.as_f64()? as u32;
        return Some(Uint8Array::new_with_byte_offset_and_length(&buffer, offset, len).to_vec());
    }
    None
}

/// 64 hex digits or 32 bytes.
fn parse_key(k: &JsValue) -> Result<[u8; 32], String> {
    let raw = match k.as_string() {
        Some(hex) => {
            let hex = hex.trim();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("options.key must be 64 hex digits (32 bytes)".into());
            }
            (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
        }
        None => bytes(k).ok_or("options.key must be a hex string or a Uint8Array")?,
    };
    raw.try_into().map_err(|v: Vec<u8>| format!("options.key must be 32 bytes, got {}", v.len()))
}

/// The relay peer id for `name`: the name itself when it is a valid peer id (so a reloaded page
/// comes back at the same address), else a sanitised form with a random suffix.
fn default_peer(name: &str, runtime: &BrowserRuntime) -> String {
    if valid_peer_id(name) {
        return name.to_owned();
    }
    use shoal_core::driver::Runtime;
    let mut peer: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .take(48)
        .collect();
    peer.push_str(&format!("-{:08x}", runtime.random_seed() as u32));
    peer
}

/// `ws://host:port` -> `ws://host:port/ws?peer=<peer>&token=<token>`. An explicit path is kept;
/// `http(s)://` becomes `ws(s)://`.
fn relay_url(relay: &str, peer: &str, token: Option<&str>) -> String {
    let relay = relay.trim();
    let relay = if let Some(rest) = relay.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = relay.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        relay.to_owned()
    };
    let base = relay.trim_end_matches('/');
    let host_and_path = base.split_once("://").map_or(base, |(_, rest)| rest);
    let mut url = if host_and_path.contains('/') { base.to_owned() } else { format!("{base}/ws") };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("peer=");
    url.push_str(&String::from(js_sys::encode_uri_component(peer)));
    if let Some(t) = token {
        url.push_str("&token=");
        url.push_str(&String::from(js_sys::encode_uri_component(t)));
    }
    url
}

/// Delivers every event to the current callback, then a final `shutdown` event.
async fn pump(mut events: EventStream, callback: Callback, transport: Arc<WebSocketTransport>) {
    while let Some(event) = events.next().await {
        if let Some(obj) = event_to_js(&event) {
            deliver(&callback, &obj);
        }
    }
    let mut shutdown = Obj::new().set("type", "shutdown");
    if let Some(reason) = transport.close_reason() {
        shutdown = shutdown.set("reason", reason);
    }
    deliver(&callback, &shutdown.done());
}

fn deliver(callback: &Callback, event: &JsValue) {
    // Clone first: the callback may replace itself.
    let f = callback.borrow().clone();
    if let Some(f) = f {
        if let Err(e) = f.call1(&JsValue::UNDEFINED, event) {
            crate::console_error(&format!("shoal: event callback threw: {}", crate::transport::describe(&e)));
        }
    }
}

fn event_to_js(event: &Event<Addr>) -> Option<JsValue> {
    let ev = |t: &str| Obj::new().set("type", t);
    Some(
        match event {
            Event::Joined(m) => ev("join").set("member", m.id.as_str()).set("info", member_to_js(m)),
            Event::Updated(m) => ev("update").set("member", m.id.as_str()).set("info", member_to_js(m)),
            Event::Suspected { id, incarnation, by } => {
                ev("suspect").set("member", id.as_str()).set("incarnation", *incarnation).set("by", by.as_str())
            }
            Event::Alive { id, incarnation } => ev("alive").set("member", id.as_str()).set("incarnation", *incarnation),
            Event::Failed { id, incarnation, by } => {
                ev("fail").set("member", id.as_str()).set("incarnation", *incarnation).set("by", by.as_str())
            }
            Event::Left { id, incarnation } => ev("leave").set("member", id.as_str()).set("incarnation", *incarnation),
            Event::Message { from, topic, payload, kind } => ev("message")
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
            Event::HealthChanged { score, multiplier } => {
                ev("health").set("score", *score).set("multiplier", *multiplier)
            }
            Event::JoinSucceeded { via } => ev("joined").set("via", via.as_str()),
            Event::JoinFailed { seeds } => {
                ev("join-failed").set("seeds", seeds.iter().map(|s| JsValue::from_str(s.as_str())).collect::<Array>())
            }
            Event::AddressConflict { id, known, claimed } => {
                ev("conflict").set("member", id.as_str()).set("known", known.as_str()).set("claimed", claimed.as_str())
            }
            Event::Refuted { incarnation } => ev("refuted").set("incarnation", *incarnation),
        }
        .done(),
    )
}

fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Dead => "failed",
        MemberState::Left => "left",
    }
}

fn member_to_js(m: &Member<Addr>) -> JsValue {
    let meta = m.meta.as_bytes();
    Obj::new()
        .set("name", m.id.as_str())
        .set("addr", m.addr.as_str())
        .set("state", state_name(m.state))
        .set("incarnation", m.incarnation)
        .set("meta", Uint8Array::from(meta))
        .set("rttMs", m.rtt().map_or(JsValue::NULL, |d| JsValue::from_f64(d.as_secs_f64() * 1_000.0)))
        .done()
}

fn js_error(e: ClusterError) -> JsError {
    JsError::new(&e.to_string())
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

    /// A counter as a JS number (exact below 2^53).
    fn num(self, key: &str, value: u64) -> Self {
        self.set(key, JsValue::from_f64(value as f64))
    }

    fn done(self) -> JsValue {
        self.0.into()
    }
}
