#!/bin/sh
# Installs every build and test dependency of dmsgd from Debian's packages, only when missing.
# Run as root on Debian 12 (or with sudo); a no-op when everything is already there.
set -eu

packages="build-essential cmake pkg-config clang libclang-rt-14-dev \
libuv1-dev libsodium-dev libsecp256k1-dev libsqlite3-dev sqlite3 libmicrohttpd-dev \
libjansson-dev libcurl4-openssl-dev libsystemd-dev libcriterion-dev \
python3 python3-prometheus-client python3-jsonschema python3-yaml"

missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then exec sudo "$0" "$@"; fi
  echo "install-deps: missing packages:$missing; run this script as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # the list is meant to split into words
apt-get install -y -q --no-install-recommends $missing
