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

. "$(dirname "$0")/bench_dmsgd.sh"
start_bench_dmsgd "$dmsgd" "$work"
"$bench" --server "$pk@127.0.0.1:$port" --pid "$pid" "$@"
