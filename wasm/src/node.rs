//! [`ShoalNode`], the class exported to JavaScript. Deliberately small: the npm package's JS layer
//! (`wasm/js/shoal.js`) adds string payloads, listeners, async iteration and `pagehide`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use shoal_core::driver::relay::SignalKind;
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

/// What `join` read from its options object. The JS layer (`normalizeJoinOptions` in
/// `wasm/js/shoal.js`) has already checked types, decoded the key and built the relay URL, so
/// reading here needs no error messages of its own (they cost wasm size).
struct JoinOptions {
    url: String,
    name: String,
    meta: Vec<u8>,
    key: Option<[u8; 32]>,
    seeds: Vec<Addr>,
    config: Config,
    websocket: Option<Function>,
    on_event: Option<Function>,
    on_disconnect: Option<Function>,
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
    /// Options, as normalised by the JS layer (`normalizeJoinOptions` in `wasm/js/shoal.js`): `url`
    /// (the full relay URL, peer id and token included), `name`, `meta` and `key` (Uint8Arrays),
    /// `label`, `seeds` (array of address strings), `preset`, `joinTimeoutMs`, `connectTimeoutMs`,
    /// `eventCapacity`, `relayMaxFrame` (the relay's frame limit, default 64 KiB: reliable traffic is
    /// kept under it), `WebSocket` (a constructor, for runtimes without a global one), `onEvent`
    /// (a callback that sees every event from the very start, including the joins of the initial
    /// join) and `onDisconnect` (called with a reason when the relay connection drops: the member
    /// keeps running and the caller reconnects with `reconnect()`; without it a drop shuts the
    /// member down).
    pub async fn join(options: JsValue) -> Result<ShoalNode, JsError> {
        let opts = JoinOptions::parse(&options).map_err(|e| JsError::new(&e))?;
        let runtime = Arc::new(BrowserRuntime::new().map_err(|e| JsError::new(&crate::transport::describe(&e)))?);
        if opts.key.is_some() {
            let mut probe = [0u8; 8];
            getrandom::fill(&mut probe).map_err(|_| {
                JsError::new("encryption needs crypto.getRandomValues, which this JavaScript environment lacks")
            })?;
        }
        let url = opts.url.clone();
        let mut ws_options = WsOptions { max_frame: opts.relay_max_frame, ..WsOptions::default() };
        if let Some(t) = opts.connect_timeout {
            ws_options.connect_timeout = t;
        }
        let transport = Arc::new(
            WebSocketTransport::connect(&url, opts.websocket.clone(), ws_options, opts.on_disconnect.clone())
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
        // A relay outage is our link's, not the other members' fault: accuse nobody meanwhile.
        let link = cluster.clone();
        transport.on_link(move |up| {
            let _ = link.set_link_up(up);
        });
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
        .map(|_| ())
        .map_err(js_error)
    }

    /// Sends a message to the member named `name`: best-effort (one packet) unless `reliable`. A
    /// reliable message returns its id, which a `send-failed` event names if it is never
    /// acknowledged.
    pub fn send(&self, name: &str, topic: &str, data: &[u8], reliable: Option<bool>) -> Result<Option<f64>, JsError> {
        let to = NodeId::new(name).map_err(|e| JsError::new(&format!("invalid member name: {e}")))?;
        if reliable.unwrap_or(false) {
            self.cluster.send_reliable(&to, topic, data).map(|id| Some(id as f64))
        } else {
            self.cluster.send(&to, topic, data).map(|()| None)
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

    /// Counters and gauges as numbers, in the order of `METRIC_NAMES` in `wasm/js/shoal.js` (which
    /// builds the object: the names cost nothing in the wasm there).
    #[wasm_bindgen(js_name = metricValues)]
    pub fn metric_values(&self) -> Vec<f64> {
        let m = self.cluster.metrics();
        let (s, t, sec) = (&m.stats, &m.transport, &m.security);
        [
            m.members_alive,
            m.members_suspect,
            m.members_dead,
            m.members_left,
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
            m.queued_membership_updates,
            m.queued_broadcasts,
            m.health_score,
            m.incarnation,
            m.transport_errors,
            m.dropped_events,
            m.reliable_dropped,
            m.best_effort_dropped,
            m.callback_panics,
            m.sends_abandoned,
            s.link_outages,
            s.stalls,
            t.packets_in,
            t.bytes_in,
            t.packets_out,
            t.bytes_out,
            t.send_errors,
            t.dropped_in,
            sec.encrypted_sent,
            sec.decrypted,
            sec.unauthenticated,
            sec.replays,
            sec.plaintext_rejected,
        ]
        .iter()
        .map(|n| *n as f64)
        .collect()
    }

    /// Sends a WebRTC signalling message (`kind`: 1 offer, 2 answer, 3 ICE candidate, 4 bye) to the
    /// member of the same relay at `to`. False when the relay connection refused it.
    pub fn signal(&self, to: &str, kind: u8, body: &str) -> bool {
        SignalKind::from_u8(kind).is_some_and(|k| self.transport.signal(to, k, body))
    }

    /// Sets the function receiving signalling messages: `(from, kind, body) => void`.
    #[wasm_bindgen(js_name = onSignal)]
    pub fn on_signal(&self, handler: Option<Function>) {
        self.transport.on_signal(handler);
    }

    /// Registers the direct path to the member at `addr`: `send(bytes, reliable) => boolean`, false
    /// when the packet should take the relay instead. `null` removes it.
    #[wasm_bindgen(js_name = setDirect)]
    pub fn set_direct(&self, addr: &str, send: Option<Function>) {
        self.transport.set_direct(addr, send);
    }

    /// Hands over a packet that arrived on `from`'s direct path (ignored unless one is registered).
    #[wasm_bindgen(js_name = deliverDirect)]
    pub fn deliver_direct(&self, from: &str, data: Vec<u8>) -> bool {
        self.transport.deliver_direct(from, data)
    }

    /// Packets and bytes carried in each direction, in total and over direct paths:
    /// `[packetsOut, bytesOut, packetsIn, bytesIn, directPacketsOut, directBytesOut, directPacketsIn,
    /// directBytesIn]` (the JS layer names them).
    #[wasm_bindgen(js_name = trafficCounters)]
    pub fn traffic_counters(&self) -> Vec<f64> {
        let (all, direct) = self.transport.traffic();
        [all, direct]
            .iter()
            .flat_map(|c| [c.packets_out, c.bytes_out, c.packets_in, c.bytes_in])
            .map(|n| n as f64)
            .collect()
    }

    /// After `onDisconnect`: opens a new relay connection with the same peer id. Resolves to
    /// `undefined` once connected again (at the same address), or to the reason this attempt failed
    /// (try again later); rejects when the member cannot continue (it was shut down, or the relay
    /// now gives it another address), in which case it shuts down.
    pub fn reconnect(&self) -> Promise {
        let transport = self.transport.clone();
        future_to_promise(async move {
            match transport.reconnect().await {
                Ok(None) => Ok(JsValue::UNDEFINED),
                Ok(Some(reason)) => Ok(reason.into()),
                Err(reason) => Err(JsError::new(&reason).into()),
            }
        })
    }

    /// Gives up on the relay connection: the member shuts down with `reason` as its close reason.
    #[wasm_bindgen(js_name = closeTransport)]
    pub fn close_transport(&self, reason: &str) {
        self.transport.fail(reason);
    }

    /// Why the relay connection closed, once it has (`undefined` while open).
    #[wasm_bindgen(js_name = closeReason)]
    pub fn close_reason(&self) -> Option<String> {
        self.transport.close_reason()
    }
}

impl JoinOptions {
    fn parse(o: &JsValue) -> Result<Self, String> {
        let text = |key: &str| get(o, key).and_then(|v| v.as_string());
        let number = |key: &str| get(o, key).and_then(|v| v.as_f64());
        let function = |key: &str| get(o, key).map(|f| f.unchecked_into::<Function>());
        let bytes = |key: &str| get(o, key).map(|v| Uint8Array::new(&v).to_vec());
        let mut config = match text("preset").as_deref() {
            Some("local") => Config::local(),
            Some("lan") => Config::lan(),
            Some("wan") => Config::wan(),
            _ => Config::browser(),
        };
        // Everything reliable (push-pull state, reliable messages, large metadata) must fit in one
        // relay frame: `[len][address][sealed packet]`.
        let relay_max_frame = number("relayMaxFrame").map_or(DEFAULT_MAX_FRAME, |n| n as usize);
        let budget = relay_max_frame.saturating_sub(1 + 255 + shoal_core::security::OVERHEAD);
        if budget < config.max_packet_size {
            return Err("options.relayMaxFrame is too small for the preset's packet size".into());
        }
        config.max_reliable_size = config.max_reliable_size.min(budget);
        config.max_meta_size = config.max_meta_size.min(config.max_reliable_size / 4);
        if let Some(ms) = number("joinTimeoutMs") {
            config.join_timeout = Duration::from_millis(ms as u64);
        }
        config.label = text("label").unwrap_or_default();
        let key = bytes("key").and_then(|k| <[u8; 32]>::try_from(k).ok());
        if key.is_some() {
            config.security = SecurityMode::Encrypted;
        }
        let mut seeds = Vec::new();
        for v in get(o, "seeds").map(|s| Array::from(&s)).unwrap_or_default().iter() {
            let text = v.as_string().unwrap_or_default();
            match Addr::parse(&text) {
                Ok(a) => seeds.push(a),
                Err(e) => return Err(["invalid seed address \"", &text, "\": ", &e.to_string()].concat()),
            }
        }
        Ok(JoinOptions {
            url: text("url").unwrap_or_default(),
            name: text("name").unwrap_or_default(),
            meta: bytes("meta").unwrap_or_default(),
            key,
            seeds,
            config,
            websocket: function("WebSocket"),
            on_event: function("onEvent"),
            on_disconnect: function("onDisconnect"),
            connect_timeout: number("connectTimeoutMs").map(|ms| Duration::from_millis(ms as u64)),
            event_capacity: number("eventCapacity").map(|n| n.max(1.0) as usize),
            relay_max_frame,
        })
    }
}

/// `options[key]`, with `undefined` and `null` as absent.
fn get(o: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(o, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
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

/// The event as the JS object the npm package hands out: `type` is the event's name in Shoal's one
/// vocabulary ([`Event::name`], also the agent's `--json` `event`).
fn event_to_js(event: &Event<Addr>) -> Option<JsValue> {
    let ev = Obj::new().set("type", event.name());
    Some(
        match event {
            Event::Joined(m) | Event::Updated(m) => ev.set("member", m.id.as_str()).set("info", member_to_js(m)),
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
            _ => return None,
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

    fn done(self) -> JsValue {
        self.0.into()
    }
}
