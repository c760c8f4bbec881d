// Queries (Serf's `query`) across the JS and native sides: two shoal-agent members (one answering
// `version` with a --query-handler program), a Node.js member, a Chromium page that joined with
// `queries: true` (its member in a worker, on the build with queries), one that did so with its
// member on the page's thread, and one that did not (the default build, without them). Each side asks and each side answers: the Node member's query
// reaches the agents and the page, an agent's query (its HTTP API) reaches the Node member and the
// page, the page's own query reaches everyone but the page without queries, and that page can
// neither ask nor be asked.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  CLEANUP,
  Agent,
  allAlive,
  joinNodeMember,
  launchChromium,
  openMember,
  pageMembers,
  prepareStaticDir,
  startRelay,
  waitUntil,
} from "./lib/harness.mjs";

const HTTP_TOKEN = "e2e-queries-token";

/** Runs `shoal-agent`'s `POST /query` on `agent`: `{ acks, responses: [{ from, payload }] }`. */
async function agentQuery(agent, params) {
  const res = await fetch(`${agent.http}/query?${new URLSearchParams(params)}`, {
    method: "POST",
    headers: { authorization: `Bearer ${HTTP_TOKEN}` },
    signal: AbortSignal.timeout(15_000),
  });
  assert.equal(res.status, 200, `${agent.name} POST /query: ${res.status} ${await res.clone().text()}`);
  return res.json();
}

test("queries cross between Node, a page with queries and native agents; a page without them neither asks nor answers", { timeout: 180_000 }, async (t) => {
  const staticDir = prepareStaticDir();
  t.after(() => staticDir.remove(), CLEANUP);
  const relay = await startRelay({ staticDir: staticDir.dir });
  t.after(() => relay.stop(), CLEANUP);
  const handler = ["--query-handler", "version=printf native-2.0"];
  const first = await Agent.start({ name: "agent-1", meta: "role=native", extra: ["--http-token", HTTP_TOKEN] });
  const second = await Agent.start({ name: "agent-2", join: first.addr, meta: "role=native", extra: handler });
  t.after(() => Promise.all([first.stop(), second.stop()]), CLEANUP);
  const node = await joinNodeMember(relay, { name: "node-1", seeds: [first.addr] });
  t.after(() => node.shoal.shutdown(), CLEANUP);
  const browser = await launchChromium();
  t.after(() => browser.close(), CLEANUP);
  const asking = await openMember(browser, relay, { name: "page-q", seeds: [first.addr], queries: true });
  const onThread = await openMember(browser, relay, { name: "page-main", seeds: [first.addr], queries: true, mainThread: true });
  const plain = await openMember(browser, relay, { name: "page-plain", seeds: [first.addr] });

  const names = ["agent-1", "agent-2", "node-1", "page-q", "page-main", "page-plain"];
  await waitUntil(
    async () =>
      allAlive(await first.members(), names.filter((n) => n !== "agent-1")) &&
      allAlive(node.shoal.members(), names.filter((n) => n !== "node-1")) &&
      allAlive(await pageMembers(asking.page), names.filter((n) => n !== "page-q")) &&
      allAlive(await pageMembers(onThread.page), names.filter((n) => n !== "page-main")) &&
      allAlive(await pageMembers(plain.page), names.filter((n) => n !== "page-plain")),
    60_000,
    "every member alive to every other",
  );

  // The JS members answer `version` with their name; the page without queries never hears one.
  node.shoal.on("query", (q) => node.shoal.respond(q, `node ${q.from}`));
  assert.equal(await onThread.page.evaluate(() => window.shoal.runsIn), "thread");
  for (const { page } of [asking, onThread, plain]) {
    await page.evaluate(() => {
      window.queriesHeard = [];
      window.shoal.on("query", (q) => {
        window.queriesHeard.push(q.from);
        window.shoal.respond(q, `page ${q.from}`);
      });
    });
  }
  const expectedAcks = ["agent-1", "agent-2", "node-1", "page-main", "page-q"];

  // Node asks.
  const fromNode = await node.shoal.query("version", "", { timeoutMs: 3000 }).collect();
  assert.deepEqual([...fromNode.acks].sort(), expectedAcks, "acks of the Node member's query");
  assert.deepEqual(
    fromNode.responses.map((r) => `${r.from}: ${r.text}`).sort(),
    ["agent-2: native-2.0", "node-1: node node-1", "page-main: page node-1", "page-q: page node-1"],
    "responses to the Node member's query",
  );

  // An agent asks, through its API.
  const fromAgent = await agentQuery(first, { topic: "version", timeout_ms: "3000" });
  assert.deepEqual([...fromAgent.acks].sort(), expectedAcks, "acks of agent-1's query");
  assert.deepEqual(
    fromAgent.responses.map((r) => `${r.from}: ${r.payload}`).sort(),
    ["agent-2: native-2.0", "node-1: node agent-1", "page-main: page agent-1", "page-q: page agent-1"],
    "responses to agent-1's query",
  );

  // The page asks (its member runs in a worker), narrowed by tags: only the native members.
  const fromPage = await asking.page.evaluate(async () => {
    const answers = window.shoal.query("version", "", { tags: { role: "native" }, timeoutMs: 3000 });
    const seen = [];
    for await (const a of answers) seen.push(a.type === "ack" ? `ack ${a.from}` : `${a.from}: ${a.text}`);
    return { seen, id: answers.id, runsIn: window.shoal.runsIn };
  });
  assert.equal(fromPage.runsIn, "worker");
  assert.equal(typeof fromPage.id, "number");
  assert.deepEqual(fromPage.seen.sort(), ["ack agent-1", "ack agent-2", "agent-2: native-2.0"], "answers to the page's query");

  // The page without queries: asked by nobody, and its own query fails with the reason.
  assert.deepEqual(await plain.page.evaluate(() => window.queriesHeard), []);
  assert.deepEqual((await asking.page.evaluate(() => window.queriesHeard)).sort(), ["agent-1", "node-1"], "the page heard the queries of others, not its own (its tags are not role=native)");
  const refusal = await plain.page.evaluate(() =>
    window.shoal.query("version", "").collect().then(
      () => "answered",
      (e) => e.message,
    ),
  );
  assert.match(refusal, /queries are not in this build/);
});
