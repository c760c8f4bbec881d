// View digests, the same as shoal-agent's `--publish-view` (transports/udp/src/bin/shoal-agent/view.rs):
// the live members including ourselves, one `name state incarnation` line each (state alive or
// suspect), sorted, joined with "\n", hashed with 32-bit FNV-1a, as 8 hex digits. Members that agree
// on the membership publish the same digest.

export const VIEW_TOPIC = "shoal/view";

export interface ViewDigest {
  digest: string;
  members: number;
  health: number;
  seq: number;
}

export function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

const encoder = new TextEncoder();

export function viewDigest(
  self: { name: string; incarnation: number },
  members: Iterable<{ name: string; state: string; incarnation: number }>,
): { digest: string; members: number } {
  const lines = [`${self.name} alive ${self.incarnation}`];
  for (const m of members) {
    if (m.state === "alive" || m.state === "suspect") lines.push(`${m.name} ${m.state} ${m.incarnation}`);
  }
  lines.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const digest = fnv1a(encoder.encode(lines.join("\n"))).toString(16).padStart(8, "0");
  return { digest, members: lines.length };
}

/** Parses a digest message; null when it is not one. */
export function parseDigest(text: string): ViewDigest | null {
  try {
    const v = JSON.parse(text);
    if (typeof v.digest !== "string" || !/^[0-9a-f]{8}$/.test(v.digest)) return null;
    return { digest: v.digest, members: Number(v.members) || 0, health: Number(v.health) || 0, seq: Number(v.seq) || 0 };
  } catch {
    return null;
  }
}
