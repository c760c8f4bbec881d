// Tags and member filters (`encodeTags`, `parseTags`, `filterMembers` in index.d.ts): plain
// functions over member records, re-exported by every entry, so that a bundle ships them only
// when the app imports them.
//
// Tags are metadata as `key=value` pairs joined by `,`, keys sorted by their UTF-8 bytes, with `%`
// and `,` (and `=` in keys) escaped as %25 %2C %3D: the Rust crates' `Tags` encoding, so native
// members and pages read each other's tags.

const utf8 = (s) => new TextEncoder().encode(s);
const escape = (s, chars) => s.replace(chars, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());

// Keys as Rust orders them: by UTF-8 bytes (JS compares UTF-16 units, which differs past U+FFFF).
function byUtf8(a, b) {
  const x = utf8(a), y = utf8(b);
  for (let i = 0; i < x.length && i < y.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** The metadata text announcing `tags` (an object of string values): hand it to `setMetadata`. */
export function encodeTags(tags) {
  return Object.keys(tags)
    .sort(byUtf8)
    .map((k) => {
      if (!k || utf8(k).length > 128) throw new RangeError(`tag key ${JSON.stringify(k)} must be 1 to 128 bytes`);
      return escape(k, /[%,=]/g) + "=" + escape(String(tags[k]), /[%,]/g);
    })
    .join(",");
}

/** Tags read from metadata (bytes or text), or null when it is not in the tags form. */
export function parseTags(meta) {
  try {
    const text = typeof meta === "string" ? meta : new TextDecoder("utf-8", { fatal: true }).decode(meta);
    const tags = {};
    for (const pair of text ? text.split(",") : []) {
      const [k, v] = [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)].map((s) => {
        // Only %XX escapes; decodeURIComponent also refuses escapes that are not UTF-8.
        if (/%(?![0-9A-Fa-f]{2})/.test(s)) throw 0;
        return decodeURIComponent(s);
      });
      if (pair.indexOf("=") < 0 || !k || utf8(k).length > 128 || Object.hasOwn(tags, k)) return null;
      tags[k] = v;
    }
    return tags;
  } catch {
    return null;
  }
}

/** Whether `text` matches `pattern`, where `*` is any run of characters and `?` any one. */
export function wildcardMatch(pattern, text) {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${source}$`, "su").test(text);
}

/** Whether member `m` passes `filter` ({ status, name, tags }; see `members` in index.d.ts). */
export function matchesFilter(m, { status, name, tags } = {}) {
  if (status !== undefined && ![status].flat().includes(m.state)) return false;
  if (name !== undefined && !wildcardMatch(name, m.name)) return false;
  const have = tags && (parseTags(m.meta) ?? {});
  return Object.entries(tags ?? {}).every(([k, p]) => Object.hasOwn(have, k) && wildcardMatch(p, have[k]));
}

/** The members of `list` that pass `filter` (all of them without one). */
export const filterMembers = (list, filter) => (filter ? list.filter((m) => matchesFilter(m, filter)) : list);

/** The relays of the fleet that live members announce (a relay's own member carries the tags
 * `shoal-relay=<host:port>` and `shoal-relay-url=<ws URL>`): `{ name, relay, url }` each, the URL
 * `ws://<host:port>` when none is announced. */
export function relaysOf(members) {
  const out = [];
  for (const m of members) {
    if (m.state !== "alive") continue;
    const tags = parseTags(m.meta);
    const relay = tags?.["shoal-relay"];
    if (relay) out.push({ name: m.name, relay, url: tags["shoal-relay-url"] || `ws://${relay}` });
  }
  return out;
}
