// Entry for Deno: the package's wasm build with queries (wasm-bindgen's `web` glue; build.sh
// explains the two builds), its .wasm fetched from next to the glue (a file: URL from the npm cache or a local copy, needing read permission for it;
// an https: URL when the package is imported from a CDN) and instantiated on import. Deno has a
// global WebSocket.
import initWasm, * as bindings from "../pkg/web/shoal_wasm.js";
import { makeShoal } from "./shoal.js";

await initWasm({ module_or_path: new URL("../pkg/web/shoal_wasm_queries_bg.wasm", import.meta.url) });

/** Nothing to load: the module is instantiated on import. Kept for API parity. */
export function init() {
  return Promise.resolve(bindings);
}

export const Shoal = makeShoal(init);
export { toBytes, prometheusText } from "./shoal.js";
export { encodeTags, parseTags, filterMembers } from "./tags.js";
export default Shoal;
