// Entry for browsers and bundlers (Vite, webpack 5), and any runtime with `fetch` and ES modules:
// wasm-bindgen's `web` build. On first use the .wasm is fetched from next to pkg/web/shoal_wasm.js
// (`new URL("shoal_wasm_bg.wasm", import.meta.url)`, which bundlers turn into an emitted asset); call
// `init(urlOrResponseOrBytesOrModule)` first to load it from elsewhere.
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
