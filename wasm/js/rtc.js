// Direct paths between members reached through relays: WebRTC data channels negotiated through
// the relays.
//
// The model. Every member connected to a relay has a `relay://host:port/peer` address, and the
// relay forwards both its packets and, in frames of their own, signalling messages between two such
// members (offer, answer, ICE candidate, bye; the relay stamps the source, so a signal cannot lie
// about who sent it), to members of the same relay or of a relay linked to it (a relay fleet). For
// each other alive member with a relay address, this module negotiates one RTCPeerConnection with
// two pre-negotiated data channels:
//
//   - "shoal-dgram" (id 0): unordered, maxRetransmits 0, for best-effort packets (probes, gossip);
//   - "shoal-rel"   (id 1): ordered and reliable, for reliable frames (push-pull, reliable messages).
//
// Once both are open, it registers a sender for that address with the wasm transport
// (`ShoalNode.setDirect`): packets to the member then go over the channel, and over the relay
// whenever the sender declines (channel not open, send buffer full). What arrives on a channel is
// handed to the transport (`deliverDirect`) as if it came through the relay from that address.
//
// A channel does not depend on the relays once open: when either end moves to another relay of the
// fleet (its relay died), the connection stays and serves the member's new address (an `update`
// event names it; member.js re-keys its direct path the same way). Two members on relays that are
// not linked never get an answer: their attempts time out and back off to one a minute.
//
// The connection state is only a routing hint: a frozen or closed tab can leave a channel "open"
// for many seconds, and SWIM probes (whatever path carries them) decide liveness. A member that
// fails or leaves has its connection closed; one that comes back is connected again.
//
// Who offers: the member with the lower address offers at once, the other after `answerGraceMs`
// if no offer came (a peer that never offers, or lost signals). When both offer at once (glare),
// the lower address's offer stands (`offer_wins` in shoal::relay): the higher side drops
// its own connection (its rollback) and answers; the lower side ignores the offer it received.
// Signals from one peer are handled strictly in order, one at a time.
//
// Native members (shoal-webrtc) never offer: they have a separate signalling address on the relay
// and send an `invite` naming their member address (`udp://...`); we offer to the signalling
// address and use the member address for the channel's packets both ways.
//
// No STUN or TURN server is needed on one host or one LAN (host candidates); pass `iceServers`
// for real deployments.

const OFFER = 1;
const ANSWER = 2;
const CANDIDATE = 3;
const BYE = 4;
const INVITE = 5;

/** Best-effort packets go to the relay instead while the channel has more than this queued. */
const MAX_BUFFERED = 256 * 1024;

/**
 * Wires the two data channels of one connection: `opened()` once both are open, `message(bytes)`
 * for each packet, `closed()` when either closes. Returns the sender to register with the wasm
 * transport (`setDirect`): `send(bytes, reliable) => boolean`, false when the packet should take
 * the relay instead (channel not open, best-effort send buffer full). Used where the member runs:
 * on this thread, or in the worker the channels were transferred to.
 */
export function wireChannels(dgram, rel, { opened, message, closed }) {
  for (const ch of [dgram, rel]) {
    ch.binaryType = "arraybuffer";
    ch.onopen = () => {
      if (dgram.readyState === "open" && rel.readyState === "open") opened();
    };
    ch.onmessage = (e) => {
      if (e.data instanceof ArrayBuffer) message(new Uint8Array(e.data));
    };
    ch.onclose = () => closed();
  }
  return (bytes, reliable) => {
    const ch = reliable ? rel : dgram;
    if (ch.readyState !== "open" || (!reliable && ch.bufferedAmount > MAX_BUFFERED)) return false;
    try {
      ch.send(bytes);
      return true;
    } catch {
      return false;
    }
  };
}

/** The options of `DirectPaths` from `Shoal.join`'s: the `webrtc` tuning object (if one), the ICE
 * servers and the RTCPeerConnection constructor. */
export function directPathOptions(opts) {
  const tuning = typeof opts.webrtc === "object" && opts.webrtc !== null ? opts.webrtc : {};
  return { ...tuning, iceServers: opts.iceServers ?? [], RTCPeerConnection: opts.RTCPeerConnection };
}

export class DirectPaths {
  #node;
  #local;
  #options;
  #Peer;
  #peers = new Map(); // addr -> peer state
  #chains = new Map(); // addr -> promise: signals of one peer, in order
  #retry = new Map(); // addr -> { attempts, at }
  #timer = null;
  #closed = false;
  #opened = 0;
  #setupMs = [];
  #glares = { won: 0, lost: 0 };

  /**
   * @param node the raw ShoalNode
   * @param options { iceServers?: RTCIceServer[], RTCPeerConnection?: constructor,
   *   answerGraceMs?: number, setupTimeoutMs?: number, adopt?: (member, dgram, rel, { opened,
   *   closed }) => { close() } (the member runs in a worker: transfer the channels to it) }
   */
  constructor(node, options = {}) {
    this.#node = node;
    this.#local = node.localAddr();
    this.#options = { answerGraceMs: 3000, setupTimeoutMs: 15000, iceServers: [], ...options };
    this.#Peer = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
  }

  /** Whether this runtime can make direct paths at all. */
  static available(options = {}) {
    return typeof (options.RTCPeerConnection ?? globalThis.RTCPeerConnection) === "function";
  }

  /** Starts listening for signals and connecting to the members already known. */
  start(members) {
    this.#node.onSignal((from, kind, body) => this.#onSignal(from, kind, body));
    for (const m of members) if (m.state === "alive") this.#consider(m.addr);
    this.#timer = setInterval(() => this.#tick(), 1000);
    this.#timer.unref?.();
  }

  /** A membership event: connect to members that join or come back, drop those that fail or leave. */
  onEvent(e) {
    if (this.#closed) return;
    if (e.type === "reconnect" && typeof e.addr === "string") {
      this.#local = e.addr; // we moved to another relay of the fleet, or stayed
    } else if (e.type === "join" || e.type === "update") {
      // A peer whose offer came before we knew it as a member has no name yet: it needs one to be
      // dropped when it fails and followed when it moves.
      for (const p of this.#peers.values()) if (p.name === undefined && p.member === e.info.addr) p.name = e.member;
      if (e.type === "update") this.#follow(e.member, e.info.addr);
      if (e.info.state === "alive") this.#consider(e.info.addr);
    } else if (e.type === "fail" || e.type === "leave") {
      for (const [addr, p] of this.#peers) if (p.name === e.member) this.#drop(addr, false);
    }
  }

  /** Closes every connection, telling each peer (`bye`) unless `quiet`, and stops. */
  close(quiet = false) {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const addr of [...this.#peers.keys()]) this.#drop(addr, !quiet);
    this.#node.onSignal(null);
  }

  /** Connection states and setup times. */
  stats() {
    const peers = [];
    for (const [addr, p] of this.#peers) {
      p.name ??= this.#memberName(p.member);
      peers.push({ addr, name: p.name, state: p.open ? "open" : "connecting", setupMs: p.setupMs ?? null });
    }
    return { peers, channelsOpened: this.#opened, setupMs: [...this.#setupMs], glare: { ...this.#glares } };
  }

  #eligible(addr) {
    return typeof addr === "string" && addr.startsWith("relay://") && addr !== this.#local;
  }

  /** `name` moved to `addr` (another relay of the fleet): its connection, if any, now serves the
   * new address, and its signals come from there. */
  #follow(name, addr) {
    for (const [old, p] of this.#peers) {
      if (p.name !== name || old === addr || p.member !== old) continue;
      this.#peers.delete(old);
      this.#peers.set(addr, p);
      p.member = addr;
      p.key = addr;
      this.#retry.delete(old);
      return;
    }
  }

  #memberName(addr) {
    for (const m of this.#node.members()) if (m.addr === addr) return m.name;
    return undefined;
  }

  /** A member we may connect to: offer now if our address is the lower, else wait for its offer. */
  #consider(addr) {
    if (this.#closed || !this.#eligible(addr) || this.#peers.has(addr)) return;
    const grace = this.#local < addr ? 0 : this.#options.answerGraceMs;
    const r = this.#retry.get(addr);
    const at = Math.max(Date.now() + grace, r?.at ?? 0);
    this.#retry.set(addr, { attempts: r?.attempts ?? 0, at });
    if (at <= Date.now()) this.#offer(addr);
  }

  #tick() {
    if (this.#closed) return;
    const now = Date.now();
    for (const [addr, p] of this.#peers) {
      if (!p.open && now - p.started > this.#options.setupTimeoutMs) this.#drop(addr, true, true);
    }
    const alive = new Set();
    for (const m of this.#node.members()) if (m.state === "alive") alive.add(m.addr);
    for (const [addr, r] of this.#retry) {
      if (!alive.has(addr)) continue;
      if (!this.#peers.has(addr) && r.at <= now) this.#offer(addr);
    }
  }

  #newPeer(addr, member = addr) {
    const pc = new this.#Peer({ iceServers: this.#options.iceServers });
    // `p.key`: where `p` sits in #peers, which changes when the member moves (see #follow).
    const p = { pc, key: addr, member, name: this.#memberName(member), open: false, started: Date.now(), pending: [] };
    p.dgram = pc.createDataChannel("shoal-dgram", { negotiated: true, id: 0, ordered: false, maxRetransmits: 0 });
    p.rel = pc.createDataChannel("shoal-rel", { negotiated: true, id: 1 });
    let send = null;
    const opened = () => {
      if (p.open || this.#peers.get(p.key) !== p) return;
      p.open = true;
      p.setupMs = Date.now() - p.started;
      this.#opened++;
      this.#setupMs.push(p.setupMs);
      if (this.#setupMs.length > 64) this.#setupMs.shift();
      this.#retry.set(p.key, { attempts: 0, at: 0 });
      if (send) this.#node.setDirect(p.member, send);
    };
    const closed = () => {
      if (this.#peers.get(p.key) === p) this.#drop(p.key, false, true);
    };
    if (this.#options.adopt) {
      // The member runs in a worker: hand both channels over now (a channel can only be
      // transferred in the task that created it); the worker sends and receives on them and
      // tells us when they open or close.
      p.adopted = this.#options.adopt(p.member, p.dgram, p.rel, { opened, closed });
    } else {
      send = wireChannels(p.dgram, p.rel, {
        opened,
        closed,
        message: (bytes) => {
          if (this.#peers.get(p.key) !== p) return;
          opened(); // a message proves the channel works, even if our other channel is late
          this.#node.deliverDirect(p.member, bytes);
        },
      });
    }
    pc.onicecandidate = (e) => {
      if (e.candidate && this.#peers.get(p.key) === p) this.#signal(p.key, CANDIDATE, e.candidate.toJSON());
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" && this.#peers.get(p.key) === p) this.#drop(p.key, true, true);
    };
    this.#peers.set(addr, p);
    return p;
  }

  #signal(to, kind, body) {
    this.#node.signal(to, kind, body === undefined ? "" : JSON.stringify(body));
  }

  async #offer(addr, member = addr) {
    if (this.#closed || this.#peers.has(addr)) return;
    const p = this.#newPeer(addr, member);
    p.makingOffer = true;
    try {
      await p.pc.setLocalDescription(await p.pc.createOffer());
      if (this.#peers.get(p.key) === p) this.#signal(p.key, OFFER, { sdp: p.pc.localDescription.sdp });
    } catch {
      if (this.#peers.get(p.key) === p) this.#drop(p.key, false, true);
    } finally {
      p.makingOffer = false;
    }
  }

  /**
   * Forgets the connection to `addr`: unregisters the direct path, closes the connection, says
   * `bye` if asked, and with `retry` schedules a new attempt with exponential backoff.
   */
  #drop(addr, bye, retry = false) {
    const p = this.#peers.get(addr);
    if (!p) return;
    this.#peers.delete(addr);
    if (p.adopted) p.adopted.close();
    else {
      this.#node.setDirect(p.member, null);
      for (const ch of [p.dgram, p.rel]) ch.onopen = ch.onmessage = ch.onclose = null;
    }
    p.pc.onicecandidate = p.pc.onconnectionstatechange = null;
    try {
      p.pc.close();
    } catch {}
    if (bye) this.#signal(addr, BYE);
    if (retry && !this.#closed) {
      const attempts = (this.#retry.get(addr)?.attempts ?? 0) + 1;
      this.#retry.set(addr, { attempts, at: Date.now() + Math.min(60000, 2000 * 2 ** attempts) });
    } else {
      this.#retry.delete(addr);
    }
  }

  #onSignal(from, kind, body) {
    if (this.#closed || !this.#eligible(from)) return;
    const prev = this.#chains.get(from) ?? Promise.resolve();
    const next = prev
      .then(() => this.#handle(from, kind, body ? JSON.parse(body) : {}))
      .catch(() => {})
      .finally(() => {
        if (this.#chains.get(from) === next) this.#chains.delete(from);
      });
    this.#chains.set(from, next);
  }

  async #handle(from, kind, msg) {
    if (this.#closed) return;
    let p = this.#peers.get(from);
    switch (kind) {
      case OFFER: {
        const glare = p && (p.makingOffer || p.pc.signalingState === "have-local-offer");
        if (glare && this.#local < from) {
          this.#glares.won++; // our offer stands; theirs is dropped
          return;
        }
        if (glare) this.#glares.lost++;
        // Glare lost (roll back: drop our offer), or a new connection from a peer that restarted.
        if (p) this.#drop(from, false);
        p = this.#newPeer(from);
        await p.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
        await p.pc.setLocalDescription(await p.pc.createAnswer());
        if (this.#peers.get(from) !== p) return;
        this.#signal(from, ANSWER, { sdp: p.pc.localDescription.sdp });
        for (const c of p.pending.splice(0)) await p.pc.addIceCandidate(c).catch(() => {});
        return;
      }
      case ANSWER:
        if (p && p.pc.signalingState === "have-local-offer") {
          await p.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
          for (const c of p.pending.splice(0)) await p.pc.addIceCandidate(c).catch(() => {});
        }
        return;
      case CANDIDATE:
        if (!p) return;
        if (p.pc.remoteDescription) await p.pc.addIceCandidate(msg).catch(() => {});
        else if (p.pending.length < 64) p.pending.push(msg);
        return;
      case INVITE: {
        // A native member wants a channel: offer to its signalling address, if it is a member.
        const member = typeof msg.member === "string" ? msg.member : undefined;
        if (p || !member || this.#memberName(member) === undefined) return;
        for (const q of this.#peers.values()) if (q.member === member) return;
        await this.#offer(from, member);
        return;
      }
      case BYE:
        this.#drop(from, false);
        this.#retry.delete(from);
        return;
    }
  }
}
