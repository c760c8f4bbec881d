// A Deno member for deno.test.mjs: the package's Deno entry (wasm-bindgen `deno` build, Deno's own
// WebSocket). Options from the environment: SHOAL_RELAY, SHOAL_TOKEN, SHOAL_NAME, SHOAL_SEEDS
// (comma-separated), SHOAL_PRESET, SHOAL_ENTRY (the entry module's URL). Prints one JSON line per
// event ({"event": type, ...}), {"event":"ready","addr":...} once joined, and members on request.
// Commands on stdin, one per line: `broadcast <topic> <text>`, `members`, `leave`.
const env = (k, d) => Deno.env.get(k) ?? d;
const { Shoal } = await import(env("SHOAL_ENTRY"));
const print = (o) => console.log(JSON.stringify({ at: Date.now(), ...o }));

const shoal = await Shoal.join({
  relay: env("SHOAL_RELAY"),
  token: env("SHOAL_TOKEN"),
  name: env("SHOAL_NAME", "deno-1"),
  seeds: env("SHOAL_SEEDS", "").split(",").filter(Boolean),
  preset: env("SHOAL_PRESET", "local"),
  meta: `runtime=deno ${Deno.version.deno}`,
  on: {
    "*": (e) => {
      const { type, member, from, topic } = e;
      print({ event: type, member, from, topic, text: type === "message" ? e.text : undefined });
    },
  },
});
print({ event: "ready", addr: shoal.addr, deno: Deno.version.deno });

let leaving = false;
async function leave() {
  if (leaving) return;
  leaving = true;
  const ok = await shoal.leave(2000);
  print({ event: "left-cluster", gossiped: ok });
  Deno.exit(0);
}
Deno.addSignalListener("SIGTERM", leave);
Deno.addSignalListener("SIGINT", leave);

const decoder = new TextDecoder();
let buffered = "";
for await (const chunk of Deno.stdin.readable) {
  buffered += decoder.decode(chunk, { stream: true });
  let nl;
  while ((nl = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, nl).trim();
    buffered = buffered.slice(nl + 1);
    const [cmd, topic, ...rest] = line.split(" ");
    if (cmd === "broadcast") shoal.broadcast(topic, rest.join(" "));
    else if (cmd === "members") {
      print({ event: "members", members: shoal.members().map(({ name, addr, state }) => ({ name, addr, state })) });
    } else if (cmd === "leave") await leave();
  }
}
