#!/usr/bin/env bash
# The local demo: the dashboard served by a shoal-relay, and five native members (shoal-agent) run by
# the shoal-demo supervisor, which also serves the control API behind the dashboard's kill, restart,
# partition and packet-loss buttons. Open the printed URL: the page joins the cluster as a member
# through the relay (live view) and runs the simulator in wasm (simulation view). Ctrl-C stops
# everything (the members leave gracefully).
#
#   bash www/demo.sh              PORT=8080 MEMBERS=5 by default; PORT=0 picks a free port
#
# www/build.sh first builds whatever is missing or stale.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port="${PORT:-8080}"
members="${MEMBERS:-5}"

bash www/build.sh

echo
echo "Shoal demo: open the dashboard URL printed below. Ctrl-C stops the demo."
echo
exec target/release/shoal-demo --static www/dist --port "$port" --members "$members"
