// The WebRTC connection logic of js/rtc.js against a scripted ShoalNode and a fake
// RTCPeerConnection: who offers, glare, byes, invites from native members, and the direct path
// registered with the transport. Real browsers are exercised in tests/webrtc.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DirectPaths } from "../js/rtc.js";

const OFFER = 1;
const ANSWER = 2;
const CANDIDATE = 3;
const BYE = 4;
const INVITE = 5;
const R = "relay://127.0.0.1:8080/";

class FakeChannel {
  readyState = "connecting";
  bufferedAmount = 0;
  sent = [];
  send(b) {
    this.sent.push(b);
  }
  open() {
    this.readyState = "open";
    this.onopen?.();
  }
}

class FakePeerConnection {
  static all = [];
  signalingState = "stable";
  remoteDescription = null;
  localDescription = null;
  closed = false;
  candidates = [];
  channels = [];
  constructor(config) {
    this.config = config;
    FakePeerConnection.all.push(this);
  }
  createDataChannel(label, options) {
    const ch = new FakeChannel();
    ch.label = label;
    ch.options = options;
    this.channels.push(ch);
    return ch;
  }
  async createOffer() {
    return { type: "offer", sdp: "offer-sdp" };
  }
  async createAnswer() {
    return { type: "answer", sdp: "answer-sdp" };
  }
  async setLocalDescription(d) {
    this.localDescription = d;
    if (d.type === "offer") this.signalingState = "have-local-offer";
    if (d.type === "answer") this.signalingState = "stable";
  }
  async setRemoteDescription(d) {
    this.remoteDescription = d;
    this.signalingState = d.type === "offer" ? "have-remote-offer" : "stable";
  }
  async addIceCandidate(c) {
    this.candidates.push(c);
  }
  close() {
    this.closed = true;
  }
  openAll() {
    for (const ch of this.channels) ch.open();
  }
}

function fakeNode(local, members) {
  const node = {
    signals: [],
    direct: new Map(),
    delivered: [],
    handler: null,
    localAddr: () => local,
    members: () => members.map(([name, addr]) => ({ name, addr, state: "alive" })),
    onSignal: (h) => (node.handler = h),
    signal: (to, kind, body) => node.signals.push({ to, kind, body: body ? JSON.parse(body) : undefined }),
    setDirect: (addr, send) => (send ? node.direct.set(addr, send) : node.direct.delete(addr)),
    deliverDirect: (from, bytes) => node.delivered.push({ from, bytes }),
  };
  return node;
}

const settle = () => new Promise((r) => setTimeout(r, 10));

function start(local, members, options = {}) {
  FakePeerConnection.all = [];
  const node = fakeNode(local, members);
  const rtc = new DirectPaths(node, { RTCPeerConnection: FakePeerConnection, ...options });
  rtc.start(node.members());
  return { node, rtc };
}

test("the lower address offers at once with two pre-negotiated channels; the higher waits", async (t) => {
  const { node, rtc } = start(R + "a", [["b", R + "b"]]);
  t.after(() => rtc.close(true));
  await settle();
  assert.deepEqual(node.signals.map((s) => [s.to, s.kind]), [[R + "b", OFFER]]);
  const [dgram, rel] = FakePeerConnection.all[0].channels;
  assert.deepEqual(dgram.options, { negotiated: true, id: 0, ordered: false, maxRetransmits: 0 });
  assert.deepEqual(rel.options, { negotiated: true, id: 1 });

  const higher = start(R + "b", [["a", R + "a"]]);
  t.after(() => higher.rtc.close(true));
  await settle();
  assert.deepEqual(higher.node.signals, [], "the higher address waits for the offer");
});

test("in a glare the lower address keeps its offer and the higher one rolls back and answers", async (t) => {
  const low = start(R + "a", [["b", R + "b"]]);
  t.after(() => low.rtc.close(true));
  await settle();
  low.node.handler(R + "b", OFFER, JSON.stringify({ sdp: "their-offer" }));
  await settle();
  assert.deepEqual(low.node.signals.map((s) => s.kind), [OFFER], "no answer: our offer stands");
  assert.deepEqual(low.rtc.stats().glare, { won: 1, lost: 0 });

  const high = start(R + "b", [["a", R + "a"]], { answerGraceMs: 0 });
  t.after(() => high.rtc.close(true));
  await settle();
  const ours = FakePeerConnection.all[0];
  assert.equal(ours.signalingState, "have-local-offer");
  high.node.handler(R + "a", OFFER, JSON.stringify({ sdp: "their-offer" }));
  await settle();
  assert.ok(ours.closed, "our offer is rolled back");
  assert.deepEqual(high.node.signals.map((s) => s.kind), [OFFER, ANSWER]);
  assert.equal(high.node.signals[1].body.sdp, "answer-sdp");
  assert.deepEqual(high.rtc.stats().glare, { won: 0, lost: 1 });
});

test("open channels register a direct path that declines when a channel is not open", async (t) => {
  const { node, rtc } = start(R + "a", [["b", R + "b"]]);
  t.after(() => rtc.close(true));
  await settle();
  const pc = FakePeerConnection.all[0];
  node.handler(R + "b", ANSWER, JSON.stringify({ sdp: "answer" }));
  node.handler(R + "b", CANDIDATE, JSON.stringify({ candidate: "candidate:1 1 udp 1 10.0.0.2 5000 typ host" }));
  await settle();
  assert.equal(pc.candidates.length, 1);
  assert.equal(node.direct.has(R + "b"), false);
  pc.openAll();
  const send = node.direct.get(R + "b");
  assert.equal(send(new Uint8Array([1]), false), true);
  assert.equal(send(new Uint8Array([2]), true), true);
  assert.deepEqual(pc.channels.map((c) => c.sent.length), [1, 1], "best-effort on dgram, reliable on rel");
  pc.channels[0].readyState = "closing";
  assert.equal(send(new Uint8Array([3]), false), false, "the relay takes it");
  pc.channels[1].onmessage({ data: new Uint8Array([9]).buffer });
  assert.deepEqual(node.delivered.map((d) => d.from), [R + "b"]);
  assert.equal(rtc.stats().peers[0].state, "open");
});

test("a bye or the member's failure closes the connection and removes the direct path", async (t) => {
  const { node, rtc } = start(R + "a", [["b", R + "b"]]);
  t.after(() => rtc.close(true));
  await settle();
  FakePeerConnection.all[0].openAll();
  assert.ok(node.direct.has(R + "b"));
  node.handler(R + "b", BYE, "");
  await settle();
  assert.ok(FakePeerConnection.all[0].closed);
  assert.equal(node.direct.has(R + "b"), false);

  rtc.onEvent({ type: "join", member: "b", info: { addr: R + "b", state: "alive" } });
  await settle();
  FakePeerConnection.all[1].openAll();
  rtc.onEvent({ type: "fail", member: "b" });
  assert.ok(FakePeerConnection.all[1].closed);
  assert.equal(node.direct.has(R + "b"), false);
});

test("a peer whose offer came before its member was known is named when it joins, then dropped when it fails", async (t) => {
  const { node, rtc } = start(R + "b", []);
  t.after(() => rtc.close(true));
  node.handler(R + "a", OFFER, JSON.stringify({ sdp: "their-offer" }));
  await settle();
  FakePeerConnection.all[0].openAll();
  assert.equal(rtc.stats().peers[0].name, undefined, "not a member yet");
  rtc.onEvent({ type: "join", member: "a", info: { addr: R + "a", state: "alive" } });
  assert.equal(rtc.stats().peers[0].name, "a");
  rtc.onEvent({ type: "fail", member: "a" });
  assert.ok(FakePeerConnection.all[0].closed, "its failure closes the connection");
  assert.equal(node.direct.has(R + "a"), false);
});

test("an invite from a native member is answered with an offer to its signalling address, for its member address", async (t) => {
  const { node, rtc } = start(R + "tab", [["agent-1", "udp://10.0.0.5:7946"]]);
  t.after(() => rtc.close(true));
  await settle();
  assert.deepEqual(node.signals, [], "native members are not offered to unasked");
  node.handler(R + "agent-1.rtc", INVITE, JSON.stringify({ member: "udp://10.0.0.9:1" }));
  await settle();
  assert.deepEqual(node.signals, [], "an invite naming no member is ignored");
  node.handler(R + "agent-1.rtc", INVITE, JSON.stringify({ member: "udp://10.0.0.5:7946" }));
  await settle();
  assert.deepEqual(node.signals.map((s) => [s.to, s.kind]), [[R + "agent-1.rtc", OFFER]]);
  FakePeerConnection.all[0].openAll();
  assert.ok(node.direct.has("udp://10.0.0.5:7946"), "packets for the member take the channel");
});

test("closing says bye to every peer and stops listening", async () => {
  const { node, rtc } = start(R + "a", [["b", R + "b"], ["c", R + "c"]]);
  await settle();
  rtc.close();
  assert.deepEqual(node.signals.filter((s) => s.kind === BYE).map((s) => s.to).sort(), [R + "b", R + "c"]);
  assert.equal(node.handler, null);
  assert.ok(FakePeerConnection.all.every((pc) => pc.closed));
});
