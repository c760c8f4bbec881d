/* tslint:disable */
/* eslint-disable */

/**
 * A member of a Shoal cluster, connected through a relay. Create it with `ShoalNode.join(options)`.
 */
export class ShoalNode {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Broadcasts to every member. With `key`, a newer broadcast with the same topic and key replaces
     * this one wherever it is still queued (latest-value semantics).
     */
    broadcast(topic: string, data: Uint8Array | number[], key?: Uint8Array | number[] | null): void;
    /**
     * Why the relay connection closed, once it has (`undefined` while open).
     */
    closeReason(): string | undefined;
    /**
     * Connects to the relay, starts the member and, when `seeds` are given, joins through them
     * (rejecting if none answers within the join timeout). Without seeds the member founds a new
     * cluster that others join through its address.
     *
     * Options: `relay` (`ws://host:port`, required), `name` (required, unique in the cluster),
     * `meta` (string or Uint8Array), `key` (64 hex digits or a 32-byte Uint8Array: AES-256-GCM on
     * every packet), `label` (cluster label), `token` (relay admission token), `seeds` (array of
     * addresses), `preset` (`"browser"` default, `"local"`, `"lan"`, `"wan"`), `peer` (relay peer id,
     * default the name), `joinTimeoutMs`, `connectTimeoutMs`, `eventCapacity`, `relayMaxFrame` (the
     * relay's frame limit, default 64 KiB: reliable traffic is kept under it), `WebSocket` (a
     * constructor, for runtimes without a global one) and `onEvent` (a callback that sees every
     * event from the very start, including the joins of the initial join).
     */
    static join(options: any): Promise<ShoalNode>;
    /**
     * Leaves gracefully and shuts down. Resolves to `true` when the departure was gossiped within
     * `timeoutMs` (default 2,000), `false` when the member shut down without confirming it.
     */
    leave(timeout_ms?: number | null): Promise<any>;
    /**
     * The address other members reach us at (`relay://host:port/peer`).
     */
    localAddr(): string;
    /**
     * Our own record, as others see it.
     */
    local(): any;
    /**
     * Every other known member, in any state, as `{name, addr, state, incarnation, meta, rttMs}`
     * objects (the JS layer adds `metaText`).
     */
    members(): Array<any>;
    /**
     * Counters and gauges as a plain object (numbers).
     */
    metrics(): any;
    /**
     * Our name.
     */
    name(): string;
    /**
     * Replaces the event callback (`null` removes it). Events are plain objects with a `type`.
     */
    onEvent(callback?: Function | null): void;
    /**
     * Sends a message to an address, member or not.
     */
    sendTo(addr: string, topic: string, data: Uint8Array | number[], reliable?: boolean | null): void;
    /**
     * Sends a message to the member named `name`: best-effort (one packet) unless `reliable`.
     */
    send(name: string, topic: string, data: Uint8Array | number[], reliable?: boolean | null): void;
    /**
     * Replaces our metadata and announces it.
     */
    setMetadata(meta: Uint8Array | number[]): void;
    /**
     * Stops at once without telling anyone (others detect a failure). Resolves once stopped.
     */
    shutdown(): Promise<any>;
}

/**
 * Runs when the module is instantiated: panics are reported on the console instead of as a bare
 * `unreachable` trap.
 */
export function start(): void;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_shoalnode_free: (a: number, b: number) => void;
    readonly shoalnode_broadcast: (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => [number, number];
    readonly shoalnode_closeReason: (a: number) => [number, number];
    readonly shoalnode_join: (a: any) => any;
    readonly shoalnode_leave: (a: number, b: number, c: number) => any;
    readonly shoalnode_local: (a: number) => any;
    readonly shoalnode_localAddr: (a: number) => [number, number];
    readonly shoalnode_members: (a: number) => any;
    readonly shoalnode_metrics: (a: number) => any;
    readonly shoalnode_name: (a: number) => [number, number];
    readonly shoalnode_onEvent: (a: number, b: number) => void;
    readonly shoalnode_send: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number];
    readonly shoalnode_sendTo: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number];
    readonly shoalnode_setMetadata: (a: number, b: number, c: number) => [number, number];
    readonly shoalnode_shutdown: (a: number) => any;
    readonly start: () => void;
    readonly wasm_bindgen__convert__closures_____invoke__h3a7b137235007db5: (a: number, b: number, c: any, d: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__hcb1eeb6b70da69c5: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h293d09c2f0e954ce: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__hc8ee96fdaaffe196: (a: number, b: number, c: any) => void;
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_destroy_closure: (a: number, b: number) => void;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
