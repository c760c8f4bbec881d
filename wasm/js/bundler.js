// `shoal/bundler`, kept for imports written against earlier versions: the browser entry itself.
// Bundlers need no build of their own: wasm-bindgen's `web` glue finds its .wasm with
// `new URL("shoal_wasm_bg.wasm", import.meta.url)`, which Vite and webpack 5 emit as an asset and
// rewrite to its final URL, with no plugin and no configuration.
export { Shoal, init, toBytes, prometheusText, encodeTags, parseTags, filterMembers, default } from "./browser.js";
