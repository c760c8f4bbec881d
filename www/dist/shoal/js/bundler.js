// Entry for bundlers (webpack 5 with asyncWebAssembly, Vite with vite-plugin-wasm, ...): wasm-bindgen's
// `bundler` build, which imports the .wasm as an ES module.
import * as bindings from "../pkg/bundler/shoal_wasm.js";
import { makeShoal } from "./shoal.js";

/** Nothing to load: the bundler instantiated the module. Kept for API parity with the browser entry. */
export function init() {
  return Promise.resolve(bindings);
}

export const Shoal = makeShoal(init);
export { toBytes, prometheusText } from "./shoal.js";
export default Shoal;
