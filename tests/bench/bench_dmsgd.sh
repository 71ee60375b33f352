# Sourced by run_bench_relay.sh and run_bench_admin.sh (not run on its own): starts the dmsgd
# they benchmark, on free loopback ports, with limits raised so that one benchmarking client is
# not throttled (setup rate, pending requests, sessions per IP).
#
#   start_bench_dmsgd DMSGD WORK [EXTRA_LIMIT]
#
# WORK is a scratch directory (config, state, output); EXTRA_LIMIT, if given, is one more
# "name": value member of "limits". Sets port, disc, pid (the caller's cleanup kills it) and
# pk; exits the script when dmsgd does not start within 10 s.

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

start_bench_dmsgd() {
    port=$(free_port)
    disc=$(free_port)
    cat > "$2/config.json" <<JSON
{
  "local_address": "127.0.0.1:$port",
  "embedded_discovery_address": "127.0.0.1:$disc",
  "state_dir": "$2/state",
  "log_level": "warn",
  "max_sessions": 30000,
  "limits": {
    "max_sessions_per_ip": 30000,
    "max_pending_per_ip": 1024,
    "max_pending_handshakes": 4096,
    "stream_requests_per_second": 1000000,
    "stream_requests_burst": 1000000,
    "max_pending_requests": 4096${3:+,
    $3}
  }
}
JSON
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    "$1" -c "$2/config.json" > "$2/stdout" 2> "$2/stderr" &
    pid=$!
    i=0
    while ! grep -q "public key:" "$2/stdout" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 100 ] && { echo "dmsgd did not start:" >&2; cat "$2/stderr" >&2; exit 1; }
        sleep 0.1
    done
    pk=$(awk '/public key:/ {print $3}' "$2/stdout")
    sleep 0.5
}
