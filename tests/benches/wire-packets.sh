#!/usr/bin/env bash
# Wire packets (and their IP bytes) of N shoal-agents on loopback, by protocol and TCP segment type, as the kernel
# carries them (IP level: TCP handshakes, acknowledgements and keepalive probes included, which the
# members' own counters never see).
#
#   bash tests/benches/wire-packets.sh [N=50] [WINDOW_S=30] [SETTLE_S=60] [AGENT=target/release/shoal-agent]
#
# Starts N agents (LAN preset) on 127.0.0.1:27000.., each joining the first, waits SETTLE_S, then
# counts every loopback packet to or from those ports for WINDOW_S with an AF_PACKET socket (root
# needed), prints packets and bytes per member per second, and stops the agents. Any program with
# shoal-agent's `--name/--bind/--join` flags can stand in for AGENT: tests/benches/memberlist/agent.go
# is HashiCorp memberlist's.
set -euo pipefail
N=${1:-50}; WINDOW=${2:-30}; SETTLE=${3:-60}; AGENT=${4:-target/release/shoal-agent}
BASE=27000
[ -x "$AGENT" ] || { echo "no agent binary at $AGENT (cargo build --release -p shoal-agent)"; exit 1; }
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
"$AGENT" --name w0 --bind 127.0.0.1:$BASE > /dev/null 2>&1 & pids+=($!)
sleep 0.5
for i in $(seq 1 $((N-1))); do
  "$AGENT" --name "w$i" --bind 127.0.0.1:$((BASE+i)) --join 127.0.0.1:$BASE > /dev/null 2>&1 & pids+=($!)
  sleep 0.05
done
sleep "$SETTLE"
python3 - "$N" "$WINDOW" "$BASE" <<'PY'
import collections, socket, struct, sys, time
n, window, base = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind(("lo", 0))
s.settimeout(0.5)
counts, octets = collections.Counter(), collections.Counter()
end = time.time() + window
while time.time() < end:
    try:
        pkt, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING:  # loopback shows each packet twice: count it once
        continue
    ip = pkt[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4:
        continue
    ihl = (ip[0] & 15) * 4
    sp, dp = struct.unpack("!HH", ip[ihl:ihl + 4])
    if not (base <= sp < base + n or base <= dp < base + n):
        continue
    size = struct.unpack("!H", ip[2:4])[0]
    if ip[9] == 17:
        counts["udp"] += 1
        octets["udp"] += size
    elif ip[9] == 6:
        flags, offset = ip[ihl + 13], (ip[ihl + 12] >> 4) * 4
        kind = "syn" if flags & 2 else "fin" if flags & 1 else "rst" if flags & 4 else "data" if len(ip) > ihl + offset else "ack"
        counts["tcp " + kind] += 1
        octets["tcp"] += size
per = lambda v: v / n / window
tcp = sum(v for k, v in counts.items() if k.startswith("tcp"))
print(f"wire-packets: {n} agents, {window:.0f} s: udp {per(counts['udp']):.2f}, tcp {per(tcp):.2f} packets per member per second")
print("  by kind: " + ", ".join(f"{k} {per(v):.2f}" for k, v in sorted(counts.items())))
print(f"  IP bytes per member per second: udp {per(octets['udp']):.1f}, tcp {per(octets['tcp']):.1f}, all {per(sum(octets.values())):.1f}")
PY
