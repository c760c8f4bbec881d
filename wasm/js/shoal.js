// The JavaScript layer of the `shoal` package, shared by every entry point (browser, bundler, Node.js,
// Deno, workerd). The wasm façade (`ShoalNode`, from wasm/src/node.rs) stays small; ergonomics live
// here: string payloads, listeners, async iteration of events, `pagehide`, Prometheus text.

import { DirectPaths } from "./rtc.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes from a string (UTF-8), Uint8Array, ArrayBuffer or other ArrayBuffer view. */
export function toBytes(data, what = "data") {
  if (data === undefined || data === null) return new Uint8Array(0);
  if (typeof data === "string") return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`${what} must be a string, Uint8Array or ArrayBuffer`);
}

function decorateMember(m) {
  let text;
  Object.defineProperty(m, "metaText", {
    enumerable: true,
    get: () => (text ??= decoder.decode(m.meta)),
  });
  return m;
}

function decorateEvent(e) {
  if (e.info) decorateMember(e.info);
  if (e.type === "message") {
    let text;
    Object.defineProperty(e, "text", {
      enumerable: true,
      get: () => (text ??= decoder.decode(e.data)),
    });
  }
  return e;
}

/** Renders a `metrics()` object in the Prometheus text format (names prefixed `shoal_`). */
export function prometheusText(m) {
  const snake = (k) => k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
  const gauges = new Set([
    "queuedMembershipUpdates",
    "queuedBroadcasts",
    "healthScore",
    "incarnation",
    "droppedEvents",
  ]);
  const lines = [];
  const put = (name, value, gauge) => {
    lines.push(`# TYPE shoal_${name} ${gauge ? "gauge" : "counter"}`, `shoal_${name} ${value}`);
  };
  lines.push("# TYPE shoal_members gauge");
  for (const state of ["Alive", "Suspect", "Failed", "Left"]) {
    lines.push(`shoal_members{state="${state.toLowerCase()}"} ${m["members" + state]}`);
  }
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === "number" && !k.startsWith("members")) {
      put(snake(k) + (gauges.has(k) ? "" : "_total"), v, gauges.has(k));
    }
  }
  for (const group of ["transport", "security"]) {
    for (const [k, v] of Object.entries(m[group] ?? {})) put(`${group}_${snake(k)}_total`, v, false);
  }
  return lines.join("\n") + "\n";
}

// The order of `ShoalNode.metricValues()` (wasm/src/node.rs): top-level counters and gauges, then
// the transport and security groups.
const METRIC_NAMES = [
  "membersAlive", "membersSuspect", "membersFailed", "membersLeft", "packetsSent", "packetsReceived",
  "bytesSent", "bytesReceived", "decodeErrors", "probes", "probesFailed", "suspicionsRaised",
  "failuresDeclared", "refutations", "broadcastsDelivered", "broadcastsDropped", "broadcastsMissed",
  "broadcastsRepaired", "directDelivered", "reliableRetries", "reliableFailed", "pushPulls", "queuedMembershipUpdates", "queuedBroadcasts", "healthScore", "incarnation",
  "transportErrors", "droppedEvents", "reliableDropped", "bestEffortDropped", "callbackPanics", "sendsAbandoned",
];
const METRIC_GROUPS = {
  transport: ["packetsIn", "bytesIn", "packetsOut", "bytesOut", "sendErrors", "droppedIn"],
  security: ["encryptedSent", "decrypted", "unauthenticated", "replays", "plaintextRejected"],
};

function metricsObject(values) {
  const m = {};
  let i = 0;
  for (const k of METRIC_NAMES) m[k] = values[i++];
  for (const [group, keys] of Object.entries(METRIC_GROUPS)) {
    m[group] = {};
    for (const k of keys) m[group][k] = values[i++];
  }
  return m;
}

const PEER_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Checks `Shoal.join` options and puts them in the form the wasm façade reads (wasm/src/node.rs,
 * `JoinOptions`): typed values, the key as 32 bytes, the full relay URL. Validation lives here rather
 * than in Rust because every error message compiled into the wasm costs bundle size.
 */
export function normalizeJoinOptions(options) {
  if (typeof options !== "object" || options === null) throw new TypeError("join needs an options object: { relay, name, ... }");
  const opts = { ...options };
  const str = (k, required) => {
    const v = opts[k];
    if (v === undefined || v === null) {
      if (required) throw new TypeError(`options.${k} is required`);
      return undefined;
    }
    if (typeof v !== "string") throw new TypeError(`options.${k} must be a string`);
    return v;
  };
  const relay = str("relay", true);
  if (relay === undefined) throw new TypeError("options.relay (the relay's ws:// URL) is required");
  str("name", true);
  for (const k of ["label", "token", "peer", "preset"]) str(k);
  for (const k of ["joinTimeoutMs", "connectTimeoutMs", "eventCapacity", "relayMaxFrame"]) {
    const v = opts[k];
    if (v !== undefined && v !== null && !(typeof v === "number" && v >= 0)) {
      throw new TypeError(`options.${k} must be a non-negative number`);
    }
  }
  for (const k of ["WebSocket", "onEvent"]) {
    if (opts[k] !== undefined && opts[k] !== null && typeof opts[k] !== "function") {
      throw new TypeError(`options.${k} must be a function`);
    }
  }
  if (opts.preset !== undefined && !["browser", "local", "lan", "wan"].includes(opts.preset)) {
    throw new TypeError(`unknown preset "${opts.preset}": use browser, local, lan or wan`);
  }
  opts.reconnect = reconnectOptions(opts.reconnect);
  if (opts.iceServers !== undefined && !Array.isArray(opts.iceServers)) {
    throw new TypeError("options.iceServers must be an array of { urls, username?, credential? }");
  }
  if (opts.meta !== undefined && opts.meta !== null) opts.meta = toBytes(opts.meta, "meta");
  if (opts.key !== undefined && opts.key !== null) opts.key = parseKey(opts.key);
  if (typeof opts.seeds === "string") opts.seeds = [opts.seeds];
  if (opts.seeds !== undefined && opts.seeds !== null) {
    if (!Array.isArray(opts.seeds)) throw new TypeError("options.seeds must be an array of addresses");
    if (opts.seeds.some((a) => typeof a !== "string")) throw new TypeError("options.seeds must hold address strings");
  }
  let peer = opts.peer;
  if (peer !== undefined && !PEER_ID.test(peer)) {
    throw new TypeError(`invalid relay peer id "${peer}": use 1-64 of [A-Za-z0-9._-]`);
  }
  peer ??= defaultPeer(opts.name);
  opts.url = relayUrl(relay, peer, opts.token);
  return opts;
}

/** `reconnect`: `false`, or the backoff between attempts (`true` and absent: the defaults). */
function reconnectOptions(r) {
  if (r === false) return false;
  const o = { initialDelayMs: 250, maxDelayMs: 5000, maxAttempts: Infinity };
  if (r === undefined || r === null || r === true) return o;
  if (typeof r !== "object") throw new TypeError("options.reconnect must be a boolean or { initialDelayMs, maxDelayMs, maxAttempts }");
  for (const k of Object.keys(o)) {
    const v = r[k];
    if (v === undefined) continue;
    if (!(typeof v === "number" && v >= 0)) throw new TypeError(`options.reconnect.${k} must be a non-negative number`);
    o[k] = v;
  }
  return o;
}

/** 64 hex digits or 32 bytes. */
function parseKey(k) {
  if (typeof k === "string") {
    const hex = k.trim();
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new TypeError("options.key must be 64 hex digits (32 bytes)");
    return Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
  }
  const bytes = toBytes(k, "key");
  if (bytes.length !== 32) throw new TypeError(`options.key must be 32 bytes, got ${bytes.length}`);
  return bytes;
}

/** The name itself when it is a valid peer id (a reloaded page comes back at the same address),
 * else a sanitised form with a random suffix. */
function defaultPeer(name) {
  if (PEER_ID.test(name)) return name;
  const suffix = (Math.random() * 2 ** 32 >>> 0).toString(16).padStart(8, "0");
  return name.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 48) + "-" + suffix;
}

/** `ws://host:port` -> `ws://host:port/ws?peer=<peer>&token=<token>`. An explicit path is kept;
 * `http(s)://` becomes `ws(s)://`. */
function relayUrl(relay, peer, token) {
  let base = relay.trim().replace(/^http(s?):\/\//, "ws$1://").replace(/\/+$/, "");
  const rest = base.includes("://") ? base.slice(base.indexOf("://") + 3) : base;
  let url = rest.includes("/") ? base : base + "/ws";
  url += (url.includes("?") ? "&" : "?") + "peer=" + encodeURIComponent(peer);
  if (token !== undefined) url += "&token=" + encodeURIComponent(token);
  return url;
}

/**
 * Makes the `Shoal` class for one platform.
 * @param load async () => the wasm-bindgen module (initialised), exposing `ShoalNode`
 * @param platform { defaultWebSocket?: async () => constructor | undefined }
 */
export function makeShoal(load, platform = {}) {
  class Shoal {
    #node = null;
    #listeners = new Map(); // type -> Set<callback>
    #iterators = new Set();
    #ready = false;
    #early = [];
    #closed = false;
    #closeReason = undefined;
    #unhookPageHide = null;
    #rtc = null;
    #reconnect = false; // options, or false
    #disconnectedAt = null; // Date.now() of the drop while reconnecting, else null
    #drops = 0;
    #wakeReconnect = null;

    /** Use `Shoal.join(options)`. */
    constructor(token) {
      if (token !== PRIVATE) throw new TypeError("use `await Shoal.join(options)` to create a member");
    }

    /**
     * Connects to the relay and joins the cluster through `seeds` (without seeds: founds a new one).
     * Events from the start (including the joins of the initial join) reach the listeners and
     * iterators registered right after the returned promise resolves, and `options.on` listeners.
     */
    static async join(options = {}) {
      const opts = normalizeJoinOptions(options);
      const bindings = await load();
      if (!opts.WebSocket && typeof globalThis.WebSocket !== "function" && platform.defaultWebSocket) {
        opts.WebSocket = await platform.defaultWebSocket();
      }
      const shoal = new Shoal(PRIVATE);
      for (const [type, cb] of Object.entries(options.on ?? {})) shoal.on(type, cb);
      delete opts.on;
      opts.onEvent = (e) => shoal.#receive(e);
      shoal.#reconnect = opts.reconnect;
      if (opts.reconnect) opts.onDisconnect = (reason) => shoal.#disconnected(reason);
      try {
        shoal.#node = await bindings.ShoalNode.join(opts);
      } catch (e) {
        shoal.#closed = true;
        throw e;
      }
      const tuning = typeof opts.webrtc === "object" && opts.webrtc !== null ? opts.webrtc : {};
      const rtcOptions = { ...tuning, iceServers: opts.iceServers ?? [], RTCPeerConnection: opts.RTCPeerConnection };
      if (opts.webrtc !== false && DirectPaths.available(rtcOptions)) {
        shoal.#rtc = new DirectPaths(shoal.#node, rtcOptions);
        shoal.#rtc.start(shoal.#node.members());
      }
      // Deliver the events that arrived during the join after the caller's continuation (a
      // microtask) has had the chance to register listeners: the next macrotask.
      setTimeout(() => shoal.#flushEarly(), 0);
      if (opts.leaveOnPageHide !== false) shoal.#hookPageHide();
      return shoal;
    }

    #receive(e) {
      decorateEvent(e);
      if (!this.#ready) {
        if (this.#early.length < 4096) this.#early.push(e);
        if (e.type === "shutdown") this.#markClosed(e);
        return;
      }
      this.#dispatch(e);
    }

    #flushEarly() {
      this.#ready = true;
      const early = this.#early;
      this.#early = [];
      for (const e of early) this.#dispatch(e);
    }

    #dispatch(e) {
      this.#rtc?.onEvent(e);
      for (const key of [e.type, "*"]) {
        for (const cb of this.#listeners.get(key) ?? []) {
          try {
            cb(e);
          } catch (err) {
            console.error(`shoal: a '${key}' listener threw`, err);
          }
        }
      }
      for (const it of this.#iterators) it.push(e);
      if (e.type === "shutdown") {
        this.#markClosed(e);
        for (const it of this.#iterators) it.end();
        this.#iterators.clear();
      }
    }

    /** The relay connection dropped (the wasm transport calls this): say so, then reconnect. */
    #disconnected(reason) {
      this.#receive({ type: "disconnect", reason });
      this.#drops++;
      if (this.#disconnectedAt !== null) return; // the running loop sees #drops change
      this.#disconnectedAt = Date.now();
      this.#reconnectLoop(reason);
    }

    /**
     * Reconnects with exponential backoff and jitter until connected, shut down, or out of
     * attempts. The member keeps running meanwhile: direct WebRTC channels still carry packets, and
     * SWIM sorts out who is alive once the relay path is back (a member declared failed while away
     * refutes it on its return).
     */
    async #reconnectLoop(reason) {
      const { initialDelayMs, maxDelayMs, maxAttempts } = this.#reconnect;
      for (let attempt = 1; ; attempt++) {
        if (attempt > maxAttempts) {
          this.#node?.closeTransport(`relay connection lost (${reason}); no reconnect after ${maxAttempts} attempts`);
          return;
        }
        const backoff = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt - 1, 30));
        await this.#pause(backoff * (0.5 + Math.random() / 2));
        if (this.#closed) return;
        if (!this.#node) continue; // dropped during the join: wait until it settles
        const drops = this.#drops;
        let failure;
        try {
          failure = await this.#node.reconnect();
        } catch {
          return; // the member shut down (its last event says why)
        }
        if (failure === undefined && this.#drops !== drops) failure = "the new connection dropped at once";
        if (failure === undefined) {
          const downtimeMs = Date.now() - this.#disconnectedAt;
          this.#disconnectedAt = null;
          this.#receive({ type: "reconnect", attempts: attempt, downtimeMs });
          return;
        }
        reason = failure;
      }
    }

    /** Sleeps `ms`, cut short when the platform says the network is back (`online`). */
    #pause(ms) {
      return new Promise((resolve) => {
        const g = globalThis;
        const done = () => {
          clearTimeout(timer);
          if (typeof g.removeEventListener === "function") g.removeEventListener("online", done);
          this.#wakeReconnect = null;
          resolve();
        };
        const timer = setTimeout(done, ms);
        if (typeof g.addEventListener === "function") g.addEventListener("online", done);
        this.#wakeReconnect = done;
      });
    }

    #markClosed(e) {
      this.#closed = true;
      this.#wakeReconnect?.();
      this.#rtc?.close(true);
      this.#closeReason = e.reason;
      this.#unhookPageHide?.();
      this.#unhookPageHide = null;
    }

    #hookPageHide() {
      const g = globalThis;
      if (typeof g.addEventListener !== "function" || typeof g.document === "undefined") return;
      const onPageHide = () => {
        // Tell the others now: the leave gossip goes out in the microtasks that follow.
        if (!this.#closed) this.#node.leave(0).catch(() => {});
        this.#rtc?.close();
      };
      const remove = typeof g.removeEventListener === "function" ? g.removeEventListener.bind(g) : () => {};
      g.addEventListener("pagehide", onPageHide);
      this.#unhookPageHide = () => remove("pagehide", onPageHide);
    }

    /** Our name. */
    get name() {
      return this.#node.name();
    }

    /** The address other members reach us at (`relay://host:port/peer`); a seed for others. */
    get addr() {
      return this.#node.localAddr();
    }

    /** Our own record, as others see it. */
    get local() {
      return decorateMember(this.#node.local());
    }

    /** True once the member has shut down (left, shut down, or lost its relay connection for
     * good: replaced by another connection with its peer id, or out of reconnect attempts). */
    get closed() {
      return this.#closed;
    }

    /** False while the relay connection is down and being re-established. */
    get connected() {
      return !this.#closed && this.#disconnectedAt === null;
    }

    /** Why the relay connection closed, once it has. */
    get closeReason() {
      return this.#closeReason ?? this.#node.closeReason();
    }

    /** Every other known member, in any state. */
    members() {
      return this.#node.members().map(decorateMember);
    }

    /** Members believed alive. */
    aliveMembers() {
      return this.members().filter((m) => m.state === "alive");
    }

    /** Calls `cb` for every event of `type` ('*' for all). Returns a function that unsubscribes. */
    on(type, cb) {
      if (typeof cb !== "function") throw new TypeError("listener must be a function");
      let set = this.#listeners.get(type);
      if (!set) this.#listeners.set(type, (set = new Set()));
      set.add(cb);
      return () => this.off(type, cb);
    }

    /** Removes a listener added with `on`. */
    off(type, cb) {
      this.#listeners.get(type)?.delete(cb);
    }

    /** Resolves with the next event of `type` (rejects if the member shuts down first). */
    once(type) {
      return new Promise((resolve, reject) => {
        if (this.#closed) return reject(new Error("the member has shut down"));
        const offs = [];
        const done = () => offs.forEach((f) => f());
        offs.push(this.on(type, (e) => (done(), resolve(e))));
        if (type !== "shutdown" && type !== "*") {
          offs.push(this.on("shutdown", () => (done(), reject(new Error("the member has shut down")))));
        }
      });
    }

    /**
     * An async iterator over events from now on: `for await (const e of shoal.events())`.
     * Holds at most `bufferSize` undelivered events, dropping the oldest (counted in `dropped`).
     * Ends when the member shuts down, or when the loop breaks.
     */
    events({ bufferSize = 1024, types } = {}) {
      const filter = types ? new Set(Array.isArray(types) ? types : [types]) : null;
      const buffer = [];
      let waiting = null;
      let ended = this.#closed;
      const iterators = this.#iterators;
      const it = {
        dropped: 0,
        push(e) {
          if (filter && !filter.has(e.type)) return;
          if (waiting) {
            const w = waiting;
            waiting = null;
            w({ value: e, done: false });
            return;
          }
          if (buffer.length >= bufferSize) {
            buffer.shift();
            it.dropped++;
          }
          buffer.push(e);
        },
        end() {
          ended = true;
          if (waiting) {
            const w = waiting;
            waiting = null;
            w({ value: undefined, done: true });
          }
        },
        next() {
          if (buffer.length) return Promise.resolve({ value: buffer.shift(), done: false });
          if (ended) return Promise.resolve({ value: undefined, done: true });
          return new Promise((resolve) => (waiting = resolve));
        },
        return() {
          iterators.delete(it);
          buffer.length = 0;
          it.end();
          return Promise.resolve({ value: undefined, done: true });
        },
        [Symbol.asyncIterator]() {
          return it;
        },
      };
      if (!ended) iterators.add(it);
      return it;
    }

    /**
     * Broadcasts `data` (string or bytes) under `topic` to every member. With `key`, a newer
     * broadcast under the same topic and key replaces this one where still queued.
     */
    broadcast(topic, data, { key } = {}) {
      this.#node.broadcast(topic, toBytes(data), key === undefined ? undefined : toBytes(key, "key"));
    }

    /**
     * Sends `data` to the member called `name`: one best-effort packet, or `{ reliable: true }`,
     * acknowledged and retried; a reliable send returns its id, which a `send-failed` event names if
     * it is never acknowledged.
     */
    send(name, topic, data, options = {}) {
      const reliable = typeof options === "boolean" ? options : !!options.reliable;
      return this.#node.send(name, topic, toBytes(data), reliable);
    }

    /** Sends `data` to an address, member or not. */
    sendTo(addr, topic, data, options = {}) {
      const reliable = typeof options === "boolean" ? options : !!options.reliable;
      this.#node.sendTo(addr, topic, toBytes(data), reliable);
    }

    /** Replaces our metadata (string or bytes) and announces it. */
    setMetadata(meta) {
      this.#node.setMetadata(toBytes(meta, "meta"));
    }

    /**
     * Leaves gracefully, then shuts down. Resolves `true` when the departure was gossiped within
     * `timeoutMs`, `false` otherwise (the member shut down anyway).
     */
    async leave(timeoutMs = 2000) {
      if (this.#closed) return false;
      const done = await this.#node.leave(timeoutMs);
      this.#rtc?.close();
      return done;
    }

    /** Stops at once without telling anyone (others will detect a failure). */
    async shutdown() {
      await this.#node.shutdown();
    }

    /** Counters and gauges as numbers. */
    metrics() {
      return metricsObject(this.#node.metricValues());
    }

    /**
     * Traffic carried by this member's transport: totals, the part that went over direct WebRTC
     * channels and the part relayed, `directShare` (direct packets / all packets, both ways), and
     * the direct connections (`peers`, with `setupMs` from the first signal to both channels open).
     */
    transportStats() {
      const [po, bo, pi, bi, dpo, dbo, dpi, dbi] = this.#node.trafficCounters();
      const all = po + pi;
      return {
        packetsOut: po,
        bytesOut: bo,
        packetsIn: pi,
        bytesIn: bi,
        direct: { packetsOut: dpo, bytesOut: dbo, packetsIn: dpi, bytesIn: dbi },
        relayed: { packetsOut: po - dpo, bytesOut: bo - dbo, packetsIn: pi - dpi, bytesIn: bi - dbi },
        directShare: all ? (dpo + dpi) / all : 0,
        webrtc: this.#rtc !== null,
        ...(this.#rtc?.stats() ?? { peers: [], channelsOpened: 0, setupMs: [], glare: { won: 0, lost: 0 } }),
      };
    }

    /** The metrics in the Prometheus text format. */
    metricsText() {
      return prometheusText(this.metrics());
    }

    /** The underlying wasm object (advanced use). */
    get raw() {
      return this.#node;
    }
  }
  return Shoal;
}

const PRIVATE = Symbol("shoal.private");
