// The curves the measurements are drawn against.
//
// - First detection (SWIM, Das et al. 2002): every period each of the n-1 other members probes one
//   member chosen at random, so a crashed member escapes all of them for t periods with probability
//   (1 - 1/(n-1))^((n-1)·t) ≈ e^{-t}; it is detected by time t with 1 - that, and after e/(e-1) ≈ 1.58
//   periods on average. (Shoal probes round-robin over a shuffled list, which can only be faster.)
// - Infection-style dissemination: with fan-out f per gossip round, the informed share x grows as
//   x' = 1 - (1 - x)·e^{-f·x} from x = 1/n (the mean-field epidemic model).

/** P(first detection within `t` protocol periods) among `n` members. */
export function detectionCdf(n: number, t: number): number {
  if (n <= 1) return 1;
  return 1 - Math.pow(1 - 1 / (n - 1), (n - 1) * t);
}

/** Points (t, P) of the detection CDF for t in [0, tMax]. */
export function detectionCurve(n: number, tMax: number, steps = 80): number[] {
  const out: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t = (tMax * i) / steps;
    out.push(t, detectionCdf(n, t));
  }
  return out;
}

/** Points (round, informed share) of the infection model, starting at round `start`. */
export function infectionCurve(n: number, fanout: number, start: number, rounds: number): number[] {
  const out: number[] = [start, 1 / Math.max(1, n)];
  let x = 1 / Math.max(1, n);
  for (let r = 1; r <= rounds; r++) {
    x = 1 - (1 - x) * Math.exp(-fanout * x);
    out.push(start + r, x);
  }
  return out;
}

/** Empirical CDF points (value, share) of `values`, as a step series from 0. */
export function empiricalCdf(values: number[]): number[] {
  const v = [...values].sort((a, b) => a - b);
  const out: number[] = [0, 0];
  v.forEach((x, i) => out.push(x, i / v.length, x, (i + 1) / v.length));
  return out;
}
