// Entry for Deno: wasm-bindgen's `deno` build. Deno has a global WebSocket.
import * as bindings from "../pkg/deno/shoal_wasm.js";
import { makeShoal } from "./shoal.js";

/** Nothing to load: the module is instantiated on import. Kept for API parity. */
export function init() {
  return Promise.resolve(bindings);
}

export const Shoal = makeShoal(init);
export { toBytes, prometheusText } from "./shoal.js";
export default Shoal;
