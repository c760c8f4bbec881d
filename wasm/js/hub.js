// Listeners, async iterators and early-event buffering: the event half of the `Shoal` API, shared by
// the member that runs on this thread (shoal.js) and the page's handle on a member that runs in a
// worker (remote.js). One model for both: events are buffered from the start of the join until
// `open()` (the caller's continuation has had one turn to register listeners), then dispatched in
// order to the `type` listeners, the `'*'` listeners and every iterator. The `shutdown` event closes
// the hub: iterators end, `once` rejects.

export class EventHub {
  #listeners = new Map(); // type -> Set<callback>
  #iterators = new Set();
  #open = false;
  #early = [];
  #before;
  #onShutdown;
  closed = false;

  /**
   * @param before called with each event before the listeners (e.g. WebRTC bookkeeping)
   * @param onShutdown called once, with the `shutdown` event, when the member has shut down
   */
  constructor({ before, onShutdown } = {}) {
    this.#before = before;
    this.#onShutdown = onShutdown;
  }

  /** An event from the member: buffered until `open()`, dispatched after. */
  receive(e) {
    if (!this.#open) {
      if (this.#early.length < 4096) this.#early.push(e);
      if (e.type === "shutdown") this.#shut(e);
      return;
    }
    this.#dispatch(e);
  }

  /** Delivers the buffered events on the next macrotask (after the caller's continuation, a
   * microtask, has registered its listeners), and every later event at once. */
  open() {
    setTimeout(() => {
      this.#open = true;
      const early = this.#early;
      this.#early = [];
      for (const e of early) this.#dispatch(e);
    }, 0);
  }

  #dispatch(e) {
    this.#before?.(e);
    for (const key of [e.type, "*"]) {
      for (const cb of this.#listeners.get(key) ?? []) {
        try {
          cb(e);
        } catch (err) {
          console.error(`shoal: a '${key}' listener threw`, err);
        }
      }
    }
    for (const it of this.#iterators) it.push(e);
    if (e.type === "shutdown") {
      this.#shut(e);
      for (const it of this.#iterators) it.end();
      this.#iterators.clear();
    }
  }

  #shut(e) {
    if (this.closed) return;
    this.closed = true;
    this.#onShutdown?.(e);
  }

  on(type, cb) {
    if (typeof cb !== "function") throw new TypeError("listener must be a function");
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(cb);
    return () => this.off(type, cb);
  }

  off(type, cb) {
    this.#listeners.get(type)?.delete(cb);
  }

  once(type) {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error("the member has shut down"));
      const offs = [];
      const done = () => offs.forEach((f) => f());
      offs.push(this.on(type, (e) => (done(), resolve(e))));
      if (type !== "shutdown" && type !== "*") {
        offs.push(this.on("shutdown", () => (done(), reject(new Error("the member has shut down")))));
      }
    });
  }

  events({ bufferSize = 1024, types } = {}) {
    const filter = types ? new Set(Array.isArray(types) ? types : [types]) : null;
    const buffer = [];
    let waiting = null;
    let ended = this.closed;
    const iterators = this.#iterators;
    const it = {
      dropped: 0,
      push(e) {
        if (filter && !filter.has(e.type)) return;
        if (waiting) {
          const w = waiting;
          waiting = null;
          w({ value: e, done: false });
          return;
        }
        if (buffer.length >= bufferSize) {
          buffer.shift();
          it.dropped++;
        }
        buffer.push(e);
      },
      end() {
        ended = true;
        if (waiting) {
          const w = waiting;
          waiting = null;
          w({ value: undefined, done: true });
        }
      },
      next() {
        if (buffer.length) return Promise.resolve({ value: buffer.shift(), done: false });
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (waiting = resolve));
      },
      return() {
        iterators.delete(it);
        buffer.length = 0;
        it.end();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    if (!ended) iterators.add(it);
    return it;
  }
}
