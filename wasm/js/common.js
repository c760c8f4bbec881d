// What every entry of the `shoal` package shares, whether the member runs on this thread (shoal.js)
// or in a worker (remote.js): payloads as bytes, member and event decoration, metrics in the
// Prometheus text format, traffic statistics and the checking of `Shoal.join` options. Kept apart
// from shoal.js so that a page whose member runs in a worker does not ship the wasm glue.

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

export function decorateMember(m) {
  let text;
  Object.defineProperty(m, "metaText", {
    enumerable: true,
    get: () => (text ??= decoder.decode(m.meta)),
  });
  return m;
}

export function decorateEvent(e) {
  if (e.info) decorateMember(e.info);
  if (e.type === "message" || e.type === "query" || e.type === "query-response") withText(e);
  return e;
}

/** Adds `text`, `data` decoded as UTF-8 on first use. */
function withText(o) {
  let text;
  Object.defineProperty(o, "text", {
    enumerable: true,
    get: () => (text ??= decoder.decode(o.data)),
  });
  return o;
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

// The order of `ShoalNode.metricValues()` (wasm/js/member.js): top-level counters and gauges, then
// the transport and security groups.
const METRIC_NAMES = [
  "membersAlive", "membersSuspect", "membersFailed", "membersLeft", "packetsSent", "packetsReceived",
  "bytesSent", "bytesReceived", "decodeErrors", "probes", "probesFailed", "suspicionsRaised",
  "failuresDeclared", "refutations", "broadcastsDelivered", "broadcastsDropped", "broadcastsMissed",
  "broadcastsRepaired", "directDelivered", "reliableRetries", "reliableFailed", "pushPulls", "queuedMembershipUpdates", "queuedBroadcasts", "healthScore", "incarnation",
  "transportErrors", "droppedEvents", "reliableDropped", "bestEffortDropped", "callbackPanics", "sendsAbandoned",
  "linkOutages", "stalls",
];
const METRIC_GROUPS = {
  transport: ["packetsIn", "bytesIn", "packetsOut", "bytesOut", "sendErrors", "droppedIn"],
  security: ["encryptedSent", "decrypted", "unauthenticated", "replays", "plaintextRejected"],
};

export function metricsObject(values) {
  const m = {};
  let i = 0;
  for (const k of METRIC_NAMES) m[k] = values[i++];
  for (const [group, keys] of Object.entries(METRIC_GROUPS)) {
    m[group] = {};
    for (const k of keys) m[group][k] = values[i++];
  }
  return m;
}

/** `transportStats()` from the transport's counters (`trafficCounters()`) and the direct paths. */
export function trafficStats([po, bo, pi, bi, dpo, dbo, dpi, dbi], rtc) {
  const all = po + pi;
  return {
    packetsOut: po,
    bytesOut: bo,
    packetsIn: pi,
    bytesIn: bi,
    direct: { packetsOut: dpo, bytesOut: dbo, packetsIn: dpi, bytesIn: dbi },
    relayed: { packetsOut: po - dpo, bytesOut: bo - dbo, packetsIn: pi - dpi, bytesIn: bi - dbi },
    directShare: all ? (dpo + dpi) / all : 0,
    webrtc: !!rtc,
    ...(rtc?.stats() ?? { peers: [], channelsOpened: 0, setupMs: [], glare: { won: 0, lost: 0 } }),
  };
}

const PEER_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Checks `Shoal.join` options and puts them in the form the driver (member.js) and the wasm
 * (`Protocol::new` in wasm/src/protocol.rs) read: typed values, the key as 32 bytes, the full relay
 * URL. Validation lives here rather than in Rust because every error message compiled into the wasm
 * costs bundle size.
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
  const relays = typeof opts.relay === "string" ? [opts.relay] : opts.relay;
  if (relays === undefined || relays === null) throw new TypeError("options.relay (the relay's ws:// URL) is required");
  if (!Array.isArray(relays) || relays.length === 0 || relays.some((r) => typeof r !== "string")) {
    throw new TypeError("options.relay must be a ws:// URL or a non-empty array of the URLs of one relay fleet");
  }
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
  for (const k of ["mainThread", "queries"]) {
    if (opts[k] !== undefined && typeof opts[k] !== "boolean") throw new TypeError(`options.${k} must be a boolean`);
  }
  if (opts.worker !== undefined && opts.worker !== "dedicated" && opts.worker !== "shared") {
    throw new TypeError(`options.worker must be "dedicated" or "shared", got ${JSON.stringify(opts.worker)}`);
  }
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
  opts.peer = peer; // normalizing again (in the worker) gives the same address
  opts.urls = relays.map((relay) => relayUrl(relay, peer, opts.token));
  opts.url = opts.urls[0];
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
export function relayUrl(relay, peer, token) {
  let base = relay.trim().replace(/^http(s?):\/\//, "ws$1://").replace(/\/+$/, "");
  const rest = base.includes("://") ? base.slice(base.indexOf("://") + 3) : base;
  let url = rest.includes("/") ? base : base + "/ws";
  url += (url.includes("?") ? "&" : "?") + "peer=" + encodeURIComponent(peer);
  if (token !== undefined) url += "&token=" + encodeURIComponent(token);
  return url;
}


/** Says on the page's console why its member stopped when another connection took its peer id: a
 * second tab (or client) that joined with the same name. Silent outside pages. */
export function warnIfReplaced(reason) {
  if (typeof globalThis.document === "undefined" || !/replaced by a newer connection/.test(reason ?? "")) return;
  console.warn(
    `shoal: this page's member stopped: ${reason}. Another tab or client joined with the same name; ` +
      'give each tab its own name, or share one member between tabs with worker: "shared".',
  );
}

/** A query's filter as the wasm's `Protocol.query` takes it: `name\0key\0pattern\0...`. Throws
 * for options it cannot take. */
export function queryFilter({ name, tags, timeoutMs } = {}) {
  if (timeoutMs !== undefined && !(typeof timeoutMs === "number" && timeoutMs > 0)) {
    throw new TypeError("query timeoutMs must be a positive number");
  }
  const words = [name ?? ""];
  for (const [k, v] of Object.entries(tags ?? {})) words.push(k, String(v));
  if (typeof words[0] !== "string") throw new TypeError("query name must be a pattern string");
  if (words.some((w) => w.includes("\0"))) throw new TypeError("query name and tags cannot hold NUL characters");
  return words.join("\0");
}

/** The events about our own queries, which a member routes to them. */
const QUERY_EVENTS = new Set(["query-ack", "query-response", "query-done"]);
const FEED = Symbol("shoal.queryFeed");
/** Ends a `QueryAnswers` with an error (the query could not start). */
export const FAIL = Symbol("shoal.queryFail");

/**
 * A member's queries in flight, by number (shoal.js and remote.js keep one each): routes their
 * events to them, and ends them all when the member stops or starts a new life.
 */
export class QueryBook {
  #queries = new Map();
  #starting = null;

  /** Calls `start`, which starts a query and returns its number, and tracks `q` under it. Events
   * that come while `start` runs (our own ack, when the filter selects us) are `q`'s. */
  start(q, start) {
    this.#starting = q;
    try {
      this.track(q, start());
    } finally {
      this.#starting = null;
    }
    return q;
  }

  /** Tracks `q` as query `id` (once: its first number stands). */
  track(q, id) {
    if (q.id !== undefined) return;
    q.id = id;
    this.#queries.set(id, q);
  }

  /** Call with every event: feeds a query event to its query. */
  route(e) {
    if (!QUERY_EVENTS.has(e.type)) return;
    if (this.#starting && !this.#queries.has(e.query)) this.track(this.#starting, e.query);
    const q = this.#queries.get(e.query);
    if (!q) return;
    q[FEED](e);
    if (e.type === "query-done") this.#queries.delete(e.query);
  }

  /** The member stopped, or its life ended: its queries end with what they have. */
  endAll() {
    for (const q of this.#queries.values()) q[FEED]({ type: "query-done" });
    this.#queries.clear();
  }
}

/**
 * One of our queries (`Shoal.query`): its answers as they come, `for await (const a of answers)`
 * with `a.type` "ack" or "response", and `collect()` for every answer once the deadline passed.
 * The member feeds it the query's events; iteration ends at the deadline (or when the member shuts
 * down).
 */
export class QueryAnswers {
  /** The query's number in this member's life (as its `query-*` events carry it), once known. */
  id = undefined;
  #all = []; // every answer so far
  #next = 0; // the iterator's place in #all
  #wake = null;
  #error = null;
  #done;
  #settle;

  constructor() {
    this.#done = new Promise((resolve, reject) => (this.#settle = [resolve, reject]));
    this.#done.catch(() => {}); // a rejection reaches collect() and the iterator, not the host
  }

  [FEED](e) {
    if (!this.#settle) return;
    if (e.type === "query-done") return this.#end();
    this.#all.push(e.type === "query-ack" ? { type: "ack", from: e.from } : withText({ type: "response", from: e.from, data: e.data }));
    this.#wake?.();
  }

  [FAIL](err) {
    this.#end(err);
  }

  #end(err) {
    if (!this.#settle) return;
    const of = (type) => this.#all.filter((a) => a.type === type);
    if (err) this.#settle[1]((this.#error = err));
    else this.#settle[0]({ acks: of("ack").map((a) => a.from), responses: of("response") });
    this.#settle = null;
    this.#wake?.();
  }

  /** Waits for the deadline: `{ acks: [name], responses: [{ type, from, data, text }] }`. */
  collect() {
    return this.#done;
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.#next < this.#all.length) yield this.#all[this.#next++];
      else if (!this.#settle) {
        if (this.#error) throw this.#error;
        return;
      } else await new Promise((resolve) => (this.#wake = resolve));
    }
  }
}
