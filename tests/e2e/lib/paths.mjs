import { fileURLToPath } from "node:url";
import path from "node:path";

export const E2E = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = path.resolve(E2E, "../..");
/** Cargo's target directory: $CARGO_TARGET_DIR when set (as `cargo build` in prepare.mjs uses it). */
export const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : `${ROOT}/target`;
export const RELAY_BIN = `${TARGET}/debug/shoal-relay`;
export const AGENT_BIN = `${TARGET}/debug/shoal-agent`;
export const WASM = `${ROOT}/wasm`;
export const PKG = `${WASM}/pkg`;
export const ARTIFACTS = `${E2E}/artifacts`;
