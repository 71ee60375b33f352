#!/bin/sh
# The admin API's benchmark (issue 5): starts a dmsgd on free loopback ports (limits raised for
# one benchmarking client), then
#   1. bench_admin: admin requests per second for `sessions` (and others) at 10k sessions;
#   2. bench_relay's throughput figures twice, alternately without and with a client polling
#      /metrics every 100 ms, and the difference (the admin side must cost the relay < 5%).
#
#   tests/bench/run_bench_admin.sh BUILD_DIR [SESSIONS] [ROUNDS]
#
# BUILD_DIR is a Release build (cmake -DCMAKE_BUILD_TYPE=Release) with daemon/dmsgd,
# tests/bench/bench_admin and tests/bench/bench_relay. Figures only; never part of ctest.
set -eu
build=${1:?usage: run_bench_admin.sh BUILD_DIR [SESSIONS] [ROUNDS]}
sessions=${2:-10000}
rounds=${3:-5}
dmsgd=$build/daemon/dmsgd
admin=$build/tests/bench/bench_admin
relay=$build/tests/bench/bench_relay
for b in "$dmsgd" "$admin" "$relay"; do
    [ -x "$b" ] || { echo "run_bench_admin: no $b" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "run_bench_admin: needs curl" >&2; exit 1; }

work=$(mktemp -d)
pid=
poller=
cleanup() {
    [ -n "$poller" ] && kill "$poller" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

. "$(dirname "$0")/bench_dmsgd.sh"
start_bench_dmsgd "$dmsgd" "$work" '"metrics_sample_interval_ms": 10000'
sock=$work/state/admin.sock

echo "== 1. admin API at $sessions sessions"
"$admin" --server "$pk@127.0.0.1:$port" --admin "$sock" --sessions "$sessions" --seconds 3
sleep 2 # the server lets the closed sessions go

throughput() { # prints "MB/s(1 stream) MB/s(8 streams) server-CPU-s/GiB(1) server-CPU-s/GiB(8)"
    "$relay" --server "$pk@127.0.0.1:$port" --pid "$pid" --runs 3 --mib 256 --setups 2 \
        --no-forwarder --sessions 1 2>/dev/null |
        awk '/-stream throughput:/ { s = $1; v[s] = $3 }
             /server CPU per GiB relayed:/ { c[s] = $6 }
             END { printf "%s %s %s %s\n", v["1-stream"], v["8-stream"], c["1-stream"], c["8-stream"] }'
}

echo "== 2. relay throughput and server CPU per GiB, without and with /metrics polled every 100 ms"
for r in $(seq 1 "$rounds"); do
    plain=$(throughput)
    ( while :; do curl -s --unix-socket "$sock" -o /dev/null http://localhost/metrics; sleep 0.1; done ) &
    poller=$!
    polled=$(throughput)
    kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null || true
    poller=
    echo "round $r: without polling: $plain   with polling: $polled   (MB/s 1, 8 streams; CPU s/GiB 1, 8)"
    echo "$plain $polled" >> "$work/rounds"
done
# Medians of the interleaved rounds (other load on the machine hits both sides alike).
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { cut -d' ' -f"$1" "$work/rounds" | median; }
awk -v p1="$(col 1)" -v p8="$(col 2)" -v c1="$(col 3)" -v c8="$(col 4)" \
    -v q1="$(col 5)" -v q8="$(col 6)" -v d1="$(col 7)" -v d8="$(col 8)" 'BEGIN {
    printf "median throughput: 1 stream %.1f -> %.1f MB/s (%+.1f%%), 8 streams %.1f -> %.1f MB/s (%+.1f%%)\n",
           p1, q1, (q1 - p1) / p1 * 100, p8, q8, (q8 - p8) / p8 * 100
    printf "median server CPU per GiB: 1 stream %.3f -> %.3f s (%+.1f%%), 8 streams %.3f -> %.3f s (%+.1f%%)\n",
           c1, d1, (d1 - c1) / c1 * 100, c8, d8, (d8 - c8) / c8 * 100 }'
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
echo "== 3. what the polling itself costs the daemon: its CPU over 10 s, idle, without and with it"
t0=$(cpu_ticks); sleep 10; t1=$(cpu_ticks)
( while :; do curl -s --unix-socket "$sock" -o /dev/null http://localhost/metrics; sleep 0.1; done ) &
poller=$!
t2=$(cpu_ticks); sleep 10; t3=$(cpu_ticks)
kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null || true
poller=
hz=$(getconf CLK_TCK)
awk -v a="$((t1 - t0))" -v b="$((t3 - t2))" -v hz="$hz" 'BEGIN {
    printf "daemon CPU: %.3f s per 10 s without polling, %.3f s with (%.2f%% of one core)\n",
           a / hz, b / hz, (b - a) / hz / 10 * 100 }'
polls=$(curl -s --unix-socket "$sock" http://localhost/metrics | awk -F' ' '/^dmsgd_admin_requests_total\{code="200"\}/ {print $2}')
echo "admin requests answered 200 so far: $polls"
