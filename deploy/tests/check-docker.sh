#!/bin/sh
# The Docker files, without a Docker engine: what issue 7 asks of the Dockerfile, the container
# config accepted by dmsgd, the runtime packages known to Debian, compose.yml's topology, and
# the Dockerfile linted by dockerfilelint and dockerfile-utils (npm) when npm can install them.
#   check-docker.sh DOCKER_DIR DMSGD LINT_CACHE_DIR
set -eu
dir=$1
dmsgd=$2
cache=$3
df=$dir/Dockerfile

fail() {
    echo "check-docker: $*" >&2
    exit 1
}

# shellcheck disable=SC2016 # the expressions are grep's
required='^FROM debian:12 AS build$
^FROM debian:12-slim$
^USER dmsgd$
^VOLUME \["/var/lib/dmsgd"\]$
^EXPOSE 8081/tcp 9090/tcp$
^  CMD \["dmsgctl", "--timeout", "[0-9]+", "health"\]$
^ENV STATE_DIRECTORY=/var/lib/dmsgd$
useradd --system --uid 10001'
echo "$required" | while IFS= read -r re; do
    grep -Eq "$re" "$df" || fail "Dockerfile has no line matching $re"
done || exit 1
[ "$(grep -c '^FROM ' "$df")" -eq 2 ] || fail "Dockerfile must have exactly two stages"

# Every COPY from the build context names a file of the repository.
repo=$(cd "$dir/../.." && pwd)
grep '^COPY ' "$df" | grep -v -- '--from=' | while read -r _ src _; do
    [ "$src" = . ] || [ -e "$repo/$src" ] || fail "COPY $src: no such file in the repository"
done || exit 1
"$dmsgd" -n -c "$dir/config.json" >/dev/null || fail "dmsgd refuses deploy/docker/config.json"

# The runtime packages exist in this Debian (when apt's lists are there to ask).
pkgs=$(sed -n '/^FROM debian:12-slim/,$p' "$df" | sed -n '/apt-get install/,/rm -rf/p' |
    tr -s ' \134' '\n' | grep -E '^lib|^ca-' | tr '\n' ' ' || true)
[ -n "$pkgs" ] || fail "no runtime packages found in the Dockerfile's second stage"
if command -v apt-cache >/dev/null 2>&1 && apt-cache show libc6 >/dev/null 2>&1; then
    for p in $pkgs; do
        apt-cache show "$p" >/dev/null 2>&1 || fail "runtime package $p is unknown to apt"
    done
    echo "check-docker: runtime packages known to apt: $pkgs"
else
    echo "check-docker: apt lists absent: runtime package names not checked"
fi

# compose.yml: three servers in a full mesh, two clients, each client on its own server.
if python3 -c 'import yaml' 2>/dev/null; then
    python3 - "$dir/compose.yml" <<'PY' || fail "compose.yml check failed"
import re, sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]
servers = [n for n in s if n.startswith("dmsgd-")]
assert servers == ["dmsgd-1", "dmsgd-2", "dmsgd-3"], servers
gen = " ".join(s["mesh-config"]["command"])
for n in servers:
    assert f"{n}={n}:8081" in gen, f"mesh-config does not configure {n}"
    assert s[n]["command"] == ["-c", f"/mesh/{n}.json"], s[n]["command"]
    assert s[n]["depends_on"]["mesh-config"]["condition"] == "service_completed_successfully"
bob, alice = " ".join(s["bob"]["command"]), " ".join(s["alice"]["command"])
assert "dmsgd-2:8081" in bob and "listen" in bob, bob
assert "dmsgd-1:8081" in alice and "bob.pk" in alice, alice
for n in ("bob", "alice", "mesh-config"):
    assert s[n]["healthcheck"]["disable"] is True, n
# compose interpolates $: every shell $ must be written $$
for n in s:
    for part in s[n].get("command", []):
        for m in re.finditer(r"\$+", part):
            assert len(m.group()) % 2 == 0, f"{n}: a single $ would be interpolated by compose"
# the shell scripts parse, as the containers' sh will see them
import subprocess
for n in s:
    if s[n].get("entrypoint") == ["sh", "-c"]:
        script = s[n]["command"][0].replace("$$", "$")
        r = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
        assert r.returncode == 0, f"{n}: sh -n: {r.stderr}"
print("check-docker: compose.yml: 3 servers in a full mesh, alice on dmsgd-1, bob on dmsgd-2")
PY
else
    echo "check-docker: python3 has no yaml module: compose.yml not checked"
fi

# Lint. npm's linters go into LINT_CACHE_DIR once; without npm or the registry, say so.
lint_bin=$cache/node_modules/.bin
if [ ! -x "$lint_bin/dockerfilelint" ] || [ ! -x "$lint_bin/dockerfile-utils" ]; then
    if command -v npm >/dev/null 2>&1; then
        mkdir -p "$cache"
        npm install --prefix "$cache" --no-audit --no-fund --loglevel=error \
            dockerfilelint@1.8.0 dockerfile-utils@0.16.3 >"$cache/npm.log" 2>&1 || true
    fi
fi
if [ -x "$lint_bin/dockerfilelint" ] && [ -x "$lint_bin/dockerfile-utils" ]; then
    "$lint_bin/dockerfilelint" "$df" || fail "dockerfilelint found problems"
    "$lint_bin/dockerfile-utils" lint "$df" || fail "dockerfile-utils lint found problems"
    echo "check-docker: dockerfilelint and dockerfile-utils lint: clean"
else
    echo "check-docker: Dockerfile NOT linted: npm could not install dockerfilelint and" \
        "dockerfile-utils (see $cache/npm.log)"
fi
echo "check-docker: Dockerfile, config.json and compose.yml checked"
