// Every JavaScript block of the READMEs (README.md, wasm/README.md) runs as written in a Chromium
// page next to a relay and a native agent. The only edits are where the snippet's cluster is: the
// relay URLs of the examples become the test relay's, the seed address the agent's, and the token
// the test relay's. A snippet that throws, or does not finish, fails the test; so does a README
// with no JavaScript block at all (the extraction would be broken).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";

import { ROOT } from "./lib/paths.mjs";
import { Agent, CLEANUP, launchChromium, prepareStaticDir, saveArtifact, startRelay, waitUntil } from "./lib/harness.mjs";

const READMES = ["README.md", "wasm/README.md"];

/** The ```js blocks of a Markdown file, with their line numbers. */
function jsBlocks(file) {
  const text = readFileSync(`${ROOT}/${file}`, "utf8");
  const blocks = [];
  const re = /^```(?:js|javascript|ts|typescript)\n([\s\S]*?)^```$/gm;
  for (let m; (m = re.exec(text)); ) blocks.push({ file, line: text.slice(0, m.index).split("\n").length, code: m[1] });
  return blocks;
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>README snippet</title><link rel="icon" href="data:,">
<script type="importmap">{ "imports": { "shoal": "./shoal/js/browser.js" } }</script>
</head><body><pre id="log"></pre>
<script type="module">
window.snippetLog = [];
const log = console.log;
console.log = (...args) => {
  window.snippetLog.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
  log(...args);
};
const n = new URLSearchParams(location.search).get("n");
import(\`./snippet-\${n}.js\`).then(
  () => (window.snippetDone = "ok"),
  (e) => (window.snippetDone = "error: " + (e?.stack ?? e)),
);
</script></body></html>
`;

test("every JavaScript snippet in the READMEs runs as written against a relay and an agent", { timeout: 180_000 }, async (t) => {
  const blocks = READMES.flatMap(jsBlocks);
  for (const f of READMES) assert.ok(blocks.some((b) => b.file === f), `no JavaScript block found in ${f}`);
  const staticDir = prepareStaticDir();
  t.after(() => staticDir.remove(), CLEANUP);
  const relay = await startRelay({ staticDir: staticDir.dir });
  t.after(() => relay.stop(), CLEANUP);
  const agent = await Agent.start({ name: "agent-1", preset: "browser" });
  t.after(() => agent.stop(), CLEANUP);
  const browser = await launchChromium();
  t.after(() => browser.close(), CLEANUP);

  const where = (code) =>
    code
      .replaceAll("ws://10.0.0.9:8080", relay.ws)
      .replaceAll("ws://relay.example:8080", relay.ws)
      .replaceAll("udp://10.0.0.5:7946", agent.addr)
      .replaceAll('"secret"', JSON.stringify(relay.token));
  writeFileSync(`${staticDir.dir}/snippet.html`, PAGE);
  const results = [];
  for (const [n, block] of blocks.entries()) {
    writeFileSync(`${staticDir.dir}/snippet-${n}.js`, where(block.code));
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${relay.http}/snippet.html?n=${n}`);
    const label = `${block.file}:${block.line}`;
    await waitUntil(() => page.evaluate(() => window.snippetDone), 30_000, `the snippet at ${label} to finish`, 100);
    const done = await page.evaluate(() => window.snippetDone);
    const log = await page.evaluate(() => window.snippetLog);
    await page.close();
    results.push({ snippet: label, done, log });
    assert.equal(done, "ok", `the snippet at ${label} failed:\n${done}\n${log.join("\n")}`);
    assert.deepEqual(errors, [], `${label}: uncaught errors`);
  }
  saveArtifact("readme-snippets.json", results);
  // The snippets that join through the agent reached it: it saw members come and leave.
  const joined = agent.events().filter((e) => e.event === "join");
  assert.ok(joined.length >= blocks.length, `the agent saw ${joined.length} joins for ${blocks.length} snippets`);
  t.diagnostic(`${blocks.length} snippets ran: ${results.map((r) => r.snippet).join(", ")}`);
});
