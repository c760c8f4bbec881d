// Entry point: two views behind tabs. The live view starts at once (it joins the cluster); the
// simulator loads its wasm the first time its tab opens. `?view=sim` opens the simulator first.
import "./style.css";
import { startLive } from "./live/live";

type View = "live" | "sim";
let simStarted: Promise<unknown> | null = null;

function show(view: View) {
  for (const v of ["live", "sim"] as const) {
    document.getElementById(`view-${v}`)!.hidden = v !== view;
    document.getElementById(`tab-${v}`)!.classList.toggle("active", v === view);
  }
  if (view === "sim") {
    simStarted ??= import("./sim/sim").then((m) => m.startSim());
  }
  window.dispatchEvent(new Event("resize"));
}

for (const tab of document.querySelectorAll<HTMLButtonElement>(".tab")) {
  tab.onclick = () => {
    const view = tab.dataset.view as View;
    history.replaceState(null, "", view === "sim" ? "?view=sim" : location.pathname);
    show(view);
  };
}

startLive();
show(new URLSearchParams(location.search).get("view") === "sim" ? "sim" : "live");
