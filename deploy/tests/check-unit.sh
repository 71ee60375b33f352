#!/bin/sh
# The systemd unit: `systemd-analyze verify` must print nothing (it exits 0 even on unknown keys),
# the hardening and limits issue 7 asks for are there, and the default config fits the unit.
#   check-unit.sh UNIT DMSGD CONFIG
# Exit 77 (skipped) where systemd-analyze is not installed.
set -eu
unit=$1
dmsgd=$2
config=$3

fail() {
    echo "check-unit: $*" >&2
    exit 1
}

# What the unit must say, one extended regular expression per line.
# shellcheck disable=SC2016 # \$MAINPID is systemd's, not ours
required='^Type=notify$
^ExecStart=/usr/bin/dmsgd -c /etc/dmsgd/config\.json$
^ExecStartPre=/usr/bin/dmsgd -n -c /etc/dmsgd/config\.json$
^ExecReload=/bin/kill -HUP \$MAINPID$
^User=dmsgd$
^DynamicUser=yes$
^StateDirectory=dmsgd$
^RuntimeDirectory=dmsgd$
^NoNewPrivileges=yes$
^ProtectSystem=strict$
^ProtectHome=yes$
^PrivateTmp=yes$
^PrivateDevices=yes$
^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$
^SystemCallFilter=@system-service$
^MemoryDenyWriteExecute=yes$
^CapabilityBoundingSet=$
^LimitNOFILE=[0-9]+$'
echo "$required" | while IFS= read -r re; do
    grep -Eq "$re" "$unit" || fail "$unit has no line matching $re"
done || exit 1

# The admin socket lives in the RuntimeDirectory, and the state where systemd puts it.
grep -q '"admin_socket": "/run/dmsgd/admin.sock"' "$config" ||
    fail "$config does not put admin_socket into RuntimeDirectory (/run/dmsgd/admin.sock)"
grep -q '"state_dir": ""' "$config" ||
    fail "$config sets state_dir: it must stay \"\" so that \$STATE_DIRECTORY applies"
"$dmsgd" -n -c "$config" >/dev/null || fail "dmsgd -n -c $config refuses the default config"

# LimitNOFILE must hold the sessions, the handshakes in progress and 256 more.
nofile=$(sed -n 's/^LimitNOFILE=//p' "$unit")
sessions=$(sed -n 's/^ *"max_sessions": *\([0-9]*\),*$/\1/p' "$config")
hard=$(sed -n 's/^ *"max_sessions_hard": *\([0-9]*\),*$/\1/p' "$config")
pending=$(sed -n 's/^ *"max_pending_handshakes": *\([0-9]*\),*$/\1/p' "$config")
[ "${hard:-0}" -gt "$sessions" ] && sessions=$hard
need=$((sessions + pending + 256))
[ "$nofile" -ge "$need" ] || fail "LimitNOFILE=$nofile is below max_sessions + max_pending_handshakes + 256 = $need"
echo "check-unit: LimitNOFILE=$nofile holds the default config's $sessions sessions + $pending handshakes"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check-unit: SKIPPED systemd-analyze verify: systemd-analyze is not installed"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify checks that every Exec program exists: point them at the dmsgd just built.
sed "s#/usr/bin/dmsgd #$dmsgd #" "$unit" >"$tmp/dmsgd.service"
if ! out=$(systemd-analyze verify --man=no "$tmp/dmsgd.service" 2>&1) || [ -n "$out" ]; then
    printf 'check-unit: systemd-analyze verify reported:\n%s\n' "$out" >&2
    exit 1
fi
echo "check-unit: systemd-analyze verify: clean"
# The exposure score (0 best, 10 worst); offline analysis needs systemd 250 or later.
if score=$(systemd-analyze security --offline=true "$tmp/dmsgd.service" 2>/dev/null |
    sed -n 's/.*Overall exposure level for dmsgd.service: \([0-9.]*\).*/\1/p') && [ -n "$score" ]; then
    echo "check-unit: systemd-analyze security: exposure $score"
    awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' ||
        fail "exposure $score is above 2.0: a hardening line went missing"
fi
