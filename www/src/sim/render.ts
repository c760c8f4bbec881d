// Canvas renderer of the simulated cluster: nodes on a sunflower (phyllotaxis) disc, coloured by
// what the cluster believes about them, and the packets in flight as short comets coloured by kind;
// lost packets fade out half-way. Nodes and packets are batched by colour into one path each, so a
// frame of 2,000 nodes and a few thousand packets is a few dozen canvas calls.
import { fitCanvas } from "../chart";
import type { MessageLog } from "./history";

export const KIND_NAMES = ["ping", "ack", "ping-req", "nack", "gossip", "push-pull", "direct"];
export const KIND_COLORS = ["#58a6ff", "#3fb950", "#d2a8ff", "#ff7b72", "#e3b341", "#39c5cf", "#f0f6fc"];
const STATE_COLORS = ["#3fb950", "#e3b341", "#f85149", "#8b949e"]; // alive, suspect, failed, left
const GOLDEN = Math.PI * (3 - Math.sqrt(5));

export class SimRenderer {
  /** Node positions in CSS pixels (x0, y0, x1, y1, ...). */
  pos = new Float32Array(0);
  private unit = new Float32Array(0);
  private size = 2;
  private w = 0;
  private h = 0;

  constructor(private canvas: HTMLCanvasElement) {}

  layout(n: number) {
    this.unit = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) {
      const r = Math.sqrt((i + 0.5) / n);
      this.unit[2 * i] = r * Math.cos(i * GOLDEN);
      this.unit[2 * i + 1] = r * Math.sin(i * GOLDEN);
    }
    this.pos = new Float32Array(2 * n);
    this.w = 0;
  }

  private resize(): CanvasRenderingContext2D {
    const ctx = fitCanvas(this.canvas);
    const w = this.canvas.clientWidth;
    const h = this.canvas.clientHeight;
    if (w !== this.w || h !== this.h) {
      this.w = w;
      this.h = h;
      const R = Math.min(w, h) / 2 - 14;
      const n = this.unit.length / 2;
      for (let i = 0; i < this.unit.length; i += 2) {
        this.pos[i] = w / 2 + R * this.unit[i];
        this.pos[i + 1] = h / 2 + R * this.unit[i + 1];
      }
      this.size = Math.max(1.6, Math.min(7, (0.75 * R) / Math.sqrt(Math.max(1, n))));
    }
    return ctx;
  }

  /** Index of the node nearest to a point in CSS pixels, if close enough. */
  nodeAt(x: number, y: number): number | null {
    let best = -1;
    let bestD = (this.size * 2.5) ** 2;
    for (let i = 0; i < this.pos.length; i += 2) {
      const d = (this.pos[i] - x) ** 2 + (this.pos[i + 1] - y) ** 2;
      if (d < bestD) [best, bestD] = [i / 2, d];
    }
    return best < 0 ? null : best;
  }

  draw(t: number, states: Uint8Array, truth: Uint8Array, messages: MessageLog, partitioned: boolean, focus: number | null) {
    const ctx = this.resize();
    const { w, h, pos, size } = this;
    ctx.clearRect(0, 0, w, h);
    if (partitioned) {
      ctx.strokeStyle = "#f8514966";
      ctx.setLineDash([6, 6]);
      ctx.beginPath();
      ctx.moveTo(w / 2, 0);
      ctx.lineTo(w / 2, h);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // Packets.
    ctx.lineWidth = 1.2;
    ctx.lineCap = "round";
    for (let lost = 0; lost < 2; lost++) {
      ctx.globalAlpha = lost ? 0.28 : 0.9;
      for (let k = 0; k < KIND_NAMES.length; k++) {
        ctx.strokeStyle = KIND_COLORS[k];
        ctx.beginPath();
        let any = false;
        messages.forEachInFlight(t, k, lost === 1, (from, to, p) => {
          const fx = pos[2 * from], fy = pos[2 * from + 1];
          const dx = pos[2 * to] - fx, dy = pos[2 * to + 1] - fy;
          const tail = Math.max(0, p - 0.12);
          ctx.moveTo(fx + dx * tail, fy + dy * tail);
          ctx.lineTo(fx + dx * p, fy + dy * p);
          any = true;
        });
        if (any) ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    // Nodes, one path per state colour.
    const n = states.length;
    for (let s = 0; s < STATE_COLORS.length; s++) {
      ctx.fillStyle = STATE_COLORS[s];
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        if (states[i] === s) ctx.rect(pos[2 * i] - size / 2, pos[2 * i + 1] - size / 2, size, size);
      }
      ctx.fill();
    }
    // Ground truth marks: crashed nodes get a dark core, stalled ones a violet ring.
    const core = Math.max(0.8, size / 2.5);
    ctx.fillStyle = "#0f1419";
    ctx.beginPath();
    for (let i = 0; i < n; i++) if (truth[i] === 1) ctx.rect(pos[2 * i] - core / 2, pos[2 * i + 1] - core / 2, core, core);
    ctx.fill();
    ctx.strokeStyle = "#d2a8ff";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let i = 0; i < n; i++) if (truth[i] === 2) ctx.rect(pos[2 * i] - size, pos[2 * i + 1] - size, size * 2, size * 2);
    ctx.stroke();
    if (focus !== null && focus < n) {
      ctx.strokeStyle = "#f0f6fc";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(pos[2 * focus], pos[2 * focus + 1], size + 6, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
}
