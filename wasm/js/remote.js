// The page's handle on a member that runs in a worker (worker.js explains the model and the
// messages). Same API as the member on the main thread (shoal.js), with these differences, all
// documented in index.d.ts:
//
//   - the synchronous getters (`members()`, `local`, `metrics()`, `connected`, ...) read the
//     snapshot the worker sends with every batch of events (the member list: at the join and once
//     a second, patched by the membership events in between);
//   - `broadcast`, `send`, `sendTo` and `setMetadata` throw at once for what the page can check
//     (shut down, an unknown or dead member, a topic over 255 bytes); what only the member can
//     check (a payload over the packet budget) is reported by an `error` event;
//   - `raw` is null: the wasm object lives in the worker.

import { EventHub } from "./hub.js";
import { DirectPaths, directPathOptions } from "./rtc.js";
import { relaysOf } from "./tags.js";
import {
  FAIL,
  QueryAnswers,
  QueryBook,
  decorateEvent,
  decorateMember,
  prometheusText,
  queryFilter,
  toBytes,
  trafficStats,
  warnIfReplaced,
} from "./common.js";

const encoder = new TextEncoder();

/**
 * Joins through a worker. `connect(options)` returns the port to the worker: the Worker itself, or
 * a SharedWorker's port.
 * @param opts options checked by `normalizeJoinOptions`
 * @param listeners `options.on`
 */
export async function joinInWorker(opts, listeners, { port, shared, onError }) {
  const remote = new RemoteShoal(port, opts, shared);
  onError?.((e) => remote.workerError(e));
  for (const [type, cb] of Object.entries(listeners ?? {})) remote.on(type, cb);
  await remote.join();
  return remote;
}

class RemoteShoal {
  #port;
  #opts;
  #shared;
  #hub = new EventHub({ before: (e) => this.#rtc?.onEvent(e), onShutdown: (e) => this.#markClosed(e) });
  #state = null;
  #members = new Map(); // name -> record: the worker's list, patched by events in between
  #calls = new Map(); // id -> { resolve, reject }
  #nextCall = 0;
  #nextSend = 0;
  #rtc = null;
  #signalHandler = null;
  #adopted = new Map(); // id -> { opened, closed }
  #nextChannel = 0;
  #closed = false;
  #closeReason = undefined;
  #unhookPage = null;
  #joined = null; // { resolve, reject } while joining
  #farewell = null; // { url, body }: the departure to post if the tab closes (worker.js)
  #queries = new QueryBook();

  constructor(port, opts, shared) {
    this.#port = port;
    this.#opts = opts;
    this.#shared = shared;
    port.onmessage = ({ data }) => this.#onMessage(data);
    port.onmessageerror = (e) => this.workerError(e);
    port.start?.();
  }

  async join() {
    const options = this.#joinOptions();
    const rtcOptions = directPathOptions(this.#opts);
    const rtc = !this.#shared && options.webrtc !== false && DirectPaths.available(rtcOptions);
    await new Promise((resolve, reject) => {
      this.#joined = { resolve, reject };
      this.#port.postMessage({ t: "join", options, rtc });
    });
    if (rtc) {
      this.#rtc = new DirectPaths(this.#rtcNode(), { ...rtcOptions, adopt: (...a) => this.#adopt(...a) });
      this.#rtc.start([...this.#members.values()]);
    }
    this.#hub.open();
    this.#hookPage();
  }

  #onMessage(msg) {
    switch (msg?.t) {
      case "joined":
        this.#setState(msg.state);
        this.#joined?.resolve();
        this.#joined = null;
        return;
      case "join-error": {
        const err = new Error(msg.message);
        if (msg.name) err.name = msg.name;
        this.#closed = true;
        this.#joined?.reject(err);
        this.#joined = null;
        this.#terminate();
        return;
      }
      case "events":
        if (msg.state) this.#setState(msg.state);
        for (const e of msg.events) {
          this.#patchMembers(e);
          this.#queries.route(e);
          this.#hub.receive(decorateEvent(e));
        }
        return;
      case "state":
        this.#setState(msg.state);
        return;
      case "reply": {
        if (msg.state) this.#setState(msg.state);
        const c = this.#calls.get(msg.id);
        this.#calls.delete(msg.id);
        if (!c) return;
        if (msg.error) {
          const err = new Error(msg.error.message);
          if (msg.error.name) err.name = msg.error.name;
          c.reject(err);
        } else c.resolve(msg.value);
        return;
      }
      case "signal":
        this.#signalHandler?.(msg.from, msg.kind, msg.body);
        return;
      case "rtc-open":
        this.#adopted.get(msg.id)?.opened();
        return;
      case "rtc-closed":
        this.#adopted.get(msg.id)?.closed();
        return;
    }
  }

  /** The worker could not load or crashed: the member is gone. */
  workerError(e) {
    const reason = `the member's worker failed: ${e?.message ?? "error"}`;
    if (this.#joined) {
      this.#closed = true;
      this.#joined.reject(new Error(reason));
      this.#joined = null;
      return;
    }
    if (!this.#closed) this.#hub.receive({ type: "shutdown", reason });
  }

  #setState(s) {
    if (!s) return;
    if (s.members) this.#members = new Map(s.members.map((m) => [m.name, m]));
    if (s.farewell !== undefined) this.#farewell = s.farewell;
    this.#state = s;
  }

  /** Posts the member's departure straight to the relay (see worker.js): the worker may be gone
   * before it reads the message that tells it to leave. True if the browser took it. */
  #postFarewell() {
    const f = this.#farewell;
    this.#farewell = null;
    if (!f || typeof globalThis.navigator?.sendBeacon !== "function") return false;
    try {
      return globalThis.navigator.sendBeacon(f.url, f.body);
    } catch {
      return false;
    }
  }

  /** Applies a membership event to the page's copy of the member list, so that a listener sees the
   * state the event left. (The worker sends the whole list only at the join and once a second:
   * with a thousand members, a copy per event would cost more than the events.) */
  #patchMembers(e) {
    const members = this.#members;
    if (e.info && (e.type === "join" || e.type === "update")) {
      members.set(e.member, { ...e.info });
      return;
    }
    const state = { suspect: "suspect", alive: "alive", fail: "failed", leave: "left" }[e.type];
    const m = state && members.get(e.member);
    if (m) members.set(e.member, { ...m, state, incarnation: e.incarnation ?? m.incarnation });
  }

  #markClosed(e) {
    this.#closed = true;
    this.#queries.endAll();
    warnIfReplaced(e.reason);
    this.#closeReason = e.reason;
    this.#rtc?.close(true);
    this.#unhookPage?.();
    this.#unhookPage = null;
    // Let the worker finish what the shutdown started (the leave gossip, the replies to calls in
    // flight: `leave` resolves after its own shutdown event), then end it.
    setTimeout(() => this.#terminate(), 1000);
  }

  #terminate() {
    for (const c of this.#calls.values()) c.reject(new Error("the member has shut down"));
    this.#calls.clear();
    if (this.#shared) this.#port.postMessage?.({ t: "detach" });
    else this.#port.terminate?.();
  }

  /** What DirectPaths needs of a node, when the node is in the worker. */
  #rtcNode() {
    return {
      localAddr: () => this.#state.addr,
      members: () => [...this.#members.values()],
      onSignal: (h) => (this.#signalHandler = h),
      signal: (to, kind, body) => (this.#port.postMessage({ t: "signal", to, kind, body }), true),
    };
  }

  /** Transfers a new connection's two data channels to the worker (see rtc.js `adopt`). */
  #adopt(member, dgram, rel, hooks) {
    const id = ++this.#nextChannel;
    this.#adopted.set(id, hooks);
    try {
      this.#port.postMessage({ t: "adopt", id, member, dgram, rel }, [dgram, rel]);
    } catch (err) {
      // This browser cannot transfer data channels: no direct paths, the relay carries it all.
      console.warn("shoal: data channels cannot be moved to the worker here; using the relay only", err);
      this.#adopted.delete(id);
      queueMicrotask(() => this.#rtc?.close(true));
    }
    return {
      close: () => {
        this.#adopted.delete(id);
        this.#port.postMessage({ t: "drop", id });
      },
    };
  }

  #call(method, args) {
    const id = ++this.#nextCall;
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      this.#port.postMessage({ t: "call", id, method, args });
    });
  }

  /** A command the page cannot wait for: an error the member finds is an `error` event. */
  #fire(method, args) {
    this.#call(method, args).catch((err) => {
      if (this.#closed) return;
      console.error(`shoal: ${method} failed in the member's worker:`, err);
      this.#hub.receive({ type: "error", op: method, message: err.message });
    });
  }

  #checkCommand(topic) {
    if (this.#closed) throw new Error("the cluster member has shut down");
    if (topic !== undefined && encoder.encode(String(topic)).length > 255) throw new Error("topic longer than 255 bytes");
  }

  #hookPage() {
    const g = globalThis;
    if (typeof g.addEventListener !== "function" || typeof g.document === "undefined") return;
    const leave = this.#opts.leaveOnPageHide !== false;
    const onPageHide = (e) => {
      if (this.#closed) return;
      if (this.#shared) return void this.#port.postMessage({ t: "detach" });
      if (!leave) return;
      this.#postFarewell();
      this.#rtc?.close();
      this.#rtc = null;
      this.#port.postMessage({ t: e?.persisted ? "suspend" : "detach" });
    };
    const onPageShow = (e) => {
      if (!e?.persisted || this.#closed) return;
      if (this.#shared) return void this.#port.postMessage({ t: "join", options: this.#joinOptions(), rtc: false });
      if (leave) this.#port.postMessage({ t: "resume" });
    };
    g.addEventListener("pagehide", onPageHide);
    g.addEventListener("pageshow", onPageShow);
    this.#unhookPage = () => {
      g.removeEventListener("pagehide", onPageHide);
      g.removeEventListener("pageshow", onPageShow);
    };
  }

  /** The join options that cross into the worker: all but the functions, which cannot. */
  #joinOptions() {
    const { WebSocket: _ws, RTCPeerConnection: _p, onEvent: _e, on: _on, ...options } = this.#opts;
    return options;
  }

  get name() {
    return this.#state.name;
  }

  get addr() {
    return this.#state.addr;
  }

  get local() {
    return decorateMember({ ...this.#state.local });
  }

  get closed() {
    return this.#closed || this.#state.closed;
  }

  get connected() {
    return !this.closed && this.#state.connected;
  }

  get closeReason() {
    return this.#closeReason ?? this.#state.closeReason;
  }

  /** The runtime the member runs in: "worker" or "shared-worker". */
  get runsIn() {
    return this.#shared ? "shared-worker" : "worker";
  }

  members() {
    return [...this.#members.values()].map((m) => decorateMember({ ...m }));
  }

  relays() {
    return relaysOf(this.#members.values());
  }

  aliveMembers() {
    return this.members().filter((m) => m.state === "alive");
  }

  on(type, cb) {
    return this.#hub.on(type, cb);
  }

  off(type, cb) {
    this.#hub.off(type, cb);
  }

  once(type) {
    return this.#hub.once(type);
  }

  events(options) {
    return this.#hub.events(options);
  }

  broadcast(topic, data, { key, ttlMs } = {}) {
    this.#checkCommand(topic);
    this.#fire("broadcast", [topic, toBytes(data), { key: key === undefined ? undefined : toBytes(key, "key"), ttlMs }]);
  }

  send(name, topic, data, options = {}) {
    this.#checkCommand(topic);
    const m = this.#members.get(name);
    if (!m || m.state === "failed" || m.state === "left") throw new Error(`unknown or dead member ${name}`);
    const reliable = typeof options === "boolean" ? options : !!options.reliable;
    const id = reliable ? ++this.#nextSend : undefined;
    this.#fire("send", [name, topic, toBytes(data), { reliable }, id]);
    return id;
  }

  sendTo(addr, topic, data, options = {}) {
    this.#checkCommand(topic);
    const reliable = typeof options === "boolean" ? options : !!options.reliable;
    this.#fire("sendTo", [addr, topic, toBytes(data), { reliable }]);
  }

  /** The query starts in the worker: what only the member can refuse (a build without queries, too
   * many in flight, a query over the packet budget) ends the answers with that error. Its number
   * comes back before its first event (the worker replies before it posts the events). */
  query(topic, data, options = {}) {
    this.#checkCommand(topic);
    queryFilter(options);
    const { name, tags, timeoutMs } = options;
    const q = new QueryAnswers();
    this.#call("query", [topic, toBytes(data), { name, tags, timeoutMs }]).then(
      (id) => this.#queries.track(q, id),
      (err) => q[FAIL](err),
    );
    return q;
  }

  respond(query, data) {
    this.#checkCommand();
    const { from, addr, epoch, query: id } = query ?? {};
    this.#fire("respond", [{ from, addr, epoch, query: id }, toBytes(data)]);
  }

  setMetadata(meta) {
    this.#checkCommand();
    this.#fire("setMetadata", [toBytes(meta, "meta")]);
  }

  async leave(timeoutMs = 2000) {
    if (this.closed) return false;
    const done = await this.#call("leave", [timeoutMs]).catch(() => false);
    this.#rtc?.close();
    return done;
  }

  async shutdown() {
    if (this.closed) return;
    await this.#call("shutdown", []).catch(() => {});
  }

  metrics() {
    return structuredClone(this.#state.metrics);
  }

  transportStats() {
    return trafficStats(this.#state.traffic, this.#rtc);
  }

  metricsText() {
    return prometheusText(this.metrics());
  }

  /** Null: the wasm object lives in the worker. */
  get raw() {
    return null;
  }
}
