#!/usr/bin/env bash
# Installs the Debian 12 packages ragd needs, for one purpose:
#   build    compilers, meson, and the -dev libraries
#   test     build + PyTorch (numerical oracle), Node.js (tokenizer oracles), wrk, sqlite3
#   runtime  only the shared libraries the binary loads (the slim container)
# Packages already installed are skipped, so re-runs are fast. Needs root when anything is missing.
set -euo pipefail
what=${1:-build}
build_pkgs=(build-essential meson ninja-build pkg-config clang libclang-rt-14-dev python3
            libmicrohttpd-dev libjansson-dev libsqlite3-dev libopenblas-dev libcurl4-openssl-dev libcunit1-dev)
test_pkgs=(python3-torch curl wrk sqlite3)
# Node.js may come from Debian or from NodeSource (whose nodejs bundles npm and conflicts
# with Debian's npm): only ask for Debian's when the commands are missing.
if [ "$what" = test ] && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
    test_pkgs+=(nodejs npm)
fi
runtime_pkgs=(libmicrohttpd12 libjansson4 libsqlite3-0 libopenblas0 curl ca-certificates)
case "$what" in
    build) pkgs=("${build_pkgs[@]}") ;;
    test) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
    runtime) pkgs=("${runtime_pkgs[@]}") ;;
    *) echo "usage: $0 build|test|runtime" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root (or: sudo $0 $what)" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
