// A mixed cluster on one machine: shoal-relay (serving the test page), 3 native shoal-agent members
// (UDP+TCP), 2 headless Chromium pages and 1 Node.js member joined through the relay. Checks that
// every member sees the 5 others alive, that broadcasts cross between the browser, Node and native
// sides, and measures how long every remaining member takes to declare a closed tab failed.
//
// Variants: everything on the `local` preset; the setup the README recommends for clusters with
// browsers and agents, everyone on `browser` (target: a vanished tab declared failed by every
// member within 2 s); and a cluster of JS members only, all on `browser` (where a tab that closes
// normally leaves through `pagehide`), where the 2 s bound is asserted. The figures of every
// preset mix are `detection-matrix.mjs`'s.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";

import { ARTIFACTS } from "./lib/paths.mjs";
import {
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

const DETECTION_LIMIT_MS = 5000;
// The target for the setups the README recommends for clusters with browsers (everyone on
// `browser`). Asserted for JS members only: 1.2-1.65 s in 22 runs beside `stress-ng --cpu 2`.
const RECOMMENDED_LIMIT_MS = 2000;
// With 3 agents, 2 pages and a Node member (7 members, the Node member sharing this process) the
// same setup took 1.2-1.9 s in most runs but 2.03 and 2.10 s in 2 of 10 beside `stress-ng --cpu 2`:
// 2 s is printed there, and this guard asserted (BENCHMARKS.md).
const RECOMMENDED_MIXED_GUARD_MS = 3000;

// The way back, native -> JS: shoal-agent originates broadcasts only as `--publish-view SECS` (a
// digest of its view on topic `shoal/view`), which agent-1 is started with.
const VIEW_TOPIC = "shoal/view";

/** Starts what the test needs, registering each stop with `t.after` (run in reverse order). */
async function setup(t, { agents: agentCount = 3, agentPreset = "local" } = {}) {
  const staticDir = prepareStaticDir();
  t.after(() => staticDir.remove(), CLEANUP);
  const relay = await startRelay({ staticDir: staticDir.dir });
  t.after(() => relay.stop(), CLEANUP);
  const agents = agentCount ? await startAgents(agentCount, { preset: agentPreset, firstExtra: ["--publish-view", "0.5"] }) : [];
  t.after(() => Promise.all(agents.map((a) => a.stop())), CLEANUP);
  const browser = await launchChromium();
  t.after(() => browser.close(), CLEANUP);
  return { relay, agents, browser };
}

/** A view of each member (name -> async () => [{ name, state }]) for the checks below. */
function views({ agents, pages, nodes }) {
  const v = new Map();
  for (const a of agents) v.set(a.name, () => a.members());
  for (const p of pages) v.set(p.name, () => pageMembers(p.page));
  for (const n of nodes) v.set(n.name, async () => n.shoal.members());
  return v;
}

/** Waits until every member sees every other alive; returns the views it saw last. */
async function waitAllAlive(members, ms = 30_000) {
  const names = [...members.keys()];
  const seen = {};
  await waitUntil(
    async () => {
      let ok = true;
      for (const [name, view] of members) {
        const list = await view();
        seen[name] = list.map((m) => `${m.name}:${m.state}`).sort();
        ok &&= allAlive(list, names.filter((n) => n !== name));
      }
      return ok;
    },
    ms,
    "every member to see every other alive",
    200,
  ).catch((e) => {
    throw new Error(`${e.message}\nviews: ${JSON.stringify(seen, null, 1)}`);
  });
  return seen;
}

/**
 * The time from `t0` until each member reported `victim` as `type` ("fail" or "leave"), in ms:
 * agents by the timestamp of their --json line (the agent names events as the npm package does),
 * pages and Node by the event's arrival time.
 */
async function reportTimes({ agents, pages, nodes }, victim, type, t0) {
  const times = {};
  for (const a of agents) {
    const e = a.events().find((e) => e.event === type && e.member === victim);
    times[a.name] = e ? e.at - t0 : null;
  }
  for (const p of pages) {
    const e = (await pageEvents(p.page)).find((e) => e.type === type && e.member === victim);
    times[p.name] = e ? e.at - t0 : null;
  }
  for (const n of nodes) {
    const e = n.events.find((e) => e.type === type && e.member === victim);
    times[n.name] = e ? e.at - t0 : null;
  }
  return times;
}

/** Closes `victim`'s page and waits until every other member reported `type` for it. */
async function closeAndMeasure(t, cluster, victim, type, limitMs) {
  const remaining = { ...cluster, pages: cluster.pages.filter((p) => p !== victim) };
  const t0 = Date.now();
  await victim.page.close();
  const closeMs = Date.now() - t0;
  const times = await waitUntil(
    async () => {
      const times = await reportTimes(remaining, victim.name, type, t0);
      return Object.values(times).every((v) => v !== null) && times;
    },
    limitMs + 10_000,
    `every member to report ${victim.name} ${type}`,
    100,
  ).catch(async (e) => {
    throw new Error(`${e.message}: ${JSON.stringify(await reportTimes(remaining, victim.name, type, t0))}`);
  });
  const worst = Math.max(...Object.values(times));
  t.diagnostic(`${victim.name} closed (page.close() took ${closeMs} ms); '${type}' reported after (ms): ${JSON.stringify(times)}; slowest ${worst} ms`);
  return { victim: victim.name, type, pageCloseMs: closeMs, times, worstMs: worst };
}

/** Agents' broadcasts_delivered_total. */
const delivered = (agents) => Promise.all(agents.map((a) => a.metric("shoal_broadcasts_delivered_total")));

/** Waits for a message event with `text` in a page's or Node member's event list. */
const pageGot = (p, text) => async () => (await pageEvents(p.page)).some((e) => e.type === "message" && e.text === text);
const nodeGot = (n, text) => () => n.events.some((e) => e.type === "message" && e.text === text);

async function mixedCluster(t, jsPreset, { agentPreset = "local", limitMs = DETECTION_LIMIT_MS } = {}) {
  const { relay, agents, browser } = await setup(t, { agentPreset });
  const seeds = [agents[0].addr];
  const page1 = await openMember(browser, relay, { name: "page-1", seeds, preset: jsPreset });
  // page-2 does not leave on pagehide: closing it is a tab that vanishes (crash, killed process,
  // lost network) and must be detected as a failure by the protocol.
  const page2 = await openMember(browser, relay, { name: "page-2", seeds, preset: jsPreset, leaveOnPageHide: false });
  const node = await joinNodeMember(relay, { name: "node-1", seeds, preset: jsPreset });
  t.after(() => node.shoal.shutdown(), CLEANUP);
  const cluster = { agents, pages: [page1, page2], nodes: [node] };

  await waitAllAlive(views(cluster));
  for (const a of agents) {
    const rows = await a.members();
    assert.equal(rows.find((m) => m.name === "page-1").addr, `relay://${relay.addr}/page-1`);
  }

  // page-1's broadcast reaches page-2 and the Node member (message events) and every agent (the
  // agent prints no messages: its /metrics broadcasts_delivered_total goes up).
  const before = await delivered(agents);
  const fromPage = `hello from page-1 (${jsPreset})`;
  await page1.page.evaluate((text) => window.shoal.broadcast("e2e", text), fromPage);
  await waitUntil(pageGot(page2, fromPage), 20_000, "page-2 to receive page-1's broadcast");
  await waitUntil(nodeGot(node, fromPage), 20_000, "node-1 to receive page-1's broadcast");
  await waitUntil(
    async () => (await delivered(agents)).every((v, i) => v > before[i]),
    20_000,
    "every agent's shoal_broadcasts_delivered_total to increase",
  );
  const msg = node.events.find((e) => e.type === "message" && e.text === fromPage);
  assert.equal(msg.from, "page-1");
  assert.equal(msg.topic, "e2e");

  // ...and back: agent-1's view digest, a broadcast from the native side, reaches both pages and
  // the Node member, and says agent-1 sees all 6 members alive.
  const fromAgent = (e) => e.type === "message" && e.from === "agent-1" && e.topic === VIEW_TOPIC && JSON.parse(e.text).members === 6;
  for (const p of [page1, page2]) {
    await waitUntil(async () => (await pageEvents(p.page)).some(fromAgent), 20_000, `${p.name} to receive agent-1's ${VIEW_TOPIC} broadcast`);
  }
  await waitUntil(() => node.events.some(fromAgent), 20_000, `node-1 to receive agent-1's ${VIEW_TOPIC} broadcast`);

  // The Node member's broadcast reaches both pages.
  const fromNode = `hello from node-1 (${jsPreset})`;
  node.shoal.broadcast("e2e", fromNode);
  await waitUntil(pageGot(page1, fromNode), 20_000, "page-1 to receive node-1's broadcast");
  await waitUntil(pageGot(page2, fromNode), 20_000, "page-2 to receive node-1's broadcast");
  const onPage = (await pageEvents(page1.page)).find((e) => e.text === fromNode);
  assert.equal(onPage.from, "node-1");
  assert.equal(onPage.kind, "broadcast");

  await sleep(300); // a render tick
  mkdirSync(ARTIFACTS, { recursive: true });
  await page1.page.screenshot({ path: `${ARTIFACTS}/page-1-${jsPreset}-all-alive.png` });

  const result = await closeAndMeasure(t, cluster, page2, "fail", limitMs);
  await waitUntil(
    async () => (await pageMembers(page1.page)).some((m) => m.name === "page-2" && m.state === "failed"),
    2000,
    "page-1's list to show page-2 failed",
  );
  await sleep(300);
  await page1.page.screenshot({ path: `${ARTIFACTS}/page-1-${jsPreset}-after-close.png` });
  saveArtifact(`failure-detection-mixed-${jsPreset}.json`, { agents: agentPreset, js: jsPreset, ...result });
  assert.ok(
    result.worstMs <= limitMs,
    `every member should declare the closed tab failed within ${limitMs} ms: ${JSON.stringify(result.times)}`,
  );

  // The rest of the cluster stays healthy.
  const rest = { ...cluster, pages: [page1] };
  for (const [name, view] of views(rest)) {
    const others = [...views(rest).keys()].filter((n) => n !== name);
    assert.ok(allAlive(await view(), others), `${name} still sees the others alive`);
  }
}

test("3 agents, 2 Chromium pages and a Node member on the local preset: membership, broadcasts, closed-tab failure", { timeout: 180_000 }, (t) =>
  mixedCluster(t, "local"));

test("the README's setup for clusters with browsers and agents, everyone on the browser preset: membership, broadcasts, closed-tab failure", { timeout: 180_000 }, (t) =>
  mixedCluster(t, "browser", { agentPreset: "browser", limitMs: RECOMMENDED_MIXED_GUARD_MS }));

test("JS members only, all on the browser preset: a vanished tab fails everywhere within 2 s, a closed tab leaves", { timeout: 180_000 }, async (t) => {
  const { relay, browser } = await setup(t, { agents: 0 });
  const preset = "browser";
  const page1 = await openMember(browser, relay, { name: "page-1", preset }); // founds the cluster
  const seeds = [`relay://${relay.addr}/page-1`];
  const page2 = await openMember(browser, relay, { name: "page-2", seeds, preset }); // leaves on pagehide
  const page3 = await openMember(browser, relay, { name: "page-3", seeds, preset, leaveOnPageHide: false });
  const node = await joinNodeMember(relay, { name: "node-1", seeds, preset });
  t.after(() => node.shoal.shutdown(), CLEANUP);
  const cluster = { agents: [], pages: [page1, page2, page3], nodes: [node] };
  await waitAllAlive(views(cluster));

  const failed = await closeAndMeasure(t, cluster, page3, "fail", RECOMMENDED_LIMIT_MS);
  saveArtifact("failure-detection-browser-only.json", { js: preset, ...failed });
  assert.ok(
    failed.worstMs <= RECOMMENDED_LIMIT_MS,
    `every member should declare the vanished tab failed within ${RECOMMENDED_LIMIT_MS} ms: ${JSON.stringify(failed.times)}`,
  );

  cluster.pages = [page1, page2];
  const left = await closeAndMeasure(t, cluster, page2, "leave", 2000);
  saveArtifact("closed-tab-leave-browser-only.json", { js: preset, ...left });
  assert.ok(left.worstMs <= 2000, `a closed tab's pagehide leave reaches everyone within 2 s: ${JSON.stringify(left.times)}`);
});
