// Entry for browsers and bundlers (Vite, webpack 5), and any runtime with `fetch` and ES modules:
// wasm-bindgen's `web` build. The .wasm is fetched from next to pkg/web/shoal_wasm.js
// (`new URL("shoal_wasm_bg.wasm", import.meta.url)`, which bundlers turn into an emitted asset); call
// `init(urlOrResponseOrBytesOrModule)` first to load it from elsewhere.
//
// In a page, `Shoal.join` runs the member in a dedicated worker (worker.js), so that a busy main
// thread cannot make the tab look dead; `{ worker: "shared" }` shares one member between the tabs
// of an origin that join with the same name, and `{ mainThread: true }` runs it on the page's own
// thread. Outside pages (workers, Deno, other runtimes) the member runs where it is created. The
// wasm glue and the member's own code are loaded on demand (a dynamic import), so a page whose
// member runs in a worker loads only the page's side (remote.js) and the worker.
import { normalizeJoinOptions } from "./common.js";
import { joinInWorker } from "./remote.js";

// Two builds of the wasm share one glue (wasm/build.sh): shoal_wasm_bg.wasm, and
// shoal_wasm_queries_bg.wasm with queries (Serf's `query`, 7.6 KB more gzipped), which a page loads
// only for a member that joins with `queries: true`. One glue holds one instance, so the first
// member on this thread decides: a later one that needs queries the loaded build lacks is refused.
let thread = null; // { queries: boolean | undefined (init's own input), loaded: Promise<{ bindings, Shoal }> }

function onThisThread(input, queries = false) {
  if (!thread) {
    const wasm = input ?? (queries ? new URL("../pkg/web/shoal_wasm_queries_bg.wasm", import.meta.url) : undefined);
    const loaded = Promise.all([import("../pkg/web/shoal_wasm.js"), import("./shoal.js")]).then(async ([glue, { makeShoal }]) => {
      await glue.default(wasm === undefined ? undefined : { module_or_path: wasm });
      return { bindings: glue, Shoal: makeShoal(() => Promise.resolve(glue)) };
    });
    thread = { queries: input === undefined ? queries : undefined, loaded };
  } else if (queries && thread.queries === false) {
    return Promise.reject(
      new Error("this page loaded the wasm without queries for an earlier member: join the first member with queries: true"),
    );
  }
  return thread.loaded;
}

/** Loads the wasm module for members on this thread (optional: `Shoal.join` does it). Accepts what
 * wasm-bindgen's init does: a URL, Response, bytes or WebAssembly.Module, of either build. A member
 * in a worker loads its own copy next to worker.js. */
export function init(input) {
  return onThisThread(input).then((t) => t.bindings);
}

/** Whether `Shoal.join(options)` runs the member in a worker: in pages, unless told otherwise. */
function inWorker(options) {
  const g = globalThis;
  if (options?.mainThread === true) return false;
  if (typeof g.document === "undefined") return false;
  if (options?.worker === "shared") return typeof g.SharedWorker === "function";
  return typeof g.Worker === "function";
}

/** A member of a Shoal cluster (see index.d.ts). */
export class Shoal {
  constructor() {
    throw new TypeError("use `await Shoal.join(options)` to create a member");
  }

  static async join(options = {}) {
    if (!inWorker(options)) return (await onThisThread(undefined, options?.queries === true)).Shoal.join(options);
    const opts = normalizeJoinOptions(options);
    if (options.WebSocket) throw new TypeError("options.WebSocket cannot cross into a worker: add mainThread: true");
    // (The `new ...Worker(new URL("./worker.js", import.meta.url), { type: "module" ...` form is
    // what bundlers look for to bundle the worker: keep it literal.)
    if (opts.worker === "shared") {
      // One member per name and origin: tabs joining with another name get their own.
      const worker = new SharedWorker(new URL("./worker.js", import.meta.url), { type: "module", name: `shoal:${opts.name}` });
      return joinInWorker(opts, options.on, { port: worker.port, shared: true, onError: (report) => (worker.onerror = report) });
    }
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: `shoal:${opts.name}` });
    return joinInWorker(opts, options.on, { port: worker, shared: false, onError: (report) => (worker.onerror = report) });
  }
}

export { toBytes, prometheusText } from "./common.js";
export { encodeTags, parseTags, filterMembers } from "./tags.js";
export default Shoal;
