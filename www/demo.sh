#!/usr/bin/env bash
# The local demo: a shoal-relay serving the demo page, and four native members (shoal-agent) that
# form a cluster; open the printed URL and your browser tab joins as a fifth member through the
# relay. Ctrl-C stops everything (the agents leave gracefully).
#
#   bash www/demo.sh            (PORT=8080 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port="${PORT:-8080}"

# Tools the wasm build needs (skipped when present).
bash tests/setup
SHOAL_WASM_TARGETS=web bash wasm/build.sh
cargo build --release -p shoal-relay -p shoal-udp --bins

dist="$root/www/dist"
rm -rf "$dist"
mkdir -p "$dist/shoal/pkg"
cp www/demo/* "$dist/"
cp -r wasm/js "$dist/shoal/js"
cp -r wasm/pkg/web "$dist/shoal/pkg/web"
echo '[]' > "$dist/seeds.json"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

target/release/shoal-relay --bind "127.0.0.1:$port" --static "$dist" &
pids+=($!)

logs="$(mktemp -d)"
target/release/shoal-agent --name native-1 --bind 127.0.0.1:0 --preset local --meta role=seed --json >"$logs/native-1" &
pids+=($!)
seed=""
for _ in $(seq 1 100); do
  seed="$(grep -o '"addr":"udp://[^"]*"' "$logs/native-1" | head -1 | cut -d'"' -f4 || true)"
  [[ -n "$seed" ]] && break
  sleep 0.05
done
[[ -n "$seed" ]] || { echo "native-1 did not start" >&2; exit 1; }
echo "[\"$seed\"]" > "$dist/seeds.json"
for i in 2 3 4; do
  target/release/shoal-agent --name "native-$i" --bind 127.0.0.1:0 --preset local --meta "role=worker" \
    --join "$seed" &
  pids+=($!)
done

echo
echo "Shoal demo: relay on http://127.0.0.1:$port/ — open it in a browser to join the cluster."
echo "Members print their view of the cluster below. Ctrl-C stops the demo."
echo
wait
