// A Deno member (the npm `deno` package's binary running members/deno-member.js on the package's
// Deno entry) joins a native shoal-agent through shoal-relay: the agent sees it alive, broadcasts
// cross both ways (Deno -> agent's broadcasts_delivered_total and a Node member; Node -> Deno), and
// when the Deno process is told to stop it leaves gracefully.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { E2E, WASM } from "./lib/paths.mjs";
import { CLEANUP, Agent, joinNodeMember, Proc, saveArtifact, startRelay, waitUntil } from "./lib/harness.mjs";

const DENO = `${E2E}/node_modules/deno/deno`;

test("a Deno member joins through the relay, is seen alive by a native agent, and exchanges broadcasts", { timeout: 180_000 }, async (t) => {
  const relay = await startRelay();
  t.after(() => relay.stop(), CLEANUP);
  const agent = await Agent.start({ name: "agent-1" });
  t.after(() => agent.stop(), CLEANUP);

  const denoDir = mkdtempSync(path.join(tmpdir(), "shoal-e2e-deno-"));
  t.after(() => rmSync(denoDir, { recursive: true, force: true }), CLEANUP);
  const t0 = Date.now();
  const deno = new Proc(
    "deno-1",
    DENO,
    ["run", "--no-config", "--no-prompt", "--allow-env", "--allow-net=127.0.0.1", `--allow-read=${WASM}`, `${E2E}/members/deno-member.js`],
    {
      cwd: denoDir,
      env: {
        ...process.env,
        DENO_DIR: denoDir,
        NO_COLOR: "1",
        SHOAL_ENTRY: pathToFileURL(`${WASM}/js/deno.js`).href,
        SHOAL_RELAY: relay.ws,
        SHOAL_TOKEN: relay.token,
        SHOAL_NAME: "deno-1",
        SHOAL_SEEDS: agent.addr,
        SHOAL_PRESET: "local",
      },
    },
  );
  t.after(() => deno.stop(), CLEANUP);
  const json = (pred) => (l) => {
    try {
      return pred(JSON.parse(l));
    } catch {
      return false;
    }
  };
  const ready = await deno.waitLine(json((e) => e.event === "ready"), 60_000, "joined").catch((e) => {
    throw new Error(`${e.message}\n${deno.tail()}`);
  });
  const { addr, deno: version } = JSON.parse(ready.line);
  assert.equal(addr, `relay://${relay.addr}/deno-1`);
  t.diagnostic(`deno ${version} joined as ${addr}`);

  // The agent sees the Deno member alive, with its metadata; the Deno member sees the agent.
  await waitUntil(
    async () => (await agent.members()).some((m) => m.name === "deno-1" && m.state === "alive" && m.addr === addr),
    20_000,
    "agent-1 to see deno-1 alive",
  );
  assert.match((await agent.members()).find((m) => m.name === "deno-1").meta, /^runtime=deno /);
  const joinedAt = (await agent.waitEvent((e) => e.event === "join" && e.member === "deno-1", 1000, "joined deno-1")).at;
  const join = { processToReadyMs: ready.at - t0, processToSeenByAgentMs: joinedAt - t0 };
  t.diagnostic(`deno-1: process start to joined ${join.processToReadyMs} ms, to agent-1's joined event ${join.processToSeenByAgentMs} ms`);
  deno.child.stdin.write("members\n");
  const members = JSON.parse((await deno.waitLine(json((e) => e.event === "members"), 5000, "members")).line).members;
  assert.deepEqual(members.map((m) => [m.name, m.state]), [["agent-1", "alive"]]);

  // Broadcasts: Node -> Deno, Deno -> agent and Node.
  const node = await joinNodeMember(relay, { name: "node-1", seeds: [agent.addr] });
  t.after(() => node.shoal.shutdown(), CLEANUP);
  await waitUntil(
    async () => (await agent.members()).filter((m) => m.state === "alive").length === 2 && node.shoal.aliveMembers().length === 2,
    20_000,
    "agent-1 and node-1 to see two others alive",
  );
  node.shoal.broadcast("e2e", "hello deno");
  await deno.waitLine(json((e) => e.event === "message" && e.text === "hello deno" && e.from === "node-1"), 20_000, "node-1's broadcast");

  const before = await agent.metric("shoal_broadcasts_delivered_total");
  deno.child.stdin.write("broadcast e2e hello from deno\n");
  await waitUntil(() => node.events.some((e) => e.type === "message" && e.from === "deno-1" && e.text === "hello from deno"), 20_000, "node-1 to receive deno-1's broadcast");
  await waitUntil(async () => (await agent.metric("shoal_broadcasts_delivered_total")) > before, 20_000, "agent-1's broadcasts_delivered_total to increase");

  // SIGTERM: the Deno member leaves gracefully and the agent says so.
  const stopAt = Date.now();
  await deno.stop(5000);
  assert.equal(deno.exitCode, 0, deno.tail());
  assert.ok(deno.lines.some((l) => l.line.includes('"left-cluster"')), deno.tail());
  const left = await agent.waitEvent((e) => e.event === "leave" && e.member === "deno-1", 5000, "deno-1 left");
  saveArtifact("deno.json", { member: "deno-1", deno: version, preset: "local", ...join, sigtermToLeftMs: left.at - stopAt });
});
