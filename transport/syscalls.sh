#!/bin/bash
# Counts the syscalls and CPU of a UDP echo server per datagram, with the
# server and the load client in separate processes (perf tracepoints on
# the server process only).
#
#   go test -c -o /tmp/transport.test ./transport
#   TB=/tmp/transport.test transport/syscalls.sh recvmmsg 200000
#   TB=/tmp/transport.test transport/syscalls.sh gnet 200000
#   TB=/tmp/transport.test transport/syscalls.sh stdlib 200000
#
# A third argument paces the client: one round trip at a time with that
# pause between them (a Go duration), so every datagram finds the server
# idle and costs a wake-up:
#
#   TB=/tmp/transport.test transport/syscalls.sh recvmmsg 5000 200us
v=$1; n=${2:-200000}; pace=$3
TB=${TB:-/tmp/transport.test}
out=$(mktemp)
f=/tmp/echo_in_$$; o=/tmp/echo_out_$$
mkfifo $f
ev=task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_getsockopt,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep,syscalls:sys_enter_read,syscalls:sys_enter_write
( SWB_ECHO_SERVER=$v perf stat -x, -e $ev -o $out "$TB" -test.run '^TestEchoServerProcess$' < $f > $o 2>&1 ) &
spid=$!
exec 3>$f
for i in $(seq 50); do port=$(grep -m1 -E '^127' $o 2>/dev/null); [ -n "$port" ] && break; sleep 0.1; done
if [ -n "$pace" ]; then
  echo "$port $n" | SWB_ECHO_PACED_CLIENT=1 SWB_ECHO_PACE=$pace "$TB" -test.run '^TestEchoPacedClientProcess$' |
    awk '/^done/ {printf "%d round trips paced %s: %d/s, %d lost\n", '$n', "'$pace'", $3, $2}'
else
  SWB_ECHO_CLIENT=$port SWB_ECHO_N=$n "$TB" -test.run '^TestEchoClientProcess$' -test.v 2>&1 | grep "round trips" | sed 's/.*: //'
fi
exec 3>&-
wait $spid
rm -f $f $o
awk -F, -v n=$n -v v=$v '/^[0-9]/ {printf "%-10s %-40s %12s  %.3f per datagram\n", v, $3, $1, $1/n}' $out
rm -f $out
