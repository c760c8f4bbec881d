// The relay goes away and comes back: 2 native agents on UDP, 2 native agents on shoal-websocket
// (`shoal-agent --websocket`), 2 Chromium pages and 1 Node member; the relay process is killed (no
// close frames: a crash) and restarted at the same address 3 s later. The relayed members (pages,
// Node, WebSocket agents) reconnect by themselves with the same peer ids, so their addresses do not
// change, and the cluster converges again with nobody reloading or rejoining.
//
// While its link is down a relayed member accuses nobody, nor for a grace after it is back (the
// others cut off with it come back one by one): from the crash on, no UDP agent is suspected or
// declared failed anywhere, and no relayed member raises a suspicion or a failure at all. The UDP agents cannot tell
// a dead relay from closed tabs: what they think of the relayed members meanwhile is measured and
// reported, not checked. Measures the time from the relay's restart, and from the last relayed
// member's reconnection, until every member sees every other alive.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  Agent,
  CLEANUP,
  allAlive,
  joinNodeMember,
  launchChromium,
  openMember,
  pageEvents,
  pageMembers,
  prepareStaticDir,
  saveArtifact,
  sleep,
  startAgents,
  startRelay,
  waitUntil,
} from "./lib/harness.mjs";

const OUTAGE_MS = 3000;
const RECONVERGE_LIMIT_MS = 20_000;
// Every member sees every other alive within this of the last relayed member's reconnection: a
// guard, not the target. The target is 2 s: beside `stress-ng --cpu 2` 13 runs took 61-593 ms, but
// with the earlier 500 ms browser period 2 of 19 took 1.9 and 2.2 s (a UDP agent still holding the
// last member dead: right after a restart the relay passes little UDP from sockets it does not know
// yet, and on loopback all agents share one IP's budget, which nothing here changed). So 2 s is
// printed and recorded, not asserted (BENCHMARKS.md).
const CONVERGED_AFTER_RECONNECT_MS = 5000;
const UDP_PRESET = "browser";
const RELAYED_PRESET = "browser";

test("pages, a Node member and WebSocket agents ride out a relay crash and restart; nobody accuses a native member", { timeout: 180_000 }, async (t) => {
  const staticDir = prepareStaticDir();
  t.after(() => staticDir.remove(), CLEANUP);
  let relay = await startRelay({ staticDir: staticDir.dir });
  t.after(() => relay.stop(), CLEANUP);
  const port = Number(relay.addr.split(":")[1]);
  const agents = await startAgents(2, { preset: UDP_PRESET });
  t.after(() => Promise.all(agents.map((a) => a.stop())), CLEANUP);
  const seeds = [agents[0].addr];
  const wsAgents = await Promise.all(
    ["ws-1", "ws-2"].map((name) => Agent.start({ name, join: seeds, preset: RELAYED_PRESET, websocket: relay })),
  );
  t.after(() => Promise.all(wsAgents.map((a) => a.stop())), CLEANUP);
  const browser = await launchChromium();
  t.after(() => browser.close(), CLEANUP);
  const pages = [
    await openMember(browser, relay, { name: "page-1", seeds, preset: RELAYED_PRESET }),
    await openMember(browser, relay, { name: "page-2", seeds, preset: RELAYED_PRESET }),
  ];
  const node = await joinNodeMember(relay, { name: "node-1", seeds, preset: RELAYED_PRESET });
  t.after(() => node.shoal.shutdown(), CLEANUP);

  const kind = new Map([
    ...agents.map((a) => [a.name, "udp agent"]),
    ...wsAgents.map((a) => [a.name, "websocket agent"]),
    ...pages.map((p) => [p.name, "page"]),
    [node.name, "node"],
  ]);
  const views = new Map();
  for (const a of [...agents, ...wsAgents]) views.set(a.name, () => a.members());
  for (const p of pages) views.set(p.name, () => pageMembers(p.page));
  views.set(node.name, async () => node.shoal.members());
  const names = [...views.keys()];
  // The pairs that kept the last check from passing, and when it ran.
  let lagging = { at: 0, pairs: [] };
  const converged = async () => {
    const pairs = [];
    for (const [name, view] of views) {
      const list = await view();
      for (const n of names) {
        if (n !== name && !list.some((m) => m.name === n && m.state === "alive")) {
          pairs.push(`${name} sees ${n} ${list.find((m) => m.name === n)?.state ?? "missing"}`);
        }
      }
    }
    if (pairs.length) lagging = { at: Date.now(), pairs };
    return pairs.length === 0;
  };
  await waitUntil(converged, 30_000, "every member to see every other alive", 200);
  const addrsBefore = await pageMembers(pages[0].page);

  process.kill(relay.proc.pid, "SIGKILL"); // a crash: no close frames
  await relay.proc.exited;
  const downAt = Date.now();
  // Every relayed member notices that its connection is gone.
  for (const p of pages) {
    await waitUntil(async () => (await pageEvents(p.page)).some((e) => e.type === "disconnect"), OUTAGE_MS, `${p.name}'s disconnect event`, 20);
  }
  await waitUntil(() => node.events.some((e) => e.type === "disconnect"), OUTAGE_MS, "the Node member's disconnect event", 20);
  for (const a of wsAgents) {
    await waitUntil(() => a.proc.stderr.some((l) => l.includes("websocket transport disconnected")), OUTAGE_MS, `${a.name}'s disconnection`, 20);
  }
  await sleep(Math.max(0, OUTAGE_MS - (Date.now() - downAt)));
  relay = await startRelay({ staticDir: staticDir.dir, port });
  const upAt = Date.now();

  // Each relayed member's reconnection: pages and the Node member emit `reconnect` when their
  // reconnect call returns (the new connection's frames may be handled a moment before), the
  // WebSocket agents log it.
  const reconnectedAt = {};
  for (const p of pages) {
    const e = await waitUntil(
      async () => (await pageEvents(p.page)).find((e) => e.type === "reconnect"),
      RECONVERGE_LIMIT_MS,
      `${p.name}'s reconnect event`,
      20,
    );
    reconnectedAt[p.name] = e.at;
  }
  reconnectedAt[node.name] = (await waitUntil(() => node.events.find((e) => e.type === "reconnect"), RECONVERGE_LIMIT_MS, "the Node member's reconnect event", 20)).at;
  for (const a of wsAgents) reconnectedAt[a.name] = await waitUntil(() => a.reconnects()[0], RECONVERGE_LIMIT_MS, `${a.name}'s reconnection`, 20);
  const lastReconnectAt = Math.max(...Object.values(reconnectedAt));
  // Everyone may see everyone alive before the last member is back (nobody had noticed it was
  // away): convergence counts only once all are back.
  const reconvergedAt = await waitUntil(async () => (await converged()) && Date.now(), RECONVERGE_LIMIT_MS, "every member to see every other alive again", 50);
  for (const p of pages) {
    const types = (await pageEvents(p.page)).map((e) => e.type);
    assert.ok(types.includes("disconnect"), `${p.name}: ${types.join(",")}`);
    assert.ok(!types.includes("shutdown"), `${p.name} kept running`);
    assert.equal(await p.page.evaluate(() => window.shoal.closed), false);
  }

  const addrsAfter = await pageMembers(pages[0].page);
  assert.deepEqual(
    addrsAfter.map((m) => `${m.name} ${m.addr}`).sort(),
    addrsBefore.map((m) => `${m.name} ${m.addr}`).sort(),
    "every member is at the address it had",
  );
  // Gossip flows across the restarted relay: a page's broadcast reaches the Node member.
  await pages[0].page.evaluate(() => window.shoal.broadcast("e2e", "after the restart"));
  await waitUntil(() => node.events.some((e) => e.type === "message" && e.text === "after the restart"), 10_000, "node-1 to receive page-1's broadcast");

  // Every suspicion and failure any member reported, from any source, until now.
  const accusations = [];
  const note = (where, type, member, by, at) => accusations.push({ where, type, member, by, ms: at - downAt });
  for (const a of [...agents, ...wsAgents]) {
    for (const e of a.events()) {
      if (e.event === "suspect" || e.event === "fail") note(a.name, e.event, e.member, e.by, e.at);
    }
  }
  for (const p of pages) {
    for (const e of await pageEvents(p.page)) if (e.type === "suspect" || e.type === "fail") note(p.name, e.type, e.member, e.by, e.at);
  }
  for (const e of node.events) if (e.type === "suspect" || e.type === "fail") note(node.name, e.type, e.member, e.by, e.at);
  const text = (a) => `${a.where}: ${a.type} ${a.member} by ${a.by} at +${a.ms} ms`;
  // Before the crash the relay had nothing to do with them: under CPU load a member that misses an
  // ack in time suspects (and its refutation follows). Counted and printed, not checked here.
  const before = accusations.filter((a) => a.ms < 0);
  accusations.splice(0, accusations.length, ...accusations.filter((a) => a.ms >= 0));

  // What the UDP agents, which cannot tell a dead relay from closed tabs, made of the relayed
  // members: per member kind, of the (agent, member) pairs, how many the agent saw suspected and
  // declared failed (by itself or by the other agent), and the first time after the crash.
  const udpView = {};
  for (const a of agents) {
    for (const [member, k] of kind) {
      if (k === "udp agent") continue;
      const seen = accusations.filter((x) => x.where === a.name && x.member === member);
      const row = (udpView[k] ??= { pairs: 0, suspected: 0, failed: 0, firstSuspectMs: null, firstFailMs: null });
      row.pairs += 1;
      const s = seen.find((x) => x.type === "suspect");
      const f = seen.find((x) => x.type === "fail");
      if (s) row.suspected += 1, (row.firstSuspectMs = Math.min(row.firstSuspectMs ?? Infinity, s.ms));
      if (f) row.failed += 1, (row.firstFailMs = Math.min(row.firstFailMs ?? Infinity, f.ms));
    }
  }
  const figures = {
    outageMs: upAt - downAt,
    reconnectedAfterRestartMs: Object.fromEntries(Object.entries(reconnectedAt).map(([n, at]) => [n, at - upAt])),
    convergedAfterRestartMs: reconvergedAt - upAt,
    convergedAfterLastReconnectMs: reconvergedAt - lastReconnectAt,
    lastLagging: { msAfterLastReconnect: lagging.at - lastReconnectAt, pairs: lagging.pairs },
    udpAgentsSawOfRelayedMembers: udpView,
    accusations: accusations.map(text),
    accusationsBeforeTheCrash: before.map(text),
  };
  saveArtifact("relay-restart.json", figures);
  t.diagnostic(
    `relay down ${figures.outageMs} ms; relayed members back after the restart (ms): ${JSON.stringify(figures.reconnectedAfterRestartMs)}; ` +
      `every member saw every other alive ${figures.convergedAfterRestartMs} ms after the restart, ` +
      `${figures.convergedAfterLastReconnectMs} ms after the last reconnection`,
  );
  t.diagnostic(`what the UDP agents (${UDP_PRESET}) made of the relayed members (ms after the crash): ${JSON.stringify(udpView)}`);
  if (before.length) t.diagnostic(`accusations before the crash (not the outage's): ${before.map(text).join("; ")}`);

  // A member that raised an accusation reports it with itself as `by`; elsewhere `by` may name the
  // member a push-pull brought the news from.
  const isUdpAgent = (n) => kind.get(n) === "udp agent";
  assert.deepEqual(accusations.filter((a) => isUdpAgent(a.member)).map(text), [], "no UDP agent suspected or declared failed anywhere");
  assert.deepEqual(accusations.filter((a) => !isUdpAgent(a.where) && a.by === a.where).map(text), [], "no relayed member accused anyone");
  assert.ok(
    figures.convergedAfterLastReconnectMs <= CONVERGED_AFTER_RECONNECT_MS,
    `converged ${figures.convergedAfterLastReconnectMs} ms after the last reconnection (limit ${CONVERGED_AFTER_RECONNECT_MS} ms)`,
  );
});
