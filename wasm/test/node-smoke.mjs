// Smoke tests of the npm package's Node.js entry (the `nodejs` wasm build) against an in-process
// fake relay (./fake-relay.mjs). Build first: wasm/build.sh (or SHOAL_WASM_TARGETS=nodejs wasm/build.sh).
// Run: cd wasm && node --test test/
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { Shoal, prometheusText, toBytes } from "../js/node.js";
import { startFakeRelay } from "./fake-relay.mjs";

/** Rejects after `ms` with a message naming what was awaited. */
function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The first event of `shoal` matching `pred`. */
function waitFor(shoal, pred, what, ms = 5000) {
  let off;
  const p = new Promise((resolve) => {
    off = shoal.on("*", (e) => {
      if (pred(e)) {
        off();
        resolve(e);
      }
    });
  });
  return within(ms, p, what).finally(() => off());
}

test("two members find each other through the relay, gossip a broadcast, and see a graceful leave", async (t) => {
  const relay = await startFakeRelay({ token: "s3cret" });
  t.after(() => relay.close());

  // Node 20 has no global WebSocket: the node entry falls back to the `ws` package by itself.
  const alice = await Shoal.join({ relay: relay.url, name: "alice", meta: "role=web", token: "s3cret", preset: "local" });
  assert.equal(alice.addr, `relay://${relay.host}/alice`);
  assert.equal(alice.name, "alice");
  assert.equal(alice.local.metaText, "role=web");
  assert.deepEqual(alice.members(), [], "a founder starts alone");

  const aliceSeesBob = waitFor(alice, (e) => e.type === "join" && e.member === "bob", "alice to see bob join");
  const bob = await Shoal.join({
    relay: relay.url,
    name: "bob",
    token: "s3cret",
    seeds: [alice.addr],
    preset: "local",
    WebSocket,
  });
  const joined = await aliceSeesBob;
  assert.equal(joined.info.addr, `relay://${relay.host}/bob`);
  assert.equal(joined.info.state, "alive");

  const [seen] = bob.members();
  assert.equal(seen.name, "alice");
  assert.equal(seen.state, "alive");
  assert.equal(seen.metaText, "role=web");
  assert.ok(seen.meta instanceof Uint8Array);

  // A broadcast from alice arrives at bob once, through the async iterator too.
  const iterator = bob.events({ types: ["message"] });
  const viaListener = waitFor(bob, (e) => e.type === "message", "bob to receive the broadcast");
  alice.broadcast("chat", "hello, shoal");
  const msg = await viaListener;
  assert.equal(msg.from, "alice");
  assert.equal(msg.topic, "chat");
  assert.equal(msg.kind, "broadcast");
  assert.equal(msg.text, "hello, shoal");
  const next = await within(2000, iterator.next(), "the iterator's message");
  assert.equal(next.value.text, "hello, shoal");
  await iterator.return();

  // A direct message, best-effort and reliable.
  const direct = waitFor(alice, (e) => e.type === "message" && e.kind === "direct", "alice to get bob's message");
  bob.send("alice", "dm", new Uint8Array([1, 2, 3]), { reliable: true });
  assert.deepEqual([...(await direct).data], [1, 2, 3]);

  // Reliable traffic is kept under the relay's frame limit (64 KiB by default): too large throws.
  assert.throws(() => bob.send("alice", "dm", new Uint8Array(70_000), { reliable: true }), /exceeds/);

  const m = alice.metrics();
  assert.equal(m.membersAlive, 1);
  assert.ok(m.transport.packetsIn > 0 && m.transport.packetsOut > 0);
  assert.match(alice.metricsText(), /^shoal_members\{state="alive"\} 1$/m);

  // bob leaves: alice sees 'leave', not 'fail'.
  const aliceSeesLeave = waitFor(
    alice,
    (e) => (e.type === "leave" || e.type === "fail") && e.member === "bob",
    "alice to see bob leave",
  );
  const bobShutdown = waitFor(bob, (e) => e.type === "shutdown", "bob's shutdown event");
  assert.equal(await bob.leave(2000), true, "the leave was gossiped");
  assert.equal((await aliceSeesLeave).type, "leave");
  await bobShutdown;
  assert.equal(bob.closed, true);
  assert.equal(alice.members().find((x) => x.name === "bob").state, "left");
  assert.throws(() => bob.broadcast("chat", "too late"), /shut down/);

  await alice.shutdown();
  assert.equal(alice.closed, true);
});

test("an encrypted cluster admits members with the key, events include the founder's view of joins", async (t) => {
  const relay = await startFakeRelay();
  t.after(() => relay.close());
  const key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  const a = await Shoal.join({ relay: relay.url, name: "a", key, label: "test", preset: "local", WebSocket });
  const events = a.events();
  const b = await Shoal.join({
    relay: relay.url,
    name: "b",
    key: toBytes(new Uint8Array(Buffer.from(key, "hex"))),
    label: "test",
    seeds: a.addr,
    preset: "local",
    WebSocket,
  });
  for await (const e of events) {
    if (e.type === "join") {
      assert.equal(e.member, "b");
      break;
    }
  }
  assert.ok(a.metrics().security.decrypted > 0, "packets were encrypted");

  // A member with the wrong key cannot join (no seed answers it).
  await assert.rejects(
    Shoal.join({
      relay: relay.url,
      name: "c",
      key: "ff".repeat(32),
      label: "test",
      seeds: [a.addr],
      preset: "local",
      joinTimeoutMs: 600,
      WebSocket,
    }),
    /no seed answered/,
  );
  assert.ok(a.metrics().security.unauthenticated > 0);
  await Promise.all([a.shutdown(), b.shutdown()]);
});

test("a member whose relay connection drops reconnects at the same address and keeps its place", async (t) => {
  const relay = await startFakeRelay();
  t.after(() => relay.close());
  const alice = await Shoal.join({ relay: relay.url, name: "alice", preset: "local", WebSocket });
  const aliceSeesBob = waitFor(alice, (e) => e.type === "join" && e.member === "bob", "alice to see bob");
  const bob = await Shoal.join({ relay: relay.url, name: "bob", seeds: [alice.addr], preset: "local", WebSocket });
  t.after(() => Promise.all([alice.shutdown(), bob.shutdown()]));
  await aliceSeesBob;

  const disconnected = waitFor(bob, (e) => e.type === "disconnect", "bob's disconnect event");
  const reconnected = waitFor(bob, (e) => e.type === "reconnect", "bob's reconnect event");
  relay.kick("bob");
  assert.match((await disconnected).reason, /relay connection closed \(1006/);
  assert.equal(bob.connected, false);
  assert.equal(bob.closed, false, "a dropped connection is not the end of the member");
  const back = await reconnected;
  assert.ok(back.attempts >= 1 && back.downtimeMs >= 0, JSON.stringify(back));
  assert.equal(bob.connected, true);
  assert.equal(bob.addr, `relay://${relay.host}/bob`, "the same address as before");
  assert.equal(relay.stats.connections, 3);

  const got = waitFor(bob, (e) => e.type === "message" && e.text === "after the drop", "bob to get alice's broadcast");
  alice.broadcast("chat", "after the drop");
  await got;
  await within(5000, (async () => {
    while (!alice.members().some((m) => m.name === "bob" && m.state === "alive")) await sleep(50);
  })(), "alice to see bob alive");
});

test("members ride out a relay restart: they reconnect and the cluster converges again", async (t) => {
  let relay = await startFakeRelay();
  const port = Number(relay.host.split(":")[1]);
  t.after(() => relay.close());
  const opts = { relay: relay.url, preset: "local", WebSocket, reconnect: { initialDelayMs: 50, maxDelayMs: 400 } };
  const a = await Shoal.join({ ...opts, name: "a" });
  const b = await Shoal.join({ ...opts, name: "b", seeds: [a.addr] });
  const c = await Shoal.join({ ...opts, name: "c", seeds: [a.addr] });
  const members = [a, b, c];
  t.after(() => Promise.all(members.map((m) => m.shutdown())));
  const allAlive = () => members.every((m) => m.aliveMembers().length === 2);
  await within(5000, (async () => { while (!allAlive()) await sleep(50); })(), "everyone to see everyone alive");

  const reconnects = members.map((m) => waitFor(m, (e) => e.type === "reconnect", `${m.name} to reconnect`, 15_000));
  await relay.close({ graceful: true });
  await sleep(1500); // down long enough for every member to suspect the others
  relay = await startFakeRelay({ port });
  const events = await Promise.all(reconnects);
  assert.ok(events.every((e) => e.downtimeMs >= 1000), JSON.stringify(events));
  await within(15_000, (async () => { while (!allAlive()) await sleep(50); })(), "everyone alive again after the restart");
  const got = waitFor(c, (e) => e.type === "message" && e.text === "after the restart", "c to get a's broadcast");
  a.broadcast("chat", "after the restart");
  await got;
});

test("with reconnect: false a member that loses its relay connection shuts down and says why", async (t) => {
  const relay = await startFakeRelay();
  t.after(() => relay.close());
  const a = await Shoal.join({ relay: relay.url, name: "lonely", preset: "local", WebSocket, reconnect: false });
  const shutdown = waitFor(a, (e) => e.type === "shutdown", "the shutdown event");
  relay.kick("lonely");
  const e = await shutdown;
  assert.match(e.reason, /relay connection closed/);
  assert.equal(a.closed, true);
});

test("a member gives up after maxAttempts reconnects and shuts down saying why", async () => {
  const relay = await startFakeRelay();
  const a = await Shoal.join({
    relay: relay.url, name: "a", preset: "local", WebSocket,
    reconnect: { initialDelayMs: 10, maxDelayMs: 40, maxAttempts: 3 },
  });
  const shutdown = waitFor(a, (e) => e.type === "shutdown", "the shutdown event");
  await relay.close(); // and it never comes back
  const e = await shutdown;
  assert.match(e.reason, /no reconnect after 3 attempts/);
  assert.equal(a.closed, true);
  assert.equal(a.connected, false);
});

test("a member whose peer id a newer connection took shuts down instead of taking it back", async (t) => {
  const relay = await startFakeRelay();
  t.after(() => relay.close());
  const first = await Shoal.join({ relay: relay.url, name: "twin", preset: "local", WebSocket });
  const shutdown = waitFor(first, (e) => e.type === "shutdown", "the first twin's shutdown");
  const second = await Shoal.join({ relay: relay.url, name: "twin", preset: "local", WebSocket });
  t.after(() => second.shutdown());
  assert.match((await shutdown).reason, /4001/);
  await sleep(1000);
  assert.equal(relay.stats.connections, 2, "no tug of war over the peer id");
  assert.equal(second.connected, true);
});

test("join reports bad options and refused connections", async (t) => {
  const relay = await startFakeRelay({ token: "right" });
  t.after(() => relay.close());
  await assert.rejects(Shoal.join({ name: "x" }), /options.relay/);
  await assert.rejects(Shoal.join({ relay: relay.url, name: "x", preset: "moon", WebSocket }), /unknown preset/);
  await assert.rejects(Shoal.join({ relay: relay.url, name: "x", key: "abc", WebSocket }), /64 hex digits/);
  await assert.rejects(Shoal.join({ relay: relay.url, name: "x", reconnect: "yes", WebSocket }), /options.reconnect/);
  await assert.rejects(
    Shoal.join({ relay: relay.url, name: "x", reconnect: { maxAttempts: -1 }, WebSocket }),
    /options.reconnect.maxAttempts/,
  );
  await assert.rejects(
    Shoal.join({ relay: relay.url, name: "x", seeds: ["not-an-address"], WebSocket }),
    /invalid seed address/,
  );
  await assert.rejects(
    Shoal.join({ relay: relay.url, name: "x", token: "wrong", WebSocket }),
    /relay connection closed \(1008: bad token\)/,
  );
  await assert.rejects(
    Shoal.join({ relay: "ws://127.0.0.1:1", name: "x", WebSocket, connectTimeoutMs: 2000 }),
    /relay/,
  );
  // A server that never answers the upgrade: the connect times out, and closing the half-open
  // socket must not surface as an uncaught 'error' from the `ws` package.
  const silent = createServer(() => {});
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  t.after(() => silent.close());
  const url = `ws://127.0.0.1:${silent.address().port}`;
  await assert.rejects(Shoal.join({ relay: url, name: "x", WebSocket, connectTimeoutMs: 300 }), /no welcome/);
  await new Promise((resolve) => setTimeout(resolve, 100));
});

test("the browser entry (web build) works with the wasm bytes handed to init, and leaves on pagehide", async (t) => {
  const wasmFile = new URL("../pkg/web/shoal_wasm_bg.wasm", import.meta.url);
  if (!existsSync(wasmFile)) return t.skip("pkg/web is not built (SHOAL_WASM_TARGETS excluded web)");
  const browser = await import("../js/browser.js");
  await browser.init(readFileSync(wasmFile));
  const relay = await startFakeRelay();
  t.after(() => relay.close());

  const a = await browser.Shoal.join({ relay: relay.url, name: "page-a", preset: "local", WebSocket });
  // Pretend to be a window for b: the JS layer hooks `pagehide` when it sees one.
  const listeners = new Map();
  globalThis.document = {};
  globalThis.addEventListener = (type, f) => listeners.set(type, f);
  globalThis.removeEventListener = (type, f) => listeners.get(type) === f && listeners.delete(type);
  const aSeesB = waitFor(a, (e) => e.type === "join" && e.member === "page-b", "a to see page-b");
  let b;
  try {
    b = await browser.Shoal.join({ relay: relay.url, name: "page-b", seeds: [a.addr], preset: "local", WebSocket });
  } finally {
    delete globalThis.document;
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
  assert.equal(typeof listeners.get("pagehide"), "function", "pagehide is hooked in a window");
  await aSeesB;
  const left = waitFor(a, (e) => (e.type === "leave" || e.type === "fail") && e.member === "page-b", "page-b to leave");
  listeners.get("pagehide")({ persisted: false });
  assert.equal((await left).type, "leave");
  await within(2000, b.once("shutdown").catch(() => {}), "page-b to shut down");
  assert.equal(listeners.has("pagehide"), false, "the listener is removed at shutdown");
  await a.shutdown();
});

test("metrics render as Prometheus text", () => {
  const text = prometheusText({
    membersAlive: 2,
    membersSuspect: 0,
    membersFailed: 1,
    membersLeft: 0,
    packetsSent: 7,
    healthScore: 0,
    transport: { bytesIn: 10 },
    security: {},
  });
  assert.match(text, /^shoal_members\{state="failed"\} 1$/m);
  assert.match(text, /^shoal_packets_sent_total 7$/m);
  assert.match(text, /^# TYPE shoal_health_score gauge$/m);
  assert.match(text, /^shoal_transport_bytes_in_total 10$/m);
});
