// `npm test`'s pretest step: makes sure what the suite runs exists, before any test file starts
// (the test files only check, never build, so they cannot race each other).
//   - target/debug/shoal-relay and shoal-agent (under $CARGO_TARGET_DIR when set): `cargo build -p shoal-relay -p shoal-agent --bins`
//     (a no-op when they are up to date; SHOAL_E2E_NO_BUILD=1 skips it when both exist);
//   - wasm/pkg/web (the package's one wasm build): `bash wasm/build.sh` when it is missing (after
//     `npm ci` in wasm/ when its wasm-opt is missing) or when SHOAL_E2E_BUILD=1. A build older than the Rust
//     sources is used as it is, with a warning: other work may be rebuilding it at the same time.
//   - Chromium at $CHROMIUM or /usr/bin/chromium (`bash tests/setup` installs Debian's).
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { ROOT, RELAY_BIN, AGENT_BIN, PKG } from "./paths.mjs";

const run = (cmd, args, cwd = ROOT) => {
  console.log(`prepare: (cd ${cwd} && ${cmd} ${args.join(" ")})`);
  execFileSync(cmd, args, { cwd, stdio: "inherit" });
};

const chromium = process.env.CHROMIUM ?? "/usr/bin/chromium";
if (!existsSync(chromium)) {
  console.error(`prepare: no Chromium at ${chromium}; run \`bash tests/setup\` (Debian chromium) or set CHROMIUM`);
  process.exit(1);
}

const binariesExist = existsSync(RELAY_BIN) && existsSync(AGENT_BIN);
if (!(process.env.SHOAL_E2E_NO_BUILD === "1" && binariesExist)) {
  run("cargo", ["build", "-p", "shoal-relay", "-p", "shoal-agent", "--bins"]);
}

/** Newest modification time of the files under `dir` (0 when it does not exist). */
function newest(dir) {
  if (!existsSync(dir)) return 0;
  return Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true }).map((e) =>
      e.isDirectory() ? newest(path.join(dir, e.name)) : statSync(path.join(dir, e.name)).mtimeMs,
    ),
  );
}

const wasmFiles = [`${PKG}/web/shoal_wasm.js`, `${PKG}/web/shoal_wasm_bg.wasm`, `${PKG}/web/shoal_wasm_queries_bg.wasm`];
if (process.env.SHOAL_E2E_BUILD === "1" || wasmFiles.some((f) => !existsSync(f))) {
  if (!existsSync(`${ROOT}/wasm/node_modules/.bin/wasm-opt`)) run("npm", ["ci", "--no-audit", "--no-fund"], `${ROOT}/wasm`);
  run("bash", ["wasm/build.sh"]);
} else {
  const built = Math.min(...wasmFiles.map((f) => statSync(f).mtimeMs));
  const sources = Math.max(newest(`${ROOT}/wasm/src`), newest(`${ROOT}/core/proto/src`));
  if (sources > built) {
    console.warn("prepare: warning: wasm/pkg is older than wasm/src or core/proto/src; SHOAL_E2E_BUILD=1 rebuilds it");
  }
}
console.log("prepare: binaries, wasm/pkg and Chromium are in place");
