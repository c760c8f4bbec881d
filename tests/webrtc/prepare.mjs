// Builds what the WebRTC tests run: shoal-relay, shoal-agent with its `webrtc` feature, and the npm package's web build (only
// when missing or older than relay fleets' moves). Idempotent; cargo does nothing when up to date.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { AGENT_BIN, HERE, ROOT } from "./lib.mjs";

const run = (cmd, args, env = {}) =>
  execFileSync(cmd, args, { cwd: ROOT, stdio: "inherit", env: { ...process.env, ...env } });

run("cargo", ["build", "--release", "-p", "shoal-relay", "--bin", "shoal-relay"]);
// Copied at once: other builds of shoal-agent (without the feature) share target/release.
run("cargo", ["build", "--release", "-p", "shoal-agent", "--features", "webrtc", "--bin", "shoal-agent"]);
mkdirSync(`${HERE}/bin`, { recursive: true });
copyFileSync(`${ROOT}/target/release/shoal-agent`, AGENT_BIN);
const glue = `${ROOT}/wasm/pkg/web/shoal_wasm.js`;
if (!existsSync(glue) || !readFileSync(glue, "utf8").includes("moveTo")) {
  run("bash", ["wasm/build.sh"], { SHOAL_WASM_TARGETS: "web" });
}
