#!/usr/bin/env bash
# The mesh example on loopback, without Docker: the topology of deploy/docker/compose.yml.
#
#   deploy/mesh-demo.sh [--dmsgd PATH] [--dmsgcat PATH] [--dmsgctl PATH] [--timeout SECONDS]
#                       [--keep]
#
#  1. Three dmsgd, s1 s2 s3, in a full mesh from their config files (deploy/mesh-config.sh).
#  2. bob listens on s2, his only server; alice dials bob through s1, hers. Every byte crosses
#     the s1-s2 peer link, both ways (bob echoes), and must come back unchanged.
#  3. A fourth dmsgd, s4, starts alone with carol on it: alice cannot reach carol. Then
#     `dmsgctl peer add` joins s4 and s1 at runtime, and alice reaches carol.
#  4. Every dmsgd stops on SIGTERM and must exit 0.
# All files live in a fresh work directory removed at exit (--keep leaves it). Every wait is
# bounded; past --timeout seconds (default 180) the demo fails. Binaries default to the
# README's build (build/release), else PATH.
# Exit status: 0 the demo worked; 1 a step failed (the logs are printed); 2 usage error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
timeout_s=180
keep=false
dmsgd='' dmsgcat='' dmsgctl=''

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}
while [ $# -gt 0 ]; do
    case $1 in
    --dmsgd) dmsgd=$2; shift 2 ;;
    --dmsgcat) dmsgcat=$2; shift 2 ;;
    --dmsgctl) dmsgctl=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "mesh-demo: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || { echo "mesh-demo: --timeout wants seconds" >&2; exit 2; }

find_binary() { # NAME GIVEN BUILD_PATH
    local found=$2
    [ -n "$found" ] || { [ -x "$repo/build/release/$3" ] && found=$repo/build/release/$3; }
    [ -n "$found" ] || found=$(command -v "$1" || true)
    if [ -z "$found" ] || [ ! -x "$found" ]; then
        echo "mesh-demo: no $1 binary: build it (README) or pass --$1 PATH" >&2
        exit 2
    fi
    printf '%s\n' "$found"
}
dmsgd=$(find_binary dmsgd "$dmsgd" daemon/dmsgd)
dmsgcat=$(find_binary dmsgcat "$dmsgcat" daemon/dmsgcat)
dmsgctl=$(find_binary dmsgctl "$dmsgctl" ctl/dmsgctl)

deadline=$((SECONDS + timeout_s))
work=$(mktemp -d "${TMPDIR:-/tmp}/dmsgd-mesh.XXXXXX")
declare -A pid=()    # name -> pid of every process we started
declare -A pk=()     # name -> public key
declare -A port=()   # server name -> session port
declare -A conf=()   # server name -> config file
finished=false

say() { printf 'mesh-demo: %s\n' "$*"; }

show_logs() {
    local f
    for f in "$work"/*.log; do
        [ -s "$f" ] || continue
        printf '%s\n' "----- ${f##*/} (last 25 lines)" >&2
        tail -n 25 "$f" >&2
    done
}

fail() {
    printf 'mesh-demo: FAILED: %s\n' "$*" >&2
    show_logs
    exit 1
}

# Stops what is still running: clients first, then servers; TERM, then KILL after 10 s.
cleanup() {
    local rc=$? name
    trap - EXIT INT TERM
    for name in "${!pid[@]}"; do kill -TERM "${pid[$name]}" 2>/dev/null || true; done
    for name in "${!pid[@]}"; do
        for _ in $(seq 100); do kill -0 "${pid[$name]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${pid[$name]}" 2>/dev/null || true
        wait "${pid[$name]}" 2>/dev/null || true
    done
    if $keep; then
        say "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    if ! $finished && [ $rc -eq 0 ]; then rc=1; fi
    exit $rc
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

check_deadline() {
    [ $SECONDS -lt $deadline ] || fail "gave up after ${timeout_s}s (--timeout)"
}

# At most $1 seconds, and never past the deadline (but at least 1).
bounded() {
    local want=$1 left=$((deadline - SECONDS))
    [ $left -ge 1 ] || left=1
    [ "$want" -le "$left" ] || want=$left
    printf '%s\n' "$want"
}

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
    local limit=$((SECONDS + $(bounded "$1"))) what=$2
    shift 2
    until "$@"; do
        [ $SECONDS -lt $limit ] || fail "timed out waiting for $what"
        check_deadline
        check_servers
        sleep 0.2
    done
}

alive() { kill -0 "${pid[$1]}" 2>/dev/null; }

# Every server started so far still runs (a crash shows at once, not as a timeout).
check_servers() {
    local name
    for name in "${!pid[@]}"; do
        [[ $name == s[0-9] ]] || continue
        alive "$name" || fail "dmsgd $name died (see $name.log)"
    done
}

# A port nothing listens on, outside the kernel's ephemeral range (32768-60999).
declare -A taken=()
pick_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        [ -z "${taken[$p]:-}" ] || continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            taken[$p]=1
            printf '%s\n' "$p"
            return
        fi
    done
    fail "no free port found on 127.0.0.1"
}

# ---------------------------------------------------------------------------------------------
# Servers

start_server() { # NAME
    local name=$1
    "$dmsgd" -c "${conf[$name]}" >"$work/$name.out" 2>"$work/$name.log" &
    pid[$name]=$!
}

server_ready() { # NAME: the banner is out and the admin API answers
    alive "$1" || fail "dmsgd $1 exited during start"
    grep -q '^listening on:' "$work/$1.out" &&
        "$dmsgctl" -c "${conf[$1]}" --timeout 2 health >/dev/null 2>&1
}

links_up() { # NAME COUNT: the server's outbound links that are up
    local n
    n=$("$dmsgctl" -c "${conf[$1]}" --timeout 2 --plain peer ls 2>/dev/null |
        awk -F'\t' '$4 == "up"' | wc -l) || return 1
    [ "$n" -ge "$2" ]
}

configure_servers() { # CONF_DIR NAME...
    local dir=$1 name
    shift
    local specs=()
    for name in "$@"; do
        port[$name]=$(pick_port)
        specs+=("$name=127.0.0.1:${port[$name]}")
    done
    # Each embedded discovery on a free port: the servers must not share 127.0.0.1:9090.
    "$here/mesh-config.sh" --dmsgd "$dmsgd" --state-root "$work/state" \
        --embedded-discovery 127.0.0.1:0 "$dir" "${specs[@]}" >/dev/null ||
        fail "mesh-config.sh could not write the configs"
    for name in "$@"; do
        conf[$name]=$dir/$name.json
        pk[$name]=$(cat "$dir/$name.pk")
    done
}

# ---------------------------------------------------------------------------------------------
# Clients

client_key() { # NAME
    "$here/mesh-config.sh" --dmsgd "$dmsgd" --client "$1" "$work/clients" >/dev/null ||
        fail "cannot make a key for $1"
    pk[$1]=$(cat "$work/clients/$1.pk")
}

start_echo_listener() { # NAME SERVER DMSG_PORT
    local name=$1 server=$2
    check_deadline
    timeout "$(bounded "$timeout_s")" "$dmsgcat" --server "${pk[$server]}@127.0.0.1:${port[$server]}" \
        --key-file "$work/clients/$name.key" --echo listen "$3" 2>"$work/$name.log" &
    pid[$name]=$!
    wait_for 30 "$name to listen on $server" grep -qs '^dmsgcat: ready' "$work/$name.log"
}

# dial FROM SERVER TO DMSG_PORT IN OUT: one stream through SERVER only; 0 when it worked.
dial() {
    local size
    check_deadline
    size=$(wc -c <"$5")
    timeout "$(bounded 60)" "$dmsgcat" --server "${pk[$2]}@127.0.0.1:${port[$2]}" \
        --key-file "$work/clients/$1.key" --timeout "$(bounded 15)" --expect "$size" \
        dial "${pk[$3]}:$4" <"$5" >"$6" 2>>"$work/$1.log"
}

# dial_until_echoed FROM SERVER TO DMSG_PORT IN: retries while the mesh settles.
dial_until_echoed() {
    local limit=$((SECONDS + $(bounded 60))) out="$5.echoed"
    while :; do
        if dial "$1" "$2" "$3" "$4" "$5" "$out" && cmp -s "$5" "$out"; then
            return 0
        fi
        check_servers
        [ $SECONDS -lt $limit ] || fail "$1 (on $2) could not exchange data with $3"
        sleep 1
    done
}

# The payload bytes relayed over peer links, from the metrics of the named servers.
mesh_bytes() {
    local name total=0 v
    for name in "$@"; do
        v=$("$dmsgctl" -c "${conf[$name]}" --timeout 2 metrics 2>/dev/null |
            awk '$1 == "dmsgd_relay_bytes_total{path=\"mesh\"}" { printf "%d", $2 }') || true
        [ -n "$v" ] || { printf 'absent\n'; return; }
        total=$((total + v))
    done
    printf '%s\n' "$total"
}

# One session's server: is KEY among NAME's sessions?
has_session() { # SERVER KEY
    "$dmsgctl" -c "${conf[$1]}" --timeout 2 --plain sessions 2>/dev/null | grep -q "$2"
}

# ---------------------------------------------------------------------------------------------

say "binaries: $dmsgd, $dmsgcat, $dmsgctl"
say "work directory: $work"

say "1. three servers in a full mesh: s1 s2 s3"
configure_servers "$work/mesh" s1 s2 s3
for s in s1 s2 s3; do start_server "$s"; done
for s in s1 s2 s3; do wait_for 30 "dmsgd $s to serve" server_ready "$s"; done
for s in s1 s2 s3; do wait_for 40 "$s's links to both peers" links_up "$s" 2; done
for s in s1 s2 s3; do say "   $s ${pk[$s]} on 127.0.0.1:${port[$s]}, 2 peer links up"; done

say "2. bob listens on s2; alice, on s1, talks to him across the mesh"
client_key alice
client_key bob
start_echo_listener bob s2 7
has_session s2 "${pk[bob]}" || fail "bob has no session on s2"
if has_session s1 "${pk[bob]}"; then fail "bob has a session on s1: the test would prove nothing"; fi
printf 'hello bob, this is alice on s1\n' >"$work/greeting"
dial_until_echoed alice s1 bob 7 "$work/greeting"
say "   bob echoed: $(cat "$work/greeting.echoed")"
head -c 1048576 /dev/urandom >"$work/payload"
before=$(mesh_bytes s1 s2)
dial_until_echoed alice s1 bob 7 "$work/payload"
after=$(mesh_bytes s1 s2)
say "   1 MiB through s1 -> s2 -> bob -> s2 -> s1 came back identical" \
    "(sha256 $(sha256sum <"$work/payload" | cut -c1-16)...)"
if [ "$before" = absent ] || [ "$after" = absent ]; then
    say "   (dmsgd_relay_bytes_total{path=\"mesh\"} is not exported: metrics check skipped)"
elif [ $((after - before)) -lt 2097152 ]; then
    fail "the peer links relayed $((after - before)) bytes, expected at least 2 MiB"
else
    say "   s1+s2 metrics: $((after - before)) payload bytes relayed over peer links"
fi

say "3. s4 starts alone with carol; alice cannot reach her until s4 joins the mesh"
configure_servers "$work/join" s4
start_server s4
wait_for 30 "dmsgd s4 to serve" server_ready s4
client_key carol
start_echo_listener carol s4 9
printf 'hello carol\n' >"$work/hello-carol"
if dial alice s1 carol 9 "$work/hello-carol" "$work/hello-carol.out"; then
    fail "alice reached carol before s4 joined the mesh"
fi
say "   before the join: alice's dial failed, as it must"
"$dmsgctl" -c "${conf[s1]}" peer add "${pk[s4]}" "127.0.0.1:${port[s4]}" \
    --note "joined at runtime" >"$work/peer-add.out" 2>&1 || fail "dmsgctl peer add on s1"
"$dmsgctl" -c "${conf[s4]}" peer add "${pk[s1]}" "127.0.0.1:${port[s1]}" \
    --note "joined at runtime" >>"$work/peer-add.out" 2>&1 || fail "dmsgctl peer add on s4"
say "   dmsgctl peer add on s1 (s4) and on s4 (s1)"
wait_for 40 "s1's link to s4" links_up s1 3
wait_for 40 "s4's link to s1" links_up s4 1
dial_until_echoed alice s1 carol 9 "$work/hello-carol"
say "   after the join: carol echoed: $(cat "$work/hello-carol.echoed")"
"$dmsgctl" -c "${conf[s1]}" --timeout 2 mesh 2>/dev/null | sed 's/^/   | /' || true

say "4. stopping: every dmsgd must drain and exit 0"
for c in alice bob carol; do
    [ -z "${pid[$c]:-}" ] || { kill -TERM "${pid[$c]}" 2>/dev/null || true; wait "${pid[$c]}" 2>/dev/null || true; unset "pid[$c]"; }
done
for s in s1 s2 s3 s4; do kill -TERM "${pid[$s]}"; done
for s in s1 s2 s3 s4; do
    limit=$((SECONDS + $(bounded 20)))
    while alive "$s" && [ $SECONDS -lt $limit ]; do sleep 0.1; done
    alive "$s" && fail "dmsgd $s did not exit within 20 s of SIGTERM"
    rc=0
    wait "${pid[$s]}" || rc=$?
    unset "pid[$s]"
    [ $rc -eq 0 ] || fail "dmsgd $s exited with status $rc after SIGTERM (see $s.log)"
done
finished=true
say "PASS: data crossed the mesh both ways, and s4 joined it at runtime with dmsgctl peer add"
