#!/usr/bin/env bash
# The README's two commands are the ones CI and the other docs use, and the run command works
# exactly as written: it builds the release preset and starts dmsgd on its embedded default,
# which must print its public key and listen on 127.0.0.1:8081.
#   check-readme.sh REPO
# Exit 77 (skipped) when 127.0.0.1:8081 or :9090 is taken (the embedded default needs them), or
# when DMSG_SKIP_README_RUN=1 (the run command builds the release preset: minutes).
set -euo pipefail
repo=$1
readme=$repo/README.md
cd "$repo"

fail() {
    echo "check-readme: $*" >&2
    exit 1
}

# The commands of the README's first part (before the first "## "): indented lines.
mapfile -t commands < <(sed '/^## /q' "$readme" | sed -n 's/^    \(.*\)$/\1/p')
[ ${#commands[@]} -eq 2 ] ||
    fail "the README's first part must hold exactly two commands, it holds ${#commands[@]}"
run_cmd=${commands[0]}
test_cmd=${commands[1]}

# .ci/run extracts its command with its own line; run that line and compare.
ci_line=$(grep -m1 '^cmd=' .ci/run) || fail ".ci/run has no cmd= line"
ci_cmd=$(bash -c "$ci_line"$'\nprintf "%s" "$cmd"')
[ "$ci_cmd" = "$test_cmd" ] ||
    fail ".ci/run runs \"$ci_cmd\", but the README's test command is \"$test_cmd\""

# Both start with the dependency script and use presets that exist.
for cmd in "$run_cmd" "$test_cmd"; do
    [[ $cmd == "deploy/install-deps.sh && "* ]] || fail "\"$cmd\" does not start with deploy/install-deps.sh"
    while read -r preset; do
        grep -q "\"name\": \"$preset\"" CMakePresets.json || fail "preset $preset is not in CMakePresets.json"
    done < <(grep -o -- '--preset [a-z]*' <<<"$cmd" | cut -d' ' -f2 | sort -u)
done
[[ $run_cmd == *"cmake --preset release && cmake --build --preset release -j2 && build/release/daemon/dmsgd" ]] ||
    fail "the run command does not build the release preset and start build/release/daemon/dmsgd"
# shellcheck disable=SC2016 # ${sourceDir} is CMake's
grep -q '"binaryDir": "${sourceDir}/build/release"' CMakePresets.json ||
    fail "the release preset does not build into build/release"

# The rest of the README and the Dockerfile run what the run command builds.
while read -r path; do
    case $path in
    build/release/daemon/dmsgd | build/release/daemon/dmsgcat | build/release/ctl/dmsgctl | \
        build/bench/tests/bench/* | build/asan/*) ;;
    *) fail "README.md names $path, which the README's commands do not build" ;;
    esac
done < <(grep -o 'build/[a-z]*/[A-Za-z0-9_/.-]*' "$readme" | sed 's/[.]$//' | sort -u)
grep -q 'cmake --preset release' deploy/docker/Dockerfile ||
    fail "deploy/docker/Dockerfile does not build the release preset"
echo "check-readme: the two commands match .ci/run, CMakePresets.json and the docs"

if [ "${DMSG_SKIP_README_RUN:-0}" = 1 ]; then
    echo "check-readme: SKIPPED running the run command (DMSG_SKIP_README_RUN=1)"
    exit 77
fi
for port in 8081 9090; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "check-readme: SKIPPED running the run command: 127.0.0.1:$port is in use"
        exit 77
    fi
done

tmp=$(mktemp -d)
group=
cleanup() {
    if [ -n "$group" ]; then
        kill -TERM -- "-$group" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$group" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# As written, in its own process group; the state goes to a scratch directory (the variable
# systemd sets), not to /var/lib/dmsgd or ~/.local/state.
echo "check-readme: running: $run_cmd"
STATE_DIRECTORY=$tmp/state setsid bash -c "$run_cmd" >"$tmp/run.log" 2>&1 &
group=$!
limit=$((SECONDS + 1500))
until grep -q '^listening on:' "$tmp/run.log"; do
    if ! kill -0 "$group" 2>/dev/null; then
        tail -n 40 "$tmp/run.log" >&2
        fail "the run command ended before dmsgd listened"
    fi
    [ $SECONDS -lt $limit ] || { tail -n 40 "$tmp/run.log" >&2; fail "no dmsgd banner after 1500 s"; }
    sleep 1
done
sleep 0.5
key=$(sed -n 's/^public key: *\(0[23][0-9a-f]\{64\}\)$/\1/p' "$tmp/run.log")
[ -n "$key" ] || { tail -n 20 "$tmp/run.log" >&2; fail "dmsgd printed no public key"; }
grep -q '^listening on: 127.0.0.1:8081$' "$tmp/run.log" ||
    fail "dmsgd does not say it listens on 127.0.0.1:8081 (the embedded default)"
(exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null || fail "nothing accepts connections on 127.0.0.1:8081"
[ -f "$tmp/state/keys.json" ] || fail "the embedded default kept no key file in its state directory"
echo "check-readme: the run command built dmsgd, which printed its key $key and listens on 127.0.0.1:8081"
