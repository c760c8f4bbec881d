// Entry for Node.js (and Bun): the package's wasm build with queries (wasm-bindgen's `web` glue;
// build.sh explains the two builds), its .wasm read from disk and instantiated synchronously on
// import. Node 22+ has a global WebSocket; on
// Node 18/20 the optional peer dependency `ws` is used, or pass `WebSocket` to `Shoal.join`.
import { readFileSync } from "node:fs";
import { initSync } from "../pkg/web/shoal_wasm.js";
import * as bindings from "../pkg/web/shoal_wasm.js";
import { makeShoal } from "./shoal.js";

initSync({ module: readFileSync(new URL("../pkg/web/shoal_wasm_queries_bg.wasm", import.meta.url)) });

/** Nothing to load: the module is instantiated on import. Kept for API parity. */
export function init() {
  return Promise.resolve(bindings);
}

async function defaultWebSocket() {
  try {
    const ws = await import("ws");
    return ws.WebSocket ?? ws.default;
  } catch {
    throw new Error(
      "this Node.js has no global WebSocket: `npm install ws`, or pass a WebSocket constructor to Shoal.join",
    );
  }
}

export const Shoal = makeShoal(init, { defaultWebSocket });
export { toBytes, prometheusText } from "./shoal.js";
export { encodeTags, parseTags, filterMembers } from "./tags.js";
export default Shoal;
