// A workerd member for workerd.test.mjs. A Durable Object (`Member`) holds the Shoal member, and
// with it the outbound WebSocket to the relay and the protocol timers; the test drives it with
// fetch requests to the worker, which forwards them to the one object:
//   POST /join {relay, token, name, seeds, preset}  -> {addr}
//   GET  /members                                   -> [{name, addr, state}]
//   GET  /events                                    -> [{type, member, from, topic, text, at}]
//   POST /broadcast {topic, text}
//   POST /leave                                     -> {gossiped}
import { Shoal } from "./shoal/js/workerd.js";

const json = (v, status = 200) =>
  new Response(JSON.stringify(v), { status, headers: { "content-type": "application/json" } });

export class Member {
  constructor(state, env) {
    this.state = state;
    this.shoal = null;
    this.events = [];
  }

  async fetch(request) {
    const { pathname } = new URL(request.url);
    try {
      switch (pathname) {
        case "/join": {
          if (this.shoal && !this.shoal.closed) return json({ error: "already joined" }, 409);
          const opts = await request.json();
          this.shoal = await Shoal.join({
            ...opts,
            meta: "runtime=workerd",
            on: {
              "*": (e) => {
                const { type, member, from, topic } = e;
                this.events.push({ type, member, from, topic, text: type === "message" ? e.text : undefined, at: Date.now() });
              },
            },
          });
          return json({ addr: this.shoal.addr });
        }
        case "/members":
          return json(this.shoal.members().map(({ name, addr, state }) => ({ name, addr, state })));
        case "/events":
          return json(this.events);
        case "/broadcast": {
          const { topic, text } = await request.json();
          this.shoal.broadcast(topic, text);
          return json({ ok: true });
        }
        case "/leave":
          return json({ gossiped: await this.shoal.leave(2000) });
        case "/health":
          return json({ ok: true, joined: !!this.shoal, closed: this.shoal?.closed ?? null, reason: this.shoal?.closeReason ?? null });
        default:
          return json({ error: "not found" }, 404);
      }
    } catch (e) {
      return json({ error: String(e?.stack ?? e) }, 500);
    }
  }
}

export default {
  fetch(request, env) {
    return env.MEMBER.get(env.MEMBER.idFromName("member")).fetch(request);
  },
};
