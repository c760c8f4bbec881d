// End-to-end test of the dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core; no browser download). It starts the demo stack (shoal-demo: relay + 5 native
// members + control API) on ephemeral ports, then checks that
//   - the page loads and joins with no console error and no page error,
//   - the native members show alive, and a member killed through the control API is shown suspect,
//     then failed, then alive again after a restart; a partition fails the far half, healing merges it,
//   - the simulation view runs 500 nodes at >= 30 frames/s (2,000 nodes are measured and reported),
//     shows a partition as disagreement, and replays the past with the scrubber.
// Screenshots go to www/test/artifacts/ (git-ignored).
//
//   bash www/build.sh && (cd www && npm test)
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const www = join(dirname(fileURLToPath(import.meta.url)), "..");
const root = join(www, "..");
const artifacts = join(www, "test", "artifacts");
const demoBin = join(root, "target", "release", "shoal-demo");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, timeoutMs, f, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function startDemo() {
  const child = spawn(demoBin, ["--static", join(www, "dist"), "--port", "0", "--members", "5"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const ready = new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      out += d;
      const dash = out.match(/dashboard: (http:\S+)/);
      const control = out.match(/control: (http:\S+)\/demo/);
      if (dash && control) resolve({ url: dash[1], control: control[1] });
    });
    child.on("exit", (code) => reject(new Error(`shoal-demo exited with ${code}: ${out}`)));
    setTimeout(() => reject(new Error(`shoal-demo did not start: ${out}`)), 20_000);
  });
  return { child, ready };
}

async function measureFps(page, ms) {
  return page.evaluate(
    (ms) =>
      new Promise((resolve) => {
        let frames = 0;
        const start = performance.now();
        const tick = (now) => {
          frames++;
          if (now - start < ms) requestAnimationFrame(tick);
          else resolve((frames * 1000) / (now - start));
        };
        requestAnimationFrame(tick);
      }),
    ms,
  );
}

test("the dashboard shows the live cluster, a killed member going suspect then failed, and simulates 500 nodes at 30 fps", { timeout: 240_000 }, async () => {
  assert.ok(existsSync(demoBin) && existsSync(join(www, "dist", "index.html")), "build first: bash www/build.sh");
  mkdirSync(artifacts, { recursive: true });
  const demo = startDemo();
  const args = ["--disable-features=WebRtcHideLocalIpsWithMdns", "--enable-gpu-rasterization", "--ignore-gpu-blocklist"];
  if (process.getuid?.() === 0) args.push("--no-sandbox");
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args });
  const errors = [];
  try {
    const { url, control } = await demo.ready;
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
    page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
    await page.goto(url);

    // Live view: every native member alive.
    const names = ["native-1", "native-2", "native-3", "native-4", "native-5"];
    await until("the native members alive on the page", 30_000, () =>
      page.evaluate((names) => names.every((n) => document.querySelector(`#members tr[data-name="${n}"]`)?.dataset.state === "alive"), names),
    );
    await until("every member agreeing on the view", 20_000, () =>
      page.evaluate(() => document.getElementById("live-converged")?.dataset.converged === "true"),
    );
    await page.screenshot({ path: join(artifacts, "live-alive.png") });

    // A second tab joins through the same relay: the first shows which relay it is on, and natives
    // (their own sockets) on none.
    const relayHost = new URL(url).host;
    const second = await browser.newPage();
    await second.goto(url);
    const secondName = await until("the second tab's member", 30_000, () => second.evaluate(() => window.shoalDashboard?.shoal.name));
    const relayCell = (n) => page.evaluate((n) => document.querySelector(`#members tr[data-name="${n}"] td:nth-child(5)`)?.textContent, n);
    await until("the second tab's row naming its relay", 30_000, async () => (await relayCell(secondName)) === relayHost);
    assert.equal(await relayCell("native-1"), "–", "a native member is on no relay");
    const facts = await page.evaluate(() => [...document.querySelectorAll("#live-health dt")].map((dt) => [dt.textContent, dt.nextElementSibling?.textContent]));
    assert.deepEqual(facts.find(([k]) => k === "relay"), ["relay", relayHost], "the page says which relay it is on");
    await page.screenshot({ path: join(artifacts, "live-relay-column.png") });
    await second.close({ runBeforeUnload: true });

    // Kill native-3: suspect, then failed.
    const killedAt = Date.now();
    const r = await fetch(`${control}/demo/kill?name=native-3`, { method: "POST" });
    assert.equal(r.status, 200);
    const shown = () => page.evaluate(() => window.shoalDashboard.shown["native-3"] ?? []);
    await until("native-3 shown suspect", 30_000, async () => (await shown()).includes("suspect"), 50);
    const suspectMs = Date.now() - killedAt;
    await page.screenshot({ path: join(artifacts, "live-suspect.png") });
    await until("native-3 shown failed", 60_000, async () => (await shown()).includes("failed"), 50);
    const failedMs = Date.now() - killedAt;
    const history = await shown();
    assert.ok(history.lastIndexOf("suspect") < history.lastIndexOf("failed"), `suspect before failed: ${history}`);
    await page.waitForTimeout(1500);
    await page.screenshot({ path: join(artifacts, "live-failed.png"), fullPage: true });
    console.log(`native-3 killed: shown suspect after ${suspectMs} ms, failed after ${failedMs} ms (page states ${history.join(" -> ")})`);

    // Restart: alive again.
    await fetch(`${control}/demo/restart?name=native-3`, { method: "POST" });
    await until("native-3 alive again", 30_000, () =>
      page.evaluate(() => document.querySelector('#members tr[data-name="native-3"]')?.dataset.state === "alive"),
    );

    // Partition: the second half (native-4, native-5) loses the first half and the relay, so the page
    // declares it failed; healing merges the halves again without a manual rejoin.
    const states = () => page.evaluate(() => Object.fromEntries([...document.querySelectorAll("#members tr[data-name]")].map((t) => [t.dataset.name, t.dataset.state])));
    assert.equal((await fetch(`${control}/demo/partition`, { method: "POST" })).status, 200);
    await until("the far side failed on the page", 60_000, async () => {
      const s = await states();
      return s["native-4"] === "failed" && s["native-5"] === "failed" && s["native-1"] === "alive";
    });
    await page.screenshot({ path: join(artifacts, "live-partition.png") });
    assert.equal((await fetch(`${control}/demo/heal`, { method: "POST" })).status, 200);
    await until("the halves merged", 60_000, async () => {
      const s = await states();
      return names.every((n) => s[n] === "alive");
    }).catch(async (e) => {
      throw new Error(`${e.message}: ${JSON.stringify(await states())}`);
    });

    // Simulation view, 500 nodes.
    await page.click("#tab-sim");
    await until("the simulator", 30_000, () => page.evaluate(() => window.shoalSim?.ready && window.shoalSim.nodes === 500));
    await page.waitForTimeout(1500);
    await page.click("#sim-kill5");
    await page.waitForTimeout(500);
    const fps500 = await measureFps(page, 5000);
    await page.screenshot({ path: join(artifacts, "sim-500.png") });
    console.log(`simulation, 500 nodes: ${fps500.toFixed(1)} frames/s`);
    assert.ok(fps500 >= 30, `500 nodes at ${fps500.toFixed(1)} frames/s`);

    // A partition shows as disagreement; the scrubber replays the past.
    await page.click("#sim-partition");
    const suspectedUp = () =>
      page.evaluate(() => {
        const w = window.shoalSim.world;
        const [states, truth] = [w.states(), w.truth()];
        return states.filter((s, i) => truth[i] === 0 && s !== 0).length / states.length;
      });
    assert.ok((await suspectedUp()) < 0.05, "no live node is suspected before the partition");
    await until("the partition to show", 20_000, async () => (await suspectedUp()) > 0.3);
    await page.screenshot({ path: join(artifacts, "sim-500-partition.png") });
    await page.click("#sim-partition");
    await page.$eval("#sim-scrub", (e) => {
      e.value = "300";
      e.dispatchEvent(new Event("input"));
    });
    await until("a replay", 5_000, () => page.evaluate(() => document.getElementById("sim-time").textContent.includes("replay")));
    await page.click("#sim-live");

    // 2,000 nodes: measured and reported.
    await page.fill("#sim-nodes", "2000");
    await page.click("#sim-start");
    await until("2,000 nodes", 60_000, () => page.evaluate(() => window.shoalSim.nodes === 2000));
    await page.waitForTimeout(1500);
    await page.click("#sim-kill");
    const fps2000 = await measureFps(page, 5000);
    await page.waitForTimeout(8000);
    await page.screenshot({ path: join(artifacts, "sim-2000.png") });
    console.log(`simulation, 2000 nodes: ${fps2000.toFixed(1)} frames/s`);

    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    demo.child.kill("SIGTERM");
    await new Promise((r) => (demo.child.exitCode !== null ? r() : demo.child.on("exit", r)));
  }
});
