// The driver of one member: the I/O around the sans-IO protocol compiled to wasm (`Protocol`,
// wasm/src/protocol.rs). It owns the relay WebSocket, the clock, the one timer, the randomness and
// the WebRTC direct paths, and drives the protocol the way every Shoal driver does:
//
//   hand over what happened (a frame, a packet, the timer, a command)
//   -> send every transmit, hand out every event (until the protocol has nothing more)
//   -> re-arm the timer at the protocol's next deadline.
//
// Everything happens in the task of the thing that happened: a frame is handled in its `message`
// event, so nothing queues between the socket and the protocol, and a busy thread delays packets
// and timers alike (the protocol notices a timer a whole probe interval late as a stall of its
// own). shoal.js builds the package's `Shoal` on top; this file keeps the small interface the
// earlier wasm façade had (`ShoalNode`), so shoal.js, rtc.js and worker.js did not change.
//
// Relay envelope (core/proto/src/relay.rs): packet frames are `[len][address][packet]` both ways (the
// relay stamps the source); the first frame after connecting is the welcome, naming our address
// with an empty packet, or with the connection's 16-byte farewell secret as its packet when we
// asked for one (`farewell=1`); signalling frames are `[0x00][len][address][kind][body]`. Close
// code 4001 means another connection took our peer id: reconnecting would only start a tug of war.
//
// Farewell: a page whose member runs in a worker loses the worker the moment the tab closes, often
// before the worker has sent its leave. So the member keeps its departure ready
// (`farewellBeacon()`: the packets `leave` would send first, built without leaving, with the
// secret) and the page posts it to the relay's `/farewell` with `navigator.sendBeacon`, which the
// browser delivers after the page is gone; the relay forwards the packets as if we had sent them.

import { relayUrl } from "./common.js";
import { relaysOf } from "./tags.js";

const OPEN = 1;
const SIGNAL_TAG = 0;
const REPLACED = 4001;
const MAX_TIMEOUT_MS = 2_147_483_647;
/** Best-effort packets are refused while this much is waiting in the socket's send buffer. */
const MAX_BUFFERED = 1 << 20;
const DEFAULT_MAX_FRAME = 64 << 10;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Bytes of the per-connection secret a farewell carries. */
const FAREWELL_SECRET_LEN = 16;
/** Members a farewell tells directly (the core's own leave tells as many at once). */
const FAREWELL_FANOUT = 8;
/** The relay's limit on the body of one farewell (it also takes at most 16 frames). */
const MAX_FAREWELL_BODY = 16 << 10;
/** How often `leave` checks whether the departure has been gossiped. */
const LEAVE_POLL_MS = 20;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** Milliseconds on a clock that never goes backwards: `performance.now()` where there is one. */
function makeClock() {
  const perf = globalThis.performance;
  const raw = typeof perf?.now === "function" ? () => perf.now() : () => Date.now();
  const origin = raw();
  let last = 0;
  return () => (last = Math.max(last, Math.floor(raw() - origin)));
}

/** `n` random bytes: `crypto.getRandomValues`, or (for the seed only) Math.random without it. */
function randomBytes(n, required) {
  const bytes = new Uint8Array(n);
  if (typeof globalThis.crypto?.getRandomValues === "function") return globalThis.crypto.getRandomValues(bytes);
  if (required) throw new Error("encryption needs crypto.getRandomValues, which this JavaScript environment lacks");
  for (let i = 0; i < n; i++) bytes[i] = (Math.random() * 256) | 0;
  return bytes;
}

function describe(e) {
  return e?.message ?? String(e);
}

/** Traffic counters of one direction group, as the earlier façade reported them. */
function counters() {
  return { packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, sendErrors: 0, droppedIn: 0 };
}

/**
 * Makes the `ShoalNode` class over the wasm module's `Protocol`.
 * @param bindings the initialised wasm-bindgen module
 */
export function memberClass(bindings) {
  const { Protocol } = bindings;

  /** One WebSocket to the relay, from opening to its welcome and on. */
  class RelayConnection {
    ws;
    #onFrame;
    #onClose;
    #welcome;
    #welcomed = false;
    /** The secret that lets a farewell speak for this connection (from the welcome), or null. */
    farewellSecret = null;

    /**
     * @param onFrame (bytes: Uint8Array) => void, for every frame after the welcome
     * @param onClose (code, reason) => void, once the socket closed after its welcome
     */
    constructor(url, WebSocket, onFrame, onClose) {
      this.#onFrame = onFrame;
      this.#onClose = onClose;
      this.#welcome = {};
      this.#welcome.promise = new Promise((resolve) => (this.#welcome.resolve = resolve));
      try {
        this.ws = new WebSocket(url);
      } catch (e) {
        throw new Error(`cannot open ${url}: ${describe(e)}`);
      }
      this.ws.binaryType = "arraybuffer";
      this.ws.onmessage = (e) => this.#message(e.data);
      this.ws.onclose = (e) => {
        const code = e?.code ?? 0;
        const reason = e?.reason ? `relay connection closed (${code}: ${e.reason})` : `relay connection closed (${code})`;
        if (this.#welcomed) this.#onClose(code, reason);
        else this.#settle({ error: reason });
      };
      this.ws.onerror = (e) => {
        const m = e?.message;
        this.#settle({ error: m ? `cannot connect to the relay: ${m}` : "cannot connect to the relay" });
      };
    }

    /** Settles the welcome; false when it was settled already. */
    #settle(outcome) {
      if (!this.#welcome.resolve) return false;
      this.#welcomed = outcome.addr !== undefined;
      this.#welcome.resolve(outcome);
      this.#welcome.resolve = null;
      return true;
    }

    #message(data) {
      if (!(data instanceof ArrayBuffer)) return void this.#onFrame(null);
      const frame = new Uint8Array(data);
      if (this.#welcome.resolve && frame[0] !== SIGNAL_TAG) {
        const len = frame[0] ?? 0;
        let addr = null;
        // An empty packet, or the farewell secret we asked for (a relay that does not know
        // farewells ignores the request and sends an empty one).
        const secret = frame.length - 1 - len;
        if (len > 0 && (secret === 0 || secret === FAREWELL_SECRET_LEN)) {
          try {
            addr = strictDecoder.decode(frame.subarray(1, 1 + len));
          } catch {}
          if (secret > 0) this.farewellSecret = frame.slice(1 + len);
        }
        return void this.#settle(
          addr === null
            ? { error: "the relay's first message is not a welcome frame" }
            : addr.startsWith("relay://")
              ? { addr }
              : { error: `the relay's welcome names an invalid address: "${addr}"` },
        );
      }
      this.#onFrame(frame);
    }

    /** Our address from the relay's welcome, or `{ error }`; `{ error }` after `timeoutMs`. */
    welcome(timeoutMs, url) {
      let timer;
      const late = new Promise((resolve) => {
        timer = setTimeout(() => resolve({ error: `the relay at ${url} sent no welcome within ${timeoutMs} ms` }), Math.min(timeoutMs, MAX_TIMEOUT_MS));
      });
      return Promise.race([this.#welcome.promise, late]).then((w) => {
        clearTimeout(timer);
        this.#settle(w);
        return w;
      });
    }

    get open() {
      return this.ws.readyState === OPEN;
    }

    /** Closes without telling anyone here. */
    close(reason) {
      this.#settle({ error: reason });
      this.ws.onmessage = null;
      this.ws.onclose = null;
      this.ws.onerror = () => {};
      try {
        this.ws.close(1000, reason);
      } catch {}
    }
  }

  class ShoalNode {
    #protocol;
    #connection;
    #url; // the relay connection's URL
    #urls; // the fleet's relays, in the order given
    #attempt = 0; // reconnect attempts since the last connection: the first goes back to #url
    #WebSocket;
    #maxFrame;
    #connectTimeoutMs;
    #now = makeClock();
    #onEvent = null;
    #onDisconnect;
    #onSignal = null;
    #direct = new Map(); // address -> { send(bytes, reliable) => boolean, name }
    #rekeyed = new Map(); // address a direct path was registered at -> the address it serves since its member moved
    #all = counters();
    #viaDirect = counters();
    #callbackErrors = 0;
    #timer = null;
    #deadline = null;
    #pumping = false;
    #again = false;
    #closeReason = undefined; // why the relay link closed for good
    #stopped = null; // why the member stopped ("shut down", "left the cluster", ...)
    #waiters = new Set(); // resolve() of promises to settle when the member stops
    #reconnecting = null; // the attempt under way

    constructor(token) {
      if (token !== PRIVATE) throw new TypeError("use `await ShoalNode.join(options)`");
    }

    /**
     * Connects to the relay, starts the member and, with `seeds`, joins through them (rejecting
     * if none answers within the join timeout). Options as `normalizeJoinOptions` (common.js) left
     * them, plus `onEvent` (sees every event from the start) and `onDisconnect` (called with a
     * reason when the relay connection drops; the member keeps running and the caller reconnects
     * with `reconnect()`; without it a drop shuts the member down).
     */
    static async join(opts) {
      const WebSocket = opts.WebSocket ?? globalThis.WebSocket;
      if (typeof WebSocket !== "function") {
        throw new Error(
          "this JavaScript environment has no global WebSocket: pass a constructor (for Node.js, the `ws` package's WebSocket) as the WebSocket option",
        );
      }
      for (const seed of opts.seeds ?? []) {
        const problem = bindings.checkAddress(seed);
        if (problem !== undefined) throw new Error(`invalid seed address "${seed}": ${problem}`);
      }
      const entropy = opts.key ? randomBytes(32, true) : undefined;
      const node = new ShoalNode(PRIVATE);
      node.#urls = opts.urls ?? [opts.url];
      node.#WebSocket = WebSocket;
      node.#maxFrame = opts.relayMaxFrame ?? DEFAULT_MAX_FRAME;
      node.#connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
      node.#onEvent = opts.onEvent ?? null;
      node.#onDisconnect = opts.onDisconnect ?? null;
      // The first relay of the fleet that welcomes us.
      let connection, welcome;
      for (const url of node.#urls) {
        connection = node.#open(url);
        welcome = await connection.welcome(node.#connectTimeoutMs, url);
        if (!welcome.error) {
          node.#url = url;
          break;
        }
        connection.close("connect failed");
      }
      if (welcome.error) throw new Error(welcome.error);
      node.#connection = connection;
      try {
        node.#protocol = new Protocol({
          ...opts,
          addr: welcome.addr,
          seed: randomBytes(8, false),
          entropy,
          now: node.#now(),
          WebSocket: undefined,
          onEvent: undefined,
          onDisconnect: undefined,
        });
      } catch (e) {
        connection.close("member not started");
        throw e;
      }
      const seeds = opts.seeds ?? [];
      if (seeds.length === 0) {
        node.#pump();
        return node;
      }
      const outcome = node.#until((e) => e.type === "joined" || e.type === "join-failed");
      try {
        node.#command((p, now) => p.join(now, seeds));
      } catch (e) {
        node.#stop("shut down");
        throw e;
      }
      const e = await outcome;
      if (e?.type === "joined") return node;
      await node.shutdown();
      throw new Error(e ? `no seed answered: ${JSON.stringify(e.seeds)}` : node.#stoppedError().message);
    }

    #open(url) {
      return new RelayConnection(
        url + "&farewell=1",
        this.#WebSocket,
        (frame) => this.#frame(frame),
        (code, reason) => this.#dropped(code, reason),
      );
    }

    /** Resolves with the first event matching `pred`, or `undefined` if the member stops first. */
    #until(pred) {
      return new Promise((resolve) => {
        const done = (e) => {
          this.#waiters.delete(done);
          resolve(e);
        };
        done.pred = pred;
        this.#waiters.add(done);
      });
    }

    // ----- driving the protocol ------------------------------------------------------------------

    #frame(frame) {
      if (this.#stopped) return;
      if (frame === null || frame.length > this.#maxFrame || !this.#protocol) return void this.#all.droppedIn++;
      if (frame[0] === SIGNAL_TAG) return this.#signalFrame(frame);
      this.#all.packetsIn++;
      this.#all.bytesIn += frame.length;
      try {
        this.#protocol.handleFrame(this.#now(), frame);
      } catch {
        this.#all.packetsIn--;
        this.#all.bytesIn -= frame.length;
        this.#all.droppedIn++; // not even a frame: no source address
        return;
      }
      this.#pump();
    }

    /** Runs a command on the protocol, then sends and hands out what it produced. */
    #command(f) {
      if (this.#stopped) throw this.#stoppedError();
      const out = f(this.#protocol, this.#now());
      this.#pump();
      return out;
    }

    #stoppedError() {
      const byCommand = this.#stopped === "shut down" || this.#stopped === "left the cluster";
      return new Error(byCommand ? "the cluster member has shut down" : `the cluster member has stopped: ${this.#stopped}`);
    }

    /** Sends every transmit, hands out every event, re-arms the timer. Re-entrant calls (from an
     * event listener that sends) are folded into the running one. */
    #pump() {
      if (this.#pumping) return void (this.#again = true);
      this.#pumping = true;
      try {
        do {
          this.#again = false;
          const p = this.#protocol;
          for (let t; (t = p.pollTransmit()) !== undefined; ) this.#send(t[0], t[1], t[2]);
          for (let e; !this.#stopped && (e = p.pollEvent()) !== undefined; ) this.#emit(e);
        } while (this.#again && !this.#stopped);
      } finally {
        this.#pumping = false;
      }
      if (!this.#stopped) this.#arm();
    }

    #emit(e) {
      if (e.type === "update" && this.#direct.size > 0) this.#follow(e.info);
      for (const w of this.#waiters) if (w.pred?.(e)) w(e);
      const f = this.#onEvent;
      if (!f) return;
      try {
        f(e);
      } catch (err) {
        this.#callbackErrors++;
        console.error(`shoal: event callback threw: ${describe(err)}`);
      }
    }

    #arm() {
      const deadline = this.#protocol.pollTimeout() ?? null;
      if (deadline === this.#deadline && this.#timer !== null) return;
      clearTimeout(this.#timer);
      this.#deadline = deadline;
      const wait = deadline === null ? 3_600_000 : Math.max(0, deadline - this.#now());
      this.#timer = setTimeout(() => this.#fire(), Math.min(wait, MAX_TIMEOUT_MS));
    }

    #fire() {
      this.#timer = null;
      if (this.#stopped) return;
      this.#protocol.handleTimeout(this.#now());
      this.#pump();
    }

    /** One transmit: over the direct path to `to` if there is one that takes it, else the relay. */
    #send(to, frame, reliable) {
      const direct = this.#direct.get(to)?.send;
      if (direct) {
        const packet = frame.subarray(1 + frame[0]);
        let taken = false;
        try {
          taken = !!direct(packet, reliable);
        } catch {}
        if (taken) {
          for (const c of [this.#all, this.#viaDirect]) {
            c.packetsOut++;
            c.bytesOut += packet.length;
          }
          return;
        }
      }
      const ws = this.#connection?.ws;
      const refused =
        this.#closeReason !== undefined ||
        frame.length === 0 || // a destination too long for the envelope
        frame.length > this.#maxFrame ||
        !ws ||
        ws.readyState !== OPEN ||
        (!reliable && ws.bufferedAmount > MAX_BUFFERED);
      if (!refused) {
        try {
          ws.send(frame);
          this.#all.packetsOut++;
          this.#all.bytesOut += frame.length;
          return;
        } catch {}
      }
      this.#all.sendErrors++;
    }

    #signalFrame(frame) {
      const len = frame[1] ?? 0;
      const handler = this.#onSignal;
      let from, body;
      const kind = frame[2 + len];
      try {
        if (len > 0 && frame.length >= 3 + len && kind >= 1 && kind <= 5) {
          from = strictDecoder.decode(frame.subarray(2, 2 + len));
          body = strictDecoder.decode(frame.subarray(3 + len));
        }
      } catch {}
      if (!handler || body === undefined) return void this.#all.droppedIn++;
      try {
        handler(from, kind, body);
      } catch (e) {
        console.error(describe(e));
      }
    }

    /** The relay connection closed after its welcome. */
    #dropped(code, reason) {
      if (this.#stopped) return;
      if (this.#onDisconnect && code !== REPLACED) {
        this.#protocol.setLinkUp(this.#now(), false);
        this.#pump();
        try {
          this.#onDisconnect(reason);
        } catch (e) {
          console.error(describe(e));
        }
        return;
      }
      this.#fail(reason);
    }

    /** The relay link is gone for good: the member stops, saying why. */
    #fail(reason) {
      this.#closeReason ??= reason;
      this.#connection?.close(reason);
      this.#stop("every transport closed");
    }

    /** Stops the member: timer off, relay closed, a final `shutdown` event, waiters settled. */
    #stop(why) {
      if (this.#stopped) return;
      this.#stopped = why;
      clearTimeout(this.#timer);
      this.#timer = null;
      if (this.#closeReason === undefined) {
        this.#closeReason = "closed locally (member shut down)";
        this.#connection?.close(this.#closeReason);
      }
      this.#direct.clear();
      this.#rekeyed.clear();
      const shutdown = { type: "shutdown" };
      if (this.#closeReason !== undefined) shutdown.reason = this.#closeReason;
      for (const w of [...this.#waiters]) w(undefined);
      const f = this.#onEvent;
      try {
        f?.(shutdown);
      } catch (err) {
        console.error(`shoal: event callback threw: ${describe(err)}`);
      }
    }

    // ----- the interface shoal.js uses ------------------------------------------------------------

    /** Replaces the event callback (`null` removes it). */
    onEvent(callback) {
      this.#onEvent = callback ?? null;
    }

    name() {
      return this.#protocol.name();
    }

    localAddr() {
      return this.#protocol.localAddr();
    }

    members() {
      return this.#protocol.members();
    }

    local() {
      return this.#protocol.local();
    }

    broadcast(topic, data, key, ttlMs) {
      this.#command((p) => p.broadcast(topic, data, key, ttlMs));
    }

    /** Returns the id of a reliable message, else `undefined`. */
    send(name, topic, data, reliable) {
      return this.#command((p, now) => p.send(now, name, topic, data, !!reliable));
    }

    sendTo(addr, topic, data, reliable) {
      this.#command((p, now) => p.sendTo(now, addr, topic, data, !!reliable));
    }

    setMetadata(meta) {
      this.#command((p) => p.setMetadata(meta));
    }

    /** Starts a query (`filter` as common.js `queryFilter` writes it; `timeoutMs` 0 for the
     * default); returns its number. */
    query(topic, data, filter, timeoutMs) {
      return this.#command((p, now) => p.query(now, topic, data, filter, timeoutMs));
    }

    /** Answers the query a `query` event brought. */
    respond({ from, addr, epoch, query }, data) {
      this.#command((p, now) => p.respond(now, String(from), String(addr), Number(epoch), Number(query), data));
    }

    /**
     * Leaves gracefully and shuts down. Resolves `true` when the departure was gossiped within
     * `timeoutMs` (default 2,000), `false` when the member shut down without confirming it.
     */
    async leave(timeoutMs = 2000) {
      if (this.#stopped) return false;
      this.#command((p, now) => p.leave(now));
      const until = this.#now() + Math.max(0, timeoutMs);
      while (!this.#stopped && !this.#protocol.leaveDisseminated() && this.#now() < until) {
        await new Promise((resolve) => setTimeout(resolve, LEAVE_POLL_MS));
      }
      if (this.#stopped) return false;
      const done = this.#protocol.leaveDisseminated();
      this.#stop("left the cluster");
      return done;
    }

    /**
     * Our departure, ready for the page to post when the tab closes: `{ url, body }` for
     * `navigator.sendBeacon(url, body)` (the relay's `/farewell`, and the packets `leave` would
     * send first with this connection's secret), or `null` when there is nothing to post (not
     * connected, leaving or stopped, nobody to tell, or a relay without farewells). Build a fresh
     * one whenever the membership or our incarnation changes.
     */
    farewellBeacon() {
      const secret = this.#connection?.farewellSecret;
      if (this.#stopped || !secret || this.#closeReason !== undefined) return null;
      let url;
      try {
        url = new URL(this.#url);
      } catch {
        return null;
      }
      const peer = encoder.encode(url.searchParams.get("peer") ?? "");
      if (peer.length === 0 || peer.length > 255) return null;
      const head = 1 + peer.length + secret.length;
      const frames = this.#protocol.farewell(FAREWELL_FANOUT, Math.min(this.#maxFrame, 0xffff), MAX_FAREWELL_BODY - head);
      if (frames.length === 0) return null;
      const body = new Uint8Array(head + frames.length);
      body[0] = peer.length;
      body.set(peer, 1);
      body.set(secret, 1 + peer.length);
      body.set(frames, head);
      // ws://host/path/ws -> http://host/path/farewell
      url.protocol = url.protocol === "wss:" ? "https:" : "http:";
      url.pathname = url.pathname.replace(/[^/]*$/, "farewell");
      url.search = "";
      url.hash = "";
      return { url: url.href, body };
    }

    /** Stops at once without telling anyone. */
    async shutdown() {
      this.#stop("shut down");
    }

    /** Counters and gauges, in the order of `METRIC_NAMES` and `METRIC_GROUPS` (common.js). */
    metricValues() {
      const v = this.#protocol.metricValues();
      const a = this.#all;
      // [0..26) node, then the driver's: transportErrors (none: receiving cannot fail here), droppedEvents, reliableDropped,
      // bestEffortDropped, callbackPanics, sendsAbandoned; node: linkOutages, stalls; transport;
      // node: security.
      return [
        ...v.slice(0, 26),
        0, 0, 0, 0, this.#callbackErrors, 0,
        v[26], v[27],
        a.packetsIn, a.bytesIn, a.packetsOut, a.bytesOut, a.sendErrors, a.droppedIn,
        ...v.slice(28),
      ];
    }

    /** Sends a WebRTC signalling message to the member of the same relay at `to`; false when the
     * relay connection could not take it. */
    signal(to, kind, body) {
      const ws = this.#connection?.ws;
      const addr = encoder.encode(to);
      if (this.#stopped || !ws || ws.readyState !== OPEN) return false;
      if (addr.length === 0 || addr.length > 255 || !(kind >= 1 && kind <= 5)) return false;
      const text = encoder.encode(body);
      const frame = new Uint8Array(3 + addr.length + text.length);
      frame.set([SIGNAL_TAG, addr.length]);
      frame.set(addr, 2);
      frame[2 + addr.length] = kind;
      frame.set(text, 3 + addr.length);
      try {
        ws.send(frame);
        return true;
      } catch {
        return false;
      }
    }

    /** Sets the function receiving signalling messages: `(from, kind, body) => void`. */
    onSignal(handler) {
      this.#onSignal = handler ?? null;
    }

    /** Registers the direct path to `addr`: `send(bytes, reliable) => boolean` (false: take the
     * relay instead). `null` removes it. */
    setDirect(addr, send) {
      const at = this.#rekeyed.get(addr) ?? addr;
      if (send && !this.#stopped) {
        const name = this.#protocol.members().find((m) => m.addr === addr)?.name;
        this.#direct.set(at, { send, name });
      } else {
        this.#direct.delete(at);
        for (const [k, v] of this.#rekeyed) if (v === at) this.#rekeyed.delete(k);
      }
    }

    /** A member's record changed: if it moved to another relay of the fleet, its direct path (a
     * WebRTC channel, which does not care which relay either end uses) serves its new address. */
    #follow(info) {
      for (const [addr, d] of this.#direct) {
        if (d.name !== info.name || addr === info.addr) continue;
        this.#direct.delete(addr);
        this.#direct.set(info.addr, d);
        for (const [k, v] of this.#rekeyed) if (v === addr) this.#rekeyed.set(k, info.addr);
        this.#rekeyed.set(addr, info.addr);
        return;
      }
    }

    /** Hands over a packet from `from`'s direct path (ignored unless one is registered). `from` is
     * the address the path was registered at; its member may have moved since. */
    deliverDirect(from, data) {
      from = this.#rekeyed.get(from) ?? from;
      if (this.#stopped || !this.#direct.has(from)) return false;
      for (const c of [this.#all, this.#viaDirect]) {
        c.packetsIn++;
        c.bytesIn += data.length;
      }
      this.#protocol.handlePacket(this.#now(), from, data);
      this.#pump();
      return true;
    }

    /** `[packetsOut, bytesOut, packetsIn, bytesIn]`, in total then over direct paths. */
    trafficCounters() {
      return [this.#all, this.#viaDirect].flatMap((c) => [c.packetsOut, c.bytesOut, c.packetsIn, c.bytesIn]);
    }

    /**
     * After `onDisconnect`: opens a new relay connection with the same peer id. The first attempt
     * goes to the relay we had; after a failed one, the next go to the other relays of the fleet in
     * turn: those given (`relay: [url1, url2, ...]`), then those the cluster announces (members
     * tagged `shoal-relay`, see `relaysOf`), round and round. Resolves to `undefined` once connected again,
     * at the same address or at our peer id on another relay (a move the cluster takes, see
     * `Protocol.moveTo`), or to the reason this attempt failed (try again later); rejects when the
     * member cannot continue (it stopped, or a relay gives it another peer id, in which case it
     * shuts down).
     */
    reconnect() {
      // One attempt at a time: a second connection with our peer id would replace the first (4001).
      return (this.#reconnecting ??= this.#reconnectOnce().finally(() => (this.#reconnecting = null)));
    }

    async #reconnectOnce() {
      if (this.#stopped) throw new Error(this.#closeReason ?? this.#stopped);
      this.#connection.close("reconnecting");
      const others = this.#fleet().filter((u) => u !== this.#url);
      const url = this.#attempt === 0 || others.length === 0 ? this.#url : others[(this.#attempt - 1) % others.length];
      this.#attempt++;
      let next;
      try {
        next = this.#open(url);
      } catch (e) {
        return describe(e);
      }
      const welcome = await next.welcome(this.#connectTimeoutMs, url);
      if (this.#stopped) {
        next.close("member stopped");
        throw new Error(this.#closeReason ?? this.#stopped);
      }
      if (welcome.error) {
        next.close("reconnect failed");
        return welcome.error;
      }
      const local = this.#protocol.localAddr();
      if (welcome.addr !== local && peerOf(welcome.addr) !== peerOf(local)) {
        const reason = `the relay now gives this member the address ${welcome.addr}, not ${local}`;
        next.close(reason);
        this.#fail(reason);
        throw new Error(reason);
      }
      this.#connection = next;
      this.#url = url;
      this.#attempt = 0;
      if (welcome.addr !== local) this.#protocol.moveTo(this.#now(), welcome.addr);
      this.#protocol.setLinkUp(this.#now(), true);
      this.#pump();
      return undefined;
    }

    /** The relay URLs to fail over to: those given, then those the cluster's relays announce, each
     * with our peer id and token. */
    #fleet() {
      const given = new URL(this.#urls[0]).searchParams;
      const announced = relaysOf(this.#protocol.members()).map((r) => relayUrl(r.url, given.get("peer"), given.get("token") ?? undefined));
      return [...new Set([...this.#urls, ...announced])];
    }

    /** Gives up on the relay connection: the member shuts down with `reason`. */
    closeTransport(reason) {
      if (!this.#stopped) this.#fail(reason);
    }

    /** Why the relay connection closed, once it has (`undefined` while open). */
    closeReason() {
      return this.#closeReason;
    }
  }

  return ShoalNode;
}

const PRIVATE = Symbol("shoal.member");

/** The peer id in `relay://host:port/peer`, the part that stays when a member changes relays. */
function peerOf(addr) {
  return addr.slice(addr.lastIndexOf("/") + 1);
}
