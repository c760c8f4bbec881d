// The live view: this page joins the demo cluster as a member (through the relay that serves it,
// with the `shoal` npm package) and shows what it knows: the graph, a sortable and filterable member
// table, the event log, per-member RTT, our local health, and whether every member's published view
// digest agrees (with its history). Controls call shoal-demo's API to kill, restart, partition the
// native members or make them lose packets.
//
// For tests, `window.shoalDashboard` exposes the member, the states each member was shown in
// (`shown[name]`, in order) and the event log.
import { Shoal, type MemberInfo, type RelayInfo, type ShoalEvent } from "shoal/browser";
import { drawChart } from "../chart";
import { DemoControl, type DemoStatus } from "./controls";
import { parseDigest, viewDigest, VIEW_TOPIC, type ViewDigest } from "./digest";
import { LiveGraph, type GraphMember } from "./graph";
import { MemberTable } from "./table";

interface DemoConfig {
  seeds: string[];
  control?: string;
  members?: string[];
}

interface Row extends GraphMember {
  relay: string;
  native: boolean;
  running: boolean | null;
  loss: number;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const DIGEST_PERIOD_MS = 1000;
const DIGEST_STALE_MS = 3500;

declare global {
  interface Window {
    shoalDashboard?: { shoal: Shoal; shown: Record<string, string[]>; log: { type: string; member: string; at: number }[] };
  }
}

async function loadConfig(): Promise<DemoConfig> {
  const q = new URLSearchParams(location.search);
  if (q.get("seeds")) return { seeds: q.get("seeds")!.split(","), control: q.get("control") ?? undefined };
  try {
    const r = await fetch("./demo.json", { cache: "no-store" });
    if (r.ok) return (await r.json()) as DemoConfig;
  } catch {
    /* not served by shoal-demo */
  }
  return { seeds: [] };
}

export async function startLive() {
  const status = $("status");
  const config = await loadConfig();
  const relay = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
  const name = `dashboard-${Math.random().toString(36).slice(2, 7)}`;
  let shoal: Shoal;
  try {
    shoal = await Shoal.join({ relay, name, seeds: config.seeds, preset: "lan", meta: "role=dashboard" });
  } catch (e) {
    status.textContent = `could not join the cluster through ${relay}: ${(e as Error).message ?? e}`;
    console.warn("join failed", e);
    return;
  }
  const connected = `${shoal.name} at ${shoal.addr}`;
  status.textContent = connected;
  // The relay connection is the page's only way in (besides direct WebRTC channels): say when it
  // is down and being re-established, and when the member stopped for good.
  shoal.on("disconnect", (e) => {
    status.textContent = `relay connection lost (${e.reason}); reconnecting…`;
    status.classList.add("warn");
  });
  shoal.on("reconnect", (e) => {
    status.textContent = `${connected} (reconnected after ${(e.downtimeMs / 1000).toFixed(1)} s)`;
    status.classList.remove("warn");
  });
  shoal.on("shutdown", (e) => {
    status.textContent = `no longer a member: ${e.reason ?? "shut down"}`;
    status.classList.add("warn");
  });
  const control = config.control ? new DemoControl(config.control) : null;
  const natives = new Set(config.members ?? []);
  let demo: DemoStatus | null = null;
  const digests = new Map<string, ViewDigest & { at: number }>();
  const shown: Record<string, string[]> = {};
  const logEntries: { type: string; member: string; at: number }[] = [];
  window.shoalDashboard = { shoal, shown, log: logEntries };

  const logList = $("event-log");
  let hovered: string | null = null;
  const graph = new LiveGraph($<HTMLCanvasElement>("live-graph"), $("live-tip"), (n) => {
    hovered = n;
    for (const li of logList.children) li.classList.toggle("hl", n !== null && (li as HTMLElement).dataset.member === n);
  });
  logList.addEventListener("mouseover", (e) => graph.highlight((e.target as HTMLElement).closest("li")?.dataset.member || null));
  logList.addEventListener("mouseleave", () => graph.highlight(null));
  const table = new MemberTable($("members"), $<HTMLInputElement>("member-filter"), (action, member, arg) => {
    if (!control) return;
    const done = action === "kill" ? control.kill(member) : action === "restart" ? control.restart(member) : control.loss(Number(arg), member);
    done.then((s) => (demo = s)).catch((e) => note(`${action} ${member}: ${e.message}`));
  });
  const note = (text: string) => ($("demo-note").textContent = text);

  const log = (e: ShoalEvent) => {
    const member = "member" in e ? e.member : e.type === "message" ? e.from : "";
    if (e.type === "message" || e.type === "health") return;
    logEntries.push({ type: e.type, member, at: Date.now() });
    const li = document.createElement("li");
    li.className = e.type;
    li.dataset.member = member;
    li.dataset.type = e.type;
    li.classList.toggle("hl", hovered !== null && member === hovered);
    const time = document.createElement("time");
    time.textContent = new Date().toISOString().slice(11, 23);
    const detail = "incarnation" in e ? ` (incarnation ${e.incarnation}${"by" in e ? `, by ${e.by}` : ""})` : "";
    li.append(time, `${e.type} ${member}${detail}`);
    logList.prepend(li);
    while (logList.children.length > 300) logList.lastChild!.remove();
    if (member) graph.flash(member);
    render();
  };
  shoal.on("*", log);
  shoal.on("message", (m) => {
    if (m.topic !== VIEW_TOPIC) return;
    const d = parseDigest(m.text);
    if (d) digests.set(m.from, { ...d, at: Date.now() });
    graph.pulse(m.from);
  });

  // Our own digest, published like the agents' so other dashboards see it too.
  let seq = 0;
  setInterval(() => {
    const own = viewDigest(shoal.local, shoal.members());
    const health = shoal.metrics().healthScore;
    digests.set(shoal.name, { ...own, health, seq, at: Date.now() });
    const payload = JSON.stringify({ digest: own.digest, members: own.members, health, seq: seq++ });
    try {
      shoal.broadcast(VIEW_TOPIC, payload, { key: "view" });
    } catch {
      /* shut down */
    }
  }, DIGEST_PERIOD_MS);

  const agreement: number[] = []; // t (s since start), share agreeing, ...
  const started = Date.now();
  let lastAgreement = { share: 1, agreeing: 0, total: 0, majority: "" };

  function convergence(rows: Row[]): typeof lastAgreement {
    const now = Date.now();
    const voters = [shoal.name, ...rows.filter((r) => r.state === "alive").map((r) => r.name)];
    const counts = new Map<string, number>();
    for (const v of voters) {
      const d = digests.get(v);
      if (d && now - d.at < DIGEST_STALE_MS) counts.set(d.digest, (counts.get(d.digest) ?? 0) + 1);
    }
    let majority = "";
    let best = 0;
    for (const [d, c] of counts) if (c > best) [majority, best] = [d, c];
    return { share: voters.length ? best / voters.length : 1, agreeing: best, total: voters.length, majority };
  }

  /** The relay behind a `relay://host:port/peer` address, named after its member when the relay
   * announces itself (a relay fleet); empty for other addresses. */
  function relayOf(addr: string, relays: RelayInfo[]): string {
    if (!addr.startsWith("relay://")) return "";
    const host = addr.slice("relay://".length, addr.lastIndexOf("/"));
    const named = relays.find((r) => r.relay === host);
    return named ? `${host} (${named.name})` : host;
  }

  function rowsNow(): Row[] {
    const now = Date.now();
    const relays = shoal.relays();
    const byName = new Map<string, MemberInfo>(shoal.members().map((m) => [m.name, m]));
    const rows: Row[] = [];
    for (const m of byName.values()) {
      const d = digests.get(m.name);
      const fresh = d && now - d.at < DIGEST_STALE_MS ? d : null;
      const dm = demo?.members.find((x) => x.name === m.name);
      rows.push({
        name: m.name,
        addr: m.addr,
        relay: relayOf(m.addr, relays),
        state: m.state,
        incarnation: m.incarnation,
        meta: m.metaText,
        rttMs: m.rttMs,
        digest: fresh?.digest ?? null,
        agrees: fresh ? fresh.digest === lastAgreement.majority : null,
        native: natives.has(m.name),
        running: dm ? dm.running : null,
        loss: dm?.loss ?? 0,
      });
    }
    for (const n of natives) {
      if (!byName.has(n)) {
        const dm = demo?.members.find((x) => x.name === n);
        rows.push({ name: n, addr: dm?.addr ?? "", relay: "", state: "unknown", incarnation: 0, meta: "", rttMs: null, digest: null, agrees: null, native: true, running: dm?.running ?? null, loss: dm?.loss ?? 0 });
      }
    }
    return rows;
  }

  function render() {
    const rows = rowsNow();
    lastAgreement = convergence(rows);
    for (const r of rows) r.agrees = r.digest ? r.digest === lastAgreement.majority : null;
    for (const r of rows) {
      const seen = (shown[r.name] ??= []);
      if (seen[seen.length - 1] !== r.state) seen.push(r.state);
    }
    const own = digests.get(shoal.name);
    const self: GraphMember = {
      name: `${shoal.name} (this page)`,
      addr: shoal.addr,
      state: "alive",
      incarnation: shoal.local.incarnation,
      meta: shoal.local.metaText,
      rttMs: null,
      digest: own?.digest ?? null,
      agrees: own ? own.digest === lastAgreement.majority : null,
    };
    graph.update(self, rows.filter((r) => r.state !== "unknown"));
    table.render(rows, control !== null);
    const m = shoal.metrics();
    const facts: [string, string][] = [
      ["name", shoal.name],
      ["address", shoal.addr],
      ["relay", relayOf(shoal.addr, shoal.relays())],
      ["incarnation", String(m.incarnation)],
      ["local health", `${m.healthScore} ${m.healthScore === 0 ? "(healthy)" : "(degraded: probes stretched)"}`],
      ["members", `${m.membersAlive} alive, ${m.membersSuspect} suspect, ${m.membersFailed} failed, ${m.membersLeft} left`],
      ["probes", `${m.probes} sent, ${m.probesFailed} failed`],
      ["packets", `${m.packetsSent} out, ${m.packetsReceived} in`],
    ];
    const dl = $("live-health");
    dl.replaceChildren(...facts.flatMap(([k, v]) => [Object.assign(document.createElement("dt"), { textContent: k }), Object.assign(document.createElement("dd"), { textContent: v })]));
    const a = lastAgreement;
    const converged = $("live-converged");
    converged.textContent = a.total
      ? `${a.agreeing} of ${a.total} members agree${a.majority ? ` on view ${a.majority}` : ""}`
      : "–";
    converged.className = `big ${a.agreeing === a.total ? "agree" : "disagree"}`;
    converged.dataset.converged = String(a.agreeing === a.total);
    $("demo-partition").classList.toggle("active", demo?.partitioned === true);
    $("demo-partition").textContent = demo?.partitioned ? "Partitioned (second half cut off)" : "Partition in two";
  }

  setInterval(() => {
    render();
    agreement.push((Date.now() - started) / 1000, lastAgreement.share);
    if (agreement.length > 600) agreement.splice(0, agreement.length - 600);
    const t = (Date.now() - started) / 1000;
    drawChart($<HTMLCanvasElement>("live-convergence"), [{ points: agreement, color: "#3fb950", step: true, label: "share of members on the majority view" }], {
      xMin: Math.max(0, t - 150),
      xMax: Math.max(10, t),
      xLabel: "s",
    });
  }, 500);
  render();

  if (control) {
    const refresh = () => control.status().then((s) => (demo = s)).catch(() => {});
    refresh();
    setInterval(refresh, 1000);
    $("demo-partition").onclick = () => control.partition().then((s) => { demo = s; note("partitioned: the second half of the native members (and this page's relay link to them) cannot reach the first"); });
    $("demo-heal").onclick = () => control.heal().then((s) => { demo = s; note("healed: the halves merge again without a manual rejoin"); });
    $<HTMLSelectElement>("demo-loss-all").onchange = (e) => {
      const loss = Number((e.target as HTMLSelectElement).value);
      control.loss(loss).then((s) => { demo = s; note(`every native member now drops ${loss * 100}% of its datagrams each way`); });
    };
  } else {
    for (const b of $("demo-controls").querySelectorAll<HTMLButtonElement | HTMLSelectElement>("button, select")) b.disabled = true;
    note("no demo supervisor: controls need the page to be served by `bash www/demo.sh`");
  }
}
