// Packaging: `npm pack` of the `shoal` package (wasm/), installed from the tarball into a fresh Vite
// project in a temporary directory, built with `vite build` (the Vite of tests/e2e/node_modules),
// served by shoal-relay's --static, and opened in headless Chromium: the built page must load the
// bundled .wasm, join a cluster through the relay, and see a native shoal-agent alive (and be seen).
// What the Vite user ships (every JS chunk and the default .wasm of dist/, gzipped) must stay within
// SHIPPED_LIMIT. The wasm build with queries, which Vite emits too, is fetched only by a page whose
// member joins with `queries: true`: a second page does, and runs a query.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { constants, gzipSync } from "node:zlib";

import { ARTIFACTS, E2E, WASM } from "./lib/paths.mjs";
import { CLEANUP, Agent, launchChromium, saveArtifact, startRelay, waitUntil } from "./lib/harness.mjs";

const run = promisify(execFile);

/**
 * Bytes a Vite user ships with shoal: every JS chunk plus the default .wasm in dist/ (not the build
 * with queries, which only a member joined with `queries: true` fetches), each gzipped at level 9
 * (what a server precompresses; `gzip -9`), summed. DESIGN.md's target is 80,000; this is the
 * ceiling the test enforces, the figure reached plus a small margin (see BENCHMARKS.md), lowered
 * as the package shrinks.
 */
// 118,500 before the member moved into a worker, 136,000 with the worker; 106,500 since the wasm
// holds only the sans-IO protocol and the driver is JS (member.js). The worker bundle carries the
// wasm glue and the member's code, and the main-thread fallback (`mainThread: true`) is emitted as
// lazy chunks a page loads only when it asks for that mode: what a page whose member runs in a
// worker loads is measured and printed too. 108,000 since keyed values can expire (`ttlMs`): the
// build shipped 107,704 with them, 106,184 before (JS +44, wasm +1,476 as Vite compresses it).
// 108,300 since members check suspects themselves: 107,938 shipped, 107,560 before. 109,300 since
// member tables are shared copy-on-write (the simulator's memory): 109,165 shipped. 107,500 since
// the wasm's panics no longer format their messages and wasm-opt runs to convergence: 107,373.
// 110,000 since members move between the relays of a fleet (`relay: [...]`, direct paths that
// follow a move, `relays()` and failing over to the relays the cluster announces): 109,895 (JS
// +1,575 as Vite counts it, in the worker and main-thread chunks and the chunk they share; wasm
// +940). 112,600 since queries (Serf's `query`) are in the package: 112,484 (JS +1,985 as Vite
// counts it: `query`, `respond` and the answers' iterator in the page's, the worker's and the
// main-thread chunks; wasm +539: the default build exports them, refusing, so that one glue
// serves it and the build with queries). 113,100 since members that moved between relays catch up
// by push-pull and members left on a dead relay are probed first: 112,968 (wasm +483). 113,250
// since gossip between relayed members can fill larger packets (`Config::relayed_packet_size`)
// and stale-claim answers are rate limited by a packed key: 113,106 (wasm +138). 113,600 since a
// member that moved asks no member it still addresses through the relay it left for a push-pull,
// and gossip queues box their updates: 113,442 (wasm +336 as Vite counts it).
const SHIPPED_LIMIT = 113_600;
const SHIPPED_TARGET = 80_000;
const VITE = `${E2E}/node_modules/vite/bin/vite.js`;

const MAIN_JS = `// A fresh app using the published package: a bare import, resolved by Vite through its exports.
import { Shoal } from "shoal";

const q = new URLSearchParams(location.search);
window.joinState = "joining";
try {
  const shoal = await Shoal.join({
    relay: \`ws://\${location.host}\`,
    name: q.get("name"),
    seeds: (q.get("seeds") ?? "").split(",").filter(Boolean),
    token: q.get("token") ?? undefined,
    preset: "browser",
    meta: "role=vite-app",
    queries: q.get("queries") === "1",
  });
  window.shoal = shoal;
  const render = () => {
    document.getElementById("members").textContent = [
      \`\${shoal.name} (this page) \${shoal.addr}\`,
      ...shoal.members().map((m) => \`\${m.name} \${m.addr} \${m.state}\`),
    ].join("\\n");
  };
  render();
  setInterval(render, 100);
  window.joinState = "joined";
} catch (e) {
  window.joinState = \`error: \${e?.message ?? e}\`;
}
`;

const INDEX_HTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>shoal in a Vite app</title><link rel="icon" href="data:,"></head>
<body style="font: 15px system-ui, sans-serif; margin: 1.5rem">
<h1 style="font-size: 1.2rem">shoal, installed from npm pack, bundled by Vite</h1>
<pre id="members">joining…</pre>
<script type="module" src="/main.js"></script>
</body>
</html>
`;

/** Every file under `dir`, relative paths. */
function files(dir, prefix = "") {
  return readdirSync(dir).flatMap((f) =>
    statSync(path.join(dir, f)).isDirectory() ? files(path.join(dir, f), `${prefix}${f}/`) : [`${prefix}${f}`],
  );
}

test("the npm-packed package installs into a fresh Vite project, builds within the shipped-size limit, and the built page joins a native agent through the relay", { timeout: 240_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "shoal-e2e-vite-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }), CLEANUP);
  const timing = {};
  const step = async (name, fn) => {
    const t0 = Date.now();
    const v = await fn();
    timing[name] = Date.now() - t0;
    return v;
  };

  // npm pack -> a tarball in the temporary directory.
  const packed = await step("npmPackMs", () =>
    run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: WASM, timeout: 60_000 }),
  );
  const [{ filename, size, unpackedSize, entryCount }] = JSON.parse(packed.stdout);
  const tarball = path.join(dir, filename);
  assert.ok(statSync(tarball).size > 0);
  t.diagnostic(`npm pack: ${filename}, ${size} bytes (${unpackedSize} unpacked, ${entryCount} files)`);

  // A fresh project depending on the tarball only (no registry access: the package has no
  // dependencies, and ws is an optional peer).
  const app = path.join(dir, "app");
  await run("mkdir", ["-p", app]);
  writeFileSync(
    `${app}/package.json`,
    JSON.stringify({ name: "shoal-vite-app", private: true, type: "module", dependencies: { shoal: `file:../${filename}` } }, null, 2),
  );
  writeFileSync(`${app}/index.html`, INDEX_HTML);
  writeFileSync(`${app}/main.js`, MAIN_JS);
  await step("npmInstallMs", () =>
    run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: app, timeout: 120_000 }),
  );
  const installed = JSON.parse(readFileSync(`${app}/node_modules/shoal/package.json`, "utf8"));
  assert.equal(installed.name, "shoal");

  // vite build -> dist/ with the app's JS and the package's .wasm as an asset.
  await step("viteBuildMs", () =>
    run(process.execPath, [VITE, "build", "--logLevel", "warn"], { cwd: app, timeout: 120_000 }),
  );
  const dist = path.join(app, "dist");
  const built = files(dist);
  const wasmAssets = built.filter((f) => f.endsWith(".wasm"));
  const withQueries = (f) => path.basename(f).startsWith("shoal_wasm_queries_bg");
  assert.equal(wasmAssets.length, 2, `two .wasm in dist/, without and with queries: ${built.join(", ")}`);
  assert.equal(wasmAssets.filter(withQueries).length, 1, `one of them the build with queries: ${built.join(", ")}`);
  const sizes = Object.fromEntries(built.map((f) => [f, statSync(path.join(dist, f)).size]));
  t.diagnostic(`vite build: ${JSON.stringify(sizes)}`);
  const queriesWasm = wasmAssets.find(withQueries);
  const queriesGzip = gzipSync(readFileSync(path.join(dist, queriesWasm)), { level: constants.Z_BEST_COMPRESSION }).length;
  t.diagnostic(`the build with queries, for members joined with queries: true: ${queriesGzip} bytes gzipped`);
  const shipped = built.filter((f) => /\.(m?js|wasm)$/.test(f) && !withQueries(f));
  const gzipped = Object.fromEntries(
    shipped.map((f) => [f, gzipSync(readFileSync(path.join(dist, f)), { level: constants.Z_BEST_COMPRESSION }).length]),
  );
  const sum = (pred) => Object.entries(gzipped).filter(([f]) => pred(f)).reduce((n, [, b]) => n + b, 0);
  const shippedGzip = { js: sum((f) => !f.endsWith(".wasm")), wasm: sum((f) => f.endsWith(".wasm")) };
  shippedGzip.total = shippedGzip.js + shippedGzip.wasm;
  t.diagnostic(
    `shipped, gzipped: ${shippedGzip.total} bytes (JS ${shippedGzip.js}, wasm ${shippedGzip.wasm}); ` +
      `limit ${SHIPPED_LIMIT}, target ${SHIPPED_TARGET}: ${JSON.stringify(gzipped)}`,
  );
  saveArtifact("vite-size.json", { limit: SHIPPED_LIMIT, target: SHIPPED_TARGET, ...shippedGzip, files: gzipped, queriesWasm: queriesGzip });
  assert.ok(
    shippedGzip.total <= SHIPPED_LIMIT,
    `a Vite app ships ${shippedGzip.total} bytes gzipped (JS ${shippedGzip.js} + wasm ${shippedGzip.wasm}), over ${SHIPPED_LIMIT}`,
  );

  // Serve dist/ from the relay, start a native agent, open the built page.
  const relay = await startRelay({ staticDir: dist });
  t.after(() => relay.stop(), CLEANUP);
  const agent = await Agent.start({ name: "agent-1" });
  t.after(() => agent.stop(), CLEANUP);
  const browser = await launchChromium();
  t.after(() => browser.close(), CLEANUP);
  const page = await browser.newPage({ viewport: { width: 900, height: 400 } });
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  const wasmResponses = [];
  const jsLoaded = new Set();
  page.on("response", (r) => /\.m?js$/.test(r.url()) && jsLoaded.add(path.basename(new URL(r.url()).pathname)));
  page.on("response", (r) => r.url().endsWith(".wasm") && wasmResponses.push({ url: r.url(), status: r.status(), type: r.headers()["content-type"] }));

  const q = new URLSearchParams({ name: "vite-page", seeds: agent.addr, token: relay.token });
  const t0 = Date.now();
  await page.goto(`${relay.http}/index.html?${q}`, { timeout: 30_000 });
  await page
    .waitForFunction(() => window.joinState !== "joining", null, { timeout: 30_000 })
    .catch((e) => {
      throw new Error(`the Vite page did not finish joining: ${e.message}\n${consoleLines.join("\n")}`);
    });
  assert.equal(await page.evaluate(() => window.joinState), "joined", consoleLines.join("\n"));
  timing.pageJoinedMs = Date.now() - t0;
  assert.equal(wasmResponses.length, 1, JSON.stringify(wasmResponses));
  assert.ok(!withQueries(new URL(wasmResponses[0].url).pathname), `the page without queries fetched ${wasmResponses[0].url}`);
  const loaded = Object.entries(gzipped).filter(([f]) => f.endsWith(".wasm") || jsLoaded.has(path.basename(f)));
  const loadedGzip = loaded.reduce((n, [, b]) => n + b, 0);
  t.diagnostic(`a page whose member runs in a worker loads ${loadedGzip} bytes gzipped: ${loaded.map(([f]) => path.basename(f)).join(", ")}`);
  saveArtifact("vite-loaded.json", { loadedGzip, files: Object.fromEntries(loaded) });
  assert.equal(wasmResponses[0].status, 200);
  assert.equal(wasmResponses[0].type, "application/wasm", "served as application/wasm (streaming compilation)");

  await waitUntil(
    () => page.evaluate(() => window.shoal.members().some((m) => m.name === "agent-1" && m.state === "alive")),
    20_000,
    "the Vite page to see agent-1 alive",
  );
  await waitUntil(
    async () => (await agent.members()).some((m) => m.name === "vite-page" && m.state === "alive" && m.meta === "role=vite-app"),
    20_000,
    "agent-1 to see the Vite page alive",
  );
  timing.bothSeeEachOtherMs = Date.now() - t0;
  await page.screenshot({ path: `${ARTIFACTS}/vite-page.png` });

  // A second page joins with `queries: true`: it fetches the build with queries, and asks agent-1.
  const asking = await browser.newPage();
  const askingWasm = [];
  asking.on("response", (r) => r.url().endsWith(".wasm") && askingWasm.push(new URL(r.url()).pathname));
  const q2 = new URLSearchParams({ name: "vite-queries", seeds: agent.addr, token: relay.token, queries: "1" });
  await asking.goto(`${relay.http}/index.html?${q2}`, { timeout: 30_000 });
  await asking.waitForFunction(() => window.joinState !== "joining", null, { timeout: 30_000 });
  assert.equal(await asking.evaluate(() => window.joinState), "joined");
  assert.deepEqual(askingWasm.map((p) => withQueries(p)), [true], `the page with queries fetched ${askingWasm}`);
  await waitUntil(
    () => asking.evaluate(() => window.shoal.members().some((m) => m.name === "agent-1" && m.state === "alive")),
    20_000,
    "the page with queries to see agent-1 alive",
  );
  const acks = await asking.evaluate(async () => (await window.shoal.query("ping", "", { name: "agent-1", timeoutMs: 2000 }).collect()).acks);
  assert.deepEqual(acks, ["agent-1"], "agent-1 acked the query of the page with queries");
  saveArtifact("vite.json", { tarball: { filename, size, unpackedSize, entryCount }, dist: sizes, shippedGzip, ...timing });
  t.diagnostic(`timings (ms): ${JSON.stringify(timing)}`);
});
