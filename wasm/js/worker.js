// The worker a browser page's member runs in (the default in browsers; `mainThread: true` opts
// out). A page that stalls (`alert()`, a long script, a debugger pause, a heavy render) no longer
// stalls its member: probes are answered, gossip flows, nobody suspects the tab.
//
// The model. The member itself is the same `Shoal` as on the main thread (shoal.js), created here.
// Each page talks to it over a port (the dedicated worker itself, or one SharedWorker port per tab)
// with small messages (remote.js is the page's side):
//
//   page -> worker   join {options}, call {id, method, args}, signal {to, kind, body},
//                    adopt {id, member, dgram, rel} (transferred data channels), drop {id},
//                    suspend, resume, detach
//   worker -> page   joined {state} | join-error {message}, events {events, state}, state {state},
//                    reply {id, value | error}, signal {from, kind, body}, rtc-open {id},
//                    rtc-closed {id}
//
// `farewell` ({url, body} or null), in a dedicated worker only, rides along with the state when it
// may have changed (a change of membership or of our incarnation, a reconnect, and once a second):
// the departure the page posts with `navigator.sendBeacon` when the tab closes, because the
// browser may kill this worker before it gets to run `leave` (member.js explains it).
//
// `state` is the snapshot the page's synchronous getters read (`local`, `metrics()`, `connected`,
// ...): sent with every batch of events, so a listener sees the state the event left, and once a
// second for what changes without events (round-trip times, counters). The member list rides only
// in `joined`, the once-a-second `state` and replies: in between the page patches its copy from the
// membership events.
//
// WebRTC: RTCPeerConnection exists only on the page, so the page negotiates each connection and
// transfers its two data channels here at creation; packets then flow between this worker and the
// channels without touching the page's thread. In a SharedWorker (several tabs, one member) the
// member has no direct channels: everything goes through the relay.
//
// SharedWorker: tabs of one origin that join with the same name share one member; the first tab's
// options make it. It leaves when the last tab detaches (`pagehide`). Events reach every tab from
// the moment it attaches; a reliable send's `send-failed` only the tab that sent it.

import initWasm, * as bindings from "../pkg/web/shoal_wasm.js";
import { makeShoal, SUSPEND, RESUME } from "./shoal.js";
import { wireChannels } from "./rtc.js";

let loading = null;
// The build with queries when the member joins with `queries: true` (browser.js explains the two).
const Shoal = makeShoal((opts) => {
  const queries = opts?.queries ? { module_or_path: new URL("../pkg/web/shoal_wasm_queries_bg.wasm", import.meta.url) } : undefined;
  return (loading ??= initWasm(queries).then(() => bindings));
});

const ports = new Set();
let member = null; // the Shoal, once joined
let joining = null; // Promise<Shoal> while the first join runs
let batch = null; // events waiting for the end of this task
const sent = new Map(); // core reliable id -> { port, id } (the page's own id)
const channels = new Map(); // "port id/channel id" -> { member, dgram, rel, port, id }
let portIds = 0;

const MAX_SENDS_TRACKED = 65536;
const SHARED = typeof SharedWorkerGlobalScope === "function" && self instanceof SharedWorkerGlobalScope;
/** Events after which the farewell is built again: they change who to tell or our incarnation. */
const FAREWELL_STALE = new Set(["join", "alive", "suspect", "fail", "leave", "joined", "refuted", "conflict", "update", "reconnect"]);

function state(withMembers, withFarewell = withMembers) {
  if (!member) return null;
  const s = {
    name: member.name,
    addr: member.addr,
    local: plain(member.local),
    closed: member.closed,
    connected: member.connected,
    closeReason: member.closed ? member.closeReason : undefined,
    metrics: member.metrics(),
    traffic: member.raw.trafficCounters(),
  };
  if (withMembers) s.members = member.raw.members();
  if (withFarewell && !SHARED) s.farewell = member.closed ? null : member.raw.farewellBeacon();
  return s;
}

/** A member record without the `metaText` getter (it would be cloned as a decoded copy). */
function plain(m) {
  const { name, addr, state, incarnation, meta, rttMs } = m;
  return { name, addr, state, incarnation, meta, rttMs };
}

function post(port, msg, transfer) {
  try {
    port.postMessage(msg, transfer ?? []);
  } catch (err) {
    console.error("shoal worker: could not post to a page", err);
  }
}

function onEvent(e) {
  if (e.type === "send-failed") {
    const owner = sent.get(e.id);
    sent.delete(e.id);
    if (owner) post(owner.port, { t: "events", events: [{ ...e, id: owner.id }], state: state(false) });
    return;
  }
  if (!batch) {
    batch = [];
    queueMicrotask(flush);
  }
  const { text: _text, ...copy } = e; // `text` is a getter: the page decodes its own
  if (copy.info) copy.info = plain(copy.info);
  batch.push(copy);
}

function flush() {
  const events = batch;
  batch = null;
  // The page patches its member list from the events themselves.
  const s = state(false, events.some((e) => FAREWELL_STALE.has(e.type)));
  for (const port of ports) post(port, { t: "events", events, state: s });
}

setInterval(() => {
  if (!member) return;
  const s = state(true);
  for (const port of ports) post(port, { t: "state", state: s });
}, 1000);

async function join(port, options) {
  if (!joining) {
    joining = Shoal.join({ ...options, webrtc: false, leaveOnPageHide: false, on: { "*": onEvent } });
    joining.then(
      (m) => {
        member = m;
        m.raw.onSignal((from, kind, body) => {
          for (const p of ports) if (p.rtc) post(p, { t: "signal", from, kind, body });
        });
      },
      () => {
        joining = null;
      },
    );
  }
  try {
    await joining;
    ports.add(port);
    post(port, { t: "joined", state: state(true) });
  } catch (err) {
    post(port, { t: "join-error", message: err?.message ?? String(err), name: err?.name });
  }
}

async function call(port, { id, method, args }) {
  try {
    let value;
    switch (method) {
      case "broadcast":
        value = member.broadcast(...args);
        break;
      case "send": {
        const [name, topic, data, options, pageId] = args;
        const core = member.send(name, topic, data, options);
        if (core !== undefined && core !== null) {
          sent.set(core, { port, id: pageId });
          // Bounded: a reliable send fails within its retry horizon (seconds), so the oldest
          // records are of sends long since acknowledged.
          if (sent.size > MAX_SENDS_TRACKED) sent.delete(sent.keys().next().value);
        }
        break;
      }
      case "sendTo":
        value = member.sendTo(...args);
        break;
      case "setMetadata":
        value = member.setMetadata(...args);
        break;
      case "query":
        value = member.query(...args).id;
        break;
      case "respond":
        value = member.respond(...args);
        break;
      case "leave":
        value = await member.leave(...args);
        break;
      case "shutdown":
        value = await member.shutdown();
        break;
      default:
        throw new TypeError(`unknown method ${method}`);
    }
    post(port, { t: "reply", id, value, state: state(false, method === "setMetadata") });
  } catch (err) {
    post(port, { t: "reply", id, error: { name: err?.name, message: err?.message ?? String(err) } });
  }
}

function adopt(port, { id, member: addr, dgram, rel }) {
  const key = `${port.shoalId}/${id}`;
  const node = member.raw;
  const c = { addr, dgram, rel, open: false };
  const markOpen = () => {
    if (channels.get(key) !== c || c.open) return;
    c.open = true;
    node.setDirect(addr, send);
    post(port, { t: "rtc-open", id });
  };
  const send = wireChannels(dgram, rel, {
    opened: markOpen,
    message: (bytes) => {
      if (channels.get(key) !== c) return;
      markOpen(); // a message proves the channel works, even if the other one is late
      node.deliverDirect(addr, bytes);
    },
    closed: () => {
      if (channels.get(key) !== c) return;
      drop(port, id);
      post(port, { t: "rtc-closed", id });
    },
  });
  channels.set(key, c);
  if (dgram.readyState === "open" && rel.readyState === "open") markOpen();
}

function drop(port, id) {
  const key = `${port.shoalId}/${id}`;
  const c = channels.get(key);
  if (!c) return;
  channels.delete(key);
  if (c.open) member?.raw.setDirect(c.addr, null);
  for (const ch of [c.dgram, c.rel]) {
    ch.onopen = ch.onmessage = ch.onclose = null;
    try {
      ch.close();
    } catch {}
  }
}

function detach(port) {
  ports.delete(port);
  for (const key of [...channels.keys()]) if (key.startsWith(`${port.shoalId}/`)) drop(port, key.slice(key.indexOf("/") + 1));
  if (ports.size === 0 && member && !member.closed) member.leave(0).catch(() => {});
}

function attach(port) {
  port.shoalId = ++portIds;
  port.onmessage = ({ data: msg }) => {
    switch (msg?.t) {
      case "join":
        port.rtc = !!msg.rtc;
        return void join(port, msg.options);
      case "call":
        return void call(port, msg);
      case "signal":
        return void member?.raw.signal(msg.to, msg.kind, msg.body);
      case "adopt":
        return member ? adopt(port, msg) : undefined;
      case "drop":
        return drop(port, msg.id);
      case "suspend":
        return member?.[SUSPEND]();
      case "resume":
        return void member?.[RESUME]();
      case "detach":
        return detach(port);
    }
  };
  port.start?.();
}

if (SHARED) {
  self.onconnect = (e) => attach(e.ports[0]);
} else {
  attach(self);
}
