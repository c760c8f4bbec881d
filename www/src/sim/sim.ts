// The simulation view: shoal-core's simulator compiled to wasm (www/sim), 10 to 2,000 nodes, driven
// from requestAnimationFrame. Each frame runs `elapsed real time × speed` of virtual time, takes the
// packets sent, and draws the nodes and packets in flight; controls inject loss, latency, partitions,
// stalls, crashes and restarts; the scrubber replays the retained history; the charts compare what
// the run measured with SWIM's theoretical curves.
//
// For tests, `window.shoalSim` exposes the world, a frame counter and the current node count.
import initSim, { SimWorld } from "../../sim/pkg/shoal_sim_wasm.js";
import { drawChart } from "../chart";
import { MessageLog, Snapshots } from "./history";
import { KIND_COLORS, KIND_NAMES, SimRenderer } from "./render";
import { detectionCurve, empiricalCdf, infectionCurve } from "./theory";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const HISTORY_MS = 15_000;
const SNAPSHOT_SPACING_MS = 100;

declare global {
  interface Window {
    shoalSim?: { world: SimWorld | null; frames: number; nodes: number; ready: boolean };
  }
}

interface SpreadTrack {
  target: number;
  killedAt: number;
  points: number[]; // (virtual ms since the kill, share suspecting, share failed)
}

export async function startSim() {
  await initSim();
  const canvas = $<HTMLCanvasElement>("sim-graph");
  const renderer = new SimRenderer(canvas);
  const speedIn = $<HTMLInputElement>("sim-speed");
  const lossIn = $<HTMLInputElement>("sim-loss");
  const latencyIn = $<HTMLInputElement>("sim-latency");
  const scrub = $<HTMLInputElement>("sim-scrub");
  const pauseBtn = $<HTMLButtonElement>("sim-pause");
  const stats = $("sim-stats");
  const hook: NonNullable<Window["shoalSim"]> = { world: null, frames: 0, nodes: 0, ready: false };
  window.shoalSim = hook;

  let world!: SimWorld;
  let protocol = [1000, 400, 200, 3];
  let paused = false;
  let scrubbing: number | null = null; // virtual time shown while scrubbing
  let acc = 0;
  let throttle = 1; // share of the requested speed the simulator keeps up with
  let partitioned = false;
  let spread: SpreadTrack | null = null;
  const latency = () => Number(latencyIn.value);
  const messages = new MessageLog(HISTORY_MS, () => 2 * latency());
  const snapshots = new Snapshots(Math.ceil(60_000 / SNAPSHOT_SPACING_MS), SNAPSHOT_SPACING_MS);

  $("sim-legend").innerHTML = KIND_NAMES.map((k, i) => `<span><i style="background:${KIND_COLORS[i]}"></i>${k}</span>`).join("")
    + `<span>nodes: <b style="color:#3fb950">alive</b> <b style="color:#e3b341">suspect</b> <b style="color:#f85149">failed</b></span>`
    + `<span>dark core: crashed</span><span>square ring: stalled</span><span>circle: last killed</span>`;

  function build() {
    world?.free();
    const n = Math.max(10, Math.min(2000, Number($<HTMLInputElement>("sim-nodes").value) || 500));
    $<HTMLInputElement>("sim-nodes").value = String(n);
    const preset = $<HTMLSelectElement>("sim-preset").value;
    world = new SimWorld(n, Number($<HTMLInputElement>("sim-seed").value) || 1, preset, latency(), Math.round(latency() / 2));
    world.set_loss(Number(lossIn.value));
    protocol = Array.from(world.protocol());
    renderer.layout(n);
    messages.clear();
    snapshots.clear();
    partitioned = false;
    spread = null;
    scrubbing = null;
    hook.world = world;
    hook.nodes = n;
    hook.ready = true;
  }

  const speed = () => Math.pow(2, Number(speedIn.value));
  const outputs = () => {
    $("sim-speed-out").textContent = `${speed() >= 1 ? speed() : speed().toFixed(3).replace(/0+$/, "")}×`;
    $("sim-loss-out").textContent = `${Math.round(Number(lossIn.value) * 100)}%`;
    $("sim-latency-out").textContent = `${latency()} ms`;
  };
  outputs();
  speedIn.oninput = outputs;
  lossIn.oninput = () => {
    outputs();
    world.set_loss(Number(lossIn.value));
  };
  latencyIn.oninput = () => {
    outputs();
    world.set_latency(latency(), Math.round(latency() / 2));
  };
  $("sim-start").onclick = build;
  pauseBtn.onclick = () => {
    paused = !paused;
    pauseBtn.textContent = paused ? "Resume" : "Pause";
  };
  const trackKill = (target: number) => (spread = { target, killedAt: world.now_ms(), points: [] });
  $("sim-kill").onclick = () => {
    const k = world.kill_random(1);
    if (k.length) trackKill(k[0]);
  };
  $("sim-kill5").onclick = () => {
    const k = world.kill_random(Math.ceil(world.len() * 0.05));
    if (k.length) trackKill(k[0]);
  };
  $("sim-restart").onclick = () => world.restart_all();
  $("sim-stall").onclick = () => {
    const n = world.len();
    for (let i = 0; i < Math.ceil(n / 10); i++) world.stall(Math.floor(Math.random() * n), 2 * protocol[0]);
  };
  $("sim-partition").onclick = () => {
    if (partitioned) world.heal();
    else {
      const n = world.len();
      const groups = new Uint16Array(n);
      for (let i = 0; i < n; i++) groups[i] = renderer.pos[2 * i] < canvas.clientWidth / 2 ? 0 : 1;
      world.partition(groups);
    }
    partitioned = !partitioned;
    $("sim-partition").textContent = partitioned ? "Heal" : "Partition";
  };
  canvas.onclick = (e) => {
    const r = canvas.getBoundingClientRect();
    const i = renderer.nodeAt(e.clientX - r.left, e.clientY - r.top);
    if (i === null) return;
    if (e.shiftKey) world.stall(i, 2 * protocol[0]);
    else if (world.truth()[i] === 1) world.restart(i);
    else {
      world.kill(i);
      trackKill(i);
    }
  };
  canvas.title = "click: kill (or restart a crashed node); shift-click: stall for two periods";
  scrub.oninput = () => {
    const list = snapshots.list;
    if (!list.length) return;
    const v = Number(scrub.value);
    if (v >= 1000) scrubbing = null;
    else scrubbing = list[0].t + ((world.now_ms() - list[0].t) * v) / 1000;
  };
  $("sim-live").onclick = () => {
    scrubbing = null;
    scrub.value = "1000";
  };

  build();

  let last = performance.now();
  let fpsFrames = 0;
  let fpsSince = last;
  let lastCharts = 0;
  const frame = (now: number) => {
    requestAnimationFrame(frame);
    if (canvas.closest("[hidden]")) {
      last = now;
      return;
    }
    const dt = Math.min(100, now - last);
    last = now;
    if (!paused && scrubbing === null) {
      acc += dt * speed() * throttle;
      const step = Math.floor(acc);
      acc -= step;
      const began = performance.now();
      world.advance(step);
      // Keep the page responsive when the protocol work outgrows the frame: slow the virtual clock.
      const took = performance.now() - began;
      if (took > 20) throttle = Math.max(0.02, throttle * 0.7);
      else if (took < 8) throttle = Math.min(1, throttle * 1.05);
      const t = world.now_ms();
      messages.add(world.take_messages());
      messages.prune(t);
      snapshots.maybeAdd({ t, states: world.states(), truth: world.truth(), agreement: world.agreement(), partitioned });
      if (spread && t - spread.killedAt <= 120_000 && spread.points.length / 3 < 2000) {
        const lastT = spread.points[spread.points.length - 3] ?? -Infinity;
        if (t - spread.killedAt - lastT >= SNAPSHOT_SPACING_MS) {
          const [suspecting, failed] = world.spread(spread.target);
          spread.points.push(t - spread.killedAt, suspecting, failed);
        }
      }
    }
    const t = scrubbing ?? world.now_ms();
    const snap = scrubbing === null ? null : snapshots.at(t);
    renderer.draw(t, snap?.states ?? world.states(), snap?.truth ?? world.truth(), messages, snap?.partitioned ?? partitioned, spread?.target ?? null);
    if (scrubbing === null) scrub.value = "1000";
    $("sim-time").textContent = `t = ${(t / 1000).toFixed(2)} s${scrubbing === null ? "" : " (replay)"}`;
    hook.frames++;
    fpsFrames++;
    if (now - fpsSince >= 1000) {
      const slowed = throttle < 0.95 ? ` · simulator slowed to ${(throttle * 100).toFixed(0)}% of the chosen speed` : "";
      $("sim-fps").textContent = `${Math.round((fpsFrames * 1000) / (now - fpsSince))} frames/s · ${world.len()} nodes · ${messages.count} packets retained${slowed}`;
      fpsFrames = 0;
      fpsSince = now;
    }
    if (now - lastCharts > 250) {
      lastCharts = now;
      charts(t);
    }
  };
  requestAnimationFrame(frame);

  function charts(cursor: number) {
    const list = snapshots.list;
    const conv: number[] = [];
    for (const s of list) conv.push(s.t / 1000, s.agreement);
    const tNow = world.now_ms() / 1000;
    drawChart($<HTMLCanvasElement>("chart-convergence"), [{ points: conv, color: "#3fb950", label: "agreement" }], {
      xMin: Math.max(0, tNow - 60),
      xMax: Math.max(1, tNow),
      yMin: Math.min(0.8, ...conv.filter((_, i) => i % 2 === 1)),
      xLabel: "s",
      cursor: cursor / 1000,
    });

    const d = world.detections();
    const period = protocol[0];
    const firstSusp: number[] = [];
    const firstFail: number[] = [];
    const allFail: number[] = [];
    for (let i = 0; i < d.length; i += 5) {
      if (d[i + 2] >= 0) firstSusp.push(d[i + 2] / period);
      if (d[i + 3] >= 0) firstFail.push(d[i + 3] / period);
      if (d[i + 4] >= 0) allFail.push(d[i + 4] / period);
    }
    const up = world.truth().reduce((a, v) => a + (v !== 1 ? 1 : 0), 0);
    const tMax = Math.max(6, Math.ceil(Math.max(0, ...allFail, ...firstFail, ...firstSusp)));
    drawChart(
      $<HTMLCanvasElement>("chart-detection"),
      [
        { points: detectionCurve(up, tMax), color: "#8b949e", dashed: true, label: "SWIM theory, first detection" },
        { points: empiricalCdf(firstSusp), color: "#e3b341", label: `first suspicion (${firstSusp.length})` },
        { points: empiricalCdf(firstFail), color: "#f85149", label: "first failure" },
        { points: empiricalCdf(allFail), color: "#d2a8ff", label: "failed everywhere" },
      ],
      { xMin: 0, xMax: tMax, xLabel: "periods" },
    );

    const gossip = protocol[2];
    const spreadSeries: { points: number[]; color: string; dashed?: boolean; label?: string }[] = [];
    let xMax = 20;
    if (spread) {
      const suspecting: number[] = [];
      const failed: number[] = [];
      for (let i = 0; i < spread.points.length; i += 3) {
        suspecting.push(spread.points[i] / gossip, spread.points[i + 1]);
        failed.push(spread.points[i] / gossip, spread.points[i + 2]);
      }
      spreadSeries.push({ points: suspecting, color: "#e3b341", label: `node ${spread.target} suspected by` });
      spreadSeries.push({ points: failed, color: "#f85149", label: "failed for" });
      const row = [...Array(d.length / 5).keys()].map((k) => k * 5).reverse().find((k) => d[k] === spread!.target);
      for (const [col, color] of [[2, "#e3b34199"], [3, "#f8514999"]] as const) {
        if (row !== undefined && d[row + col] >= 0) {
          const start = d[row + col] / gossip;
          const label = col === 2 ? `infection model, fan-out ${protocol[3]}` : undefined;
          spreadSeries.push({ points: infectionCurve(up, protocol[3], start, 40), color, dashed: true, label });
        }
      }
      xMax = Math.max(20, Math.min(600, (failed[failed.length - 2] ?? 0) + 2));
    }
    drawChart($<HTMLCanvasElement>("chart-spread"), spreadSeries, { xMin: 0, xMax, xLabel: "gossip rounds after the crash" });

    const kinds = Array.from(world.packets_by_kind());
    const median = (v: number[]) => (v.length ? [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] : NaN);
    stats.textContent =
      `packets: ${KIND_NAMES.map((k, i) => `${k} ${kinds[i]}`).join(", ")}. ` +
      (firstSusp.length ? `median first suspicion ${median(firstSusp).toFixed(2)} periods (theory e/(e-1) ≈ 1.58).` : "Kill nodes to measure detection times.");
  }
}
