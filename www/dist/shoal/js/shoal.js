// The JavaScript layer of the `shoal` package, shared by every entry point (browser, bundler, Node.js,
// Deno, workerd). The wasm façade (`ShoalNode`, from wasm/src/node.rs) stays small; ergonomics live
// here: string payloads, listeners, async iteration of events, `pagehide`, Prometheus text.

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
    "reliableDropped",
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
      const bindings = await load();
      const opts = { ...options };
      if (!opts.WebSocket && typeof globalThis.WebSocket !== "function" && platform.defaultWebSocket) {
        opts.WebSocket = await platform.defaultWebSocket();
      }
      if (opts.meta !== undefined) opts.meta = toBytes(opts.meta, "meta");
      if (opts.key !== undefined && typeof opts.key !== "string") opts.key = toBytes(opts.key, "key");
      if (typeof opts.seeds === "string") opts.seeds = [opts.seeds];
      const shoal = new Shoal(PRIVATE);
      for (const [type, cb] of Object.entries(options.on ?? {})) shoal.on(type, cb);
      delete opts.on;
      opts.onEvent = (e) => shoal.#receive(e);
      shoal.#node = await bindings.ShoalNode.join(opts);
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

    #markClosed(e) {
      this.#closed = true;
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

    /** True once the member has shut down (left, shut down, or lost its relay connection). */
    get closed() {
      return this.#closed;
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

    /** Sends `data` to the member called `name`: one best-effort packet, or `{ reliable: true }`. */
    send(name, topic, data, options = {}) {
      const reliable = typeof options === "boolean" ? options : !!options.reliable;
      this.#node.send(name, topic, toBytes(data), reliable);
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
      return this.#node.leave(timeoutMs);
    }

    /** Stops at once without telling anyone (others will detect a failure). */
    async shutdown() {
      await this.#node.shutdown();
    }

    /** Counters and gauges as numbers. */
    metrics() {
      return this.#node.metrics();
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
