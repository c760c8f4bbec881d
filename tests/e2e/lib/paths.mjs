import { fileURLToPath } from "node:url";
import path from "node:path";

export const E2E = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = path.resolve(E2E, "../..");
// Where cargo puts the binaries: $CARGO_TARGET_DIR (relative to the repository root, where
// prepare.mjs runs cargo) or target/.
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target");
export const RELAY_BIN = `${TARGET}/debug/shoal-relay`;
export const AGENT_BIN = `${TARGET}/debug/shoal-agent`;
export const WASM = `${ROOT}/wasm`;
export const PKG = `${WASM}/pkg`;
export const ARTIFACTS = `${E2E}/artifacts`;
