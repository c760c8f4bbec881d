// Queries from JavaScript (Serf's `query`, `Shoal.query` and `respond`): members in this process,
// joined through the in-process relay, with the build with queries that the Node entry loads. The
// exchange across the JS and native sides (shoal-agent) and in a page are tests/e2e/queries.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";

import { Shoal } from "../js/node.js";
import { startFakeRelay } from "./fake-relay.mjs";

/** Rejects after `ms` with a message naming what was awaited. */
function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once `check()` holds, polling every 20 ms; rejects after `ms`. */
async function until(check, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `names` members on one relay, each with `role=<role>` from `roles`, all alive to each other. */
async function cluster(t, roles) {
  const relay = await startFakeRelay();
  t.after(() => relay.close());
  const members = [];
  for (const [name, role] of Object.entries(roles)) {
    const seeds = members.length ? [members[0].addr] : [];
    members.push(await Shoal.join({ relay: relay.url, name, meta: `role=${role}`, seeds, preset: "local" }));
  }
  t.after(() => Promise.all(members.map((m) => m.shutdown())));
  const n = members.length;
  await until(() => members.every((m) => m.aliveMembers().length === n - 1), `${n} members alive to each other`);
  return members;
}

test("a query reaches the members its tags select, which ack and respond, and ends at its deadline with the counts", async (t) => {
  const [asker, web1, web2, db] = await cluster(t, { asker: "app", "web-1": "web", "web-2": "web", db: "db" });
  const asked = [];
  for (const m of [asker, web1, web2, db]) {
    m.on("query", (q) => {
      asked.push(m.name);
      assert.equal(q.from, "asker");
      assert.equal(q.topic, "version");
      assert.equal(q.text, "which?");
      m.respond(q, `${m.name} 1.4`);
    });
  }
  const done = within(10_000, asker.once("query-done"), "the query's deadline");
  const answers = asker.query("version", "which?", { tags: { role: "web" }, timeoutMs: 1500 });
  const seen = [];
  for await (const a of answers) seen.push(a.type === "ack" ? `ack ${a.from}` : `response ${a.from}: ${a.text}`);
  assert.deepEqual(seen.sort(), ["ack web-1", "ack web-2", "response web-1: web-1 1.4", "response web-2: web-2 1.4"]);
  assert.deepEqual(asked.sort(), ["web-1", "web-2"], "only the members the tags select are asked");
  const outcome = await answers.collect();
  assert.deepEqual(outcome.acks.sort(), ["web-1", "web-2"]);
  assert.deepEqual(outcome.responses.map((r) => [r.from, r.text]).sort(), [["web-1", "web-1 1.4"], ["web-2", "web-2 1.4"]]);
  const end = await done;
  assert.equal(end.query, answers.id);
  assert.equal(end.acks, 2);
  assert.equal(end.responses, 2);
});

test("a query without a filter or a timeout asks every member, the asker included, for the default time, and a name pattern narrows it", async (t) => {
  const members = await cluster(t, { a: "x", "b-1": "y", "b-2": "y" });
  for (const m of members) m.on("query", (q) => m.respond(q, m.name));
  const all = await members[0].query("who", "").collect(); // the default timeout
  assert.deepEqual(all.acks.sort(), ["a", "b-1", "b-2"]);
  assert.deepEqual(all.responses.map((r) => r.text).sort(), ["a", "b-1", "b-2"]);
  const named = await members[0].query("who", "", { name: "b-?", timeoutMs: 1000 }).collect();
  assert.deepEqual(named.acks.sort(), ["b-1", "b-2"]);
});

test("a member answers a query once: a second respond is refused", async (t) => {
  const [asker, other] = await cluster(t, { asker: "a", other: "b" });
  const refusals = [];
  other.on("query", (q) => {
    other.respond(q, "first");
    try {
      other.respond(q, "second");
    } catch (e) {
      refusals.push(e.message);
    }
  });
  const outcome = await asker.query("once", "", { name: "other", timeoutMs: 1000 }).collect();
  assert.deepEqual(outcome.responses.map((r) => r.text), ["first"]);
  assert.equal(refusals.length, 1, "the second answer is refused");
});

test("queries are refused for bad options, and a query in flight ends when its member shuts down", async (t) => {
  const [asker] = await cluster(t, { asker: "a", other: "b" });
  assert.throws(() => asker.query("t", "", { timeoutMs: -1 }), TypeError);
  assert.throws(() => asker.query("t", "", { tags: { role: "a\0b" } }), TypeError);
  assert.throws(() => asker.query("t".repeat(256), ""), /topic/);
  const long = asker.query("slow", "", { timeoutMs: 60_000 });
  const ended = long.collect();
  await asker.shutdown();
  const outcome = await within(5_000, ended, "the query to end with its member");
  assert.ok(outcome.acks.every((name) => name === "asker" || name === "other"), `acks ${outcome.acks}`);
  assert.throws(() => asker.query("t", ""), /shut down/);
});
