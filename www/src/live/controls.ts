// Client of shoal-demo's control API (transports/udp/src/bin/shoal-demo/control.rs): kill, restart,
// packet loss and partitions of the native demo members. Its URL comes from demo.json.

export interface DemoMember {
  name: string;
  addr: string;
  http: string;
  role: string;
  running: boolean;
  pid: number | null;
  loss: number;
  blocked: string[];
  restarts: number;
}

export interface DemoStatus {
  relay: string;
  partitioned: boolean;
  members: DemoMember[];
}

export class DemoControl {
  constructor(readonly base: string) {}

  async status(): Promise<DemoStatus> {
    return this.call("GET", "");
  }

  kill(name: string) {
    return this.call("POST", `/kill?name=${encodeURIComponent(name)}`);
  }

  restart(name: string) {
    return this.call("POST", `/restart?name=${encodeURIComponent(name)}`);
  }

  loss(loss: number, name?: string) {
    const who = name ? `&name=${encodeURIComponent(name)}` : "";
    return this.call("POST", `/loss?loss=${loss}${who}`);
  }

  partition() {
    return this.call("POST", "/partition");
  }

  heal() {
    return this.call("POST", "/heal");
  }

  private async call(method: string, path: string): Promise<DemoStatus> {
    const r = await fetch(`${this.base}/demo${path}`, { method, cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ?? `HTTP ${r.status}`);
    return body as DemoStatus;
  }
}
