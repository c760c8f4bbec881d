// Entry for Cloudflare workerd / Workers: the .wasm (the build with queries; build.sh explains the
// two builds) is imported as a compiled WebAssembly.Module (workerd and wrangler treat `.wasm`
// imports that way; edge runtimes forbid compiling at run time)
// and instantiated synchronously with the `web` build's initSync. workerd has a global WebSocket
// (outbound connections need `fetch` with an Upgrade header on some plans: pass a constructor as
// `WebSocket` to adapt).
import wasm from "../pkg/web/shoal_wasm_queries_bg.wasm";
import { initSync } from "../pkg/web/shoal_wasm.js";
import * as bindings from "../pkg/web/shoal_wasm.js";
import { makeShoal } from "./shoal.js";

initSync({ module: wasm });

/** Nothing to load: the module was instantiated on import. Kept for API parity. */
export function init() {
  return Promise.resolve(bindings);
}

export const Shoal = makeShoal(init);
export { toBytes, prometheusText } from "./shoal.js";
export { encodeTags, parseTags, filterMembers } from "./tags.js";
export default Shoal;
