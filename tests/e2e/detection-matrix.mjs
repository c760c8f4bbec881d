// How long every member takes to see a browser tab go, per mix of presets: native agents on `lan`
// only (the README's agent setup before), on `browser`, `lan` and `browser` mixed, pages only, and
// agents with pages beside them. Every page (Chromium, through a relay) is on the `browser`
// preset. Run after run, a new tab joins the mix and goes away, either closed normally
// (`pagehide`: it leaves) or crashed (CDP `Page.crash`: no `pagehide`, it must be detected as
// failed). The figure of a run is the time from the close or crash until the slowest member
// reported the tab left or failed.
//
//   cd tests/e2e && node detection-matrix.mjs                 # 5 runs per cell, every mix
//   node detection-matrix.mjs --runs 3 --mix browser,pages    # some mixes, fewer runs
//
// Prints a Markdown table (median and max of the runs, per mix and way of leaving) and writes
// every run's per-member times to artifacts/detection-matrix.json. Needs what `npm test` needs
// (its pretest step builds it: `node lib/prepare.mjs`).
import { parseArgs } from "node:util";

import {
  Agent,
  allAlive,
  launchChromium,
  openMember,
  pageEvents,
  pageMembers,
  prepareStaticDir,
  saveArtifact,
  startRelay,
  waitUntil,
} from "./lib/harness.mjs";

/** The native agents of each mix (their presets), and how many watching pages. */
export const MIXES = {
  lan: { agents: ["lan", "lan", "lan"], pages: 0, label: "3 agents `lan`" },
  browser: { agents: ["browser", "browser", "browser"], pages: 0, label: "3 agents `browser`" },
  mixed: { agents: ["lan", "lan", "browser"], pages: 0, label: "2 agents `lan` + 1 agent `browser`" },
  pages: { agents: [], pages: 3, label: "no agent, 3 pages" },
  "lan+pages": { agents: ["lan", "lan", "lan"], pages: 2, label: "3 agents `lan` + 2 pages" },
  "browser+pages": { agents: ["browser", "browser", "browser"], pages: 2, label: "3 agents `browser` + 2 pages" },
};

/** A relay, the mix's agents and watching pages, and a browser to open tabs in. */
export async function startMix(mix, cleanups) {
  const staticDir = prepareStaticDir();
  cleanups.push(() => staticDir.remove());
  const relay = await startRelay({ staticDir: staticDir.dir });
  cleanups.push(() => relay.stop());
  const agents = [];
  for (const [i, preset] of mix.agents.entries()) {
    const join = agents.length ? [agents[0].addr] : [];
    agents.push(await Agent.start({ name: `agent-${i + 1}`, preset, join }));
    cleanups.push(() => agents[i].stop());
  }
  const browser = await launchChromium();
  cleanups.push(() => browser.close());
  const pages = [];
  let seeds = agents.length ? [agents[0].addr] : [];
  for (let i = 0; i < mix.pages; i++) {
    pages.push(await openMember(browser, relay, { name: `page-${i + 1}`, seeds, preset: "browser" }));
    if (!seeds.length) seeds = [`relay://${relay.addr}/page-1`];
  }
  return { relay, agents, pages, browser, seeds };
}

/** When each watcher reported `victim` left or failed (ms after `t0`, and which), or null. */
async function goneTimes({ agents, pages }, victim, t0) {
  const times = {};
  for (const a of agents) {
    const e = a.events().find((e) => (e.event === "leave" || e.event === "fail") && e.member === victim);
    times[a.name] = e ? { ms: e.at - t0, as: e.event } : null;
  }
  for (const p of pages) {
    const e = (await pageEvents(p.page)).find((e) => (e.type === "leave" || e.type === "fail") && e.member === victim);
    times[p.name] = e ? { ms: e.at - t0, as: e.type } : null;
  }
  return times;
}

/**
 * Opens a tab named `name`, waits until every watcher sees it alive (and it sees them), then
 * closes it (`how`: "close", normally, with `pagehide`) or crashes it ("crash"), and waits until
 * every watcher reported it gone. Returns the per-watcher times and the slowest.
 */
export async function oneTab(cluster, name, how, limitMs = 30_000) {
  const { relay, agents, pages, browser, seeds } = cluster;
  const tab = await openMember(browser, relay, { name, seeds, preset: "browser", leaveOnPageHide: true });
  const watchers = [...agents.map((a) => a.name), ...pages.map((p) => p.name)];
  await waitUntil(
    async () => {
      for (const a of agents) if (!allAlive(await a.members(), [name])) return false;
      for (const p of pages) if (!allAlive(await pageMembers(p.page), [name])) return false;
      return allAlive(await pageMembers(tab.page), watchers);
    },
    30_000,
    `every member to see ${name} alive`,
    50,
  );
  let t0;
  if (how === "close") {
    t0 = Date.now();
    await tab.page.close();
  } else {
    const cdp = await tab.page.context().newCDPSession(tab.page);
    const crashed = tab.page.waitForEvent("crash", { timeout: 10_000 });
    t0 = Date.now();
    cdp.send("Page.crash").catch(() => {}); // answered never: the renderer is gone
    await crashed;
  }
  const times = await waitUntil(
    async () => {
      const t = await goneTimes(cluster, name, t0);
      return Object.values(t).every((v) => v !== null) && t;
    },
    limitMs,
    `every member to report ${name} gone`,
    50,
  ).catch(async (e) => {
    throw new Error(`${e.message}: ${JSON.stringify(await goneTimes(cluster, name, t0))}`);
  });
  if (how === "crash") await tab.page.context().close().catch(() => {});
  const worstMs = Math.max(...Object.values(times).map((v) => v.ms));
  return { tab: name, how, worstMs, times, console: tab.consoleLines };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : Math.round((s[m - 1] + s[m]) / 2);
};

async function main() {
  const { values } = parseArgs({ options: { runs: { type: "string", default: "5" }, mix: { type: "string", default: Object.keys(MIXES).join(",") } } });
  const runs = Number(values.runs);
  const results = {};
  for (const key of values.mix.split(",")) {
    const mix = MIXES[key];
    if (!mix) throw new Error(`unknown mix ${key} (${Object.keys(MIXES).join(", ")})`);
    const cleanups = [];
    try {
      const cluster = await startMix(mix, cleanups);
      results[key] = { label: mix.label, close: [], crash: [] };
      for (let i = 1; i <= runs; i++) {
        for (const how of ["close", "crash"]) {
          const r = await oneTab(cluster, `tab-${how}-${i}`, how);
          results[key][how].push(r);
          const kinds = [...new Set(Object.values(r.times).map((v) => v.as))].join("/");
          console.log(`${key} ${how} ${i}: slowest ${r.worstMs} ms (${kinds}) ${JSON.stringify(Object.fromEntries(Object.entries(r.times).map(([k, v]) => [k, v.ms])))}`);
        }
      }
    } finally {
      for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
    }
  }
  saveArtifact("detection-matrix.json", results);
  const cell = (rs) => {
    const w = rs.map((r) => r.worstMs);
    return `${median(w).toLocaleString("en-US")} ms / ${Math.max(...w).toLocaleString("en-US")} ms`;
  };
  const seen = (rs) => [...new Set(rs.flatMap((r) => Object.values(r.times).map((v) => v.as)))].join(", ");
  console.log(`\n| setup | tab closed (\`pagehide\`): median / max | tab crashed (no \`pagehide\`): median / max |`);
  console.log("|---|---|---|");
  for (const r of Object.values(results)) {
    console.log(`| ${r.label} | ${cell(r.close)} (${seen(r.close)}) | ${cell(r.crash)} (${seen(r.crash)}) |`);
  }
  console.log(`\n${runs} runs per cell; the slowest member of each run; ${new Date().toISOString()}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
