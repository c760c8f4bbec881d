// Compile-only check of js/index.d.ts (npm run typecheck): exercises the whole public API.
import Shoal, { Shoal as Named, encodeTags, filterMembers, init, parseTags, prometheusText, toBytes, type MemberFilter, type MemberInfo, type ShoalEvent } from "shoal";

async function main(): Promise<void> {
  await init();
  const s: Named = await Shoal.join({
    relay: "ws://127.0.0.1:8080",
    name: "tab-1",
    meta: "role=web",
    key: "00".repeat(32),
    label: "demo",
    token: "t",
    seeds: ["relay://127.0.0.1:8080/tab-0"],
    preset: "browser",
    queries: true,
    WebSocket: globalThis.WebSocket,
    webrtc: { answerGraceMs: 1000, setupTimeoutMs: 10000 },
    reconnect: { initialDelayMs: 100, maxDelayMs: 2000, maxAttempts: 50 },
    iceServers: [{ urls: "stun:stun.example:3478" }, { urls: ["turn:turn.example"], username: "u", credential: "c" }],
    on: { join: (e) => console.log(e.info.addr), "*": (e) => console.log(e.type) },
  });
  const members: MemberInfo[] = s.members();
  const filter: MemberFilter = { status: ["alive", "suspect"], name: "web-*", tags: { dc: "eu-*" } };
  const web: MemberInfo[] = filterMembers(s.members(), filter);
  console.log(web[0] && parseTags(web[0].meta)?.["role"], parseTags("role=web")?.["role"]);
  s.setMetadata(encodeTags({ role: "web", dc: "eu-west" }));
  console.log(members[0]?.metaText, members[0]?.rttMs ?? 0, s.local.state, s.addr, s.name, s.closed);
  const off = s.on("message", (e) => console.log(e.from, e.topic, e.text, e.data.byteLength, e.kind));
  off();
  s.on("fail", (e) => console.log(e.member, e.by, e.incarnation));
  s.on("query", (q) => s.respond(q, `${q.from} asked ${q.topic}: ${q.text} (${q.epoch}/${q.query} via ${q.addr})`));
  s.on("query-done", (e) => console.log(e.query, e.acks, e.responses));
  const answers = s.query("version", "", { name: "web-*", tags: { role: "web" }, timeoutMs: 2000 });
  for await (const a of answers) console.log(answers.id, a.from, a.type === "response" ? a.text : "ack");
  const { acks, responses } = await s.query("load", new Uint8Array([1])).collect();
  console.log(acks.length, responses.map((r) => `${r.from}: ${r.text} ${r.data.byteLength}`));
  s.on("disconnect", (e) => console.log(e.reason, s.connected));
  s.on("reconnect", (e) => console.log(e.attempts + e.downtimeMs));
  s.on("suspend", (e) => console.log(e.reason));
  s.on("resume", (e) => console.log(e.seeds.length));
  s.on("error", (e) => console.log(e.op, e.message));
  const where: "thread" | "worker" | "shared-worker" = s.runsIn;
  console.log(where, s.metrics().stalls + s.metrics().linkOutages);
  await Shoal.join({ relay: "ws://127.0.0.1:8080", name: "tab-2", mainThread: true });
  await Shoal.join({ relay: "ws://127.0.0.1:8080", name: "tab-3", worker: "shared" });
  s.on("*", (e: ShoalEvent) => {
    if (e.type === "leave") console.log(e.member);
  });
  const joined = await s.once("join");
  console.log(joined.info.name);
  for await (const e of s.events({ bufferSize: 16, types: ["message", "leave"] })) {
    if (e.type === "message") console.log(e.text);
    else console.log(e.member);
  }
  s.broadcast("chat", "hi");
  s.broadcast("presence", new Uint8Array([1]), { key: "cursor" });
  const id: number | undefined = s.send("tab-0", "dm", "hello", { reliable: true });
  s.on("send-failed", (e) => console.log(e.id === id, e.to, e.topic));
  s.on("broadcasts-missed", (e) => console.log(e.origin, e.count));
  s.on("broadcast-dropped", (e) => console.log(e.topic));
  s.sendTo("udp://10.0.0.1:7946", "dm", new ArrayBuffer(4));
  s.setMetadata("role=idle");
  const m = s.metrics();
  console.log(m.membersAlive + m.transport.bytesIn + m.security.decrypted, s.metricsText(), prometheusText(m));
  console.log(m.broadcastsMissed + m.broadcastsRepaired + m.reliableRetries + m.reliableFailed);
  console.log(toBytes("x").byteLength);
  const t = s.transportStats();
  const share: number = t.directShare + t.direct.packetsOut + t.relayed.bytesIn + t.glare.won;
  console.log(share, t.peers.map((p) => `${p.addr} ${p.state} ${p.setupMs ?? "-"}`), t.webrtc, t.setupMs);
  const ok: boolean = await s.leave(1000);
  await s.shutdown();
  console.log(ok, s.closeReason);
}
void main;
