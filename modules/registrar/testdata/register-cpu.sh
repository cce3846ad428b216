#!/bin/sh
# Proxy CPU time per registration for N distinct users, measured from
# /proc/<pid>/stat (utime + stime) around one sipp run. The idle CPU of the
# process (timer ticks, event loops) is measured for 5 s before and
# subtracted for the length of the run; both figures are printed.
#
#   go build -o /tmp/switchboard ./cmd/switchboard
#   modules/registrar/testdata/register-cpu.sh /tmp/switchboard [N]
#
# The server runs with auth.register: false (the benchmark hook), since sipp
# 3.6 cannot answer challenges with per-user credentials from a CSV file.
# Everything runs on 127.0.0.1 with a fresh data directory.
set -eu
BIN=$1; N=${2:-10000}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d)
PORT=${PORT:-25060}; MGMT=${MGMT:-127.0.0.1:28080}
cat > "$DIR/sb.yaml" <<CFG
listen: [{proto: udp, address: "127.0.0.1:$PORT"}]
mgmt: {listen: "$MGMT"}
storage: {dir: "$DIR/data"}
outbound: {allow: [127.0.0.0/8]}
log: {level: warn}
auth: {register: false}
CFG
"$BIN" run -c "$DIR/sb.yaml" > "$DIR/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
sleep 1
echo SEQUENTIAL > "$DIR/users.csv"
i=0
while [ $i -lt "$N" ]; do
  echo "u$i" >> "$DIR/users.csv"
  i=$((i + 1))
done
cpu() { awk '{print $14 + $15}' /proc/$PID/stat; }
now() { date +%s.%N; }
HZ=$(getconf CLK_TCK)
i0=$(cpu); t0=$(now); sleep 5; i1=$(cpu); t1=$(now)
before=$(cpu); start=$(now)
sipp -nostdin -sf "$HERE/register_csv.xml" -inf "$DIR/users.csv" -i 127.0.0.1 -p $((PORT + 1)) \
  -m "$N" -r 1000 -l 200 -timeout 120s -timeout_error 127.0.0.1:$PORT > "$DIR/sipp.out" 2>&1 || {
  tail -30 "$DIR/sipp.out"; exit 1; }
sleep 1 # the write-behind finishes its batches
after=$(cpu); end=$(now)
ok=$(grep "Successful call" "$DIR/sipp.out" | awk '{print $(NF)}')
bound=$(curl -s "http://$MGMT/metrics" | awk '$1 == "switchboard_registrar_bindings" {print $2}')
echo "users=$N successful=$ok bindings=$bound"
echo "$after $before $N $HZ $i0 $i1 $t0 $t1 $start $end" | awk '{
  idle = ($6 - $5) / ($8 - $7); run = $1 - $2; secs = $10 - $9
  printf "run %.1f s, CPU %.2f s (idle rate %.1f%%)\n", secs, run / $4, idle / $4 * 100
  printf "proxy CPU per registration: %.1f us raw, %.1f us net of idle\n", run / $4 * 1e6 / $3, (run - idle * secs) / $4 * 1e6 / $3 }'
