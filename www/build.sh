#!/usr/bin/env bash
# Builds the dashboard and what it needs, skipping what is up to date: the tools (tests/setup), the
# npm package's wasm (wasm/pkg/web), the simulator's wasm (www/sim/pkg, www/build-sim.sh), the npm
# packages (npm ci), the dashboard (npm run build -> www/dist), and the release binaries shoal-relay,
# shoal-agent and shoal-demo. Used by www/demo.sh and before `npm test`.
#
#   bash www/build.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Tools (wasm32 target, wasm-bindgen-cli, npm packages of the wasm package, Chromium): skipped when present.
bash tests/setup

# stale OUTPUT INPUT...: true when OUTPUT is missing or older than any file under the INPUTs.
stale() {
  local out=$1
  shift
  [[ ! -e "$out" ]] || [[ -n "$(find "$@" -newer "$out" -type f -print -quit 2>/dev/null)" ]]
}

if stale wasm/pkg/web/shoal_wasm_bg.wasm core/proto/src core/proto/Cargo.toml wasm/src wasm/Cargo.toml; then
  bash wasm/build.sh
fi
if stale www/sim/pkg/shoal_sim_wasm_bg.wasm core/proto/src core/sim/src www/sim/src www/sim/Cargo.toml; then
  bash www/build-sim.sh
fi
if [[ ! -f www/node_modules/.package-lock.json || www/package-lock.json -nt www/node_modules/.package-lock.json ]]; then
  (cd www && npm ci --no-audit --no-fund)
fi
if stale www/dist/index.html www/src www/index.html www/vite.config.ts www/package-lock.json wasm/js \
  wasm/pkg/web www/sim/pkg; then
  (cd www && npm run build)
fi
cargo build --release -p shoal-relay -p shoal-agent --bins
