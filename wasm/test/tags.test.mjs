// Tags in JavaScript: the same encoding as the Rust crates' `Tags` (the fixture is shared with
// tests/wire_properties.rs), and member filters as `shoal-agent members` applies them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { encodeTags, filterMembers, parseTags } from "../js/node.js";
import { wildcardMatch } from "../js/tags.js";

const fixtures = JSON.parse(readFileSync(new URL("./tags-fixtures.json", import.meta.url), "utf8"));

test("tags encode to the same metadata as the Rust crates and read back as they were", () => {
  for (const { tags, meta } of fixtures) {
    assert.equal(encodeTags(tags), meta);
    assert.deepEqual(parseTags(meta), tags);
    assert.deepEqual(parseTags(new TextEncoder().encode(meta)), tags);
  }
});

test("metadata that is not tags reads as null and never throws", () => {
  for (const bad of ["{\"role\":\"web\"}", "a=1,a=2", "=v", "k=%4", "k=%zz", "novalue", new Uint8Array([0xff, 0xfe])]) {
    assert.equal(parseTags(bad), null, String(bad));
  }
  assert.throws(() => encodeTags({ "": "v" }), RangeError);
  assert.throws(() => encodeTags({ ["k".repeat(129)]: "v" }), RangeError);
});

test("random tags survive the round trip", () => {
  const alphabet = ["a", "b", "%", ",", "=", " ", "é", "2", "C", "*", "\u{1F600}"];
  let seed = 7;
  const rand = (n) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const word = (max) => Array.from({ length: rand(max + 1) }, () => alphabet[rand(alphabet.length)]).join("");
  for (let i = 0; i < 2000; i++) {
    const tags = {};
    for (let j = rand(5); j > 0; j--) tags[word(6) || "k"] = word(6);
    assert.deepEqual(parseTags(encodeTags(tags)), tags);
  }
});

test("wildcards and filters select members as the agent does", () => {
  assert.ok(wildcardMatch("web-*", "web-1"));
  assert.ok(!wildcardMatch("web-?", "web-10"));
  assert.ok(wildcardMatch("*", ""));
  const member = (name, state, tags) => ({ name, state, meta: new TextEncoder().encode(encodeTags(tags)) });
  const all = [
    member("web-1", "alive", { role: "web", dc: "eu-west" }),
    member("web-2", "suspect", { role: "web", dc: "us-east" }),
    member("db-1", "failed", { role: "db", dc: "eu-west" }),
  ];
  const names = (f) => filterMembers(all, f).map((m) => m.name);
  assert.deepEqual(names(undefined), ["web-1", "web-2", "db-1"]);
  assert.deepEqual(names({ tags: { role: "web" } }), ["web-1", "web-2"]);
  assert.deepEqual(names({ tags: { dc: "eu-*" }, status: "alive" }), ["web-1"]);
  assert.deepEqual(names({ status: ["alive", "suspect"], name: "web-?" }), ["web-1", "web-2"]);
  assert.deepEqual(parseTags(all[0].meta), { dc: "eu-west", role: "web" });
});

test("the relays of a fleet are the alive members whose tags announce one, with the URL they give", async () => {
  const { relaysOf } = await import("../js/tags.js");
  const meta = (s) => new TextEncoder().encode(s);
  const members = [
    { name: "relay-a", state: "alive", meta: meta("role=relay,shoal-relay=10.0.0.1:8080,shoal-relay-url=wss://a.example") },
    { name: "relay-b", state: "alive", meta: meta("shoal-relay=10.0.0.2:8080") },
    { name: "relay-c", state: "failed", meta: meta("shoal-relay=10.0.0.3:8080") },
    { name: "web", state: "alive", meta: meta("role=web") },
    { name: "binary", state: "alive", meta: new Uint8Array([0xff, 0x00]) },
  ];
  assert.deepEqual(relaysOf(members), [
    { name: "relay-a", relay: "10.0.0.1:8080", url: "wss://a.example" },
    { name: "relay-b", relay: "10.0.0.2:8080", url: "ws://10.0.0.2:8080" },
  ]);
});
