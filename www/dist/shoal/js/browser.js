// Entry for browsers (and any runtime with `fetch` and ES modules): wasm-bindgen's `web` build.
// The .wasm is fetched next to this package's pkg/web/shoal_wasm.js on first use; call
// `init(urlOrModuleOrBytes)` first to load it from elsewhere.
import initWasm, * as bindings from "../pkg/web/shoal_wasm.js";
import { makeShoal } from "./shoal.js";

let ready = null;

/** Loads the wasm module (optional: `Shoal.join` does it). Accepts what wasm-bindgen's init does. */
export function init(input) {
  ready ??= initWasm(input === undefined ? undefined : { module_or_path: input }).then(() => bindings);
  return ready;
}

export const Shoal = makeShoal(() => init());
export { toBytes, prometheusText } from "./shoal.js";
export default Shoal;
