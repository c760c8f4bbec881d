// The npm package as published: what `npm pack` puts in the tarball, and which entry each tool's
// export conditions pick. Needs wasm/build.sh first (the tarball's wasm is the built one).
// Run: cd wasm && node --test test/package.test.mjs
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const WASM = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ROOT = path.resolve(WASM, "..");
const manifest = JSON.parse(readFileSync(`${WASM}/package.json`, "utf8"));

/** The files `npm pack` would put in the tarball, relative to the package root. */
function packed() {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: WASM, encoding: "utf8" });
  return JSON.parse(out)[0].files.map((f) => f.path).sort();
}

/**
 * Resolves `exports[subpath]` the way Node's algorithm does: the first key, in the order written,
 * that is `default` or one of `conditions`.
 */
function resolveExport(subpath, conditions) {
  let target = manifest.exports[subpath];
  while (typeof target === "object" && target !== null) {
    const key = Object.keys(target).find((k) => k === "default" || conditions.includes(k));
    if (key === undefined) return null;
    target = target[key];
  }
  return target;
}

/** Every module reachable from `file` through static and literal dynamic imports, package-relative. */
function importGraph(file, seen = new Set()) {
  if (seen.has(file)) return seen;
  seen.add(file);
  if (!file.endsWith(".js")) return seen;
  const source = readFileSync(path.join(WASM, file), "utf8");
  const specifiers = [
    ...source.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gms),
    ...source.matchAll(/^\s*import\s*["']([^"']+)["']/gm),
    ...source.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
  ].map((m) => m[1]);
  for (const s of specifiers) {
    if (s.startsWith("./") || s.startsWith("../")) importGraph(path.join(path.dirname(file), s), seen);
  }
  return seen;
}

// What each tool asks for when it resolves `import "shoal"` (its default configuration).
const TOOLS = {
  "Vite (client build)": { conditions: ["module", "browser", "production", "import"], entry: "./js/browser.js" },
  "webpack 5 (target web)": { conditions: ["webpack", "production", "browser", "module", "import"], entry: "./js/browser.js" },
  "Rollup with node-resolve": { conditions: ["module", "import"], entry: "./js/browser.js" },
  "esbuild (platform browser)": { conditions: ["browser", "module", "import"], entry: "./js/browser.js" },
  "Node.js": { conditions: ["node", "import"], entry: "./js/node.js" },
  "Bun": { conditions: ["bun", "node", "import"], entry: "./js/node.js" },
  "Deno": { conditions: ["deno", "node", "import"], entry: "./js/deno.js" },
  "wrangler (workerd)": { conditions: ["workerd", "worker", "browser", "module", "import"], entry: "./js/workerd.js" },
};

test("the tarball carries the two wasm builds, the two license files, and every module the entries import", () => {
  const files = packed();
  const wasm = files.filter((f) => f.endsWith(".wasm"));
  assert.deepEqual(
    wasm.sort(),
    ["pkg/web/shoal_wasm_bg.wasm", "pkg/web/shoal_wasm_queries_bg.wasm"],
    `the builds without and with queries in the tarball: ${files.join(", ")}`,
  );
  for (const license of ["LICENSE-MIT", "LICENSE-APACHE"]) {
    assert.ok(files.includes(license), `${license} in the tarball: ${files.join(", ")}`);
    assert.equal(readFileSync(`${WASM}/${license}`, "utf8"), readFileSync(`${ROOT}/${license}`, "utf8"), `wasm/${license} is the repository's`);
  }
  assert.match(manifest.license, /^MIT OR Apache-2\.0$/);
  for (const entry of new Set(Object.values(TOOLS).map((t) => t.entry).concat("./js/bundler.js"))) {
    for (const file of importGraph(path.normalize(entry))) {
      assert.ok(files.includes(file), `${entry} needs ${file}, which the tarball lacks`);
    }
  }
});

test("every tool's export conditions pick an entry that loads the wasm builds without a plugin", () => {
  for (const [tool, { conditions, entry }] of Object.entries(TOOLS)) {
    assert.equal(resolveExport(".", conditions), entry, `${tool} (conditions ${conditions.join(", ")})`);
    const graph = [...importGraph(path.normalize(entry))];
    // Only workerd imports the .wasm as a module (its bundler compiles it); elsewhere an ES import of
    // a .wasm file needs a bundler plugin or an unflagged runtime feature.
    const wasmImports = graph.filter((f) => f.endsWith(".wasm"));
    assert.deepEqual(wasmImports, entry === "./js/workerd.js" ? ["pkg/web/shoal_wasm_queries_bg.wasm"] : [], `${tool}: ${graph.join(", ")}`);
    assert.ok(graph.includes("pkg/web/shoal_wasm.js"), `${tool}: ${entry} loads pkg/web's glue: ${graph.join(", ")}`);
  }
  for (const sub of ["./browser", "./bundler", "./node", "./deno", "./workerd"]) {
    assert.equal(resolveExport(sub, []), `./js${sub.slice(1)}.js`, `subpath ${sub}`);
    assert.equal(resolveExport(sub, ["types"]), "./js/index.d.ts", `types of ${sub}`);
  }
});

test("shoal/bundler is the browser entry under its old name, with the same exports", async () => {
  const browser = await import("../js/browser.js");
  const bundler = await import("../js/bundler.js");
  assert.deepEqual(Object.keys(bundler).sort(), ["Shoal", "default", "encodeTags", "filterMembers", "init", "parseTags", "prometheusText", "toBytes"]);
  for (const name of Object.keys(bundler)) assert.equal(bundler[name], browser[name], name);
});
