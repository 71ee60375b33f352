#!/bin/sh
# Writes the config files of a full mesh of dmsgd servers, and key files for clients.
#
#   mesh-config.sh [options] OUT_DIR NAME=HOST:PORT...
#
# For each NAME=HOST:PORT: OUT_DIR/NAME.json, a dmsgd config with a fresh key pair, listening
# on PORT and advertising HOST:PORT, with every other server of the same call as a peer; and
# OUT_DIR/NAME.pk, its public key. One server alone gets no peers (it joins later with
# `dmsgctl peer add`). Files holding secret keys are mode 0600. deploy/mesh-demo.sh (loopback)
# and deploy/docker/compose.yml (containers) build their meshes with it.
#
# options:
#   --dmsgd PATH               the dmsgd binary (default: dmsgd on PATH); it makes the keys
#   --listen HOST              listen on HOST:PORT instead of the advertised HOST (0.0.0.0 in
#                              containers, where the advertised name is the service's name)
#   --state-root DIR           state_dir is DIR/NAME (default: unset, so $STATE_DIRECTORY or
#                              dmsgd's own default)
#   --embedded-discovery ADDR  where each server's embedded discovery listens (default
#                              127.0.0.1:9090; 127.0.0.1:0 picks a free port)
#   --discovery URL            register in this discovery instead of an embedded one
#   --client NAME              also write OUT_DIR/NAME.key ({"public_key","secret_key"}, what
#                              dmsgcat --key-file reads) and OUT_DIR/NAME.pk; repeatable
set -eu

die() {
    echo "mesh-config: $*" >&2
    exit 2
}

dmsgd=dmsgd
listen_host=
state_root=
embedded_discovery=127.0.0.1:9090
discovery=
clients=
while [ $# -gt 0 ]; do
    case $1 in
    --dmsgd) dmsgd=${2:?--dmsgd needs a path}; shift 2 ;;
    --listen) listen_host=${2:?--listen needs a host}; shift 2 ;;
    --state-root) state_root=${2:?--state-root needs a directory}; shift 2 ;;
    --embedded-discovery) embedded_discovery=${2:?needs host:port}; shift 2 ;;
    --discovery) discovery=${2:?--discovery needs a URL}; shift 2 ;;
    --client) clients="$clients ${2:?--client needs a name}"; shift 2 ;;
    -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || die "usage: mesh-config.sh [options] OUT_DIR NAME=HOST:PORT... (see --help)"
out=$1
shift
[ $# -ge 1 ] || [ -n "$clients" ] || die "name at least one server NAME=HOST:PORT or --client NAME"

# Values go into JSON unquoted by any tool: accept only characters that need no escaping.
check_token() {
    case $2 in
    "" | *[!A-Za-z0-9._:/@\[\]-]*) die "$1 \"$2\" has characters that are not allowed" ;;
    esac
}
check_name() {
    case $1 in
    "" | *[!A-Za-z0-9_-]*) die "name \"$1\": use letters, digits, - and _ only" ;;
    esac
}
[ -z "$discovery" ] || check_token --discovery "$discovery"
[ -z "$listen_host" ] || check_token --listen "$listen_host"
[ -z "$state_root" ] || check_token --state-root "$state_root"
check_token --embedded-discovery "$embedded_discovery"

umask 077
mkdir -p "$out"

# "public secret" of a fresh key pair, from dmsgd's own generator.
new_keypair() {
    kp=$("$dmsgd" gen-config | sed -n -e 's/^ *"public_key": *"\([0-9a-f]*\)".*/\1/p' \
        -e 's/^ *"secret_key": *"\([0-9a-f]*\)".*/\1/p' | tr '\n' ' ')
    pk=${kp%% *}
    sk=${kp#* }
    sk=${sk%% *}
    if [ ${#pk} -ne 66 ] || [ ${#sk} -ne 64 ]; then
        die "\"$dmsgd gen-config\" gave no key pair"
    fi
}

for c in $clients; do
    check_name "$c"
    new_keypair
    printf '{\n  "public_key": "%s",\n  "secret_key": "%s"\n}\n' "$pk" "$sk" >"$out/$c.key"
    printf '%s\n' "$pk" >"$out/$c.pk"
done
[ $# -ge 1 ] || exit 0

# First pass: keys for every server, remembered in OUT_DIR/NAME.pk and a private .sk file.
for spec in "$@"; do
    name=${spec%%=*}
    addr=${spec#*=}
    check_name "$name"
    [ "$addr" != "$spec" ] || die "\"$spec\" is not NAME=HOST:PORT"
    check_token "$name's address" "$addr"
    case $addr in *:[0-9]*) ;; *) die "\"$addr\" is not HOST:PORT" ;; esac
    new_keypair
    printf '%s\n' "$pk" >"$out/$name.pk"
    printf '%s\n' "$sk" >"$out/$name.sk"
done

# Second pass: one config per server, every other server as a peer.
for spec in "$@"; do
    name=${spec%%=*}
    addr=${spec#*=}
    port=${addr##*:}
    if [ -n "$listen_host" ]; then listen="$listen_host:$port"; else listen=$addr; fi
    peers=
    for other in "$@"; do
        oname=${other%%=*}
        [ "$oname" != "$name" ] || continue
        peers="$peers${peers:+,}
    {\"public_key\": \"$(cat "$out/$oname.pk")\", \"address\": \"${other#*=}\"}"
    done
    {
        printf '{\n'
        printf '  "public_key": "%s",\n' "$(cat "$out/$name.pk")"
        printf '  "secret_key": "%s",\n' "$(cat "$out/$name.sk")"
        printf '  "discovery": "%s",\n' "$discovery"
        printf '  "public_address": "%s",\n' "$addr"
        printf '  "local_address": "%s",\n' "$listen"
        printf '  "embedded_discovery_address": "%s",\n' "$embedded_discovery"
        if [ -n "$state_root" ]; then printf '  "state_dir": "%s/%s",\n' "$state_root" "$name"; fi
        printf '  "log_level": "info",\n'
        printf '  "peers": [%s%s]\n' "$peers" "${peers:+
  }"
        printf '}\n'
    } >"$out/$name.json"
done
for spec in "$@"; do rm -f "$out/${spec%%=*}.sk"; done
