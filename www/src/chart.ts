// Small line charts on a canvas, drawn by hand: a few series over a shared x range, optional dashed
// reference curves and a vertical cursor. Sized to the canvas's CSS box at device pixel ratio.

export interface Series {
  points: ArrayLike<number>; // x0, y0, x1, y1, ...
  color: string;
  dashed?: boolean;
  step?: boolean;
  label?: string;
}

export interface ChartOptions {
  xMin: number;
  xMax: number;
  yMin?: number;
  yMax?: number;
  xLabel?: string;
  cursor?: number;
  yTicks?: number[];
}

/** Resizes a canvas's backing store to its CSS size; returns the 2D context scaled to CSS pixels. */
export function fitCanvas(canvas: HTMLCanvasElement): CanvasRenderingContext2D {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

export function drawChart(canvas: HTMLCanvasElement, series: Series[], o: ChartOptions) {
  const ctx = fitCanvas(canvas);
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  const labelled = series.some((s) => s.label);
  const pad = { l: 34, r: 8, t: labelled ? 18 : 6, b: 18 };
  const yMin = o.yMin ?? 0;
  const yMax = o.yMax ?? 1;
  const span = o.xMax - o.xMin || 1;
  const x = (v: number) => pad.l + ((v - o.xMin) / span) * (w - pad.l - pad.r);
  const y = (v: number) => h - pad.b - ((v - yMin) / (yMax - yMin || 1)) * (h - pad.t - pad.b);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "10px system-ui, sans-serif";
  ctx.strokeStyle = "#263241";
  ctx.fillStyle = "#7f8fa3";
  ctx.lineWidth = 1;
  for (const t of o.yTicks ?? [yMin, (yMin + yMax) / 2, yMax]) {
    ctx.beginPath();
    ctx.moveTo(pad.l, y(t));
    ctx.lineTo(w - pad.r, y(t));
    ctx.stroke();
    ctx.fillText(formatTick(t), 2, y(t) + 3);
  }
  ctx.fillText(formatTick(o.xMin), pad.l, h - 4);
  const right = formatTick(o.xMax) + (o.xLabel ? ` ${o.xLabel}` : "");
  ctx.fillText(right, w - pad.r - ctx.measureText(right).width, h - 4);
  for (const s of series) {
    const p = s.points;
    if (p.length < 2) continue;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.setLineDash(s.dashed ? [4, 3] : []);
    ctx.beginPath();
    for (let i = 0; i < p.length; i += 2) {
      const px = x(p[i]);
      const py = y(Math.min(yMax, Math.max(yMin, p[i + 1])));
      if (i === 0) ctx.moveTo(px, py);
      else {
        if (s.step) ctx.lineTo(px, y(Math.min(yMax, Math.max(yMin, p[i - 1]))));
        ctx.lineTo(px, py);
      }
    }
    ctx.stroke();
  }
  ctx.setLineDash([]);
  // Legend: one row above the plot.
  let lx = pad.l;
  for (const s of series) {
    if (!s.label) continue;
    ctx.fillStyle = s.color;
    ctx.fillRect(lx, 6, 10, s.dashed ? 1 : 2);
    ctx.fillText(s.label, lx + 13, 10);
    lx += 13 + ctx.measureText(s.label).width + 12;
  }
  if (o.cursor !== undefined && o.cursor >= o.xMin && o.cursor <= o.xMax) {
    ctx.strokeStyle = "#58a6ff";
    ctx.beginPath();
    ctx.moveTo(x(o.cursor), pad.t);
    ctx.lineTo(x(o.cursor), h - pad.b);
    ctx.stroke();
  }
}

function formatTick(v: number): string {
  if (Math.abs(v) >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return Number(v.toFixed(2)).toString();
}
