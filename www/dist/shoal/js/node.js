// Entry for Node.js: wasm-bindgen's `nodejs` build (CommonJS, loaded synchronously). Node 22+ has a
// global WebSocket; on Node 18/20 the optional peer dependency `ws` is used, or pass `WebSocket` to
// `Shoal.join`.
import { createRequire } from "node:module";
import { makeShoal } from "./shoal.js";

const require = createRequire(import.meta.url);
const bindings = require("../pkg/nodejs/shoal_wasm.js");

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
export default Shoal;
