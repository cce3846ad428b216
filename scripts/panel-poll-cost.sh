#!/usr/bin/env bash
# Measures what the web panel's dashboard polling costs the server: the CPU
# time (user + system, from /proc/PID/stat) the switchboard process spends
# answering N polls of /ui/stats.json back to back, per poll, and that cost
# at the dashboard's rate (one poll every 2 s per open dashboard) as a share
# of one core. Also the idle process over the same wall time, for
# comparison. Usage: scripts/panel-poll-cost.sh [N]   (default 2000)
set -euo pipefail
n=${1:-2000}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/switchboard" ./cmd/switchboard
port=$((20000 + RANDOM % 20000))
cat >"$dir/c.yaml" <<YAML
storage: {dir: $dir/data}
mgmt: {listen: "127.0.0.1:$port"}
listen: [{proto: udp, address: "127.0.0.1:$((port + 1))"}]
outbound: {allow: [127.0.0.0/8]}
YAML
"$dir/switchboard" panel user add bench --password 'bench password 1' -c "$dir/c.yaml" >/dev/null
"$dir/switchboard" run -c "$dir/c.yaml" 2>"$dir/log" &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 50); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
jar="$dir/jar"
tok=$(curl -s -c "$jar" "$base/ui/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
curl -s -b "$jar" -c "$jar" -H "Origin: $base" --data-urlencode "csrf=$tok" -d user=bench \
	--data-urlencode 'password=bench password 1' "$base/ui/login" -o /dev/null
curl -sf -b "$jar" "$base/ui/stats.json" >/dev/null || { echo "login failed" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
sleep 2
t0=$(ticks); s0=$(date +%s.%N)
for _ in $(seq "$n"); do echo "url = \"$base/ui/stats.json\""; echo "output = /dev/null"; done >"$dir/urls"
curl -s -b "$jar" -K "$dir/urls"
t1=$(ticks); s1=$(date +%s.%N)
sleep "$(echo "$s1 - $s0" | bc)"
t2=$(ticks)
awk -v n="$n" -v busy=$((t1 - t0)) -v idle=$((t2 - t1)) -v hz="$hz" -v wall="$(echo "$s1 - $s0" | bc)" -v lines="$(curl -s "$base/metrics" | grep -vc '^#')" 'BEGIN {
	per = busy / hz / n
	printf "metrics lines: %d\n", lines
	printf "%d polls in %.2f s: %.3f s CPU (idle over the same time: %.3f s)\n", n, wall, busy / hz, idle / hz
	printf "per poll: %.0f us CPU; one dashboard polling every 2 s: %.4f%% of a core\n", (busy - idle) / hz / n * 1e6, (busy - idle) / hz / n / 2 * 100
}'
