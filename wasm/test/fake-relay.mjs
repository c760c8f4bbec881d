// An in-process stand-in for shoal-relay's WebSocket endpoint, built on the `ws` package, speaking the
// relay envelope of core/src/driver/relay.rs:
//   - a member connects to ws://host:port/ws?peer=<id>&token=<t>;
//   - the relay's first message is the welcome frame `[len][relay://host:port/<id>]` (empty packet);
//   - the member sends `[len][destination address][packet]`; the relay forwards the packet to the
//     destination as `[len][source address][packet]`, stamping the source itself (no spoofing).
// Only relay:// destinations on this relay are forwarded (there is no UDP side here).
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
  const stats = { connections: 0, forwarded: 0, dropped: 0, rejected: 0 };

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
    ws.send(frame(self));
    ws.on("message", (data, isBinary) => {
      const f = isBinary ? parseFrame(data) : null;
      const dest = f && peers.get(f.addr);
      if (!dest || dest.readyState !== dest.OPEN) {
        stats.dropped++;
        return;
      }
      stats.forwarded++;
      dest.send(frame(self, f.packet));
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
