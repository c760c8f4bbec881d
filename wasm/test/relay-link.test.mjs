// The relay link of `ShoalNode` (the class the npm package's `Shoal` wraps), tested through its
// public interface only (wasm/js/member.js over the wasm `Protocol`):
//   - against a scripted WebSocket (`scriptedRelay` below): the welcome, the `[len][address][packet]`
//     framing both ways, frame limits and what is dropped, failed joins, disconnects and
//     `reconnect()`, the WebRTC hooks (`signal`, `onSignal`, `setDirect`, `deliverDirect`);
//   - over the in-process fake relay (./fake-relay.mjs): members that join, gossip and leave.
// The frame format is documented at the top of shoal-core's relay module (core/proto/src/relay.rs).
// Needs the built package
// (wasm/pkg/web, from wasm/build.sh). Run: cd wasm && node --test test/relay-link.test.mjs
import { readFileSync } from "node:fs";
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { metricsObject } from "../js/common.js";
import { memberClass } from "../js/member.js";
import { startFakeRelay } from "./fake-relay.mjs";

// The class under test: the JS driver (member.js) over the wasm protocol. (These tests were written
// against the earlier wasm-bindgen `ShoalNode` and passed there before the driver moved to JS.)
async function loadShoalNode() {
  const glue = await import("../pkg/web/shoal_wasm.js");
  glue.initSync({ module: readFileSync(new URL("../pkg/web/shoal_wasm_bg.wasm", import.meta.url)) });
  return memberClass(glue);
}

const ShoalNode = await loadShoalNode();

// ----- Helpers ------------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (s) => encoder.encode(s);
const text = (b) => decoder.decode(b);

/** Polls `condition` until it returns a truthy value (returned), failing after `ms`. */
async function waitUntil(condition, what, ms = 3000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Settles with `promise`, or rejects after `ms` naming what was awaited. */
function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Lets pending timers and microtasks run (never what makes a test pass: only gives a wrong
 * implementation the chance to do what it must not). */
const settle = (ms = 30) => new Promise((resolve) => setTimeout(resolve, ms));

/** `[len][address][packet]`: a packet frame, either direction. */
function frame(addr, packet = new Uint8Array(0)) {
  const a = bytes(addr);
  const f = new Uint8Array(1 + a.length + packet.length);
  f[0] = a.length;
  f.set(a, 1);
  f.set(packet, 1 + a.length);
  return f;
}

/** The address and packet of a packet frame. */
function parseFrame(f) {
  assert.ok(f.length >= 1 && f[0] > 0 && f.length >= 1 + f[0], `a packet frame: [${[...f.slice(0, 8)]}...]`);
  return { addr: text(f.subarray(1, 1 + f[0])), packet: f.subarray(1 + f[0]) };
}

/** `[0x00][len][address][kind][body]`: a signalling frame, either direction. */
function signalFrame(addr, kind, body) {
  const a = bytes(addr);
  const b = typeof body === "string" ? bytes(body) : body;
  const f = new Uint8Array(3 + a.length + b.length);
  f[0] = 0;
  f[1] = a.length;
  f.set(a, 2);
  f[2 + a.length] = kind;
  f.set(b, 3 + a.length);
  return f;
}

/** The named metrics of a member (order: METRIC_NAMES and METRIC_GROUPS in js/common.js). */
const metrics = (node) => metricsObject(node.metricValues());

/** `trafficCounters()` by name. */
function traffic(node) {
  const [packetsOut, bytesOut, packetsIn, bytesIn, dPacketsOut, dBytesOut, dPacketsIn, dBytesIn] = node.trafficCounters();
  return {
    packetsOut,
    bytesOut,
    packetsIn,
    bytesIn,
    direct: { packetsOut: dPacketsOut, bytesOut: dBytesOut, packetsIn: dPacketsIn, bytesIn: dBytesIn },
  };
}

/**
 * A scripted WebSocket class standing in for a relay, with the standard members the transport uses
 * (constructor(url), binaryType, readyState, bufferedAmount, send, close, on* handlers). Each socket
 * opens on the next timer turn and then, depending on `Socket.welcome` at construction:
 *   "auto" (default): sends the welcome frame `relay://<url host>/<peer>`;
 *   "close": is closed by the relay (1008 "bad token") instead;
 *   "silent": sends nothing;
 *   a string: sends a welcome naming that address;
 *   a Uint8Array: sends those bytes as its first message.
 * Tests drive a socket with `deliver(bytes)`, `deliverText(s)` and `drop(code, reason)`.
 */
function scriptedRelay() {
  class ScriptedSocket {
    static instances = [];
    static welcome = "auto";
    static get last() {
      return ScriptedSocket.instances.at(-1);
    }

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.bufferedAmount = 0;
      this.binaryType = "blob";
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      ScriptedSocket.instances.push(this);
      const u = new URL(url);
      const mode = ScriptedSocket.welcome;
      this.welcomeAddr = `relay://${u.host}/${u.searchParams.get("peer")}`;
      setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.onopen?.({});
        if (mode === "close") this.drop(1008, "bad token");
        else if (mode === "silent") return;
        else if (mode instanceof Uint8Array) this.deliver(mode);
        else this.deliver(frame(mode === "auto" ? this.welcomeAddr : mode));
      }, 0);
    }

    send(data) {
      if (this.binaryType !== "arraybuffer") throw new Error("binaryType was not set to arraybuffer");
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      const view = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      this.sent.push(view.slice());
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? "" }), 0);
    }

    /** A binary message from the relay. */
    deliver(b) {
      this.onmessage?.({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) });
    }

    /** A text message from the relay. */
    deliverText(s) {
      this.onmessage?.({ data: s });
    }

    /** The relay ends the connection. */
    drop(code, reason) {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return ScriptedSocket;
}

const HOST = "relay.test:9";
const R = `relay://${HOST}/`;
const url = (peer) => `ws://${HOST}/ws?peer=${peer}`;

/**
 * Joins a member over a scripted socket class, collecting its events in `node.events`. Shuts it
 * down after the test.
 */
async function joinScripted(t, Socket, peer, options = {}) {
  const events = [];
  const node = await ShoalNode.join({
    url: url(peer),
    name: peer,
    preset: "local",
    WebSocket: Socket,
    onEvent: (e) => events.push(e),
    ...options,
  });
  node.events = events;
  t.after(() => node.shutdown());
  return node;
}

/** The member's final `shutdown` event, once it came. */
const shutdownEvent = (node, ms = 3000) =>
  waitUntil(() => node.events.find((e) => e.type === "shutdown"), `${node.name()}'s shutdown event`, ms);

/** A collector usable as `onDisconnect`: `f.reasons` holds what it was called with. */
function reasonsCollector() {
  const reasons = [];
  const f = (reason) => reasons.push(reason);
  f.reasons = reasons;
  return f;
}

// ----- The welcome and the framing ---------------------------------------------------------------

test("the relay's welcome frame gives the member its relay address", async (t) => {
  const Socket = scriptedRelay();
  const node = await joinScripted(t, Socket, "tab-1");
  assert.equal(node.localAddr(), "relay://relay.test:9/tab-1");
  assert.equal(node.name(), "tab-1");
  assert.equal(node.local().addr, "relay://relay.test:9/tab-1");
  assert.equal(node.local().name, "tab-1");
  assert.deepEqual(node.members(), [], "a founder starts alone");
  assert.equal(node.closeReason(), undefined, "open");
  assert.equal(Socket.instances.length, 1);
  assert.equal(Socket.last.url, `${url("tab-1")}&farewell=1`, "the socket was opened with the given URL, asking for a farewell secret");
  assert.equal(Socket.last.binaryType, "arraybuffer");
});

test("the welcome's address, not the URL, is the member's address", async (t) => {
  const Socket = scriptedRelay();
  Socket.welcome = "relay://public.example:443/tab-1";
  const node = await joinScripted(t, Socket, "tab-1");
  assert.equal(node.localAddr(), "relay://public.example:443/tab-1");
});

test("sends are framed with the destination and the receiver sees the relay-stamped source", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const b = await joinScripted(t, Socket, "b");
  const [wsA, wsB] = Socket.instances;
  assert.equal(a.localAddr(), `${R}a`);
  assert.equal(b.localAddr(), `${R}b`);

  a.sendTo(b.localAddr(), "chat", bytes("best effort"));
  await waitUntil(() => wsA.sent.length >= 1, "a's frame");
  const sent = wsA.sent[0];
  const { addr, packet } = parseFrame(sent);
  assert.equal(sent[0], b.localAddr().length, "the first byte is the destination's length");
  assert.equal(addr, b.localAddr(), "the destination follows");
  assert.ok(packet.length > 0, "then the packet");
  assert.ok(text(packet).includes("best effort"), "an unencrypted packet carries the payload as it is");
  assert.equal(wsB.sent.length, 0, "b sent nothing");

  // The relay forwards it stamped with a's address.
  const relayed = frame(a.localAddr(), packet);
  wsB.deliver(relayed);
  const got = await waitUntil(() => b.events.find((e) => e.type === "message"), "b to receive a's message");
  assert.equal(got.from, "a");
  assert.equal(got.topic, "chat");
  assert.equal(got.kind, "direct");
  assert.equal(text(got.data), "best effort");

  // Counted on both sides: a frame out of a, a frame into b (header included).
  assert.deepEqual(
    [traffic(a).packetsOut, traffic(a).bytesOut, traffic(a).packetsIn],
    [1, sent.length, 0],
  );
  assert.deepEqual([traffic(b).packetsIn, traffic(b).bytesIn, traffic(b).packetsOut], [1, relayed.length, 0]);
  const mb = metrics(b).transport;
  assert.deepEqual([mb.packetsIn, mb.bytesIn, mb.droppedIn, mb.sendErrors], [1, relayed.length, 0, 0]);
});

test("a reliable message is acknowledged to the source the relay stamped on it", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const b = await joinScripted(t, Socket, "b");
  const [wsA, wsB] = Socket.instances;

  a.sendTo(b.localAddr(), "dm", bytes("reliable"), true);
  await waitUntil(() => wsA.sent.length >= 1, "a's reliable frame");
  const out = parseFrame(wsA.sent[0]);
  assert.equal(out.addr, b.localAddr());
  wsB.deliver(frame(a.localAddr(), out.packet));
  const got = await waitUntil(() => b.events.find((e) => e.type === "message"), "b to receive it");
  assert.deepEqual([got.from, got.topic, got.kind, text(got.data)], ["a", "dm", "direct", "reliable"]);

  // b's acknowledgement goes to the stamped source; relayed back, it settles the message at a.
  await waitUntil(() => wsB.sent.length >= 1, "b's acknowledgement");
  const ack = parseFrame(wsB.sent[0]);
  assert.equal(ack.addr, a.localAddr());
  wsA.deliver(frame(b.localAddr(), ack.packet));
  await waitUntil(() => traffic(a).packetsIn === 1, "a to take in the acknowledgement");
  assert.equal(metrics(a).decodeErrors, 0);
  assert.equal(metrics(b).decodeErrors, 0);
});

// ----- Frame limits and what is dropped ----------------------------------------------------------

test("reliable traffic beyond relayMaxFrame is refused before anything is sent", async (t) => {
  const Socket = scriptedRelay();
  const maxFrame = 2048;
  const a = await joinScripted(t, Socket, "a", { relayMaxFrame: maxFrame });
  const ws = Socket.last;
  const to = `${R}b`;

  // Packets are kept to relayMaxFrame minus the largest header and the encryption overhead:
  // 2048 - (1 + 255 + 29) = 1763 bytes, so that every frame fits whatever the destination.
  assert.throws(() => a.sendTo(to, "big", new Uint8Array(maxFrame), true), /exceeds 1763/);
  assert.throws(() => a.sendTo(to, "big", new Uint8Array(1763), true), /exceeds 1763/, "the packet, not the payload");
  // Metadata is kept to a quarter of that.
  assert.throws(() => a.setMetadata(new Uint8Array(441)), /exceeds 440/);
  await settle();
  assert.equal(ws.sent.length, 0, "nothing was sent");
  assert.deepEqual([metrics(a).transport.packetsOut, metrics(a).transport.sendErrors], [0, 0], "refused before the link");

  // What fits goes out in one frame within the limit.
  a.sendTo(to, "fits", new Uint8Array(1700).fill(7), true);
  await waitUntil(() => ws.sent.length >= 1, "the frame that fits");
  assert.equal(ws.sent.length, 1, "only the message that fits was sent");
  assert.ok(ws.sent[0].length > 1700 && ws.sent[0].length <= maxFrame, `${ws.sent[0].length} <= ${maxFrame}`);
  assert.equal(parseFrame(ws.sent[0]).addr, to);
  assert.deepEqual([traffic(a).packetsOut, traffic(a).bytesOut], [1, ws.sent[0].length]);
});

test("an address too long for the frame header is refused and counted as a send error", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const ws = Socket.last;
  a.sendTo(`${R}${"x".repeat(300)}`, "t", bytes("x")); // accepted by the member, refused by the link
  await waitUntil(() => metrics(a).transport.sendErrors === 1, "the send error");
  assert.equal(ws.sent.length, 0);
  assert.equal(metrics(a).transport.packetsOut, 0);
  assert.equal(a.closeReason(), undefined);
});

test("best-effort sends are dropped while the socket holds over 1 MiB unsent, reliable ones still go", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const ws = Socket.last;
  const to = `${R}b`;
  ws.bufferedAmount = (1 << 20) + 1;
  a.sendTo(to, "t", bytes("best effort"));
  await waitUntil(() => metrics(a).transport.sendErrors === 1, "the dropped best-effort send");
  assert.equal(ws.sent.length, 0);
  a.sendTo(to, "t", bytes("reliable"), true);
  await waitUntil(() => ws.sent.length === 1, "the reliable send");
  assert.ok(text(ws.sent[0]).includes("reliable"));
  ws.bufferedAmount = 1 << 20; // not over the limit
  a.sendTo(to, "t", bytes("best effort again"));
  await waitUntil(() => ws.sent.length === 2, "the best-effort send");
  assert.ok(text(ws.sent[1]).includes("best effort again"));
  assert.deepEqual([metrics(a).transport.packetsOut, metrics(a).transport.sendErrors], [2, 1]);
});

test("a relayMaxFrame too small for the preset's packets fails the join", async () => {
  const Socket = scriptedRelay();
  await assert.rejects(
    ShoalNode.join({ url: url("a"), name: "a", preset: "local", WebSocket: Socket, relayMaxFrame: 1000 }),
    /relayMaxFrame/,
  );
});

test("text messages, oversized and malformed frames are dropped and counted", async (t) => {
  const Socket = scriptedRelay();
  const maxFrame = 2048;
  const a = await joinScripted(t, Socket, "a", { relayMaxFrame: maxFrame });
  const ws = Socket.last;
  const sender = `${R}b`;

  ws.deliver(frame(sender, new Uint8Array(maxFrame).fill(1))); // beyond relayMaxFrame
  ws.deliverText("hello"); // text
  ws.deliver(new Uint8Array([9, 120])); // an address longer than the frame
  ws.deliver(frame("no scheme", new Uint8Array([1]))); // not an address
  ws.deliver(signalFrame(sender, 1, "{}")); // signalling, but nobody listens (no onSignal)
  await waitUntil(() => metrics(a).transport.droppedIn === 5, "five drops");
  const m = metrics(a).transport;
  assert.deepEqual([m.packetsIn, m.bytesIn, m.droppedIn], [0, 0, 5]);
  assert.deepEqual([traffic(a).packetsIn, traffic(a).bytesIn], [0, 0]);
  assert.equal(a.events.filter((e) => e.type === "message").length, 0);
  assert.equal(a.closeReason(), undefined, "the connection stays up");

  // A well-formed frame after them still arrives.
  ws.deliver(frame(sender, new Uint8Array([0xff, 0xff])));
  await waitUntil(() => metrics(a).transport.packetsIn === 1, "the good frame");
  assert.equal(metrics(a).transport.droppedIn, 5);
});

test("every frame is handled in its own message event, so a burst neither queues nor drops", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const b = await joinScripted(t, Socket, "b");
  const [wsA, wsB] = Socket.instances;
  a.sendTo(b.localAddr(), "q", bytes("first"));
  a.sendTo(b.localAddr(), "q", bytes("last"));
  await waitUntil(() => wsA.sent.length >= 2, "a's two frames");
  const [first, last] = wsA.sent.map((f) => frame(a.localAddr(), parseFrame(f).packet));

  // All in one go, without giving the member a turn of its own: each frame is read before
  // `deliver` returns, so its message and its counters are there at once (the earlier driver
  // queued frames for its task and dropped what did not fit in 1,024).
  wsB.deliver(first);
  const junk = frame(a.localAddr(), new Uint8Array([0xff]));
  for (let i = 0; i < 2000; i++) wsB.deliver(junk);
  wsB.deliver(last);
  const m = metrics(b);
  assert.equal(m.transport.packetsIn, 2002);
  assert.equal(m.transport.droppedIn, 0);
  assert.equal(m.decodeErrors, 2000, "every junk packet is counted by the protocol");
  assert.deepEqual(b.events.filter((e) => e.type === "message").map((e) => text(e.data)), ["first", "last"]);
});

// ----- Joins that fail ---------------------------------------------------------------------------

test("a relay that closes the connection instead of welcoming fails the join with its reason", async () => {
  const Socket = scriptedRelay();
  Socket.welcome = "close";
  await assert.rejects(
    ShoalNode.join({ url: url("tab-1"), name: "tab-1", preset: "local", WebSocket: Socket }),
    (e) => {
      assert.match(e.message, /1008/);
      assert.match(e.message, /bad token/);
      return true;
    },
  );
});

test("a welcome whose packet is neither empty nor a 16-byte farewell secret fails the join", async () => {
  for (const extra of [1, 15, 17]) {
    const Socket = scriptedRelay();
    const welcome = frame(`${R}tab-1`, new Uint8Array(extra));
    Socket.welcome = welcome;
    await assert.rejects(
      ShoalNode.join({ url: url("tab-1"), name: "tab-1", WebSocket: Socket }),
      /not a welcome frame/,
      `a welcome with a ${extra}-byte packet`,
    );
  }
});

test("a relay without farewells (an empty welcome) leaves the member without a farewell beacon", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  assert.equal(a.farewellBeacon(), null);
});

/**
 * Member "a" (welcomed with `secret`, its socket opened at `aUrl`) and member "b" joined to it over
 * scripted sockets, with the test carrying frames between them until each sees the other alive.
 */
async function scriptedPair(t, secret, aUrl = url("a")) {
  const Socket = scriptedRelay();
  Socket.welcome = frame(`${R}a`, secret);
  const a = await joinScripted(t, Socket, "a", { url: aUrl });
  Socket.welcome = "auto";
  let b = null;
  const joining = joinScripted(t, Socket, "b", { seeds: [`${R}a`] }).then((node) => (b = node));
  const carry = (from, fromSocket, toSocket) => {
    for (const f of fromSocket?.sent.splice(0) ?? []) toSocket.deliver(frame(from, parseFrame(f).packet));
  };
  const sees = (n, who) => n?.members().some((m) => m.name === who && m.state === "alive");
  await waitUntil(() => {
    const [wsA, wsB] = Socket.instances;
    carry(`${R}b`, wsB, wsA);
    carry(`${R}a`, wsA, wsB);
    return sees(a, "b") && sees(b, "a");
  }, "a and b to see each other");
  await joining;
  const [wsA, wsB] = Socket.instances;
  return { a, b, wsA, wsB };
}

test("the farewell beacon carries the peer id, the welcome's secret and a leave for each member, for the relay's /farewell", async (t) => {
  const secret = Uint8Array.from({ length: 16 }, (_, i) => 200 + i);
  const { a, b, wsA, wsB } = await scriptedPair(t, secret);
  const sentBefore = wsA.sent.length;
  const beacon = a.farewellBeacon();
  assert.equal(beacon.url, "http://relay.test:9/farewell");
  const body = beacon.body;
  assert.equal(body[0], 1);
  assert.equal(text(body.subarray(1, 2)), "a");
  assert.deepEqual([...body.subarray(2, 18)], [...secret]);
  const frames = [];
  for (let at = 18; at < body.length; ) {
    const n = (body[at] << 8) | body[at + 1];
    frames.push(body.subarray(at + 2, at + 2 + n));
    at += 2 + n;
  }
  assert.equal(frames.length, 1, "one frame per member to tell");
  const { addr, packet } = parseFrame(frames[0]);
  assert.equal(addr, `${R}b`);
  assert.equal(a.events.filter((e) => e.type === "shutdown").length, 0, "building it does not leave");
  assert.equal(wsA.sent.length, sentBefore, "nor sends anything");

  // The tab is gone before the member could leave; the relay forwards the farewell.
  await a.shutdown();
  wsB.deliver(frame(`${R}a`, packet));
  await waitUntil(() => b.events.find((e) => e.type === "leave" && e.member === "a"), "b to see a leave");
  assert.equal(b.members().find((m) => m.name === "a").state, "left");
  assert.equal(a.farewellBeacon(), null, "a stopped member has none");
});

test("the farewell URL keeps the relay's host and path: wss -> https, the last segment -> farewell", async (t) => {
  for (const [aUrl, expected] of [
    ["wss://relay.test:9/cluster/ws?peer=a&token=x", "https://relay.test:9/cluster/farewell"],
    ["ws://relay.test:9/?peer=a", "http://relay.test:9/farewell"],
  ]) {
    const { a } = await scriptedPair(t, new Uint8Array(16), aUrl);
    assert.equal(a.farewellBeacon().url, expected, aUrl);
  }
});

test("a member that is leaving has no farewell beacon: its leave is under way", async (t) => {
  const { a } = await scriptedPair(t, new Uint8Array(16));
  assert.ok(a.farewellBeacon());
  const leaving = a.leave(50);
  assert.equal(a.farewellBeacon(), null);
  await leaving;
});

test("a relay that sends garbage instead of a welcome fails the join", async () => {
  for (const [welcome, expected] of [
    ["udp://1.2.3.4:5", /invalid address/],
    [new Uint8Array([200, 1, 2]), /not a welcome/],
  ]) {
    const Socket = scriptedRelay();
    Socket.welcome = welcome;
    await assert.rejects(
      ShoalNode.join({ url: url("tab-1"), name: "tab-1", preset: "local", WebSocket: Socket }),
      expected,
    );
    await waitUntil(() => Socket.last.closedWith, "the member to close the socket");
  }
});

test("a socket error before the welcome fails the join with the error's message", async () => {
  const Socket = scriptedRelay();
  Socket.welcome = "silent";
  const joining = ShoalNode.join({ url: url("tab-1"), name: "tab-1", preset: "local", WebSocket: Socket });
  const ws = await waitUntil(() => Socket.last, "the socket");
  ws.onerror?.({ message: "connect ECONNREFUSED 127.0.0.1:9" });
  ws.drop(1006, "");
  await assert.rejects(within(2000, joining, "the join"), /cannot connect to the relay: connect ECONNREFUSED 127\.0\.0\.1:9/);
});

test("no welcome within connectTimeoutMs fails the join and closes the socket", async () => {
  const Socket = scriptedRelay();
  Socket.welcome = "silent";
  const started = Date.now();
  await assert.rejects(
    ShoalNode.join({ url: url("tab-1"), name: "tab-1", preset: "local", WebSocket: Socket, connectTimeoutMs: 150 }),
    /no welcome within 150 ms/,
  );
  assert.ok(Date.now() - started >= 140, "waited for the timeout");
  assert.ok(Socket.last.closedWith, "the socket was closed");
});

test("without a WebSocket constructor the join explains what to pass", async () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "WebSocket");
  if (saved) delete globalThis.WebSocket;
  try {
    await assert.rejects(
      ShoalNode.join({ url: url("tab-1"), name: "tab-1", preset: "local" }),
      /no global WebSocket.*WebSocket option/s,
    );
  } finally {
    if (saved) Object.defineProperty(globalThis, "WebSocket", saved);
  }
});

test("a join whose seeds never answer rejects within joinTimeoutMs and closes the socket", async () => {
  const Socket = scriptedRelay();
  const events = [];
  const started = Date.now();
  await assert.rejects(
    ShoalNode.join({
      url: url("tab-1"),
      name: "tab-1",
      preset: "local",
      WebSocket: Socket,
      seeds: [`${R}nobody`],
      joinTimeoutMs: 300,
      onEvent: (e) => events.push(e),
    }),
    /no seed answered/,
  );
  assert.ok(Date.now() - started >= 250, "waited for the join timeout");
  assert.ok(Socket.last.sent.some((f) => parseFrame(f).addr === `${R}nobody`), "the seed was tried");
  await waitUntil(() => Socket.last.closedWith, "the member to close the socket");
  await waitUntil(() => events.find((e) => e.type === "shutdown"), "the shutdown event");
  assert.ok(events.some((e) => e.type === "join-failed"), JSON.stringify(events.map((e) => e.type)));
});

// ----- Disconnects and reconnect() ---------------------------------------------------------------

test("a dropped connection is reported to onDisconnect and reconnect() resumes at the same address", async (t) => {
  const Socket = scriptedRelay();
  const onDisconnect = reasonsCollector();
  const a = await joinScripted(t, Socket, "tab-1", { onDisconnect });
  const first = Socket.last;
  const peer = `${R}tab-2`;

  first.drop(1001, "relay shutting down");
  await waitUntil(() => onDisconnect.reasons.length > 0, "onDisconnect");
  assert.deepEqual(onDisconnect.reasons, ["relay connection closed (1001: relay shutting down)"]);
  assert.equal(a.closeReason(), undefined, "the member keeps running");
  assert.equal(metrics(a).linkOutages, 0);

  // While disconnected, sends are lost as on a network outage (and counted as errors).
  a.sendTo(peer, "t", bytes("lost"));
  await waitUntil(() => metrics(a).transport.sendErrors >= 1, "the failed send");
  assert.equal(first.sent.length, 0);

  assert.equal(await within(2000, a.reconnect(), "reconnect()"), undefined);
  assert.equal(Socket.instances.length, 2, "a new socket");
  const second = Socket.last;
  assert.equal(second.url, first.url, "the same URL, so the same peer id");
  assert.equal(a.localAddr(), "relay://relay.test:9/tab-1");
  assert.equal(a.closeReason(), undefined);
  assert.equal(onDisconnect.reasons.length, 1);
  // The member knew its link was down (it accuses nobody meanwhile): an outage, counted once over.
  await waitUntil(() => metrics(a).linkOutages === 1, "the outage to be counted");

  a.sendTo(peer, "t", bytes("again"));
  await waitUntil(() => second.sent.length >= 1, "the send on the new socket");
  assert.equal(parseFrame(second.sent[0]).addr, peer);
  assert.equal(first.sent.length, 0);

  // The old socket no longer reaches the member; the new one does.
  const b = await joinScripted(t, Socket, "tab-2");
  b.sendTo(a.localAddr(), "m", bytes("stale"));
  b.sendTo(a.localAddr(), "m", bytes("fresh"));
  const wsB = Socket.last;
  await waitUntil(() => wsB.sent.length >= 2, "b's two frames");
  first.deliver(frame(b.localAddr(), parseFrame(wsB.sent[0]).packet));
  second.deliver(frame(b.localAddr(), parseFrame(wsB.sent[1]).packet));
  await waitUntil(() => a.events.some((e) => e.type === "message"), "the fresh message");
  assert.deepEqual(a.events.filter((e) => e.type === "message").map((e) => text(e.data)), ["fresh"]);
});

test("a failed reconnect attempt resolves to its reason and a later attempt can succeed", async (t) => {
  const Socket = scriptedRelay();
  const onDisconnect = reasonsCollector();
  const a = await joinScripted(t, Socket, "tab-1", { onDisconnect, connectTimeoutMs: 200 });
  Socket.last.drop(1006, "");
  await waitUntil(() => onDisconnect.reasons.length > 0, "onDisconnect");
  assert.deepEqual(onDisconnect.reasons, ["relay connection closed (1006)"]);

  Socket.welcome = "close";
  const failed = await within(2000, a.reconnect(), "the failing reconnect()");
  assert.equal(typeof failed, "string");
  assert.match(failed, /1008/);
  assert.match(failed, /bad token/);
  assert.equal(a.closeReason(), undefined, "still waiting for a connection");
  assert.equal(a.events.filter((e) => e.type === "shutdown").length, 0, "still running");

  Socket.welcome = "silent";
  const slow = await within(2000, a.reconnect(), "the reconnect() without welcome");
  assert.match(slow, /no welcome within 200 ms/);
  assert.equal(metrics(a).linkOutages, 0, "the link is still down");

  Socket.welcome = "auto";
  assert.equal(await within(2000, a.reconnect(), "the succeeding reconnect()"), undefined);
  assert.equal(a.localAddr(), "relay://relay.test:9/tab-1");
  assert.equal(Socket.instances.length, 4);
  assert.equal(onDisconnect.reasons.length, 1, "failed attempts are not reported as drops");
});

test("reconnect() called again while an attempt is under way joins that attempt instead of opening a second socket", async (t) => {
  const Socket = scriptedRelay();
  const onDisconnect = reasonsCollector();
  const a = await joinScripted(t, Socket, "tab-1", { onDisconnect });
  Socket.last.drop(1006, "");
  await waitUntil(() => onDisconnect.reasons.length > 0, "onDisconnect");
  const opened = Socket.instances.length;
  const [first, second] = [a.reconnect(), a.reconnect()];
  assert.deepEqual(await within(2000, Promise.all([first, second]), "both reconnect() calls"), [undefined, undefined]);
  assert.equal(Socket.instances.length, opened + 1, "one new socket");
  assert.equal(a.closeReason(), undefined);
  assert.equal(a.events.filter((e) => e.type === "shutdown").length, 0, "still running");
});

test("a connection replaced by another with the same peer id (4001) closes the member for good", async (t) => {
  const Socket = scriptedRelay();
  const onDisconnect = reasonsCollector();
  const a = await joinScripted(t, Socket, "tab-1", { onDisconnect });
  Socket.last.drop(4001, "replaced by a newer connection with the same peer id");

  const last = await shutdownEvent(a);
  assert.deepEqual(onDisconnect.reasons, [], "no reconnect: it would take the peer id back");
  assert.match(last.reason, /4001/);
  assert.match(last.reason, /replaced by a newer connection/);
  assert.match(a.closeReason(), /4001/);
  await assert.rejects(a.reconnect(), /4001/);
  assert.equal(Socket.instances.length, 1, "no new connection");
  assert.throws(() => a.broadcast("t", bytes("x")), /stopped|shut down/, "a stopped member refuses commands");
});

test("a relay that gives another peer id on reconnect makes reconnect() reject and the member shut down", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "tab-1", { onDisconnect: reasonsCollector() });
  Socket.last.drop(1006, "");
  Socket.welcome = "relay://elsewhere:9/tab-9";
  await assert.rejects(within(2000, a.reconnect(), "reconnect()"), /relay:\/\/elsewhere:9\/tab-9/);
  const last = await shutdownEvent(a);
  assert.match(last.reason, /relay:\/\/elsewhere:9\/tab-9/);
  assert.match(a.closeReason(), /relay:\/\/elsewhere:9\/tab-9/);
  assert.equal(a.localAddr(), "relay://relay.test:9/tab-1", "the address never changed");
  assert.ok(Socket.last.closedWith, "the new socket was closed");
});

// ----- A relay fleet ------------------------------------------------------------------------------

const FLEET = ["ws://relay-a.test:9/ws?peer=tab-1", "ws://relay-b.test:9/ws?peer=tab-1", "ws://relay-c.test:9/ws?peer=tab-1"];

test("with several relays the member joins through the first that welcomes it", async (t) => {
  const Socket = scriptedRelay();
  Socket.welcome = "close";
  const events = [];
  const joining = ShoalNode.join({ urls: FLEET, url: FLEET[0], name: "tab-1", preset: "local", WebSocket: Socket, onEvent: (e) => events.push(e) });
  // The first refuses; the second welcomes.
  await waitUntil(() => Socket.instances.length === 1, "the first socket");
  Socket.welcome = "auto";
  const a = await within(2000, joining, "the join");
  t.after(() => a.shutdown());
  assert.deepEqual(Socket.instances.map((s) => new URL(s.url).host), ["relay-a.test:9", "relay-b.test:9"]);
  assert.equal(a.localAddr(), "relay://relay-b.test:9/tab-1");
});

test("a member whose relay is gone tries it once, then moves to the next relay of the fleet with the same peer id", async (t) => {
  const Socket = scriptedRelay();
  const onDisconnect = reasonsCollector();
  const events = [];
  const a = await ShoalNode.join({ urls: FLEET, url: FLEET[0], name: "tab-1", preset: "local", WebSocket: Socket, onEvent: (e) => events.push(e), onDisconnect });
  t.after(() => a.shutdown());
  assert.equal(a.localAddr(), "relay://relay-a.test:9/tab-1");
  const incarnation = a.local().incarnation;

  // relay-a dies: the first attempt goes back to it and fails, the second reaches relay-b.
  Socket.last.drop(1006, "");
  await waitUntil(() => onDisconnect.reasons.length > 0, "onDisconnect");
  Socket.welcome = "close";
  assert.equal(typeof (await within(2000, a.reconnect(), "the attempt at relay-a")), "string");
  Socket.welcome = "auto";
  assert.equal(await within(2000, a.reconnect(), "the attempt at relay-b"), undefined);
  assert.deepEqual(Socket.instances.slice(1).map((s) => new URL(s.url).host), ["relay-a.test:9", "relay-b.test:9"]);
  assert.equal(a.localAddr(), "relay://relay-b.test:9/tab-1", "moved, same peer id");
  assert.ok(a.local().incarnation > incarnation, "announced at a newer incarnation");
  assert.equal(a.closeReason(), undefined);
  assert.equal(events.filter((e) => e.type === "shutdown").length, 0, "still running");

  // The farewell now goes to the relay the member is on.
  const beacon = await waitUntil(() => a.farewellBeacon() ?? (a.sendTo("relay://relay-b.test:9/tab-2", "t", bytes("x")), null), "a beacon", 2000).catch(() => null);
  if (beacon) assert.match(beacon.url, /relay-b\.test/);

  // Its next drop goes back to relay-b first.
  Socket.last.drop(1006, "");
  await waitUntil(() => onDisconnect.reasons.length > 1, "the second drop");
  assert.equal(await within(2000, a.reconnect(), "the attempt at relay-b"), undefined);
  assert.equal(new URL(Socket.last.url).host, "relay-b.test:9");
  assert.equal(a.localAddr(), "relay://relay-b.test:9/tab-1");
});

/** The scripted sockets forward nothing by themselves: this carries packet frames between them,
 * stamped with the sender's connection address, as the relays of one fleet would. */
function carryFrames(t, Socket) {
  const timer = setInterval(() => {
    for (const from of Socket.instances) {
      for (const f of from.sent.splice(0)) {
        if (f[0] === 0) continue;
        const { addr, packet } = parseFrame(f);
        const to = Socket.instances.findLast((s) => s.readyState === 1 && s.welcomeAddr === addr);
        if (to) to.deliver(frame(from.welcomeAddr, packet));
      }
    }
  }, 2);
  t.after(() => clearInterval(timer));
}

test("a member given one relay fails over to the relays the cluster announces", async (t) => {
  const Socket = scriptedRelay();
  carryFrames(t, Socket);
  const a = await joinScripted(t, Socket, "tab-1");
  const seeds = [a.localAddr()];
  const meta = bytes("role=relay,shoal-relay=relay-b.test:9,shoal-relay-url=ws://relay-b.test:9");
  await joinScripted(t, Socket, "relay-b-member", { seeds, meta });
  const onDisconnect = reasonsCollector();
  const b = await joinScripted(t, Socket, "tab-2", { seeds, onDisconnect });
  await waitUntil(() => b.members().some((m) => m.name === "relay-b-member" && m.state === "alive"), "b to know the relay's member");

  Socket.instances.findLast((s) => s.url.includes("peer=tab-2")).drop(1006, "");
  await waitUntil(() => onDisconnect.reasons.length > 0, "onDisconnect");
  Socket.welcome = "close";
  assert.equal(typeof (await within(2000, b.reconnect(), "the attempt at b's relay")), "string");
  Socket.welcome = "auto";
  assert.equal(await within(2000, b.reconnect(), "the attempt at the announced relay"), undefined);
  assert.equal(Socket.last.url, "ws://relay-b.test:9/ws?peer=tab-2&farewell=1", "the announced URL, with b's peer id");
  assert.equal(b.localAddr(), "relay://relay-b.test:9/tab-2");
  await waitUntil(() => a.members().some((m) => m.name === "tab-2" && m.addr === b.localAddr() && m.state === "alive"), "a to take the move");
});

test("a member that moves to another relay of the fleet keeps its direct path and is never declared failed", async (t) => {
  const Socket = scriptedRelay();
  const socketOf = (n) => Socket.instances.filter((s) => new URL(s.url).searchParams.get("peer") === n.name()).at(-1);
  const join = (peer, options) => joinScripted(t, Socket, peer, options);
  carryFrames(t, Socket);

  const a = await join("tab-1");
  const seeds = [a.localAddr()];
  const relayMember = await join("relay-b-member", { seeds, meta: bytes("role=relay,shoal-relay=relay-b.test:9") });
  const onDisconnect = reasonsCollector();
  const fleet = ["ws://relay.test:9/ws?peer=tab-2", "ws://relay-b.test:9/ws?peer=tab-2"];
  const b = await join("tab-2", { seeds, urls: fleet, url: fleet[0], onDisconnect });
  const holds = (n, name, addr) => n.members().some((m) => m.name === name && m.state === "alive" && (!addr || m.addr === addr));
  await waitUntil(() => holds(a, "tab-2") && holds(a, "relay-b-member") && holds(b, "relay-b-member"), "everyone to know everyone");
  const old = b.localAddr();
  const viaChannel = [];
  a.setDirect(old, (packet) => (viaChannel.push(packet), true));

  // b's relay goes away; its second attempt lands on relay-b.
  socketOf(b).drop(1006, "");
  await waitUntil(() => onDisconnect.reasons.length > 0, "onDisconnect");
  Socket.welcome = "close";
  assert.equal(typeof (await within(2000, b.reconnect(), "the attempt at b's relay")), "string");
  Socket.welcome = "auto";
  assert.equal(await within(2000, b.reconnect(), "the attempt at relay-b"), undefined);
  const moved = "relay://relay-b.test:9/tab-2";
  assert.equal(b.localAddr(), moved);
  await waitUntil(() => holds(a, "tab-2", moved) && holds(relayMember, "tab-2", moved), "a and the relay's member to take the move");

  const before = viaChannel.length;
  a.sendTo(moved, "t", bytes("via the channel"));
  assert.equal(viaChannel.length, before + 1, "the channel now serves b's new address");
  assert.equal(a.deliverDirect(old, new Uint8Array(0)), true, "and what arrives on it comes from b's new address");
  for (const n of [a, relayMember]) {
    const fails = n.events.filter((e) => (e.type === "fail" || e.type === "conflict") && e.member === "tab-2");
    assert.deepEqual(fails, [], `${n.name()} never failed nor refused b`);
  }
  a.setDirect(old, null);
  a.sendTo(moved, "t", bytes("via the relay"));
  assert.equal(viaChannel.length, before + 1, "removing the path by its first address removes it");
});

test("without onDisconnect a dropped connection shuts the member down", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "tab-1");
  Socket.last.drop(1001, "relay shutting down");
  const last = await shutdownEvent(a);
  assert.equal(last.reason, "relay connection closed (1001: relay shutting down)");
  assert.equal(a.closeReason(), "relay connection closed (1001: relay shutting down)");
  await assert.rejects(a.reconnect());
});

test("closeTransport(reason) gives up the connection and the member shuts down with that reason", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "tab-1", { onDisconnect: reasonsCollector() });
  a.closeTransport("gave up after 3 attempts");
  assert.equal(a.closeReason(), "gave up after 3 attempts");
  const last = await shutdownEvent(a);
  assert.equal(last.reason, "gave up after 3 attempts");
  assert.ok(Socket.last.closedWith, "the socket was closed");
});

test("shutdown() closes the socket and ends the events with a shutdown event", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "tab-1");
  await within(2000, a.shutdown(), "shutdown()");
  const last = await shutdownEvent(a);
  assert.equal(a.events.at(-1), last, "the last event");
  assert.ok(Socket.last.closedWith, "the socket was closed");
  assert.equal(typeof a.closeReason(), "string");
  assert.throws(() => a.sendTo(`${R}x`, "t", bytes("x")), /shut down/);
});

test("onEvent replaces the event callback and null removes it", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const b = await joinScripted(t, Socket, "b");
  const [wsA, wsB] = Socket.instances;
  const relayToB = async (n) => {
    await waitUntil(() => wsA.sent.length >= n, `a's frame ${n}`);
    wsB.deliver(frame(a.localAddr(), parseFrame(wsA.sent[n - 1]).packet));
  };
  const replaced = [];
  b.onEvent((e) => replaced.push(e));
  a.sendTo(b.localAddr(), "t", bytes("one"));
  await relayToB(1);
  await waitUntil(() => replaced.some((e) => e.type === "message"), "the new callback to hear the message");
  assert.equal(b.events.filter((e) => e.type === "message").length, 0, "the old callback hears nothing");

  b.onEvent(null);
  a.sendTo(b.localAddr(), "t", bytes("two"));
  await relayToB(2);
  await waitUntil(() => metrics(b).directDelivered === 2, "the second message to be delivered");
  b.onEvent((e) => replaced.push(e));
  await within(2000, b.shutdown(), "shutdown()");
  await waitUntil(() => replaced.some((e) => e.type === "shutdown"), "the shutdown event");
  assert.deepEqual(
    replaced.filter((e) => e.type === "message").map((e) => text(e.data)),
    ["one"],
    "nobody heard the message while no callback was set",
  );
});

// ----- WebRTC hooks ------------------------------------------------------------------------------

test("signal() sends a signalling frame [0x00][len][address][kind][body]", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "tab-1");
  const ws = Socket.last;
  const to = `${R}tab-2`;
  assert.equal(a.signal(to, 1, '{"sdp":"offer"}'), true);
  assert.equal(ws.sent.length, 1);
  assert.deepEqual([...ws.sent[0]], [...signalFrame(to, 1, '{"sdp":"offer"}')]);
  assert.equal(a.signal(to, 0, "x"), false, "kind 0 is none");
  assert.equal(a.signal(to, 6, "x"), false, "kind 6 is none");
  assert.equal(ws.sent.length, 1, "refused signals send nothing");
  assert.deepEqual(traffic(a).packetsOut, 0, "signalling is not packet traffic");
});

test("incoming signalling frames reach the onSignal handler as (from, kind, body)", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "tab-1");
  const ws = Socket.last;
  const got = [];
  a.onSignal((from, kind, body) => got.push([from, kind, body]));
  ws.deliver(signalFrame(`${R}tab-2`, 2, '{"sdp":"answer"}'));
  ws.deliver(signalFrame(`${R}tab-3`, 3, ""));
  await waitUntil(() => got.length >= 2, "both signals");
  assert.deepEqual(got, [
    [`${R}tab-2`, 2, '{"sdp":"answer"}'],
    [`${R}tab-3`, 3, ""],
  ]);
  assert.equal(metrics(a).transport.droppedIn, 0);

  a.onSignal(null);
  ws.deliver(signalFrame(`${R}tab-2`, 4, ""));
  await waitUntil(() => metrics(a).transport.droppedIn === 1, "the unheard signal to be dropped and counted");
  assert.equal(got.length, 2, "a removed handler hears nothing");
});

test("setDirect routes sends to that address through the direct path and counts them", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const ws = Socket.last;
  const peer = `${R}b`;
  const calls = [];
  a.setDirect(peer, (packet, reliable) => {
    calls.push({ packet: packet.slice(), reliable });
    return true;
  });

  a.sendTo(peer, "t", bytes("over the channel"));
  await waitUntil(() => calls.length >= 1, "the direct send");
  assert.equal(calls[0].reliable, false);
  assert.ok(calls[0].packet instanceof Uint8Array);
  assert.ok(text(calls[0].packet).includes("over the channel"), "the bare packet, no frame header");
  assert.equal(ws.sent.length, 0, "nothing went to the relay");
  const c = traffic(a);
  assert.deepEqual(
    [c.packetsOut, c.bytesOut, c.direct.packetsOut, c.direct.bytesOut],
    [1, calls[0].packet.length, 1, calls[0].packet.length],
  );

  a.sendTo(peer, "t", bytes("reliable"), true);
  await waitUntil(() => calls.length >= 2, "the reliable direct send");
  assert.equal(calls[1].reliable, true);
  assert.equal(ws.sent.length, 0);

  // Other addresses still take the relay.
  a.sendTo(`${R}c`, "t", bytes("relayed"));
  await waitUntil(() => ws.sent.length >= 1, "the relayed frame");
  assert.equal(parseFrame(ws.sent[0]).addr, `${R}c`);
  assert.equal(traffic(a).direct.packetsOut, 2);
});

test("a direct path that declines a packet sends it through the relay", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const ws = Socket.last;
  const peer = `${R}b`;
  let offered = 0;
  a.setDirect(peer, () => {
    offered++;
    return false;
  });
  a.sendTo(peer, "t", bytes("declined"));
  await waitUntil(() => ws.sent.length >= 1, "the relayed frame");
  assert.equal(offered, 1);
  assert.equal(parseFrame(ws.sent[0]).addr, peer);
  assert.deepEqual([traffic(a).packetsOut, traffic(a).direct.packetsOut], [1, 0]);

  a.setDirect(peer, null); // removed: not even offered
  a.sendTo(peer, "t", bytes("relayed"));
  await waitUntil(() => ws.sent.length >= 2, "the second relayed frame");
  assert.equal(offered, 1);
});

test("deliverDirect hands packets in only from addresses with a registered direct path", async (t) => {
  const Socket = scriptedRelay();
  const a = await joinScripted(t, Socket, "a");
  const b = await joinScripted(t, Socket, "b");
  // a's packets for b, taken off a's direct path.
  const packets = [];
  a.setDirect(b.localAddr(), (packet) => {
    packets.push(packet.slice());
    return true;
  });
  a.sendTo(b.localAddr(), "rtc", bytes("first"));
  a.sendTo(b.localAddr(), "rtc", bytes("second"));
  await waitUntil(() => packets.length >= 2, "a's two direct packets");

  assert.equal(b.deliverDirect(a.localAddr(), packets[0]), false, "no path registered for a");
  await settle();
  assert.equal(b.events.filter((e) => e.type === "message").length, 0);
  assert.equal(traffic(b).direct.packetsIn, 0);

  b.setDirect(a.localAddr(), () => true);
  assert.equal(b.deliverDirect(`${R}someone-else`, packets[1]), false, "only from the registered address");
  assert.equal(b.deliverDirect(a.localAddr(), packets[1]), true);
  const got = await waitUntil(() => b.events.find((e) => e.type === "message"), "b to receive a's packet");
  assert.deepEqual([got.from, got.topic, text(got.data)], ["a", "rtc", "second"]);
  const c = traffic(b);
  assert.deepEqual(
    [c.packetsIn, c.bytesIn, c.direct.packetsIn, c.direct.bytesIn],
    [1, packets[1].length, 1, packets[1].length],
  );
  assert.equal(Socket.instances[1].sent.length, 0, "nothing went through b's socket");
});

// ----- Members over the fake relay ---------------------------------------------------------------

/** Joins a member to the fake relay, collecting its events in `node.events`. */
async function joinRelay(t, relay, name, options = {}) {
  const events = [];
  const node = await ShoalNode.join({
    url: `${relay.url}/ws?peer=${name}`,
    name,
    preset: "local",
    WebSocket,
    onEvent: (e) => events.push(e),
    ...options,
  });
  node.events = events;
  t.after(() => node.shutdown());
  return node;
}

/** The first event of `node` (from index `from` on) matching `pred`, waited for. */
const waitEvent = (node, pred, what, ms = 5000, from = 0) =>
  waitUntil(() => node.events.slice(from).find(pred), what, ms);

const aliveNames = (node) =>
  node
    .members()
    .filter((m) => m.state === "alive")
    .map((m) => m.name)
    .sort();

test("members over the relay join, see each other, and exchange broadcasts and direct messages", async (t) => {
  const relay = await startFakeRelay();
  t.after(() => relay.close());
  const a = await joinRelay(t, relay, "a", { meta: bytes("role=a") });
  assert.equal(a.localAddr(), `relay://${relay.host}/a`);
  const b = await joinRelay(t, relay, "b", { seeds: [a.localAddr()] });
  const c = await joinRelay(t, relay, "c", { seeds: [a.localAddr()] });
  const all = [a, b, c];
  await waitUntil(() => all.every((n) => aliveNames(n).length === 2), "everyone to see everyone alive");
  assert.deepEqual(aliveNames(a), ["b", "c"]);
  assert.deepEqual(aliveNames(c), ["a", "b"]);
  const aAtC = c.members().find((m) => m.name === "a");
  assert.deepEqual(Object.keys(aAtC).sort(), ["addr", "incarnation", "meta", "name", "rttMs", "state"]);
  assert.equal(aAtC.addr, a.localAddr());
  assert.ok(aAtC.meta instanceof Uint8Array);
  assert.equal(text(aAtC.meta), "role=a");
  const joinAtA = await waitEvent(a, (e) => e.type === "join" && e.member === "b", "a's join event for b");
  assert.equal(joinAtA.info.addr, b.localAddr());
  const joined = await waitEvent(b, (e) => e.type === "joined", "b's joined event");
  assert.equal(joined.via, a.localAddr());
  await waitEvent(b, (e) => e.type === "join" && e.member === "a", "b's join event for a, from its initial join");

  b.broadcast("chat", bytes("hello all"));
  for (const n of [a, c]) {
    const m = await waitEvent(n, (e) => e.type === "message" && e.topic === "chat", `${n.name()} to get the broadcast`);
    assert.deepEqual([m.from, m.kind, text(m.data)], ["b", "broadcast", "hello all"]);
  }
  assert.equal(b.events.filter((e) => e.type === "message").length, 0, "the sender does not hear itself");

  assert.equal(a.send("c", "dm", bytes("best effort")), undefined);
  const id = a.send("c", "dm", bytes("reliable"), true);
  assert.equal(typeof id, "number");
  await waitUntil(
    () => c.events.filter((e) => e.type === "message" && e.topic === "dm").length === 2,
    "c to get both direct messages",
  );
  const dms = c.events.filter((e) => e.type === "message" && e.topic === "dm");
  assert.deepEqual(dms.map((e) => [e.from, e.kind, text(e.data)]).sort(), [
    ["a", "direct", "best effort"],
    ["a", "direct", "reliable"],
  ]);
  assert.equal(b.events.filter((e) => e.topic === "dm").length, 0, "only c got them");
  assert.ok(metrics(a).transport.packetsOut > 0 && metrics(a).transport.packetsIn > 0);
  assert.equal(a.events.filter((e) => e.type === "send-failed").length, 0);
});

test("setMetadata produces an update elsewhere, and leave() is seen as leave", async (t) => {
  const relay = await startFakeRelay();
  t.after(() => relay.close());
  const a = await joinRelay(t, relay, "a");
  const b = await joinRelay(t, relay, "b", { seeds: [a.localAddr()], meta: bytes("v1") });
  const c = await joinRelay(t, relay, "c", { seeds: [a.localAddr()] });
  await waitUntil(() => [a, b, c].every((n) => aliveNames(n).length === 2), "everyone to see everyone alive");

  b.setMetadata(bytes("v2"));
  assert.equal(text(b.local().meta), "v2");
  for (const n of [a, c]) {
    const u = await waitEvent(n, (e) => e.type === "update" && e.member === "b" && text(e.info.meta) === "v2", `${n.name()} to see b's update`);
    assert.equal(u.info.addr, b.localAddr());
  }

  const leaving = b.leave(2000);
  assert.equal(await within(3000, leaving, "leave()"), true);
  const last = await shutdownEvent(b);
  assert.equal(b.events.at(-1), last, "the leaver's last event is its shutdown");
  assert.throws(() => b.broadcast("t", bytes("too late")), /shut down/, "a member that left refuses commands");
  for (const n of [a, c]) {
    await waitEvent(n, (e) => (e.type === "leave" || e.type === "fail") && e.member === "b", `${n.name()} to see b go`);
    assert.equal(n.events.find((e) => e.member === "b" && (e.type === "leave" || e.type === "fail")).type, "leave");
    assert.equal(n.members().find((m) => m.name === "b").state, "left");
  }
});

/** Members a, b and c over a fresh fake relay (b and c join through a), seeing each other alive. */
async function threeOverFakeRelay(t) {
  const relay = await startFakeRelay();
  t.after(() => relay.close());
  const a = await joinRelay(t, relay, "a");
  const b = await joinRelay(t, relay, "b", { seeds: [a.localAddr()] });
  const c = await joinRelay(t, relay, "c", { seeds: [a.localAddr()] });
  await waitUntil(() => [a, b, c].every((n) => aliveNames(n).length === 2), "everyone to see everyone alive");
  return { relay, a, b, c };
}

test("a member gone without leaving, whose farewell the relay forwards, is seen to leave, not fail", async (t) => {
  const { relay, a, b, c } = await threeOverFakeRelay(t);

  const beacon = c.farewellBeacon();
  assert.ok(beacon, "c has its farewell ready");
  await within(2000, c.shutdown(), "shutdown()"); // the worker killed with the tab: no leave sent
  assert.equal(relay.farewell(beacon.body), true, "the relay takes it");
  assert.equal(relay.farewell(beacon.body), false, "once");
  for (const n of [a, b]) {
    await waitEvent(n, (e) => (e.type === "leave" || e.type === "fail") && e.member === "c", `${n.name()} to see c go`, 8000);
    assert.equal(n.events.find((e) => e.member === "c" && (e.type === "leave" || e.type === "fail")).type, "leave");
  }
});

test("a member that shuts down without leaving is seen to fail", async (t) => {
  const { a, b, c } = await threeOverFakeRelay(t);

  await within(2000, c.shutdown(), "shutdown()");
  for (const n of [a, b]) {
    const f = await waitEvent(n, (e) => e.type === "fail" && e.member === "c", `${n.name()} to see c fail`, 8000);
    assert.equal(typeof f.incarnation, "number");
    assert.equal(n.members().find((m) => m.name === "c").state, "failed");
  }
  assert.equal(a.events.filter((e) => e.type === "leave").length, 0, "c did not leave");
});

test("a keyed value set with ttlMs reaches a member that joins later and expires everywhere unless set again", async (t) => {
  const { relay, a, b } = await threeOverFakeRelay(t);
  a.broadcast("presence", bytes("here"), bytes("a"), 1500);
  const late = await joinRelay(t, relay, "late", { seeds: [b.localAddr()] });
  const got = await waitEvent(late, (e) => e.type === "message" && e.topic === "presence", "the joiner to get the value");
  assert.deepEqual([got.from, text(got.data)], ["a", "here"]);
  for (const n of [b, late]) {
    const e = await waitEvent(n, (e) => e.type === "expire" && e.origin === "a", `${n.name()} to see it expire`);
    assert.deepEqual([e.topic, text(e.key)], ["presence", "a"]);
  }
  // Refreshed every 500 ms, a value with 1.5 s to live never expires.
  const from = b.events.length;
  let last = Date.now();
  let longestGap = 0;
  for (let i = 0; i < 8; i++) {
    a.broadcast("presence", bytes(`here ${i}`), bytes("a"), 1500);
    await new Promise((r) => setTimeout(r, 500)); // the refresh pace, not a wait for a condition
    longestGap = Math.max(longestGap, Date.now() - last);
    last = Date.now();
  }
  if (longestGap < 1200) {
    assert.equal(b.events.slice(from).filter((e) => e.type === "expire").length, 0, "refreshed in time");
  } else {
    t.diagnostic(`refreshes came ${longestGap} ms apart (a starved event loop): not a check of the refresh`);
  }
});
