#!/bin/sh
# `cmake --install` puts every file in its FHS place, for the prefixes /usr and /usr/local, and
# an upgrade keeps the operator's config.
#   check-install.sh BUILD_DIR
set -eu
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "check-install: $*" >&2
    exit 1
}

install_to() { # DESTDIR PREFIX
    DESTDIR=$1 cmake --install "$build" --prefix "$2" >"$tmp/install.log" 2>&1 ||
        { cat "$tmp/install.log" >&2; fail "cmake --install --prefix $2 failed"; }
}

expect_file() { # PATH [executable]
    [ -f "$1" ] || fail "missing after install: ${1#"$tmp"}"
    [ "${2:-}" != executable ] || [ -x "$1" ] || fail "not executable: ${1#"$tmp"}"
}

expect_line() { # FILE LINE
    grep -qxF "$2" "$1" || fail "${1#"$tmp"} has no line \"$2\""
}

# Prefix /usr: the distribution layout, configuration in /etc.
d=$tmp/usr-prefix
install_to "$d" /usr
for b in dmsgd dmsgctl dmsgcat; do expect_file "$d/usr/bin/$b" executable; done
unit=$d/usr/lib/systemd/system/dmsgd.service
expect_file "$unit"
expect_line "$unit" "ExecStart=/usr/bin/dmsgd -c /etc/dmsgd/config.json"
expect_line "$unit" "ExecStartPre=/usr/bin/dmsgd -n -c /etc/dmsgd/config.json"
expect_file "$d/usr/lib/sysusers.d/dmsgd.conf"
expect_file "$d/etc/dmsgd/config.json"
expect_file "$d/usr/share/dmsgd/dmsgd.json"
expect_file "$d/usr/share/dmsgd/openapi.yaml"
expect_file "$d/usr/share/dmsgd/mesh-config.sh" executable
expect_file "$d/usr/share/dmsgd/mesh-demo.sh" executable
expect_file "$d/usr/share/doc/dmsgd/README.md"
ls "$d"/usr/share/dmsgd/schema/*.sql >/dev/null 2>&1 || fail "no schema/*.sql in usr/share/dmsgd/schema"
"$d/usr/bin/dmsgd" -n -c "$d/etc/dmsgd/config.json" >/dev/null ||
    fail "the installed dmsgd refuses the installed config"
cmp -s "$d/etc/dmsgd/config.json" "$d/usr/share/dmsgd/dmsgd.json" ||
    fail "etc/dmsgd/config.json differs from the shipped default"

# An upgrade (install again) keeps a config the operator changed.
echo '{"log_level": "debug"}' >"$d/etc/dmsgd/config.json"
install_to "$d" /usr
grep -q '"debug"' "$d/etc/dmsgd/config.json" || fail "reinstalling overwrote etc/dmsgd/config.json"
grep -q "Keeping:" "$tmp/install.log" || fail "reinstalling did not say it kept the config"

# Prefix /usr/local: everything under it, the unit pointing there.
d=$tmp/local-prefix
install_to "$d" /usr/local
unit=$d/usr/local/lib/systemd/system/dmsgd.service
expect_file "$d/usr/local/bin/dmsgd" executable
expect_file "$d/usr/local/etc/dmsgd/config.json"
expect_line "$unit" "ExecStart=/usr/local/bin/dmsgd -c /usr/local/etc/dmsgd/config.json"
[ ! -e "$d/etc" ] || fail "prefix /usr/local wrote outside it: $(ls "$d/etc")"
echo "check-install: prefixes /usr and /usr/local: every file in place; upgrades keep the config"
