#!/usr/bin/env bash
# Where a relayed call's CPU goes: drives the sipbench relay against one
# server at a fixed rate and, while the traffic flows, measures the server
# process from outside (bench/results/breakdown.md explains the output).
#
#   bench/breakdown.sh RATE [switchboard|kamailio] [extra sipbench flags...]
#
# Needs root, perf (Debian linux-perf) and bin/sipbench, bin/switchboard
# (make build sipbench). Three windows of W seconds (default 8) while one
# long rung runs: /proc utime/stime and context switches of every thread;
# perf stat of system calls by kind, timer expiries and wake-ups; perf record
# of cpu-clock samples with call graphs (frame pointers), summarised by
# symbol and by part (kernel, Go runtime, GC, our code).
set -eu
rate=${1:?rate}
kind=${2:-switchboard}
shift 2 || shift $#
W=${W:-8}
out=${OUT:-/tmp/breakdown-$kind-$rate}
mkdir -p "$out"
step=$((4 * W + 12))s
./bin/sipbench -switchboard bin/switchboard -servers "$kind" -scenarios relay -rates "$rate" -warmup 3s \
	-step "$step" -syscalls=false -out "$out/sipbench.md" -work "$out/work" -keep "$@" >"$out/sipbench.log" 2>&1 &
sb=$!
trap 'kill $sb 2>/dev/null || true' EXIT
# The server's main process: the newest one whose command line names the
# work directory of this run.
pid=
for _ in $(seq 60); do
	pid=$(pgrep -n -f "$out/work/(switchboard|$kind-relay).*" || true)
	[ -n "$pid" ] && break
	sleep 0.5
done
[ -n "$pid" ] || { echo "server not found" >&2; exit 1; }
pids=$pid
if [ "$kind" = kamailio ]; then pids=$(pgrep -d, -f "kamailio .*$out/work/"); fi
sleep $((W + 3)) # warm-up and the rung's start
cpu() { # utime stime in ticks, summed over the processes
	local u=0 s=0
	for p in ${pids//,/ }; do
		read -r -a f <"/proc/$p/stat"
		u=$((u + f[13])); s=$((s + f[14]))
	done
	echo "$u $s"
}
ctx() {
	local n=0
	for p in ${pids//,/ }; do
		for t in /proc/$p/task/*/status; do
			n=$((n + $(awk '/ctxt_switches/ {s += $2} END {print s}' "$t")))
		done
	done
	echo $n
}
read -r u0 s0 < <(cpu); c0=$(ctx)
sleep "$W"
read -r u1 s1 < <(cpu); c1=$(ctx)
hz=$(getconf CLK_TCK)
calls=$((rate * W))
awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v c=$((c1 - c0)) -v hz="$hz" -v n="$calls" 'BEGIN {
	printf "window %d s, ~%d calls\nuser %.1f us/call, system %.1f us/call, total %.1f us/call (user share %.0f%%)\ncontext switches %.2f/call\n",
		n / '"$rate"', n, 1e6 * u / hz / n, 1e6 * s / hz / n, 1e6 * (u + s) / hz / n, 100 * u / (u + s + 1e-9), c / n }' | tee "$out/cpu.txt"
events=raw_syscalls:sys_enter,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmmsg
events+=,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep
events+=,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fdatasync,syscalls:sys_enter_tgkill,syscalls:sys_enter_getpid
events+=,syscalls:sys_enter_sched_yield,syscalls:sys_enter_madvise,syscalls:sys_enter_mmap,syscalls:sys_enter_rt_sigreturn
events+=,timer:hrtimer_expire_entry,sched:sched_wakeup,sched:sched_switch,task-clock
perf stat -x, -e "$events" -p "$pids" -- sleep "$W" 2>"$out/perfstat.csv"
# Per call at the nominal rate, and per call handled: a relayed call makes
# the proxy send 7 datagrams (100, INVITE, 180, 200, ACK, BYE, 200), so
# sendto/7 counts the calls it really handled when it could not keep up.
awk -F, -v n="$calls" '$1 ~ /^[0-9.]+$/ { v[$3] = $1; order[++k] = $3 }
	END { h = v["syscalls:sys_enter_sendto"] / 7
		printf "calls at the nominal rate %d, handled (sendto/7) %d\n", n, h
		for (i = 1; i <= k; i++) if (v[order[i]] > 0)
			printf "%-40s %10.2f per nominal call %10.2f per call handled\n", order[i], v[order[i]] / n, (h > 0 ? v[order[i]] / h : 0) }' \
	"$out/perfstat.csv" | tee "$out/perstat.txt"
perf record -q -e cpu-clock -F 2999 -g -p "$pids" -o "$out/perf.data" -- sleep "$W" 2>/dev/null
perf report -i "$out/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 >"$out/top.txt" || true
perf report -i "$out/perf.data" --children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | grep -v '\[k\]' | head -60 >"$out/inclusive.txt" || true
# Parts: every sample counted once, by the innermost frame (kernel or not)
# and by whether a GC frame is on its stack.
perf script -i "$out/perf.data" -F ip,sym,dso 2>/dev/null | awk '
	/^$/ { if (n) part(); n = 0; stack = ""; next }
	{ n++; if (n == 1) { leaf = $2; kern = ($0 ~ /kernel\.kallsyms|\[vdso\]/) } stack = stack " " $2 }
	function part() {
		total++
		if (stack ~ /gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge/) gc++
		else if (kern) kernel++
		else if (leaf ~ /^(runtime|internal\/runtime|sync|syscall|internal\/poll|os|time)\./ || leaf ~ /^(aeshash|memeqbody|cmpbody|indexbyte)/) runtime++
		else ours++
	}
	END { if (n) part(); printf "samples %d: kernel %.0f%%, Go runtime (non-GC) %.0f%%, GC %.0f%%, our code and libraries %.0f%%\n",
		total, 100 * kernel / total, 100 * runtime / total, 100 * gc / total, 100 * ours / total }' | tee "$out/parts.txt"
# The measurements are taken: end the rung (sipbench stops what it started).
kill "$sb" 2>/dev/null || true
wait "$sb" 2>/dev/null || true
trap - EXIT
echo "output in $out"
