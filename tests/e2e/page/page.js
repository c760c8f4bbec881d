// The e2e test page: joins the cluster through the relay that serves it, with the options in the
// query string (name, seeds comma-separated, preset, token, leave=0 to not leave on pagehide,
// mainThread=1 to run the member on the page's thread, worker=shared for a SharedWorker member,
// queries=1 for the wasm build with queries).
// Exposes window.shoal, window.joinState ("joining", "joined", or "error: ..."), and
// window.shoalEvents (every event with its Date.now() arrival time); renders the member list.
import { Shoal } from "./shoal/js/browser.js";

const q = new URLSearchParams(location.search);
const name = q.get("name") ?? `tab-${Math.random().toString(36).slice(2, 7)}`;
const seeds = (q.get("seeds") ?? "").split(",").filter(Boolean);
const $ = (id) => document.getElementById(id);
window.joinState = "joining";
window.shoalEvents = [];

function render(shoal) {
  const rows = [{ name: `${shoal.name} (this page)`, addr: shoal.addr, state: "alive" }, ...shoal.members()];
  rows.sort((a, b) => a.name.localeCompare(b.name));
  $("members").replaceChildren(
    ...rows.map((m) => {
      const tr = document.createElement("tr");
      for (const [text, cls] of [[m.name], [m.addr], [m.state, m.state]]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.append(td);
      }
      return tr;
    }),
  );
}

try {
  const shoal = await Shoal.join({
    relay: `ws://${location.host}`,
    name,
    seeds,
    token: q.get("token") ?? undefined,
    preset: q.get("preset") ?? "local",
    meta: "role=page",
    leaveOnPageHide: q.get("leave") !== "0",
    mainThread: q.get("mainThread") === "1",
    worker: q.get("worker") ?? undefined,
    queries: q.get("queries") === "1",
    on: {
      "*": (e) => {
        const { type, member, by, from, topic, kind } = e;
        window.shoalEvents.push({ type, member, by, from, topic, kind, text: type === "message" ? e.text : undefined, at: Date.now() });
        if (type === "message") {
          const line = document.createElement("div");
          line.textContent = `message from ${from} on ${topic}: ${e.text}`;
          $("messages").append(line);
        }
      },
    },
  });
  window.shoal = shoal;
  $("title").textContent = `shoal e2e member ${shoal.name}`;
  $("status").textContent = `${shoal.name} at ${shoal.addr}, preset ${q.get("preset") ?? "local"}, seeds ${seeds.join(" ") || "none"}`;
  render(shoal);
  setInterval(() => render(shoal), 100);
  window.joinState = "joined";
} catch (e) {
  window.joinState = `error: ${e?.message ?? e}`;
  $("status").textContent = `could not join: ${e?.message ?? e}`;
}
