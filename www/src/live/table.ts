// The member table: sortable by any column (click a header), filtered by a free-text box, with the
// demo controls of the native members (kill, restart, packet loss) in the last column.
import type { GraphMember } from "./graph";

export interface TableRow extends GraphMember {
  /** The relay a member reaches the cluster through (`host:port`, with its member's name when the
   * relay announces itself), empty for members with their own sockets. */
  relay: string;
  native: boolean;
  running: boolean | null;
  loss: number;
}

type Action = (action: "kill" | "restart" | "loss", member: string, arg?: string) => void;

const STATE_ORDER: Record<string, number> = { failed: 0, suspect: 1, unknown: 2, left: 3, alive: 4 };

export class MemberTable {
  private key = "name";
  private desc = false;
  private filter = "";
  private last: TableRow[] = [];
  private withControls = false;
  private pressed = false;

  constructor(private table: HTMLElement, filter: HTMLInputElement, private act: Action) {
    for (const th of table.querySelectorAll<HTMLElement>("th[data-key]")) {
      th.onclick = () => {
        const key = th.dataset.key!;
        this.desc = key === this.key ? !this.desc : false;
        this.key = key;
        this.render(this.last, this.withControls);
      };
    }
    filter.oninput = () => {
      this.filter = filter.value.trim().toLowerCase();
      this.render(this.last, this.withControls);
    };
    // Rows are rebuilt on every render: hold renders while a button is pressed so its click lands.
    table.addEventListener("pointerdown", () => (this.pressed = true));
    window.addEventListener("pointerup", () => setTimeout(() => (this.pressed = false), 0));
    // One delegated listener for the rows' controls.
    table.addEventListener("click", (e) => {
      const b = (e.target as HTMLElement).closest("button");
      if (b?.dataset.action) this.act(b.dataset.action as "kill" | "restart", b.dataset.member!);
    });
    table.addEventListener("change", (e) => {
      const s = e.target as HTMLSelectElement;
      if (s.dataset.action === "loss") this.act("loss", s.dataset.member!, s.value);
    });
  }

  private compare(a: TableRow, b: TableRow): number {
    const k = this.key;
    let r: number;
    if (k === "state") r = (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9);
    else if (k === "incarnation") r = a.incarnation - b.incarnation;
    else if (k === "rtt") r = (a.rttMs ?? 1e9) - (b.rttMs ?? 1e9);
    else r = String((a as unknown as Record<string, unknown>)[k] ?? "").localeCompare(String((b as unknown as Record<string, unknown>)[k] ?? ""));
    if (r === 0) r = a.name.localeCompare(b.name);
    return this.desc ? -r : r;
  }

  render(rows: TableRow[], withControls: boolean) {
    this.last = rows;
    this.withControls = withControls;
    const active = document.activeElement;
    if (this.pressed || (active instanceof HTMLSelectElement && this.table.contains(active))) return; // keep an open menu
    for (const th of this.table.querySelectorAll<HTMLElement>("th[data-key]")) {
      th.classList.toggle("sorted", th.dataset.key === this.key);
      th.classList.toggle("desc", th.dataset.key === this.key && this.desc);
    }
    const f = this.filter;
    const visible = rows
      .filter((r) => !f || [r.name, r.state, r.addr, r.relay, r.meta, r.digest ?? ""].some((v) => v.toLowerCase().includes(f)))
      .sort((a, b) => this.compare(a, b));
    const body = this.table.querySelector("tbody")!;
    body.replaceChildren(...visible.map((r) => this.row(r)));
  }

  private row(r: TableRow): HTMLTableRowElement {
    const tr = document.createElement("tr");
    tr.dataset.name = r.name;
    tr.dataset.state = r.state;
    const cell = (text: string, cls?: string) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
      return td;
    };
    cell(r.name);
    const st = cell("");
    const badge = document.createElement("span");
    badge.className = `state ${r.state}`;
    badge.textContent = r.state;
    st.append(badge);
    if (r.native && r.running === false) st.append(" process stopped");
    cell(String(r.incarnation), "mono");
    cell(r.addr, "mono");
    cell(r.relay || "–", "mono");
    cell(r.meta);
    cell(r.rttMs == null ? "–" : `${r.rttMs} ms`, "mono");
    const dg = cell(r.digest ?? "–", `mono ${r.agrees === true ? "agree" : r.agrees === false ? "disagree" : ""}`);
    if (r.agrees === false) dg.title = "differs from the majority view";
    const ctl = cell("");
    if (r.native && this.withControls) {
      const box = document.createElement("span");
      box.className = "controls";
      const button = (action: string, label: string, disabled: boolean) => {
        const b = document.createElement("button");
        Object.assign(b.dataset, { action, member: r.name });
        b.textContent = label;
        b.disabled = disabled;
        box.append(b);
      };
      button("kill", "kill", r.running === false);
      button("restart", "restart", false);
      const sel = document.createElement("select");
      Object.assign(sel.dataset, { action: "loss", member: r.name });
      for (const v of [0, 0.1, 0.3, 0.6, 1]) {
        const o = document.createElement("option");
        o.value = String(v);
        o.textContent = `${v * 100}% loss`;
        o.selected = Math.abs(v - r.loss) < 1e-9;
        sel.append(o);
      }
      box.append(sel);
      ctl.append(box);
    }
    return tr;
  }
}
