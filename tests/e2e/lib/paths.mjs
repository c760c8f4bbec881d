import { fileURLToPath } from "node:url";
import path from "node:path";

export const E2E = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = path.resolve(E2E, "../..");
export const RELAY_BIN = `${ROOT}/target/debug/shoal-relay`;
export const AGENT_BIN = `${ROOT}/target/debug/shoal-agent`;
export const WASM = `${ROOT}/wasm`;
export const PKG = `${WASM}/pkg`;
export const ARTIFACTS = `${E2E}/artifacts`;
