// Type declarations of the `shoal` npm package (every entry point: browser, bundler, node, deno,
// workerd). Written by hand; the raw driver object (`shoal.raw`, member.js's `ShoalNode`, on the
// thread the member runs on) is not part of the typed API.

/** Anything accepted as a payload: strings are sent as UTF-8. */
export type Bytes = string | Uint8Array | ArrayBuffer | ArrayBufferView;

/** A member's state as this member believes it. */
export type MemberState = "alive" | "suspect" | "failed" | "left";

/** A WebSocket constructor (the browser's, Deno's, or Node's `ws` package). */
export type WebSocketConstructor = new (url: string) => unknown;

/** Protocol presets: `browser` (default; a crashed tab is declared failed in about 1.3 s when every
 * member watching it runs this preset, and a closed one leaves at once), `local` (one machine,
 * everything fast), `lan`, `wan`. */
export type Preset = "browser" | "local" | "lan" | "wan";

export interface JoinOptions {
  /** The relay's URL, `ws://host:port` or `wss://host` (`/ws` is appended unless a path is given;
   * `http(s)://` is accepted too), or the URLs of several relays of one fleet (relays linked with a
   * relay key, each running a member tagged `shoal-relay`). With several, the member joins through
   * the first that answers; when its relay goes away, it tries that relay once more, then the next
   * ones in turn. On another relay it keeps its name and peer id, and the cluster takes its new
   * address as a move, with no `fail` and no `join` anywhere (see the README's "Relay fleet").
   * @throws {TypeError} when neither a string nor a non-empty array of strings. */
  relay: string | string[];
  /** Our name, unique in the cluster (1-255 bytes). */
  name: string;
  /** Metadata other members see (`role=web`, JSON...). */
  meta?: Bytes;
  /** Cluster key: 64 hex digits or 32 bytes. Every packet is then encrypted (AES-256-GCM) and only
   * members with the key are accepted. */
  key?: string | Uint8Array | ArrayBuffer;
  /** Cluster label, bound into every encrypted packet: clusters with different labels never mix. */
  label?: string;
  /** The relay's admission token. */
  token?: string;
  /** Addresses of members to join through (`relay://host:port/peer`, `udp://ip:port`). None: found a
   * new cluster, which others join through `shoal.addr`. */
  seeds?: string[] | string;
  /** Protocol timing preset. Default `browser`. */
  preset?: Preset;
  /** The relay peer id (1-64 of `[A-Za-z0-9._-]`). Default: the name when it is a valid peer id, so
   * a reloaded page comes back at the same address. */
  peer?: string;
  /** How long `join` waits for a seed to answer (default: the preset's, 5 s for `browser`). */
  joinTimeoutMs?: number;
  /** How long to wait for the relay's welcome (default 10 s). */
  connectTimeoutMs?: number;
  /** The relay's frame limit in bytes (shoal-relay's `max_frame`, default 65,536). Reliable traffic
   * (push-pull state, reliable messages, metadata) is kept under it; larger reliable sends throw. */
  relayMaxFrame?: number;
  /** Accepted and ignored: events reach the JS layer as the protocol produces them, so nothing
   * buffers them in between any more (an `events()` iterator has its own `bufferSize`). */
  eventCapacity?: number;
  /** A WebSocket constructor, where there is no global one (Node 18/20: the `ws` package, which the
   * node entry also loads by itself when installed). */
  WebSocket?: WebSocketConstructor;
  /** What to do when the relay connection drops (relay restarted, network change, proxy timeout):
   * reconnect with the same peer id, so the member keeps its address and its place in the cluster,
   * retrying with exponential backoff and jitter (cut short by the browser's `online` event).
   * Default `true`: `{ initialDelayMs: 250, maxDelayMs: 5000, maxAttempts: Infinity }`. `false`:
   * shut down at once. A connection the relay closed because another one took the peer id is
   * never reconnected (two tabs with one name would take it from each other in turn). */
  reconnect?: boolean | { initialDelayMs?: number; maxDelayMs?: number; maxAttempts?: number };
  /** Leave the cluster when the page goes away (`pagehide`). Default true in browsers. A page that
   * enters the back/forward cache leaves too, and joins again under the same name when it is
   * restored (`suspend`, then `resume` events; the same `Shoal` object carries on). */
  leaveOnPageHide?: boolean;
  /** Run the member on the page's own thread instead of a worker. In a page the member runs in a
   * dedicated worker by default, so a busy main thread (a long script, `alert()`, a debugger pause,
   * a heavy render) cannot make the tab look dead. On the main thread, a page blocked for longer
   * than its watchers' probe timeout is suspected: about 0.3 s when `browser`-preset members watch,
   * then declared failed after the suspicion timeout, and it refutes when it runs again. Ignored
   * outside pages (Node, Deno, workerd, a worker): the member runs where it is created. */
  mainThread?: boolean;
  /** Load the wasm build with queries (`query`, `respond` and the `query` events; 7.6 KB more
   * gzipped). In browsers the default build has none: a member without them neither answers nor
   * relays queries, and `query` fails. Node, Deno and workerd always load the build with queries.
   * One page thread (or worker) holds one build: the first member there decides. */
  queries?: boolean;
  /** `"dedicated"` (default): one worker per page. `"shared"`: a SharedWorker, so the tabs of one
   * origin that join with the same `name` are one member: the first tab's options make it, every
   * tab gets its events from the moment it attaches, and it leaves when its last tab goes away. A
   * shared member has no direct WebRTC channels (the relay carries everything). */
  worker?: "dedicated" | "shared";
  /** Upgrade traffic to other members of the same relay to direct WebRTC data channels, negotiated
   * through the relay, with the relay as fallback. Default true where `RTCPeerConnection` exists. */
  webrtc?: boolean | {
    /** How long the member with the higher address waits for an offer before offering itself
     * (default 3,000 ms; the lower address offers at once). */
    answerGraceMs?: number;
    /** A connection not open after this long is dropped and retried with backoff (default 15,000). */
    setupTimeoutMs?: number;
  };
  /** STUN/TURN servers for those channels. Default none: host candidates only (one host or LAN). */
  iceServers?: RTCIceServerLike[];
  /** An RTCPeerConnection constructor, where there is no global one. */
  RTCPeerConnection?: new (config: { iceServers: RTCIceServerLike[] }) => unknown;
  /** Listeners registered before the join starts, by event type (`'*'` for all). */
  on?: { [T in EventType]?: (event: EventOf<T>) => void } & { "*"?: (event: ShoalEvent) => void };
}

/** A STUN or TURN server (the shape of the DOM's RTCIceServer). */
export interface RTCIceServerLike {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** Packets and bytes one way or both. */
export interface TrafficCounters {
  packetsOut: number;
  bytesOut: number;
  packetsIn: number;
  bytesIn: number;
}

/** `transportStats()`: where this member's traffic went. */
export interface TransportStats extends TrafficCounters {
  /** Over direct WebRTC data channels. */
  direct: TrafficCounters;
  /** Through the relay. */
  relayed: TrafficCounters;
  /** Direct packets / all packets, both directions (0 before any traffic). */
  directShare: number;
  /** Whether direct channels are attempted at all (`webrtc` option and RTCPeerConnection). */
  webrtc: boolean;
  /** Direct connections now: `setupMs` from the first offer to both channels open. */
  peers: { addr: string; name?: string; state: "connecting" | "open"; setupMs: number | null }[];
  /** Connections that reached "open" since the start. */
  channelsOpened: number;
  /** Setup times of the last (up to 64) opened connections, in ms. */
  setupMs: number[];
  /** Offers that crossed (both sides offered at once): `won` kept our offer, `lost` rolled it back. */
  glare: { won: number; lost: number };
}

/** A relay of the fleet, from its member's tags. */
export interface RelayInfo {
  /** Its member's name. */
  name: string;
  /** `host:port`, as its members' addresses name it (`relay://host:port/peer`). */
  relay: string;
  /** The URL pages connect to (`shoal-relay-url`; `ws://host:port` when not announced). */
  url: string;
}

/** Selects members by state, name and tags, as `shoal-agent members --status --name --tag` do. */
export interface MemberFilter {
  status?: MemberState | MemberState[];
  /** A pattern for the name (`*`, `?`). */
  name?: string;
  /** Tag key to value pattern (`*`, `?`); every key must be present. */
  tags?: Record<string, string>;
}

/** The metadata text that announces `tags` (the Rust crates' `Tags` encoding: pairs `key=value`
 * in key order, with `%`, `,` and `=` in keys escaped): `shoal.setMetadata(encodeTags({ role: "web" }))`.
 * @throws {RangeError} for a key that is empty or longer than 128 bytes. */
export declare function encodeTags(tags: Record<string, string>): string;
/** Tags read from metadata, or null when it is not in the tags form. */
export declare function parseTags(meta: Uint8Array | string): Record<string, string> | null;
/** The members that pass every condition `filter` gives (`name` and tag values are patterns: `*`
 * any run of characters, `?` one), as `shoal-agent members --status --name --tag` selects:
 * `filterMembers(shoal.members(), { status: "alive", tags: { role: "web" } })`. */
export declare function filterMembers(members: MemberInfo[], filter?: MemberFilter): MemberInfo[];

/** A member as seen by this one. */
export interface MemberInfo {
  name: string;
  /** Where it is reached: `relay://host:port/peer`, `udp://ip:port`, ... */
  addr: string;
  state: MemberState;
  /** Bumped by the member whenever it refutes a suspicion, changes metadata or leaves. */
  incarnation: number;
  meta: Uint8Array;
  /** `meta` decoded as UTF-8. */
  readonly metaText: string;
  /** Round-trip time of this member's last direct probe that was answered, or null before the
   *  first (and always null in `joined`/`updated` events). */
  rttMs: number | null;
}

/** A member joined, or came back after failing or leaving. */
export interface JoinEvent { type: "join"; member: string; info: MemberInfo }
/** A member's metadata changed. */
export interface UpdateEvent { type: "update"; member: string; info: MemberInfo }
/** A member is suspected of having failed (`by` raised the suspicion). */
export interface SuspectEvent { type: "suspect"; member: string; incarnation: number; by: string }
/** A suspected member refuted the suspicion. */
export interface AliveEvent { type: "alive"; member: string; incarnation: number }
/** A member was declared failed. */
export interface FailEvent { type: "fail"; member: string; incarnation: number; by: string }
/** A member left gracefully. */
export interface LeaveEvent { type: "leave"; member: string; incarnation: number }
/** A broadcast or a direct message. */
export interface MessageEvent {
  type: "message";
  from: string;
  topic: string;
  data: Uint8Array;
  /** `data` decoded as UTF-8. */
  readonly text: string;
  kind: "broadcast" | "direct";
}
/** A member asks (`query`, Serf's): answer with `shoal.respond(event, data)`, once, before its
 * timeout runs out. Only in the build with queries (`JoinOptions.queries`). */
export interface QueryEvent {
  type: "query";
  /** The member that asks. */
  from: string;
  /** Where the answer goes. */
  addr: string;
  /** The asking member's life and the query's number in it (what `respond` needs). */
  epoch: number;
  query: number;
  topic: string;
  data: Uint8Array;
  /** `data` decoded as UTF-8. */
  readonly text: string;
}
/** A member acked one of our queries (`query` is `QueryAnswers.id`). */
export interface QueryAckEvent { type: "query-ack"; query: number; from: string }
/** A member responded to one of our queries. */
export interface QueryResponseEvent {
  type: "query-response";
  query: number;
  from: string;
  data: Uint8Array;
  /** `data` decoded as UTF-8. */
  readonly text: string;
}
/** One of our queries reached its deadline, with this many acks and responses. */
export interface QueryDoneEvent { type: "query-done"; query: number; acks: number; responses: number }
/** Our Lifeguard local health changed (`multiplier` stretches probe interval and timeout). */
export interface HealthEvent { type: "health"; score: number; multiplier: number }
/** A seed answered our join. */
export interface JoinedEvent { type: "joined"; via: string }
/** No seed answered within the join timeout (re-announcing continues). */
export interface JoinFailedEvent { type: "join-failed"; seeds: string[] }
/** Someone claims a live member's name from another address; the claim was rejected. */
export interface ConflictEvent { type: "conflict"; member: string; known: string; claimed: string }
/** We were suspected or declared dead and refuted it. */
export interface RefutedEvent { type: "refuted"; incarnation: number }
/** A reliable message we sent (`id`, as `send` returned it) was never acknowledged: it may be lost. */
export interface SendFailedEvent { type: "send-failed"; id: number; to: string; topic: string }
/** `origin` sent `count` broadcasts that never reached us and that no member can hand over any more. */
export interface BroadcastsMissedEvent { type: "broadcasts-missed"; origin: string; count: number }
/** Our full queue dropped one of our broadcasts before it was sent its full number of times. */
export interface BroadcastDroppedEvent { type: "broadcast-dropped"; topic: string }
/** A keyed value set with `ttlMs` ran out here: drop it. */
export interface ExpireEvent { type: "expire"; origin: string; topic: string; key: Uint8Array }
/** The relay connection dropped; the member keeps running and reconnects (unless `reconnect: false`). */
export interface DisconnectEvent { type: "disconnect"; reason: string }
/** The relay connection is back after `attempts` tries and `downtimeMs`, at `addr`: the same
 * address, or our peer id on another relay of the fleet (a move, see `JoinOptions.relay`). */
export interface ReconnectEvent { type: "reconnect"; attempts: number; downtimeMs: number; addr: string }
/** The member stopped: it left, was shut down, or lost its relay connection for good (`reason`).
 * Last event. */
/** The page entered the back/forward cache: the member left the cluster; it joins again on restore. */
export interface SuspendEvent { type: "suspend"; reason: string }
/** The page came back from the back/forward cache and the member joined again under its name. */
export interface ResumeEvent { type: "resume"; seeds: string[] }
/** A command the member refused after the call had returned: only with the member in a worker,
 * where `broadcast`, `send`, `sendTo` and `setMetadata` check on the page what they can (see there)
 * and the member checks the rest (a payload over the packet budget). */
export interface ErrorEvent { type: "error"; op: "broadcast" | "send" | "sendTo" | "setMetadata" | "respond"; message: string }
export interface ShutdownEvent { type: "shutdown"; reason?: string }

export type ShoalEvent =
  | JoinEvent
  | UpdateEvent
  | SuspectEvent
  | AliveEvent
  | FailEvent
  | LeaveEvent
  | MessageEvent
  | QueryEvent
  | QueryAckEvent
  | QueryResponseEvent
  | QueryDoneEvent
  | HealthEvent
  | JoinedEvent
  | JoinFailedEvent
  | ConflictEvent
  | RefutedEvent
  | SendFailedEvent
  | BroadcastsMissedEvent
  | BroadcastDroppedEvent
  | ExpireEvent
  | DisconnectEvent
  | ReconnectEvent
  | SuspendEvent
  | ResumeEvent
  | ErrorEvent
  | ShutdownEvent;

export type EventType = ShoalEvent["type"];
export type EventOf<T extends EventType> = Extract<ShoalEvent, { type: T }>;

/** Counters and gauges of one member. */
export interface Metrics {
  membersAlive: number;
  membersSuspect: number;
  membersFailed: number;
  membersLeft: number;
  packetsSent: number;
  packetsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  decodeErrors: number;
  probes: number;
  probesFailed: number;
  suspicionsRaised: number;
  failuresDeclared: number;
  refutations: number;
  broadcastsDelivered: number;
  broadcastsDropped: number;
  /** Broadcasts that never arrived and could no longer be repaired. */
  broadcastsMissed: number;
  /** Broadcasts received from another member's log after gossip missed them. */
  broadcastsRepaired: number;
  directDelivered: number;
  reliableRetries: number;
  reliableFailed: number;
  pushPulls: number;
  queuedMembershipUpdates: number;
  queuedBroadcasts: number;
  healthScore: number;
  incarnation: number;
  transportErrors: number;
  droppedEvents: number;
  /** Reliable frames dropped behind slow or dead peers, or for want of room. */
  reliableDropped: number;
  /** Best-effort frames dropped behind slow peers, or for want of room. */
  bestEffortDropped: number;
  /** Panics caught in `onMessage` callbacks (each logged; the member carried on). */
  callbackPanics: number;
  /** Transport sends given up after the send deadline. */
  sendsAbandoned: number;
  /** Relay outages this member came back from (it accused nobody while its link was down). */
  linkOutages: number;
  /** Times the member did not run for a probe interval or more (a frozen page, a stopped
   * process): it accused nobody until it had caught up. */
  stalls: number;
  transport: {
    packetsIn: number;
    bytesIn: number;
    packetsOut: number;
    bytesOut: number;
    sendErrors: number;
    droppedIn: number;
  };
  security: {
    encryptedSent: number;
    decrypted: number;
    unauthenticated: number;
    replays: number;
    plaintextRejected: number;
  };
}

/** An async iterator of events with a bounded buffer. */
export interface EventIterator<E = ShoalEvent> extends AsyncIterableIterator<E> {
  /** Events dropped because the consumer fell `bufferSize` behind. */
  readonly dropped: number;
  return(): Promise<IteratorResult<E, undefined>>;
}

export interface SendOptions {
  /** Over the reliable path (any size up to the preset's limit) instead of one best-effort packet. */
  reliable?: boolean;
}

/** A member of a Shoal cluster, connected through a relay. */
export declare class Shoal {
  private constructor(token: never);

  /** Connects to the relay and joins (or, without seeds, founds) a cluster. In a page the member
   * runs in a worker (see `mainThread`). When it resolves, `members()` holds the state the seed
   * sent (every member it knew); the `join` events of those members reach listeners registered
   * right after the await, in the next task. Rejects when no seed answers within the join timeout,
   * the relay refuses the connection (for example another tab holds the peer id), or an option is
   * invalid (`TypeError`). */
  static join(options: JoinOptions): Promise<Shoal>;

  /** Our name. */
  readonly name: string;
  /** Our address (`relay://host:port/peer`): the seed others join through. */
  readonly addr: string;
  /** Our own record, as others see it. */
  readonly local: MemberInfo;
  /** True once the member has shut down. */
  readonly closed: boolean;
  /** False while the relay connection is down and being re-established (see `reconnect`). */
  readonly connected: boolean;
  /** Why the relay connection closed, once it has. */
  readonly closeReason: string | undefined;

  /** Every other known member, in any state (`filterMembers` selects among them). */
  members(): MemberInfo[];
  /** Other members believed alive. */
  aliveMembers(): MemberInfo[];
  /** The relays of the fleet, as the cluster knows them: every alive member tagged `shoal-relay`
   * (a relay's own member, `shoal-relay --join ...`). A page that joined through one URL finds
   * the others here, and its member fails over to them by itself when its relay goes away. */
  relays(): RelayInfo[];

  /** Calls `listener` for each event of `type`; returns a function that removes it. */
  on<T extends EventType>(type: T, listener: (event: EventOf<T>) => void): () => void;
  on(type: "*", listener: (event: ShoalEvent) => void): () => void;
  /** Removes a listener. */
  off<T extends EventType>(type: T, listener: (event: EventOf<T>) => void): void;
  off(type: "*", listener: (event: ShoalEvent) => void): void;
  /** The next event of `type` (rejects if the member shuts down first). */
  once<T extends EventType>(type: T): Promise<EventOf<T>>;
  once(type: "*"): Promise<ShoalEvent>;
  /** Events from now on, `for await (const e of shoal.events())`; ends at shutdown. At most
   * `bufferSize` (default 1,024) undelivered events are kept, the oldest dropped first. */
  events<T extends EventType = EventType>(options?: { bufferSize?: number; types?: T | T[] }): EventIterator<EventOf<T>>;

  /** Broadcasts to every member alive now (each gets one `message` event). With `key` it is state,
   * not an event: a newer broadcast under the same topic and key replaces it, and members that join
   * later get the latest value with their join; with `ttlMs` too, it expires (an `expire` event on
   * every member) unless set again in time, as presence does. Values of a member that leaves go
   * with it. Must fit in one packet. A member that joins later gets no unkeyed broadcast.
   * @throws {Error} when the member has shut down, the topic is over 255 bytes, or (member on this
   * thread) the payload does not fit in one packet; with the member in a worker an oversized
   * payload is reported by an `error` event instead.
   * @throws {TypeError} when `data` or `key` is not a string or bytes. */
  broadcast(topic: string, data: Bytes, options?: { key?: Bytes; ttlMs?: number }): void;
  /** Sends to the member named `name`: best-effort (one packet) unless `reliable`. A reliable send
   * returns its id (a `send-failed` event names it if it is never acknowledged); a best-effort one
   * returns undefined.
   * @throws {Error} `unknown or dead member <name>` when `name` is not a member this one believes
   * alive or suspect (check `members()` or wait for its `join` event); when the member has shut
   * down; when the topic is over 255 bytes; or (member on this thread) when the payload is too
   * large (in a worker: an `error` event).
   * @throws {TypeError} when `data` is not a string or bytes. */
  send(name: string, topic: string, data: Bytes, options?: SendOptions | boolean): number | undefined;
  /** Sends to an address, member or not.
   * @throws {Error} when the member has shut down, the topic is over 255 bytes, or (member on this
   * thread) the address is invalid or the payload too large (in a worker: an `error` event). */
  sendTo(addr: string, topic: string, data: Bytes, options?: SendOptions | boolean): void;
  /** Replaces our metadata and announces it.
   * @throws {Error} when the member has shut down, or (member on this thread) the metadata is over
   * the preset's limit (in a worker: an `error` event). */
  setMetadata(meta: Bytes): void;
  /** Asks the members `options` selects (every member by default, ourselves included) to answer
   * `topic` and `data`, as Serf's `query`: each selected member acks at once and its application
   * may respond (`query` event, `respond`). Answers are taken until `timeoutMs` (default: 16
   * gossip intervals for each decimal digit of the cluster's size). Needs the build with queries
   * (`JoinOptions.queries`).
   * @throws {Error} (member on this thread; in a worker the answers end with the error) without
   * queries in the build, with 64 queries of ours in flight, or a query over the packet budget;
   * when the member has shut down or the topic is over 255 bytes.
   * @throws {TypeError} for a bad filter or timeout. */
  query(topic: string, data: Bytes, options?: QueryOptions): QueryAnswers;
  /** Answers a `query` event, once, before its timeout runs out.
   * @throws {Error} (member on this thread; in a worker: an `error` event) when the query is over,
   * unknown or answered already, or the answer does not fit a packet. */
  respond(query: QueryEvent, data: Bytes): void;

  /** Leaves gracefully and shuts down: `true` when the departure was gossiped within `timeoutMs`
   * (default 2,000). */
  leave(timeoutMs?: number): Promise<boolean>;
  /** Stops at once without telling anyone (others detect a failure). */
  shutdown(): Promise<void>;

  /** Counters and gauges. */
  metrics(): Metrics;
  /** The metrics in the Prometheus text format. */
  metricsText(): string;
  /** Where the traffic went: direct WebRTC channels versus the relay. */
  transportStats(): TransportStats;

  /** Where the member runs: `"thread"` (this one), `"worker"` or `"shared-worker"`. */
  readonly runsIn: "thread" | "worker" | "shared-worker";
  /** The underlying driver object (advanced use, untyped); null when the member runs in a worker. */
  readonly raw: unknown;
}

/** Which members a query asks, and for how long. */
export interface QueryOptions {
  /** Members whose name matches (`*` and `?` wildcards). */
  name?: string;
  /** Members with every one of these tags, values as patterns (`{ role: "web", dc: "eu-*" }`). */
  tags?: Record<string, string>;
  /** How long answers are taken, in milliseconds. */
  timeoutMs?: number;
}

/** One answer to a query. */
export type QueryAnswer =
  | { type: "ack"; from: string }
  | { type: "response"; from: string; data: Uint8Array; readonly text: string };

/** The answers to one of our queries: iterate them as they come (ends at the deadline, or when the
 * member shuts down), or `collect()` them all at the deadline. */
export interface QueryAnswers extends AsyncIterable<QueryAnswer> {
  /** The query's number, as its `query-*` events carry it (undefined until the worker started it). */
  readonly id: number | undefined;
  /** Every ack and response, once the deadline passed. Rejects if the query could not start. */
  collect(): Promise<{ acks: string[]; responses: { from: string; data: Uint8Array; readonly text: string }[] }>;
}

/** Loads the WebAssembly module ahead of `Shoal.join` (browser entry: from a URL, Response, bytes or
 * WebAssembly.Module; other entries: no-op). */
export declare function init(input?: unknown): Promise<unknown>;
/** Bytes of a payload (strings as UTF-8). */
export declare function toBytes(data: Bytes | null | undefined, what?: string): Uint8Array;
/** Renders `metrics()` in the Prometheus text format. */
export declare function prometheusText(metrics: Metrics): string;

export default Shoal;
