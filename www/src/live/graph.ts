// The live graph: this dashboard member in the middle, every other member on a ring around it,
// coloured by state, with the probe round-trip time on each spoke. A member pulses when an event
// about it arrives (in step with the event log) and a dot runs down its spoke for each view digest
// it sends. Hovering a member shows its record and highlights its events in the log.
import { fitCanvas } from "../chart";

export const STATE_COLORS: Record<string, string> = {
  alive: "#3fb950",
  suspect: "#e3b341",
  failed: "#f85149",
  left: "#8b949e",
  self: "#58a6ff",
};

export interface GraphMember {
  name: string;
  addr: string;
  state: string;
  incarnation: number;
  meta: string;
  rttMs: number | null;
  digest: string | null;
  agrees: boolean | null;
}

interface Placed {
  x: number;
  y: number;
  m: GraphMember;
}

export class LiveGraph {
  private members: GraphMember[] = [];
  private self: GraphMember | null = null;
  private placed: Placed[] = [];
  private flashes = new Map<string, number>();
  private pulses: { name: string; at: number }[] = [];
  private hovered: string | null = null;
  private highlighted: string | null = null;

  constructor(
    private canvas: HTMLCanvasElement,
    private tip: HTMLElement,
    private onHover: (name: string | null) => void,
  ) {
    canvas.addEventListener("mousemove", (e) => this.hover(e));
    canvas.addEventListener("mouseleave", () => this.setHovered(null));
    const frame = () => {
      if (!canvas.closest("[hidden]")) this.draw();
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  update(self: GraphMember, members: GraphMember[]) {
    this.self = self;
    this.members = [...members].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** An event about `name` arrived: make it pulse. */
  flash(name: string) {
    this.flashes.set(name, performance.now());
  }

  /** A message from `name` arrived: run a dot down its spoke. */
  pulse(name: string) {
    this.pulses.push({ name, at: performance.now() });
    if (this.pulses.length > 200) this.pulses.splice(0, this.pulses.length - 200);
  }

  /** Rings `name` (the event log calls this while an entry about it is hovered). */
  highlight(name: string | null) {
    this.highlighted = name;
  }

  private setHovered(name: string | null) {
    if (name === this.hovered) return;
    this.hovered = name;
    this.onHover(name);
    if (!name) this.tip.hidden = true;
  }

  private hover(e: MouseEvent) {
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    const y = e.clientY - r.top;
    const hit = this.placed.find((p) => (p.x - x) ** 2 + (p.y - y) ** 2 < 18 ** 2);
    this.setHovered(hit?.m.name ?? null);
    if (!hit) return;
    const m = hit.m;
    this.tip.hidden = false;
    this.tip.textContent = [
      m.name,
      `state        ${m.state}`,
      `incarnation  ${m.incarnation}`,
      `address      ${m.addr}`,
      `metadata     ${m.meta || "–"}`,
      `RTT          ${m.rttMs == null ? "–" : `${m.rttMs} ms`}`,
      `view digest  ${m.digest ?? "–"}${m.agrees === false ? " (differs)" : ""}`,
    ].join("\n");
    this.tip.style.left = `${Math.min(x + 14, r.width - 260)}px`;
    this.tip.style.top = `${y + 14}px`;
  }

  private draw() {
    const ctx = fitCanvas(this.canvas);
    const w = this.canvas.clientWidth;
    const h = this.canvas.clientHeight;
    ctx.clearRect(0, 0, w, h);
    const cx = w / 2;
    const cy = h / 2;
    const radius = Math.max(60, Math.min(w, h) / 2 - 56);
    const now = performance.now();
    const n = this.members.length;
    this.placed = this.members.map((m, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, n);
      return { x: cx + radius * Math.cos(a), y: cy + radius * Math.sin(a), m };
    });
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    for (const p of this.placed) {
      const live = p.m.state === "alive" || p.m.state === "suspect";
      ctx.strokeStyle = live ? "#2f3d4f" : "#1e2732";
      ctx.setLineDash(live ? [] : [3, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(cx, cy);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
      if (p.m.rttMs != null && live) {
        ctx.fillStyle = "#7f8fa3";
        ctx.fillText(`${p.m.rttMs} ms`, (cx + p.x) / 2, (cy + p.y) / 2 - 4);
      }
    }
    ctx.setLineDash([]);
    this.pulses = this.pulses.filter((pu) => now - pu.at < 600);
    for (const pu of this.pulses) {
      const p = this.placed.find((q) => q.m.name === pu.name);
      if (!p) continue;
      const t = (now - pu.at) / 600;
      ctx.fillStyle = `rgba(88,166,255,${1 - t * 0.6})`;
      ctx.beginPath();
      ctx.arc(p.x + (cx - p.x) * t, p.y + (cy - p.y) * t, 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    const nodes: Placed[] = [...this.placed];
    if (this.self) nodes.push({ x: cx, y: cy, m: this.self });
    for (const p of nodes) {
      const flashed = this.flashes.get(p.m.name);
      if (flashed !== undefined && now - flashed < 1500) {
        const t = (now - flashed) / 1500;
        ctx.strokeStyle = STATE_COLORS[p.m.state] ?? "#fff";
        ctx.globalAlpha = 1 - t;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(p.x, p.y, 16 + 22 * t, 0, 2 * Math.PI);
        ctx.stroke();
        ctx.globalAlpha = 1;
      }
      ctx.fillStyle = STATE_COLORS[p === nodes[nodes.length - 1] && this.self ? "self" : p.m.state] ?? "#888";
      ctx.beginPath();
      ctx.arc(p.x, p.y, 14, 0, 2 * Math.PI);
      ctx.fill();
      if (p.m.name === this.hovered || p.m.name === this.highlighted) {
        ctx.strokeStyle = "#ffffff";
        ctx.lineWidth = 2;
        ctx.stroke();
      }
      if (p.m.agrees === false) {
        ctx.fillStyle = "#e3b341";
        ctx.fillText("≠", p.x + 16, p.y - 12);
      }
      ctx.fillStyle = "#d5dde6";
      ctx.fillText(p.m.name, p.x, p.y + 28);
      ctx.fillStyle = "#7f8fa3";
      ctx.fillText(`${p.m.state} · inc ${p.m.incarnation}`, p.x, p.y + 40);
    }
    if (!n) {
      ctx.fillStyle = "#7f8fa3";
      ctx.fillText("no other members yet", cx, cy + 56);
    }
  }
}
