// What the scrubber can go back to: the packets of the last minutes of virtual time in per-frame
// chunks (five numbers each, as the simulator hands them over), and snapshots of every node's state
// at least every 100 ms of virtual time. Both are bounded; the oldest go first.

const FIELDS = 5;

interface Chunk {
  data: Float64Array;
  first: number; // earliest send
  last: number; // latest end of an animation
}

/** Packets by time, for drawing what was in flight at any retained instant. */
export class MessageLog {
  private chunks: Chunk[] = [];
  count = 0;

  constructor(private keepMs: number, private lostVisualMs: () => number) {}

  add(data: Float64Array) {
    if (data.length === 0) return;
    let first = Infinity;
    let last = -Infinity;
    const lostMs = this.lostVisualMs();
    for (let i = 0; i < data.length; i += FIELDS) {
      first = Math.min(first, data[i]);
      last = Math.max(last, data[i + 1] < 0 ? data[i] + lostMs : data[i + 1]);
    }
    this.chunks.push({ data, first, last });
    this.count += data.length / FIELDS;
  }

  prune(now: number) {
    let drop = 0;
    while (drop < this.chunks.length && this.chunks[drop].last < now - this.keepMs) drop++;
    for (const c of this.chunks.splice(0, drop)) this.count -= c.data.length / FIELDS;
  }

  clear() {
    this.chunks = [];
    this.count = 0;
  }

  /** Calls `f(from, to, progress)` for each packet of `kind` in flight at `t` (lost ones: up to half-way). */
  forEachInFlight(t: number, kind: number, lost: boolean, f: (from: number, to: number, p: number) => void) {
    const lostMs = this.lostVisualMs();
    for (const c of this.chunks) {
      if (c.first > t || c.last < t) continue;
      const d = c.data;
      for (let i = 0; i < d.length; i += FIELDS) {
        if (d[i + 4] !== kind || d[i] > t) continue;
        const arrives = d[i + 1];
        if ((arrives < 0) !== lost) continue;
        if (lost) {
          const p = (t - d[i]) / lostMs;
          if (p < 1) f(d[i + 2], d[i + 3], p * 0.5);
        } else if (arrives > t) {
          f(d[i + 2], d[i + 3], (t - d[i]) / Math.max(1e-6, arrives - d[i]));
        }
      }
    }
  }

  /** Packets sent in [from, to), by kind. */
  countSent(from: number, to: number): number[] {
    const out = new Array(7).fill(0);
    for (const c of this.chunks) {
      if (c.last < from || c.first >= to) continue;
      for (let i = 0; i < c.data.length; i += FIELDS) {
        if (c.data[i] >= from && c.data[i] < to) out[c.data[i + 4]]++;
      }
    }
    return out;
  }
}

export interface Snapshot {
  t: number;
  states: Uint8Array;
  truth: Uint8Array;
  agreement: number;
  partitioned: boolean;
}

/** Node states over time. */
export class Snapshots {
  list: Snapshot[] = [];

  constructor(private max: number, private spacingMs: number) {}

  maybeAdd(s: Snapshot) {
    const last = this.list[this.list.length - 1];
    if (last && s.t - last.t < this.spacingMs) return;
    this.list.push(s);
    if (this.list.length > this.max) this.list.splice(0, this.list.length - this.max);
  }

  clear() {
    this.list = [];
  }

  /** The latest snapshot at or before `t`. */
  at(t: number): Snapshot | undefined {
    let lo = 0;
    let hi = this.list.length - 1;
    if (hi < 0 || this.list[0].t > t) return this.list[0];
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.list[mid].t <= t) lo = mid;
      else hi = mid - 1;
    }
    return this.list[lo];
  }
}
