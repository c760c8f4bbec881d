// Helpers of the WebRTC tests: paths, a relay process, a static file server for the pages, headless
// Chromium, and polling.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../..");
export const RELAY_BIN = process.env.SHOAL_RELAY_BIN ?? `${ROOT}/target/release/shoal-relay`;
/** shoal-agent built with `--features webrtc` (copied here by prepare.mjs). */
export const AGENT_BIN = process.env.SHOAL_AGENT_BIN ?? `${HERE}/bin/shoal-agent`;
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Starts `shoal-relay` on an ephemeral port; resolves `{ proc, addr, url, stop() }`. `args` are
 * more command-line arguments (a relay fleet's `--relay-key`, `--peer-relay`). */
export async function startRelay(args = []) {
  const proc = spawn(RELAY_BIN, ["--bind", "127.0.0.1:0", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const addr = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("shoal-relay did not start in 10 s")), 10_000);
    proc.on("exit", (code) => reject(new Error(`shoal-relay exited with ${code}`)));
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return {
    proc,
    addr,
    url: `ws://${addr}`,
    /** One sample of its `/metrics`, by metric line (`name{labels}` -> value). */
    async metrics() {
      const text = await (await fetch(`http://${addr}/metrics`)).text();
      return Object.fromEntries(
        text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))]),
      );
    },
    signal(sig) {
      process.kill(proc.pid, sig);
    },
    stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        try {
          process.kill(proc.pid, "SIGCONT");
        } catch {}
        proc.kill("SIGKILL");
      }
    },
  };
}

const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html", ".mjs": "text/javascript" };

/** Serves `/wasm/js/*` and `/wasm/pkg/web/*` from the repository and `/` as the test page. */
export async function startPageServer() {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    let file;
    if (url.pathname === "/" || url.pathname === "/index.html") file = `${HERE}/page.html`;
    else if (/^\/wasm\/(js|pkg\/web)\/[\w.-]+$/.test(url.pathname)) file = `${ROOT}${url.pathname}`;
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

/** Headless Debian Chromium, with real host candidates (no mDNS hiding of local addresses). */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: ["--disable-features=WebRtcHideLocalIpsWithMdns"],
  });
}

/** Polls `check` (async, truthy when done) every 200 ms until `ms` elapse. */
export async function waitFor(what, ms, check) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts `shoal-agent --json` with `args`; resolves `{ proc, addr, lines, stop() }` once it prints
 * its `started` line (`addr` is its member address). */
export async function startAgent(args) {
  const proc = spawn(AGENT_BIN, ["--json", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = [];
  const addr = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("shoal-agent did not start in 20 s")), 20_000);
    proc.on("exit", (code) => reject(new Error(`shoal-agent exited with ${code}`)));
    proc.stdout.on("data", (d) => {
      out += d;
      let nl;
      while ((nl = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        try {
          const e = JSON.parse(line);
          lines.push(e);
          if (e.event === "started") {
            clearTimeout(timer);
            resolve(e.addr);
          }
        } catch {}
      }
    });
  });
  return {
    proc,
    addr,
    lines,
    stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    },
  };
}

/** A new page of the test site, once its module has loaded (`window.ready`). */
export async function openPage(browser, site) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(site.url);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

/** The page's `shoal.transportStats()`. */
export const stats = (page) => page.evaluate(() => window.shoal.transportStats());
