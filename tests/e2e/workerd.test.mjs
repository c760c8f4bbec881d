// A workerd member (the npm `workerd` package's binary running members/workerd/: a Durable Object
// holding the Shoal member, its outbound WebSocket to the relay and its timers) joins a native
// shoal-agent through shoal-relay: the agent sees it alive with its metadata, broadcasts cross both
// ways (Node -> workerd; workerd -> Node and the agent's broadcasts_delivered_total), and when the
// workerd process is stopped the agent and the Node member declare it failed (or left).
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";

import { E2E, PKG, WASM } from "./lib/paths.mjs";
import { CLEANUP, Agent, joinNodeMember, Proc, saveArtifact, startRelay, waitUntil, within } from "./lib/harness.mjs";

const WORKERD = `${E2E}/node_modules/.bin/workerd`;

// Entry points of the other platforms: not part of a workerd bundle.
const OTHER_ENTRIES = new Set(["browser.js", "bundler.js", "deno.js", "node.js"]);

/** Every file under `dir`, as paths relative to it. */
function files(dir, prefix = "") {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

/**
 * A temporary directory laid out as config.capnp expects: worker.js, shoal/js/, shoal/pkg/web/.
 * workerd bundles only the modules its config lists, so the `modules` list of config.capnp is
 * rewritten from the package's files (wasm/js without the other platforms' entries, pkg/web's .js
 * and .wasm): a module added to the package needs no edit here.
 */
function prepareWorkerDir() {
  const dir = mkdtempSync(path.join(tmpdir(), "shoal-e2e-workerd-"));
  cpSync(`${E2E}/members/workerd`, dir, { recursive: true });
  mkdirSync(`${dir}/shoal/pkg`, { recursive: true });
  cpSync(`${WASM}/js`, `${dir}/shoal/js`, { recursive: true });
  cpSync(`${PKG}/web`, `${dir}/shoal/pkg/web`, { recursive: true });
  const modules = [
    ...files(`${dir}/shoal/js`).filter((f) => f.endsWith(".js") && !OTHER_ENTRIES.has(f)).map((f) => `shoal/js/${f}`),
    ...files(`${dir}/shoal/pkg/web`).filter((f) => /\.(js|wasm)$/.test(f)).map((f) => `shoal/pkg/web/${f}`),
  ].map((f) => `    (name = "${f}", ${f.endsWith(".wasm") ? "wasm" : "esModule"} = embed "${f}"),`);
  const config = readFileSync(`${dir}/config.capnp`, "utf8");
  const listed = /  modules = \[\n[^\]]*\],/;
  assert.match(config, listed, "config.capnp's modules list");
  const rewritten = config.replace(
    listed,
    ["  modules = [", `    (name = "worker.js", esModule = embed "worker.js"),`, ...modules, "  ],"].join("\n"),
  );
  writeFileSync(`${dir}/config.capnp`, rewritten);
  return dir;
}

/**
 * Runs `workerd serve config.capnp` on an ephemeral port; the port comes from the control messages
 * workerd writes on fd 3 ({"event":"listen","socket":"http","port":N}).
 */
async function startWorkerd(dir) {
  const proc = new Proc("workerd", WORKERD, ["serve", "config.capnp", "--socket-addr=http=127.0.0.1:0", "--control-fd=3"], {
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe", "pipe"],
  });
  const port = await within(
    30_000,
    new Promise((resolve, reject) => {
      createInterface({ input: proc.child.stdio[3] }).on("line", (line) => {
        try {
          const m = JSON.parse(line);
          if (m.event === "listen" && m.socket === "http") resolve(m.port);
        } catch {}
      });
      proc.exited.then(({ code, signal }) => reject(new Error(`workerd exited (${code ?? signal}):\n${proc.tail()}`)));
    }),
    "workerd to listen",
  );
  const base = `http://127.0.0.1:${port}`;
  const call = async (p, body) => {
    const res = await fetch(base + p, {
      method: body === undefined ? "GET" : "POST",
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const v = await res.json();
    if (!res.ok) throw new Error(`workerd ${p}: HTTP ${res.status} ${JSON.stringify(v)}`);
    return v;
  };
  return { proc, base, call };
}

test("a workerd member (Durable Object) joins through the relay, exchanges broadcasts, and is declared failed when workerd stops", { timeout: 180_000 }, async (t) => {
  const relay = await startRelay();
  t.after(() => relay.stop(), CLEANUP);
  const agent = await Agent.start({ name: "agent-1" });
  t.after(() => agent.stop(), CLEANUP);
  const dir = prepareWorkerDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }), CLEANUP);
  const workerd = await startWorkerd(dir);
  t.after(() => workerd.proc.stop(), CLEANUP);

  // Join; the time until the agent reports the member is the join figure.
  const t0 = Date.now();
  const { addr } = await workerd.call("/join", {
    relay: relay.ws,
    token: relay.token,
    name: "workerd-1",
    seeds: [agent.addr],
    preset: "local",
  });
  const joinCallMs = Date.now() - t0;
  assert.equal(addr, `relay://${relay.addr}/workerd-1`);
  const joined = await agent.waitEvent((e) => e.event === "join" && e.member === "workerd-1", 20_000, "joined workerd-1");
  await waitUntil(
    async () => (await agent.members()).some((m) => m.name === "workerd-1" && m.state === "alive" && m.addr === addr),
    20_000,
    "agent-1 to see workerd-1 alive",
  );
  assert.equal((await agent.members()).find((m) => m.name === "workerd-1").meta, "runtime=workerd");
  await waitUntil(
    async () => (await workerd.call("/members")).some((m) => m.name === "agent-1" && m.state === "alive"),
    20_000,
    "workerd-1 to see agent-1 alive",
  );
  const joinMs = joined.at - t0;
  t.diagnostic(`workerd-1 joined as ${addr}: /join answered after ${joinCallMs} ms, agent-1 reported it after ${joinMs} ms`);

  // Broadcasts: Node -> workerd, workerd -> Node and the agent.
  const node = await joinNodeMember(relay, { name: "node-1", seeds: [agent.addr] });
  t.after(() => node.shoal.shutdown(), CLEANUP);
  await waitUntil(
    async () =>
      (await agent.members()).filter((m) => m.state === "alive").length === 2 &&
      node.shoal.aliveMembers().length === 2 &&
      (await workerd.call("/members")).filter((m) => m.state === "alive").length === 2,
    20_000,
    "agent-1, node-1 and workerd-1 to see two others alive",
  );
  node.shoal.broadcast("e2e", "hello workerd");
  await waitUntil(
    async () => (await workerd.call("/events")).some((e) => e.type === "message" && e.from === "node-1" && e.text === "hello workerd"),
    20_000,
    "workerd-1 to receive node-1's broadcast",
  );
  const before = await agent.metric("shoal_broadcasts_delivered_total");
  await workerd.call("/broadcast", { topic: "e2e", text: "hello from workerd" });
  await waitUntil(
    () => node.events.some((e) => e.type === "message" && e.from === "workerd-1" && e.text === "hello from workerd"),
    20_000,
    "node-1 to receive workerd-1's broadcast",
  );
  await waitUntil(
    async () => (await agent.metric("shoal_broadcasts_delivered_total")) > before,
    20_000,
    "agent-1's broadcasts_delivered_total to increase",
  );

  // Stop workerd (SIGTERM, the Durable Object gets no say): its WebSocket to the relay closes and the
  // others must find out from the protocol.
  const t1 = Date.now();
  await workerd.proc.stop(5000);
  const gone = (e) => (e.event === "fail" || e.event === "leave") && e.member === "workerd-1";
  const byAgent = await agent.waitEvent(gone, 20_000, "workerd-1 failed or left");
  await waitUntil(
    () => node.events.some((e) => (e.type === "fail" || e.type === "leave") && e.member === "workerd-1"),
    20_000,
    "node-1 to report workerd-1 failed or left",
  );
  const byNode = node.events.find((e) => (e.type === "fail" || e.type === "leave") && e.member === "workerd-1");
  const stopped = { "agent-1": { event: byAgent.event, ms: byAgent.at - t1 }, "node-1": { event: byNode.type, ms: byNode.at - t1 } };
  t.diagnostic(`workerd stopped; reported after (ms): ${JSON.stringify(stopped)}`);
  saveArtifact("workerd.json", {
    member: "workerd-1",
    preset: "local",
    joinRequestMs: joinCallMs,
    joinSeenByAgentMs: joinMs,
    afterStop: stopped,
  });
});
