// The member that runs on this thread: the `Shoal` class of every entry point (Node.js, Deno,
// workerd, bundlers, a page with `mainThread: true`, and the worker a page's member runs in). The
// wasm holds the sans-IO protocol; member.js drives it (`ShoalNode`: relay socket, timer, direct
// paths); ergonomics live here and in common.js and hub.js: string payloads, listeners, async iteration of events, reconnecting, the
// page lifecycle, WebRTC direct paths.

import { DirectPaths, directPathOptions } from "./rtc.js";
import { EventHub } from "./hub.js";
import { memberClass } from "./member.js";
import { relaysOf } from "./tags.js";
import {
  QueryAnswers,
  QueryBook,
  decorateEvent,
  decorateMember,
  metricsObject,
  normalizeJoinOptions,
  prometheusText,
  queryFilter,
  toBytes,
  trafficStats,
  warnIfReplaced,
} from "./common.js";

export { decorateEvent, decorateMember, normalizeJoinOptions, prometheusText, toBytes, trafficStats } from "./common.js";

/**
 * Makes the `Shoal` class for one platform.
 * @param load async () => the wasm-bindgen module (initialised), exposing `Protocol`
 * @param platform { defaultWebSocket?: async () => constructor | undefined }
 */
export function makeShoal(load, platform = {}) {
  class Shoal {
    #node = null;
    #hub = new EventHub({
      before: (e) => this.#rtc?.onEvent(e),
      onShutdown: (e) => this.#markClosed(e),
    });
    #closed = false;
    #closeReason = undefined;
    #unhookPage = null;
    #rtc = null;
    #opts = null;
    #ShoalNode = null;
    #reconnect = false; // options, or false
    #disconnectedAt = null; // Date.now() of the drop while reconnecting, else null
    #drops = 0;
    #wakeReconnect = null;
    #away = null; // while the page is in the back/forward cache: { seeds }
    #life = null;
    #queries = new QueryBook();

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
      const bindings = await load(opts);
      if (!opts.WebSocket && typeof globalThis.WebSocket !== "function" && platform.defaultWebSocket) {
        opts.WebSocket = await platform.defaultWebSocket();
      }
      const shoal = new Shoal(PRIVATE);
      for (const [type, cb] of Object.entries(options.on ?? {})) shoal.on(type, cb);
      delete opts.on;
      shoal.#opts = opts;
      shoal.#ShoalNode = (classes.get(bindings) ?? classes.set(bindings, memberClass(bindings)).get(bindings));
      shoal.#reconnect = opts.reconnect;
      try {
        await shoal.#start(opts.seeds);
      } catch (e) {
        shoal.#closed = true;
        throw e;
      }
      shoal.#hub.open();
      shoal.#hookPage();
      return shoal;
    }

    /** Starts the wasm member (at join, and again when the page comes back from the back/forward
     * cache) and its direct paths. */
    async #start(seeds) {
      const opts = { ...this.#opts, seeds };
      // Each start is a life of its own: events and drops of an earlier life are ignored, and its
      // queries end.
      const life = (this.#life = {});
      this.#queries.endAll();
      const node = await this.#ShoalNode.join({
        ...opts,
        onEvent: (e) => this.#life === life && this.#receive(e),
        onDisconnect: opts.reconnect ? (reason) => this.#life === life && this.#disconnected(reason) : undefined,
      });
      this.#node = node;
      const rtcOptions = directPathOptions(opts);
      if (opts.webrtc !== false && DirectPaths.available(rtcOptions)) {
        this.#rtc = new DirectPaths(node, rtcOptions);
        this.#rtc.start(node.members());
      }
    }

    #receive(e) {
      decorateEvent(e);
      if (this.#away && (e.type === "shutdown" || e.type === "leave")) return; // our own bfcache leave
      this.#queries.route(e);
      this.#hub.receive(e);
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
          this.#receive({ type: "reconnect", attempts: attempt, downtimeMs, addr: this.#node.localAddr() });
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
      this.#queries.endAll();
      warnIfReplaced(e.reason);
      this.#wakeReconnect?.();
      this.#rtc?.close(true);
      this.#closeReason = e.reason;
      this.#unhookPage?.();
      this.#unhookPage = null;
    }

    /**
     * The page lifecycle, where there is one. `pagehide`: leave at once (the leave gossip goes out
     * in the microtasks that follow), unless `leaveOnPageHide` is false. A page that may be
     * restored from the back/forward cache (`persisted`) leaves too (an open relay connection
     * would keep it out of the cache, and a member frozen there for minutes would be declared
     * failed) but keeps this object: on `pageshow` it joins again under the same name, through the
     * members it knew, and says so with a `resume` event. A page frozen in place (`freeze`, then
     * `resume`) needs nothing here: the member notices it did not run, accuses nobody until it has
     * caught up, and refutes what others said meanwhile (the core's stall handling).
     */
    #hookPage() {
      const g = globalThis;
      if (this.#opts.leaveOnPageHide === false) return;
      if (typeof g.addEventListener !== "function" || typeof g.document === "undefined") return;
      const onPageHide = (e) => {
        if (e?.persisted) return void this[SUSPEND]();
        if (this.#closed || this.#away) return;
        this.#node.leave(0).catch(() => {});
        this.#rtc?.close();
      };
      const onPageShow = (e) => {
        if (e?.persisted) this[RESUME]();
      };
      const remove = typeof g.removeEventListener === "function" ? g.removeEventListener.bind(g) : () => {};
      g.addEventListener("pagehide", onPageHide);
      g.addEventListener("pageshow", onPageShow);
      this.#unhookPage = () => {
        remove("pagehide", onPageHide);
        remove("pageshow", onPageShow);
      };
    }

    /** The page may go into the back/forward cache: leave, keep this object (see `#hookPage`). */
    [SUSPEND]() {
      if (this.#closed || this.#away) return;
      const node = this.#node;
      this.#away = { seeds: this.#rejoinSeeds() };
      this.#rtc?.close();
      this.#rtc = null;
      this.#hub.receive({ type: "suspend", reason: "the page entered the back/forward cache" });
      node.leave(0).catch(() => {});
    }

    /** The page is back from the back/forward cache: join again under the same name. */
    async [RESUME]() {
      if (!this.#away || this.#closed) return;
      const { seeds } = this.#away;
      try {
        await this.#start(seeds);
        this.#away = null;
        this.#hub.receive({ type: "resume", seeds });
      } catch (err) {
        this.#away = null;
        this.#hub.receive({ type: "shutdown", reason: `could not rejoin after the back/forward cache: ${err?.message ?? err}` });
      }
    }

    /** Where to join again after the back/forward cache: the members alive now, then the seeds. */
    #rejoinSeeds() {
      const alive = this.#node.members().filter((m) => m.state === "alive").map((m) => m.addr);
      return [...new Set([...alive.slice(0, 8), ...(this.#opts.seeds ?? [])])];
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

    /** The relays of the fleet, as their members announce them. */
    relays() {
      return relaysOf(this.#node.members());
    }

    /** Members believed alive. */
    aliveMembers() {
      return this.members().filter((m) => m.state === "alive");
    }

    /** Calls `cb` for every event of `type` ('*' for all). Returns a function that unsubscribes. */
    on(type, cb) {
      return this.#hub.on(type, cb);
    }

    /** Removes a listener added with `on`. */
    off(type, cb) {
      this.#hub.off(type, cb);
    }

    /** Resolves with the next event of `type` (rejects if the member shuts down first). */
    once(type) {
      return this.#hub.once(type);
    }

    /**
     * An async iterator over events from now on: `for await (const e of shoal.events())`.
     * Holds at most `bufferSize` undelivered events, dropping the oldest (counted in `dropped`).
     * Ends when the member shuts down, or when the loop breaks.
     */
    events(options) {
      return this.#hub.events(options);
    }

    /**
     * Broadcasts `data` (string or bytes) under `topic` to every member. With `key`, a newer
     * broadcast under the same topic and key replaces this one where still queued; with `ttlMs`
     * too, the value expires (an `expire` event everywhere) unless set again in time.
     */
    broadcast(topic, data, { key, ttlMs } = {}) {
      const k = key === undefined ? undefined : toBytes(key, "key");
      this.#node.broadcast(topic, toBytes(data), k, k === undefined ? undefined : ttlMs);
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

    /**
     * Asks the members that `name` (a pattern, `*` and `?` wildcards) and `tags` (`{ key: pattern }`)
     * select, every member by default and ourselves included, to answer `topic` and `data`
     * within `timeoutMs` (by default 16 gossip intervals for each decimal digit of the cluster's
     * size). Serf's `query`. Returns the answers as they come (`for await`) and `collect()`.
     */
    query(topic, data, options = {}) {
      const filter = queryFilter(options);
      const q = new QueryAnswers();
      return this.#queries.start(q, () => this.#node.query(topic, toBytes(data), filter, options.timeoutMs ?? 0));
    }

    /** Answers a `query` event, once, before its timeout runs out. */
    respond(query, data) {
      this.#node.respond(query, toBytes(data));
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
      return trafficStats(this.#node.trafficCounters(), this.#rtc);
    }

    /** The metrics in the Prometheus text format. */
    metricsText() {
      return prometheusText(this.metrics());
    }

    /** Where the member runs: on this thread. */
    get runsIn() {
      return "thread";
    }

    /** The underlying wasm object (advanced use). */
    get raw() {
      return this.#node;
    }
  }
  return Shoal;
}

const PRIVATE = Symbol("shoal.private");
/** The driver class (member.js) made for each wasm module. */
const classes = new WeakMap();
/** Lifecycle hooks, for the worker that runs a page's member (worker.js). */
export const SUSPEND = Symbol("shoal.suspend");
export const RESUME = Symbol("shoal.resume");
