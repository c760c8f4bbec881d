// The demo page: this tab joins the demo cluster as a member through the relay that serves it, and
// shows what it knows. Seeds come from seeds.json, written by www/demo.sh.
import { Shoal } from "./shoal/js/browser.js";

const $ = (id) => document.getElementById(id);
const log = (text) => {
  const line = document.createElement("div");
  line.textContent = `${new Date().toISOString().slice(11, 23)}  ${text}`;
  $("log").prepend(line);
};

async function main() {
  const seeds = await fetch("./seeds.json").then((r) => r.json()).catch(() => []);
  const relay = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
  const name = `tab-${Math.random().toString(36).slice(2, 7)}`;
  const shoal = await Shoal.join({ relay, name, seeds, preset: "local", meta: `role=browser` });
  window.shoal = shoal;
  $("status").textContent = `${shoal.name} at ${shoal.addr} — ${seeds.length} seed(s)`;
  shoal.on("*", (e) => {
    if (e.type === "message") log(`message from ${e.from} on ${e.topic}: ${e.text ?? ""}`);
    else if (e.member) log(`${e.type} ${e.member}`);
  });
  $("wave").onclick = () => shoal.broadcast("wave", `hello from ${shoal.name}`);
  const render = () => {
    const rows = [
      { name: shoal.name + " (this tab)", addr: shoal.addr, state: "self", incarnation: "", metaText: "role=browser", rttMs: null },
      ...shoal.members().sort((a, b) => a.name.localeCompare(b.name)),
    ];
    $("members").innerHTML = "";
    for (const m of rows) {
      const tr = document.createElement("tr");
      for (const v of [m.name, m.addr, null, m.incarnation, m.metaText ?? "", m.rttMs == null ? "–" : `${m.rttMs} ms`]) {
        const td = document.createElement("td");
        if (v === null) {
          const s = document.createElement("span");
          s.className = `state ${m.state}`;
          s.textContent = m.state;
          td.append(s);
        } else td.textContent = String(v);
        tr.append(td);
      }
      $("members").append(tr);
    }
  };
  render();
  setInterval(render, 250);
}

main().catch((e) => {
  $("status").textContent = `could not join: ${e.message ?? e}`;
  console.error(e);
});
