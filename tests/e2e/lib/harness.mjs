// Shared helpers of the end-to-end suite: processes started and always stopped by PID, the relay,
// native agents, a static directory holding the test page and the package's web build, headless
// Chromium, and polling with deadlines. Everything listens on 127.0.0.1 only.
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

import { AGENT_BIN, ARTIFACTS, E2E, PKG, RELAY_BIN, WASM } from "./paths.mjs";

export { sleep };
export const TOKEN = "e2e-token";

/** Options of every `t.after` cleanup hook: a hung cleanup fails the test instead of hanging it. */
export const CLEANUP = { timeout: 30_000 };

// Every child still running when this test process exits (or is told to stop) is killed by its PID.
const live = new Map();
function killAll() {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
}
process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }[signal]);
  });
}

/** Rejects after `ms` with a message naming what was awaited. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `fn` (sync or async) every `every` ms until it returns a truthy value; that value. */
export async function waitUntil(fn, ms, what, every = 50) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
    }
    await sleep(every);
  }
}

/** Writes a figure (JSON) or text to tests/e2e/artifacts/ (git-ignored). */
export function saveArtifact(name, data) {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(`${ARTIFACTS}/${name}`, typeof data === "string" ? data : JSON.stringify(data, null, 2) + "\n");
}

/** A child process whose stdout lines are kept (and can be awaited), stopped by PID. */
export class Proc {
  constructor(label, cmd, args, options = {}) {
    this.label = label;
    this.lines = [];
    this.stderr = [];
    this.stderrAt = []; // { at, line }: the same lines with their arrival times
    this.waiters = new Set();
    this.child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], ...options });
    this.pid = this.child.pid;
    if (this.pid === undefined) throw new Error(`${label}: could not start ${cmd}`);
    live.set(this.pid, this);
    const closed = new Promise((resolve) => this.child.on("close", resolve));
    this.exited = new Promise((resolve) =>
      this.child.on("exit", (code, signal) => {
        live.delete(this.pid);
        this.exitCode = code;
        this.exitSignal = signal;
        resolve({ code, signal });
        // What is waited for never comes: say why with the last stderr lines, once the pipes have
        // delivered them ("exit" can come first; a grandchild holding them open is not waited for).
        Promise.race([closed, sleep(500, undefined, { ref: false })]).then(() => {
          if (this.waiters.size === 0) return;
          const why = this.stderr.slice(-20).join("\n");
          const error = new Error(`${label} exited (${code ?? signal}) first${why ? `; its last stderr lines:\n${why}` : " (nothing on stderr)"}`);
          for (const w of this.waiters) w.fail(error);
        });
      }),
    );
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      const entry = { at: Date.now(), line };
      this.lines.push(entry);
      for (const w of this.waiters) w.check(entry);
    });
    createInterface({ input: this.child.stderr }).on("line", (line) => {
      this.stderr.push(line);
      this.stderrAt.push({ at: Date.now(), line });
      if (process.env.SHOAL_E2E_VERBOSE) console.error(`[${label}] ${line}`);
    });
  }

  get running() {
    return live.has(this.pid);
  }

  /** The first stdout line (past or future) for which `pred(line)` is truthy. */
  waitLine(pred, ms, what) {
    const hit = this.lines.find((e) => pred(e.line));
    if (hit) return Promise.resolve(hit);
    let w;
    const p = new Promise((resolve, reject) => {
      w = { check: (e) => pred(e.line) && resolve(e), fail: reject };
      this.waiters.add(w);
      if (!this.running) reject(new Error(`${this.label} is not running (exited ${this.exitCode ?? this.exitSignal}); its last output:\n${this.tail()}`));
    });
    return within(ms, p, `${this.label}: ${what}`).finally(() => this.waiters.delete(w));
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs = 3000) {
    if (!this.running) return;
    try {
      process.kill(this.pid, "SIGTERM");
    } catch {}
    const gone = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!gone) {
      try {
        process.kill(this.pid, "SIGKILL");
      } catch {}
      await this.exited;
    }
  }

  tail(n = 20) {
    return [...this.lines.slice(-n).map((e) => e.line), ...this.stderr.slice(-n)].join("\n");
  }
}

/** Starts shoal-relay on 127.0.0.1 (port 0, or `port` to restart a relay at its old address),
 * optionally serving `staticDir`. */
export async function startRelay({ staticDir, token = TOKEN, port = 0 } = {}) {
  const args = ["--bind", `127.0.0.1:${port}`, "--token", token];
  if (staticDir) args.push("--static", staticDir);
  const proc = new Proc("relay", RELAY_BIN, args, { env: { ...process.env, RUST_LOG: "shoal_relay=info" } });
  const { line } = await proc.waitLine((l) => l.startsWith("listening on "), 30_000, "listening on");
  const addr = line.slice("listening on ".length).trim();
  return { proc, addr, ws: `ws://${addr}`, http: `http://${addr}`, token, stop: () => proc.stop() };
}

/**
 * A native member: shoal-agent on a free UDP+TCP port with --json output and an --http status
 * endpoint. Its event lines (joined, failed, suspect, left...) are parsed with their timestamps.
 */
export class Agent {
  /**
   * With `websocket` (a relay from `startRelay`), the agent joins through that relay over a
   * WebSocket (`--websocket`) instead of binding UDP: a native member on shoal-websocket, whose
   * reconnections are logged on stderr (see `reconnects()`).
   */
  static async start({ name, join = [], preset = "local", meta, extra = [], websocket } = {}) {
    const args = ["--name", name, "--preset", preset, "--json"];
    if (websocket) args.push("--websocket", `${websocket.ws}?token=${websocket.token}`);
    else args.push("--bind", "127.0.0.1:0");
    // Port 0: the agent binds before printing `started`, which reports the address (no port
    // picked here that another process could take before the agent binds it).
    args.push("--http", "127.0.0.1:0");
    for (const j of [join].flat()) args.push("--join", j);
    if (meta) args.push("--meta", meta);
    args.push(...extra);
    const env = websocket ? { ...process.env, SHOAL_LOG: "warn,shoal_websocket=info", NO_COLOR: "1" } : process.env;
    const agent = new Agent(name, new Proc(name, AGENT_BIN, args, { env }));
    const started = await agent.waitEvent((e) => e.event === "started", 30_000, "started");
    if (!started.http) throw new Error(`${name}: no http address in ${JSON.stringify(started)} (an agent built before --http port 0?)`);
    agent.addr = started.addr;
    agent.http = `http://${started.http}`;
    await waitUntil(() => agent.health(), 30_000, `${name}'s http endpoint`);
    return agent;
  }

  constructor(name, proc, http) {
    this.name = name;
    this.proc = proc;
    this.http = http;
  }

  /** Parsed JSON event lines so far. */
  events() {
    return this.proc.lines.flatMap(({ line }) => {
      try {
        const e = JSON.parse(line);
        return [{ ...e, at: Date.parse(e.ts) }];
      } catch {
        return [];
      }
    });
  }

  async waitEvent(pred, ms, what) {
    const { line } = await this.proc.waitLine(
      (l) => {
        try {
          return pred(JSON.parse(l));
        } catch {
          return false;
        }
      },
      ms,
      what,
    );
    const e = JSON.parse(line);
    return { ...e, at: Date.parse(e.ts) };
  }

  /** Arrival times of the WebSocket transport's "reconnected" log lines (`websocket` agents). */
  reconnects() {
    return this.proc.stderrAt.filter((e) => e.line.includes("websocket transport reconnected")).map((e) => e.at);
  }

  async get(p) {
    const res = await fetch(this.http + p, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) throw new Error(`${this.name} ${p}: HTTP ${res.status}`);
    return res.text();
  }

  async health() {
    return (await this.get("/health")).trim() === "ok";
  }

  /** Other members as the agent's /members reports them: [{ name, addr, state, ... }]. */
  async members() {
    return JSON.parse(await this.get("/members")).filter((m) => m.name !== this.name);
  }

  /** One Prometheus sample of /metrics (without labels), as a number. */
  async metric(name) {
    const text = await this.get("/metrics");
    const m = text.match(new RegExp(`^${name} (\\S+)$`, "m"));
    if (!m) throw new Error(`${this.name}: no ${name} in /metrics`);
    return Number(m[1]);
  }

  stop(graceMs) {
    return this.proc.stop(graceMs);
  }
}

/** Whether `members` (objects with name and state) includes every one of `names` alive. */
export function allAlive(members, names) {
  return names.every((n) => members.some((m) => m.name === n && m.state === "alive"));
}

/** Starts `count` agents (agent-1 founds, with `firstExtra` flags; the others join through it). */
export async function startAgents(count, { prefix = "agent", preset = "local", firstExtra = [] } = {}) {
  const first = await Agent.start({ name: `${prefix}-1`, preset, extra: firstExtra });
  const rest = await Promise.all(
    Array.from({ length: count - 1 }, (_, i) => Agent.start({ name: `${prefix}-${i + 2}`, join: first.addr, preset })),
  );
  return [first, ...rest];
}

/**
 * A temporary directory for the relay's --static: the test page (tests/e2e/page/) and the
 * package's browser entry as the npm package lays it out (shoal/js/, shoal/pkg/web/).
 */
export function prepareStaticDir() {
  const dir = mkdtempSync(path.join(tmpdir(), "shoal-e2e-static-"));
  cpSync(`${E2E}/page`, dir, { recursive: true });
  mkdirSync(`${dir}/shoal/pkg`, { recursive: true });
  cpSync(`${WASM}/js`, `${dir}/shoal/js`, { recursive: true });
  cpSync(`${PKG}/web`, `${dir}/shoal/pkg/web`, { recursive: true });
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Headless Debian Chromium through playwright-core (which gives it a fresh temporary profile). */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false, // --no-sandbox: we run as root
    timeout: 60_000,
    args: [
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Background pages must keep their timers running like a visible one.
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
      // WebRTC between pages on one machine: host candidates with real addresses, not mDNS names.
      "--disable-features=WebRtcHideLocalIpsWithMdns",
    ],
  });
}

/** Page URL of the test page with its join options in the query string. */
export function pageUrl(relay, { name, seeds = [], preset = "local", leaveOnPageHide = true, token = relay.token, mainThread = false, worker, queries = false }) {
  const q = new URLSearchParams({ name, seeds: seeds.join(","), preset, token, leave: leaveOnPageHide ? "1" : "0" });
  if (mainThread) q.set("mainThread", "1");
  if (queries) q.set("queries", "1");
  if (worker) q.set("worker", worker);
  return `${relay.http}/index.html?${q}`;
}

/** Opens the test page in a new page of `browser` and waits until it has joined. */
export async function openMember(browser, relay, options) {
  const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(pageUrl(relay, options), { timeout: 30_000 });
  try {
    await page.waitForFunction(() => window.joinState !== undefined && window.joinState !== "joining", null, {
      timeout: 30_000,
    });
  } catch (e) {
    throw new Error(`${options.name} did not finish joining: ${e.message}\n${consoleLines.join("\n")}`);
  }
  const state = await page.evaluate(() => window.joinState);
  if (state !== "joined") throw new Error(`${options.name}: ${state}\n${consoleLines.join("\n")}`);
  return { page, name: options.name, consoleLines };
}

/** A browser member's view: [{ name, addr, state }]. */
export function pageMembers(page) {
  return page.evaluate(() => window.shoal.members().map(({ name, addr, state }) => ({ name, addr, state })));
}

/** A browser member's recorded events ({ type, member, from, topic, text, at }). */
export function pageEvents(page) {
  return page.evaluate(() => window.shoalEvents);
}

/**
 * A member in this Node process: the package's Node entry (wasm-bindgen `nodejs` build) with the
 * `ws` package as WebSocket (Node 20 has no global one). Its events are kept with arrival times.
 */
export async function joinNodeMember(relay, { name, seeds = [], preset = "local" }) {
  const [{ Shoal }, { default: WebSocket }] = await Promise.all([import(`${WASM}/js/node.js`), import("ws")]);
  const events = [];
  const shoal = await Shoal.join({
    relay: relay.ws,
    name,
    seeds,
    token: relay.token,
    preset,
    meta: "role=node",
    WebSocket,
    on: {
      "*": (e) =>
        events.push({ type: e.type, member: e.member, by: e.by, from: e.from, topic: e.topic, text: e.type === "message" ? e.text : undefined, at: Date.now() }),
    },
  });
  return { shoal, events, name };
}
