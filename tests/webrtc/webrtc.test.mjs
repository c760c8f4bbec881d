// WebRTC direct paths in headless Chromium.
//
// Two pages join one cluster through a shoal-relay, upgrade to a direct data channel (negotiated
// through the relay), and must keep each other alive while the relay process is frozen (SIGSTOP)
// for 30 s: probes and gossip travel only over the channel then. Counters from `transportStats()`
// show how much of the traffic went direct. Figures are printed as `webrtc:` lines.
import { test } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, openPage, sleep, startAgent, startPageServer, startRelay, stats, waitFor } from "./lib.mjs";

const OUTAGE_MS = Number(process.env.SHOAL_WEBRTC_OUTAGE_MS ?? 30_000);

const eventsAbout = (page, member, since) =>
  page.evaluate(([m, s]) => window.events.filter((e) => e.member === m && e.t >= s), [member, since]);
const stateOf = (page, member) =>
  page.evaluate((m) => window.shoal.members().find((x) => x.name === m)?.state, member);

test("two pages form a direct channel and keep each other alive while the relay is stopped", { timeout: 120_000 }, async (t) => {
  const relay = await startRelay();
  t.after(() => relay.stop());
  const site = await startPageServer();
  t.after(() => site.close());
  const browser = await launchChromium();
  t.after(() => browser.close());

  const a = await openPage(browser, site);
  const b = await openPage(browser, site);
  const aAddr = await a.evaluate((relay) => window.start({ relay, name: "page-a" }), relay.url);
  const joinedAt = Date.now();
  await b.evaluate(([relay, seed]) => window.start({ relay, name: "page-b", seeds: [seed] }), [relay.url, aAddr]);

  // Both sides see an open channel.
  await waitFor("an open channel on both pages", 20_000, async () => {
    const [sa, sb] = [await stats(a), await stats(b)];
    return sa.peers.some((p) => p.state === "open") && sb.peers.some((p) => p.state === "open");
  });
  const openedMs = Date.now() - joinedAt;
  const [sa0, sb0] = [await stats(a), await stats(b)];
  console.log(`webrtc: channel open ${openedMs} ms after the join; setup a=${sa0.setupMs} ms b=${sb0.setupMs} ms`);

  // Traffic now goes direct.
  await sleep(5_000);
  const [sa1, sb1] = [await stats(a), await stats(b)];
  const window1 = (s1, s0) => {
    const direct = s1.direct.packetsOut - s0.direct.packetsOut + s1.direct.packetsIn - s0.direct.packetsIn;
    const all = s1.packetsOut - s0.packetsOut + s1.packetsIn - s0.packetsIn;
    return { direct, all, share: all ? direct / all : 0 };
  };
  const wa = window1(sa1, sa0);
  console.log(`webrtc: after the upgrade, 5 s: page-a ${wa.direct}/${wa.all} packets direct (${(wa.share * 100).toFixed(1)}%)`);
  assert.ok(wa.all > 0 && wa.share >= 0.8, `direct share after the upgrade: ${JSON.stringify(wa)}`);

  // Freeze the relay: the WebSockets stay open but nothing moves through them.
  const frozeAt = Date.now();
  relay.signal("SIGSTOP");
  let aliveChecks = 0;
  try {
    while (Date.now() - frozeAt < OUTAGE_MS) {
      await sleep(1_000);
      assert.equal(await stateOf(a, "page-b"), "alive", `page-a sees page-b alive ${Date.now() - frozeAt} ms into the outage`);
      assert.equal(await stateOf(b, "page-a"), "alive", `page-b sees page-a alive ${Date.now() - frozeAt} ms into the outage`);
      aliveChecks++;
    }
  } finally {
    relay.signal("SIGCONT");
  }
  const [sa2, sb2] = [await stats(a), await stats(b)];
  const during = window1(sa2, sa1);
  const suspicions = [...(await eventsAbout(a, "page-b", frozeAt)), ...(await eventsAbout(b, "page-a", frozeAt))];
  console.log(
    `webrtc: relay stopped ${OUTAGE_MS} ms: ${aliveChecks} checks, both alive each time; page-a exchanged ` +
      `${during.direct} packets direct, ${during.all - during.direct} relayed; events about the peer: ${JSON.stringify(suspicions)}`,
  );
  assert.deepEqual(suspicions.filter((e) => e.type === "suspect" || e.type === "fail"), []);
  assert.ok(during.direct > 0, "probes kept flowing over the channel");

  // Relay back: still together, and the totals.
  await sleep(3_000);
  assert.equal(await stateOf(a, "page-b"), "alive");
  assert.equal(await stateOf(b, "page-a"), "alive");
  const [sa3, sb3] = [await stats(a), await stats(b)];
  for (const [name, s] of [["page-a", sa3], ["page-b", sb3]]) {
    console.log(
      `webrtc: ${name} totals: ${s.direct.packetsOut + s.direct.packetsIn} packets direct, ` +
        `${s.relayed.packetsOut + s.relayed.packetsIn} relayed, direct share ${(s.directShare * 100).toFixed(1)}%`,
    );
  }

  // A graceful leave closes the channel and the other page sees the leave.
  const leftAt = Date.now();
  assert.equal(await b.evaluate(() => window.shoal.leave(2000)), true);
  await waitFor("page-a to see page-b leave", 10_000, async () =>
    (await eventsAbout(a, "page-b", leftAt)).some((e) => e.type === "leave"),
  );
  assert.equal((await stats(b)).peers.length, 0, "the leaving page closed its channels");
  await waitFor("page-a to close its channel to page-b", 10_000, async () => (await stats(a)).peers.length === 0);
});

async function setup(t) {
  const relay = await startRelay();
  t.after(() => relay.stop());
  const site = await startPageServer();
  t.after(() => site.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  return { relay, a: await openPage(browser, site), b: await openPage(browser, site) };
}

test("when both pages offer at once, the lower address's offer stands and one channel opens", { timeout: 60_000 }, async (t) => {
  const { relay, a, b } = await setup(t);
  const webrtc = { answerGraceMs: 0 }; // both sides offer as soon as they see each other
  const aAddr = await a.evaluate(([relay, webrtc]) => window.start({ relay, name: "page-a", webrtc }), [relay.url, webrtc]);
  await b.evaluate(([relay, seed, webrtc]) => window.start({ relay, name: "page-b", seeds: [seed], webrtc }), [relay.url, aAddr, webrtc]);
  await waitFor("an open channel on both pages", 20_000, async () => {
    const [sa, sb] = [await stats(a), await stats(b)];
    return sa.peers.some((p) => p.state === "open") && sb.peers.some((p) => p.state === "open");
  });
  await sleep(2_000);
  const [sa, sb] = [await stats(a), await stats(b)];
  console.log(`webrtc: glare page-a ${JSON.stringify(sa.glare)} page-b ${JSON.stringify(sb.glare)}; channels opened a=${sa.channelsOpened} b=${sb.channelsOpened}`);
  assert.equal(sa.glare.lost, 0, "the lower address never rolls back");
  assert.equal(sb.glare.won, 0, "the higher address never keeps its offer");
  assert.ok(sa.glare.won <= sb.glare.lost, "every glare page-a won, page-b lost");
  assert.deepEqual(sa.peers.map((p) => p.state), ["open"]);
  assert.deepEqual(sb.peers.map((p) => p.state), ["open"]);
  assert.ok(sa.directShare > 0.5, `direct share ${sa.directShare}`);

  // Closing page-b (pagehide: leave, then bye and close its channels) tears the channel down on
  // page-a too, and page-a learns of the leave.
  const closedAt = Date.now();
  await b.close({ runBeforeUnload: true });
  await waitFor("page-a to see page-b leave", 10_000, async () =>
    (await eventsAbout(a, "page-b", closedAt)).some((e) => e.type === "leave"),
  );
  await waitFor("page-a to close its channel to page-b", 10_000, async () => (await stats(a)).peers.length === 0);
  console.log(`webrtc: page-b hidden: page-a saw the leave and closed the channel within ${Date.now() - closedAt} ms`);
});

test("a page without WebRTC and one with it stay members over the relay (fallback)", { timeout: 60_000 }, async (t) => {
  const { relay, a, b } = await setup(t);
  const aAddr = await a.evaluate((relay) => window.start({ relay, name: "page-a", webrtc: { setupTimeoutMs: 2_000 } }), relay.url);
  await b.evaluate(([relay, seed]) => window.start({ relay, name: "page-b", seeds: [seed], webrtc: false }), [relay.url, aAddr]);
  const since = Date.now();
  await sleep(6_000);
  const [sa, sb] = [await stats(a), await stats(b)];
  console.log(`webrtc: fallback: page-a ${sa.packetsOut + sa.packetsIn} packets, ${sa.direct.packetsOut + sa.direct.packetsIn} direct; page-b webrtc=${sb.webrtc}`);
  assert.equal(sb.webrtc, false);
  assert.equal(sa.direct.packetsOut + sa.direct.packetsIn, 0, "nothing went direct");
  assert.ok(sa.packetsOut > 10 && sa.packetsIn > 10, "traffic flowed through the relay");
  assert.equal(await stateOf(a, "page-b"), "alive");
  assert.equal(await stateOf(b, "page-a"), "alive");
  const events = [...(await eventsAbout(a, "page-b", since)), ...(await eventsAbout(b, "page-a", since))];
  assert.deepEqual(events.filter((e) => e.type === "suspect" || e.type === "fail"), []);
});

test("a page and a native agent exchange gossip over a direct channel", { timeout: 90_000 }, async (t) => {
  const relay = await startRelay();
  t.after(() => relay.stop());
  const agent = await startAgent(["--name", "agent-1", "--bind", "127.0.0.1:0", "--preset", "local", "--publish-view", "1", "--webrtc", relay.url]);
  t.after(() => agent.stop());
  const site = await startPageServer();
  t.after(() => site.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await openPage(browser, site);
  const joinedAt = Date.now();
  await page.evaluate(([relay, seed]) => window.start({ relay, name: "page-1", seeds: [seed], preset: "local" }), [relay.url, agent.addr]);

  await waitFor("an open channel to the agent", 30_000, async () => (await stats(page)).peers.some((p) => p.state === "open"));
  const s0 = await stats(page);
  console.log(`webrtc: page <-> agent channel open ${Date.now() - joinedAt} ms after the join (setup ${s0.setupMs} ms)`);

  await sleep(5_000);
  const s1 = await stats(page);
  const direct = s1.direct.packetsOut - s0.direct.packetsOut + s1.direct.packetsIn - s0.direct.packetsIn;
  const all = s1.packetsOut - s0.packetsOut + s1.packetsIn - s0.packetsIn;
  console.log(`webrtc: page <-> agent, 5 s after the upgrade: ${direct}/${all} packets direct (${((direct / all) * 100).toFixed(1)}%)`);
  assert.ok(all > 0 && direct / all >= 0.8, `direct share ${direct}/${all}`);
  assert.ok(s1.direct.packetsIn - s0.direct.packetsIn > 0 && s1.direct.packetsOut - s0.direct.packetsOut > 0, "both directions direct");

  // Gossip both ways: the agent's view digests (broadcasts) reach the page; the agent sees the page.
  await waitFor("a view digest from the agent", 10_000, () =>
    page.evaluate(() => window.events.some((e) => e.type === "message" && e.from === "agent-1" && e.topic === "shoal/view")),
  );
  assert.equal(await stateOf(page, "agent-1"), "alive");
  assert.ok(agent.lines.some((e) => e.event === "join" && e.member === "page-1"), "the agent saw the page join");

  // The relay frozen for 10 s: the page and the agent keep each other alive over the channel.
  const frozeAt = Date.now();
  relay.signal("SIGSTOP");
  try {
    while (Date.now() - frozeAt < 10_000) {
      await sleep(1_000);
      assert.equal(await stateOf(page, "agent-1"), "alive", `the page sees the agent alive ${Date.now() - frozeAt} ms into the outage`);
    }
  } finally {
    relay.signal("SIGCONT");
  }
  const bad = agent.lines.filter((e) => e.member === "page-1" && e.ts && ["suspect", "fail"].includes(e.event));
  assert.deepEqual(bad, [], "the agent never suspected the page");
  const s2 = await stats(page);
  console.log(
    `webrtc: page <-> agent totals: ${s2.direct.packetsOut + s2.direct.packetsIn} packets direct, ` +
      `${s2.relayed.packetsOut + s2.relayed.packetsIn} relayed, direct share ${(s2.directShare * 100).toFixed(1)}%`,
  );
});
