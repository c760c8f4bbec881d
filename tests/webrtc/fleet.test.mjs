// A relay fleet in headless Chromium: two pages on two linked relays (each relay running its own
// member, which announces it) open a WebRTC channel (its signals cross the relays' link) and keep
// it when the relay of one of them is killed. That page
// moves to the other relay with the same peer id; the cluster takes its new address as a move, so
// nobody suspects or fails it, and the channel, which never needed the relays once open, carries
// on. Figures are printed as `fleet:` lines.
import { test } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, openPage, sleep, startAgent, startPageServer, startRelay, stats, waitFor } from "./lib.mjs";

const KEY = "fleet-test-relay-key-0123456789";

const memberOf = (page, name) => page.evaluate((n) => window.shoal.members().find((m) => m.name === n), name);
const eventsAbout = (page, member, since) =>
  page.evaluate(([m, s]) => window.events.filter((e) => e.member === m && e.t >= s), [member, since]);

test("two pages on linked relays keep their WebRTC channel when one relay is killed and its page moves", { timeout: 120_000 }, async (t) => {
  // A native agent, and two relays linked by a relay key, each with its own member, which
  // announces the relay (`shoal-relay=<its address>`) to the cluster.
  const agent = await startAgent(["--name", "agent-1", "--bind", "127.0.0.1:0", "--preset", "browser"]);
  t.after(() => agent.stop());
  const member = ["--join", agent.addr, "--member-bind", "127.0.0.1:0", "--preset", "browser"];
  const relayA = await startRelay(["--relay-key", KEY, ...member]);
  t.after(() => relayA.stop());
  const relayB = await startRelay(["--relay-key", KEY, "--peer-relay", relayA.url, ...member]);
  t.after(() => relayB.stop());
  await waitFor("the relays to link", 10_000, async () => (await relayA.metrics())["shoal_relay_links"] === 1);
  await waitFor("the relays' members to join", 10_000, async () =>
    [relayA, relayB].every((r) => agent.lines.some((e) => e.event === "join" && e.meta?.includes(`shoal-relay=${r.addr}`))),
  );
  const agents = [agent];
  const site = await startPageServer();
  t.after(() => site.close());
  const browser = await launchChromium();
  t.after(() => browser.close());

  const a = await openPage(browser, site);
  const b = await openPage(browser, site);
  const seeds = [agent.addr];
  const start = (page, name, relays) =>
    page.evaluate(([relay, name, seeds]) => window.start({ relay, name, seeds, preset: "browser" }), [relays, name, seeds]);
  const aAddr = await start(a, "page-a", [relayA.url, relayB.url]);
  const bAddr = await start(b, "page-b", [relayB.url, relayA.url]);
  assert.ok(aAddr.startsWith(`relay://${relayA.addr}/`) && bAddr.startsWith(`relay://${relayB.addr}/`), `${aAddr} ${bAddr}`);

  await waitFor("an open channel on both pages", 30_000, async () => {
    const [sa, sb] = [await stats(a), await stats(b)];
    return sa.peers.some((p) => p.name === "page-b" && p.state === "open") && sb.peers.some((p) => p.name === "page-a" && p.state === "open");
  });
  const [sa0, sb0] = [await stats(a), await stats(b)];
  console.log(`fleet: a channel across the relays opened (setup a=${sa0.setupMs} ms b=${sb0.setupMs} ms)`);
  const signalsCrossed = (await relayB.metrics())['shoal_relay_link_frames_total{relay="' + relayA.addr + '",direction="in"}'];
  console.log(`fleet: frames relay-b received over its link: ${signalsCrossed}`);

  // Kill relay-a: page-a goes back to it once, then moves to relay-b.
  const killedAt = Date.now();
  relayA.signal("SIGKILL");
  const moved = `relay://${relayB.addr}/${aAddr.slice(aAddr.lastIndexOf("/") + 1)}`;
  await waitFor("page-a's move to be taken everywhere", 15_000, async () => {
    const seen = await memberOf(b, "page-a");
    const atAgents = agents.every((ag) => ag.lines.some((e) => e.member === "page-a" && e.event === "update" && e.addr === moved));
    return (await a.evaluate(() => window.shoal.addr)) === moved && seen?.addr === moved && seen.state === "alive" && atAgents;
  });
  const movedMs = Date.now() - killedAt;
  console.log(`fleet: relay-a killed; page-a alive at ${moved} everywhere after ${movedMs} ms`);

  // The channel is the same one, and it still carries the traffic between the pages.
  const [sa1, sb1] = [await stats(a), await stats(b)];
  await sleep(3_000);
  const [sa2, sb2] = [await stats(a), await stats(b)];
  assert.equal(sa2.channelsOpened, sa0.channelsOpened, "page-a opened no new channel");
  assert.equal(sb2.channelsOpened, sb0.channelsOpened, "page-b opened no new channel");
  const peerOfB = sb2.peers.find((p) => p.name === "page-a");
  assert.equal(peerOfB?.state, "open");
  assert.equal(peerOfB.addr, moved, "page-b's channel serves page-a's new address");
  const directIn = sb2.direct.packetsIn - sb1.direct.packetsIn;
  console.log(`fleet: after the move, page-b received ${directIn} packets from the channel in 3 s`);
  assert.ok(directIn > 0, "packets still arrive over the channel");

  const about = [...(await eventsAbout(b, "page-a", killedAt)), ...(await eventsAbout(a, "page-b", killedAt))];
  assert.deepEqual(about.filter((e) => ["suspect", "fail", "join", "leave"].includes(e.type)), [], "no false alarm between the pages");
  for (const ag of agents) {
    const bad = ag.lines.filter((e) => ["page-a", "page-b"].includes(e.member) && ["suspect", "fail", "conflict"].includes(e.event));
    assert.deepEqual(bad, [], "the agent never suspected, failed or refused a page");
  }
  const reconnect = (await a.evaluate(() => window.events.filter((e) => e.type === "reconnect"))).at(-1);
  assert.equal(reconnect?.addr, moved, "page-a's reconnect event names its new address");
});
