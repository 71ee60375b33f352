#!/bin/sh
# Runs bench_relay against a dmsgd started here on free loopback ports, with limits raised so
# that one benchmarking client is not throttled (setup rate, pending requests, sessions per IP).
#
#   tests/bench/run_bench_relay.sh BUILD_DIR [bench_relay options...]
#
# BUILD_DIR is a Release build (cmake -DCMAKE_BUILD_TYPE=Release) with daemon/dmsgd and
# tests/bench/bench_relay. To measure another server (e.g. the Go reference), run bench_relay
# directly: bench_relay --server PK@HOST:PORT [--pid PID].
set -eu
build=${1:?usage: run_bench_relay.sh BUILD_DIR [bench_relay options...]}
shift
dmsgd=$build/daemon/dmsgd
bench=$build/tests/bench/bench_relay
[ -x "$dmsgd" ] && [ -x "$bench" ] || { echo "no $dmsgd or $bench" >&2; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
port=$(free_port)
disc=$(free_port)
cat > "$work/config.json" <<JSON
{
  "local_address": "127.0.0.1:$port",
  "embedded_discovery_address": "127.0.0.1:$disc",
  "state_dir": "$work/state",
  "log_level": "warn",
  "max_sessions": 30000,
  "limits": {
    "max_sessions_per_ip": 30000,
    "max_pending_per_ip": 1024,
    "max_pending_handshakes": 4096,
    "stream_requests_per_second": 1000000,
    "stream_requests_burst": 1000000,
    "max_pending_requests": 4096
  }
}
JSON
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$dmsgd" -c "$work/config.json" > "$work/stdout" 2> "$work/stderr" &
pid=$!
i=0
while ! grep -q "public key:" "$work/stdout" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "dmsgd did not start:" >&2; cat "$work/stderr" >&2; exit 1; }
    sleep 0.1
done
pk=$(awk '/public key:/ {print $3}' "$work/stdout")
sleep 0.5
"$bench" --server "$pk@127.0.0.1:$port" --pid "$pid" "$@"
