// What real pages do to a member: a blocked main thread, a frozen page, the back/forward cache, a
// hidden tab with the browser's real timer throttling, and several tabs sharing one member.
//
// Native agents run the `browser` preset (the README's setup for clusters with browsers), so a
// silent tab is suspected within about a second: any suspicion the page's own state causes shows.
// The browser is Chromium started by hand and attached over CDP: Playwright's own launch keeps
// every page "visible" and turns the back/forward cache off.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import {
  CHROMIUM,
  CLEANUP,
  allAlive,
  pageEvents,
  pageMembers,
  pageUrl,
  prepareStaticDir,
  saveArtifact,
  sleep,
  startAgents,
  startRelay,
  waitUntil,
} from "./lib/harness.mjs";

/** Chromium with a DevTools port, attached over CDP: real visibility, throttling and bfcache. */
async function chromiumOverCdp(t, extraArgs = []) {
  const profile = mkdtempSync(path.join(tmpdir(), "shoal-e2e-cdp-"));
  const proc = spawn(
    CHROMIUM,
    [
      "--headless",
      "--no-sandbox",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "--no-first-run",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-features=WebRtcHideLocalIpsWithMdns",
      ...extraArgs,
      "about:blank",
    ],
    // Its own process group: the cleanup ends the renderers and helpers too, not only the browser.
    { stdio: ["ignore", "ignore", "pipe"], detached: true },
  );
  let stderr = "";
  const wsUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no DevTools URL from chromium: ${stderr}`)), 30_000);
    proc.stderr.on("data", (d) => {
      stderr += d;
      const m = stderr.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`chromium exited (${code}): ${stderr}`)));
  });
  const { chromium } = await import("playwright-core");
  const browser = await chromium.connectOverCDP(wsUrl, { noDefaults: true });
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  t.after(async () => {
    await browser.close().catch(() => {});
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
    await Promise.race([exited, sleep(5000)]);
    try {
      process.kill(-proc.pid, "SIGKILL");
    } catch {} // the group is gone already
    await exited;
    rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
  }, CLEANUP);
  return browser.contexts()[0];
}

/** Opens the test page in `context` and waits until it has joined. */
async function open(context, relay, options) {
  const page = await context.newPage();
  const log = [];
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  await page.goto(pageUrl(relay, options), { timeout: 30_000 });
  await page.waitForFunction(() => window.joinState && window.joinState !== "joining", null, { timeout: 30_000 });
  const state = await page.evaluate(() => window.joinState);
  if (state !== "joined") throw new Error(`${options.name}: ${state}\n${log.join("\n")}`);
  return { page, name: options.name, log };
}

/** A small cluster: relay, 2 agents (browser preset), and the pages `names` (browser preset). */
async function cluster(t, context, names, pageOptions = {}) {
  const staticDir = prepareStaticDir();
  t.after(() => staticDir.remove(), CLEANUP);
  const relay = await startRelay({ staticDir: staticDir.dir });
  t.after(() => relay.stop(), CLEANUP);
  const agents = await startAgents(2, { preset: "browser" });
  t.after(() => Promise.all(agents.map((a) => a.stop())), CLEANUP);
  const seeds = [agents[0].addr];
  const pages = [];
  for (const name of names) pages.push(await open(context, relay, { name, seeds, preset: "browser", ...(pageOptions[name] ?? {}) }));
  const all = [...agents.map((a) => a.name), ...names];
  const converged = async () => {
    for (const a of agents) if (!allAlive(await a.members(), all.filter((n) => n !== a.name))) return false;
    for (const p of pages) if (!allAlive(await pageMembers(p.page), all.filter((n) => n !== p.name))) return false;
    return true;
  };
  await waitUntil(converged, 30_000, "every member to see every other alive", 100);
  return { relay, agents, pages, seeds, converged };
}

/** Suspicions and failures of `who` anywhere, from the agents' and the other pages' events. */
async function accusationsOf(who, { agents, pages }, since = 0) {
  const out = [];
  for (const a of agents) {
    for (const e of a.events()) {
      if (e.at >= since && e.member === who && (e.event === "suspect" || e.event === "fail")) out.push(`${a.name}: ${e.event} at +${e.at - since} ms`);
    }
  }
  for (const p of pages) {
    if (p.name === who || p.page.isClosed()) continue;
    for (const e of await pageEvents(p.page)) {
      if (e.at >= since && e.member === who && (e.type === "suspect" || e.type === "fail")) out.push(`${p.name}: ${e.type} at +${e.at - since} ms`);
    }
  }
  return out;
}

/** Blocks the page's main thread for `ms` (a long script; `alert()` and a debugger pause do the same). */
function blockMainThread(page, ms) {
  return page.evaluate((ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end);
  }, ms);
}

test("a page whose main thread is blocked for 10 s is suspected by nobody: its member runs in a worker", { timeout: 120_000 }, async (t) => {
  const context = await chromiumOverCdp(t);
  const c = await cluster(t, context, ["page-1", "page-2"]);
  const page1 = c.pages[0];
  assert.equal(await page1.page.evaluate(() => window.shoal.runsIn), "worker");
  const blockedAt = Date.now();
  await blockMainThread(page1.page, 10_000);
  // Two more seconds for any suspicion raised during the block to show.
  await sleep(2000);
  assert.deepEqual(await accusationsOf("page-1", c, blockedAt), [], "page-1 was suspected while its page was busy");
  assert.ok(await c.converged(), "every member still sees every other alive");
  // The page's own events, held while it was blocked, arrive after it: nothing lost.
  await page1.page.evaluate(() => window.shoal.broadcast("e2e", "after the block"));
  await waitUntil(async () => (await pageEvents(c.pages[1].page)).some((e) => e.text === "after the block"), 10_000, "page-2 to get page-1's broadcast");
});

test("with mainThread: true, a blocked main thread gets the tab suspected (the documented threshold)", { timeout: 120_000 }, async (t) => {
  // The contrast that shows the worker matters, and the figure the README gives for mainThread.
  const context = await chromiumOverCdp(t);
  const c = await cluster(t, context, ["page-1"], { "page-1": { mainThread: true } });
  const blockedAt = Date.now();
  await blockMainThread(c.pages[0].page, 10_000);
  const suspectedAt = await waitUntil(
    async () => {
      const first = c.agents.flatMap((a) => a.events()).filter((e) => e.at >= blockedAt && e.member === "page-1" && e.event === "suspect")[0];
      return first?.at;
    },
    10_000,
    "an agent to suspect page-1",
  );
  const figures = { firstSuspicionAfterMs: suspectedAt - blockedAt };
  t.diagnostic(`mainThread: true: page-1 first suspected ${figures.firstSuspicionAfterMs} ms into a 10 s block`);
  saveArtifact("main-thread-block.json", figures);
  assert.ok(figures.firstSuspicionAfterMs < 10_000);
  // It refutes once it runs again, and the cluster converges.
  await waitUntil(c.converged, 15_000, "the cluster to converge after the block", 100);
});

test("a closed tab whose worker is busy still leaves: the page posts its member's farewell to the relay", { timeout: 120_000 }, async (t) => {
  // A tab's member runs in a worker the browser kills with the tab, often before the worker reads
  // the page's last message and sends its leave (1 close in 4, measured). Here the worker is
  // kept busy while the tab closes, so it certainly cannot: only the farewell the page posts with
  // sendBeacon, which the relay forwards, can tell the others.
  const context = await chromiumOverCdp(t);
  const c = await cluster(t, context, ["page-1", "page-2"]);
  const page2 = c.pages[1];
  const worker = await waitUntil(() => page2.page.workers()[0], 10_000, "page-2's worker");
  await page2.page.evaluate(() => {
    const ch = new BroadcastChannel("e2e-busy");
    window.workerBusy = new Promise((resolve) => (ch.onmessage = () => resolve(true)));
  });
  worker
    .evaluate(() => {
      new BroadcastChannel("e2e-busy").postMessage("busy");
      const end = Date.now() + 8_000;
      while (Date.now() < end);
    })
    .catch(() => {}); // ends with the worker
  assert.equal(await page2.page.evaluate(() => window.workerBusy), true);
  const closedAt = Date.now();
  await page2.page.close();
  const others = [...c.agents, c.pages[0]];
  const reported = async () => {
    const times = {};
    for (const a of c.agents) {
      const e = a.events().find((e) => e.at >= closedAt && e.member === "page-2" && (e.event === "leave" || e.event === "fail"));
      times[a.name] = e && { event: e.event, ms: e.at - closedAt };
    }
    const e = (await pageEvents(c.pages[0].page)).find((e) => e.at >= closedAt && e.member === "page-2" && (e.type === "leave" || e.type === "fail"));
    times["page-1"] = e && { event: e.type, ms: e.at - closedAt };
    return Object.values(times).every(Boolean) && times;
  };
  const times = await waitUntil(reported, 10_000, `every member (${others.length}) to report page-2 gone`, 50);
  t.diagnostic(`page-2 closed with its worker busy; reported (ms): ${JSON.stringify(times)}`);
  saveArtifact("closed-tab-busy-worker.json", times);
  for (const [who, { event, ms }] of Object.entries(times)) {
    assert.equal(event, "leave", `${who} saw page-2 ${event}, not leave`);
    assert.ok(ms <= 2000, `${who} saw the leave after ${ms} ms`);
  }
});

test("a page frozen for 10 s is alive everywhere again within 1 s of resuming", { timeout: 120_000 }, async (t) => {
  const context = await chromiumOverCdp(t);
  const c = await cluster(t, context, ["page-1", "page-2"]);
  const page1 = c.pages[0];
  const cdp = await context.newCDPSession(page1.page);
  await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
  await sleep(10_000);
  await cdp.send("Page.setWebLifecycleState", { state: "active" });
  const resumedAt = Date.now();
  const aliveAt = await waitUntil(
    async () => {
      for (const a of c.agents) if (!allAlive(await a.members(), ["page-1"])) return false;
      return allAlive(await pageMembers(c.pages[1].page), ["page-1"]) && Date.now();
    },
    10_000,
    "page-1 alive everywhere after it resumed",
    50,
  );
  const figures = {
    aliveEverywhereAfterResumeMs: aliveAt - resumedAt,
    // Whether the member (in its worker) was frozen with the page: then it counted a stall, and
    // the others suspected it meanwhile.
    memberStalls: await page1.page.evaluate(() => window.shoal.metrics().stalls),
    accusationsWhileFrozen: (await accusationsOf("page-1", c, resumedAt - 10_000)).length,
  };
  t.diagnostic(`frozen 10 s: alive everywhere ${figures.aliveEverywhereAfterResumeMs} ms after resuming (${JSON.stringify(figures)})`);
  saveArtifact("page-freeze.json", figures);
  assert.ok(figures.aliveEverywhereAfterResumeMs <= 1000, `took ${figures.aliveEverywhereAfterResumeMs} ms`);
  // The frozen page accused nobody on resuming.
  const own = (await pageEvents(page1.page)).filter((e) => e.at >= resumedAt && (e.type === "suspect" || e.type === "fail"));
  assert.deepEqual(own, [], "page-1 accused others after it resumed");
});

test("a page restored from the back/forward cache rejoins under its name within 1 s", { timeout: 120_000 }, async (t) => {
  const context = await chromiumOverCdp(t);
  const c = await cluster(t, context, ["page-1"]);
  const page1 = c.pages[0];
  const url = page1.page.url();
  await page1.page.evaluate(() => {
    window.addEventListener("pageshow", (e) => (window.restoredFromCache = e.persisted));
  });
  await page1.page.goto(`${c.relay.http}/blank.html`);
  // Away: the member left gracefully (a `leave`, not a failure).
  await waitUntil(async () => (await c.agents[0].members()).some((m) => m.name === "page-1" && m.state === "left"), 10_000, "agent-1 to see page-1 leave");
  // A restore fires no `load`: wait for the commit, then for `pageshow`.
  await page1.page.goBack({ waitUntil: "commit" });
  const backAt = Date.now();
  assert.equal(page1.page.url(), url);
  await waitUntil(() => page1.page.evaluate(() => window.restoredFromCache !== undefined), 10_000, "pageshow after going back");
  assert.equal(await page1.page.evaluate(() => window.restoredFromCache), true, "the page came from the back/forward cache");
  const aliveAt = await waitUntil(
    async () => {
      for (const a of c.agents) if (!allAlive(await a.members(), ["page-1"])) return false;
      return Date.now();
    },
    10_000,
    "page-1 alive at every agent after the restore",
    50,
  );
  const figures = { aliveEverywhereAfterRestoreMs: aliveAt - backAt };
  t.diagnostic(`back/forward cache: page-1 alive everywhere ${figures.aliveEverywhereAfterRestoreMs} ms after the restore`);
  saveArtifact("page-bfcache.json", figures);
  assert.ok(figures.aliveEverywhereAfterRestoreMs <= 1000, `took ${figures.aliveEverywhereAfterRestoreMs} ms`);
  const types = (await pageEvents(page1.page)).map((e) => e.type);
  assert.ok(types.includes("suspend") && types.includes("resume"), types.join(","));
  assert.ok(!types.includes("shutdown"), "the page's member object kept going");
  assert.equal(await page1.page.evaluate(() => window.shoal.closed), false);
});

test("a hidden tab under Chromium's real once-a-minute timer throttling stays a member, suspected by nobody", { timeout: 300_000 }, async (t) => {
  // Intensive wake-up throttling after 10 s hidden instead of 5 minutes: the page's timers then
  // run once a minute. The member runs in a worker, whose timers are not throttled.
  const context = await chromiumOverCdp(t, ["--enable-features=IntensiveWakeUpThrottling:grace_period_seconds/10"]);
  const c = await cluster(t, context, ["page-1"]);
  const page1 = c.pages[0];
  await page1.page.evaluate(() => {
    window.ticks = [];
    setInterval(() => window.ticks.push(Date.now()), 1000);
  });
  const front = await context.newPage();
  await front.goto("about:blank");
  await front.bringToFront();
  await waitUntil(() => page1.page.evaluate(() => document.visibilityState === "hidden"), 10_000, "page-1 to be hidden");
  const hiddenAt = Date.now();
  // Chromium turns the once-a-minute throttling on about a minute after the tab is hidden; then
  // the page's 1 s timer runs once a minute. Stay hidden until that has shown, then a minute more.
  const throttledAt = await waitUntil(
    async () => {
      const ticks = await page1.page.evaluate(() => window.ticks);
      const last = ticks.at(-1) ?? hiddenAt;
      return Date.now() - last >= 30_000 && Date.now();
    },
    150_000,
    "the hidden page's 1 s timer to be throttled to once a minute",
    1000,
  );
  await sleep(60_000);
  const ticks = await page1.page.evaluate((since) => window.ticks.filter((at) => at >= since), hiddenAt);
  const gaps = ticks.slice(1).map((at, i) => at - ticks[i]);
  const hiddenMs = Date.now() - hiddenAt;
  t.diagnostic(`hidden ${Math.round(hiddenMs / 1000)} s (throttled from +${Math.round((throttledAt - hiddenAt) / 1000)} s): the page's 1 s timer ran ${ticks.length} times, longest gap ${Math.max(...gaps)} ms`);
  // Wake-ups are aligned to whole minutes, so a gap can be shorter than a minute; a 1 s timer
  // held back 25 s or more is the intensive throttling at work.
  assert.ok(Math.max(...gaps) >= 25_000, "the page's timers were never throttled to once a minute: the test proves nothing");
  assert.deepEqual(await accusationsOf("page-1", c, hiddenAt), [], "the hidden tab was suspected");
  for (const a of c.agents) assert.ok(allAlive(await a.members(), ["page-1"]), `${a.name} sees page-1 alive`);
  saveArtifact("page-hidden.json", { hiddenMs, pageTimerTicks: ticks.length, longestGapMs: Math.max(...gaps) });
});

test("tabs that join with the same name in shared-worker mode are one member, which leaves with the last tab", { timeout: 120_000 }, async (t) => {
  const context = await chromiumOverCdp(t);
  const c = await cluster(t, context, ["page-2"]);
  const opts = { name: "shared-1", seeds: c.seeds, preset: "browser", worker: "shared" };
  const tabA = await open(context, c.relay, opts);
  const tabB = await open(context, c.relay, opts);
  for (const tab of [tabA, tabB]) assert.equal(await tab.page.evaluate(() => window.shoal.runsIn), "shared-worker");
  assert.equal(await tabA.page.evaluate(() => window.shoal.addr), await tabB.page.evaluate(() => window.shoal.addr));
  await waitUntil(async () => allAlive(await c.agents[0].members(), ["shared-1"]), 10_000, "agent-1 to see shared-1");
  // Both tabs hear what reaches the one member.
  await c.pages[0].page.evaluate(() => window.shoal.broadcast("e2e", "to the shared member"));
  for (const tab of [tabA, tabB]) {
    await waitUntil(async () => (await pageEvents(tab.page)).some((e) => e.text === "to the shared member"), 10_000, "both tabs to get the broadcast");
  }
  // The first tab closes: the member stays.
  await tabA.page.close({ runBeforeUnload: true });
  await sleep(3000);
  assert.ok(allAlive(await c.agents[0].members(), ["shared-1"]), "shared-1 left with the first tab");
  assert.equal(await tabB.page.evaluate(() => window.shoal.closed), false);
  // The last tab closes: the member leaves.
  const closedAt = Date.now();
  await tabB.page.close({ runBeforeUnload: true });
  const goneAt = await waitUntil(
    async () => (await c.agents[0].members()).some((m) => m.name === "shared-1" && (m.state === "left" || m.state === "failed")) && Date.now(),
    15_000,
    "agent-1 to see shared-1 gone",
    50,
  );
  const state = (await c.agents[0].members()).find((m) => m.name === "shared-1").state;
  t.diagnostic(`shared-1 ${state} at agent-1 ${goneAt - closedAt} ms after its last tab closed`);
  assert.equal(state, "left", "the last tab's close is a graceful leave");
});

test("with the member in a worker, the page throws at once for what it can check and reports an oversized payload as an error event", { timeout: 120_000 }, async (t) => {
  const context = await chromiumOverCdp(t);
  const c = await cluster(t, context, ["page-1"]);
  const page = c.pages[0].page;
  const outcome = await page.evaluate(async () => {
    const s = window.shoal;
    const threw = (f) => {
      try {
        f();
        return null;
      } catch (e) {
        return e.message;
      }
    };
    const errors = [];
    s.on("error", (e) => errors.push(e));
    const r = {
      unknownMember: threw(() => s.send("nobody-here", "t", "x")),
      longTopic: threw(() => s.broadcast("t".repeat(256), "x")),
      notBytes: threw(() => s.broadcast("t", 42)),
      reliableId: s.send("agent-1", "t", "x", { reliable: true }),
      oversized: threw(() => s.broadcast("t", new Uint8Array(200_000))),
    };
    const until = Date.now() + 5000;
    while (errors.length === 0 && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    r.errorEvents = errors.map((e) => `${e.op}: ${e.message}`);
    return r;
  });
  assert.match(outcome.unknownMember, /unknown or dead member nobody-here/);
  assert.match(outcome.longTopic, /topic longer than 255 bytes/);
  assert.match(outcome.notBytes, /string, Uint8Array or ArrayBuffer/);
  assert.equal(typeof outcome.reliableId, "number");
  assert.equal(outcome.oversized, null, "the page cannot know the packet budget: the member checks it");
  assert.equal(outcome.errorEvents.length, 1, JSON.stringify(outcome.errorEvents));
  assert.match(outcome.errorEvents[0], /^broadcast: payload of \d+ bytes exceeds \d+/);
  // `leave` resolves with the member's answer, which arrives after its own shutdown event.
  assert.equal(await page.evaluate(() => window.shoal.leave(2000)), true, "a gossiped leave resolves true");
  assert.equal(await page.evaluate(() => window.shoal.closed), true);
});

test("a second tab with the same fixed name stops the first, which says why on its console", { timeout: 120_000 }, async (t) => {
  const context = await chromiumOverCdp(t);
  const c = await cluster(t, context, ["tab-42"]);
  const first = c.pages[0];
  const second = await open(context, c.relay, { name: "tab-42", seeds: c.seeds, preset: "browser" });
  await waitUntil(() => first.page.evaluate(() => window.shoal.closed), 10_000, "the first tab's member to stop");
  const shutdown = (await pageEvents(first.page)).find((e) => e.type === "shutdown");
  assert.ok(shutdown, "the first tab got a shutdown event");
  await waitUntil(() => first.log.some((l) => l.startsWith("warning: shoal: this page's member stopped")), 5_000, "the console warning");
  assert.equal(await second.page.evaluate(() => window.shoal.closed), false);
});
