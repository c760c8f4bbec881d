// An in-process stand-in for shoal-relay's WebSocket endpoint, built on the `ws` package, speaking the
// relay envelope of core/proto/src/relay.rs:
//   - a member connects to ws://host:port/ws?peer=<id>&token=<t>;
//   - the relay's first message is the welcome frame `[len][relay://host:port/<id>]` (empty packet,
//     or a 16-byte farewell secret as its packet when the member asked with `farewell=1`);
//   - the member sends `[len][destination address][packet]`; the relay forwards the packet to the
//     destination as `[len][source address][packet]`, stamping the source itself (no spoofing).
//   - a farewell (`farewell(body)`, what shoal-relay's `POST /farewell` takes):
//     `[len][peer id][secret: 16]` then `[u16 BE len][frame]`..., forwarded as if the peer's
//     connection sent each frame, once per secret.
// Only relay:// destinations on this relay are forwarded (there is no UDP side here).
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { WebSocketServer } from "ws";

const PEER_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function frame(addr, packet = new Uint8Array(0)) {
  const a = Buffer.from(addr, "utf8");
  if (a.length > 255) throw new Error("address too long");
  return Buffer.concat([Buffer.from([a.length]), a, packet]);
}

export function parseFrame(data) {
  if (data.length < 1 || data[0] === 0 || data.length < 1 + data[0]) return null;
  const len = data[0];
  return { addr: data.subarray(1, 1 + len).toString("utf8"), packet: data.subarray(1 + len) };
}

/** `port` 0 picks a free port; pass an earlier relay's port to restart it at the same address. */
export async function startFakeRelay({ token, maxPayload = 8 << 20, port = 0 } = {}) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port, maxPayload });
  await once(wss, "listening");
  const host = `127.0.0.1:${wss.address().port}`;
  const peers = new Map(); // relay address -> socket
  const stats = { connections: 0, forwarded: 0, dropped: 0, rejected: 0, farewells: 0, farewellsRefused: 0 };
  const secrets = new Map(); // socket -> its farewell secret, until used

  /** Forwards one `[len][destination][packet]` frame from `self`. */
  function forward(self, data) {
    const f = parseFrame(data);
    const dest = f && peers.get(f.addr);
    if (!dest || dest.readyState !== dest.OPEN) {
      stats.dropped++;
      return;
    }
    stats.forwarded++;
    dest.send(frame(self, f.packet));
  }

  wss.on("connection", (ws, req) => {
    const url = new URL(req.url, "http://relay");
    const peer = url.searchParams.get("peer") ?? "";
    if (url.pathname !== "/ws" || !PEER_ID.test(peer)) {
      stats.rejected++;
      return ws.close(1008, "bad path or peer id");
    }
    if (token !== undefined && url.searchParams.get("token") !== token) {
      stats.rejected++;
      return ws.close(1008, "bad token");
    }
    stats.connections++;
    const self = `relay://${host}/${peer}`;
    // shoal-relay's close code for a connection whose peer id a newer one took (CloseCode::Replaced).
    peers.get(self)?.close(4001, "replaced by a newer connection with the same peer id");
    peers.set(self, ws);
    if (url.searchParams.get("farewell") === "1") {
      const secret = randomBytes(16);
      secrets.set(ws, secret);
      ws.send(frame(self, secret));
    } else ws.send(frame(self));
    ws.on("message", (data, isBinary) => {
      if (isBinary) forward(self, data);
      else stats.dropped++;
    });
    ws.on("close", () => {
      if (peers.get(self) === ws) peers.delete(self);
    });
  });

  return {
    url: `ws://${host}`,
    host,
    stats,
    peers,
    /** Takes a farewell body as `POST /farewell` would; true if it was accepted. */
    farewell(body) {
      const b = Buffer.from(body);
      const len = b[0] ?? 0;
      const self = `relay://${host}/${b.subarray(1, 1 + len).toString("utf8")}`;
      const ws = peers.get(self);
      const secret = ws && secrets.get(ws);
      if (!secret || b.length < 1 + len + 16 || !secret.equals(b.subarray(1 + len, 17 + len))) {
        stats.farewellsRefused++;
        return false;
      }
      secrets.delete(ws);
      stats.farewells++;
      for (let at = 17 + len; at + 2 <= b.length; ) {
        const n = b.readUInt16BE(at);
        forward(self, b.subarray(at + 2, at + 2 + n));
        at += 2 + n;
      }
      return true;
    },
    /** Drops one member's connection, as a crashed relay session would. */
    kick(peer) {
      peers.get(`relay://${host}/${peer}`)?.terminate();
    },
    /** Stops; `graceful` sends shoal-relay's shutdown close frame (1001) instead of cutting
     * connections. */
    async close({ graceful = false } = {}) {
      for (const ws of wss.clients) {
        if (graceful) ws.close(1001, "relay shutting down");
        else ws.terminate();
      }
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}
