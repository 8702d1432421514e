#!/usr/bin/env bash
# Installs the Debian 12 packages ragd needs, for one or more purposes:
#   build    compilers (gcc, clang + its sanitizer runtimes), meson, ninja, the -dev libraries
#   test     build + PyTorch (numerical oracle, run with /usr/bin/python3), Node.js + npm
#            (tokenizer oracles), curl, wrk, sqlite3
#   runtime  only what the binary loads, plus curl and CA certificates (the slim container's
#            HEALTHCHECK and scripts/fetch-models.sh)
#   bench    build + the ANN peers of bench/ann_bench.sh (FAISS and hnswlib for Python, numpy)
#            and Node.js + npm (the GloVe vectors come from npm)
#   usage: scripts/install-deps.sh [build|test|runtime|bench]...   (default: build)
# Packages already installed are skipped, so a re-run with nothing missing is quick and
# needs neither root nor the network. Installing needs root.
set -euo pipefail

build_pkgs=(build-essential meson ninja-build pkg-config python3 clang libclang-rt-14-dev
            libmicrohttpd-dev libjansson-dev libsqlite3-dev libopenblas-dev
            libcurl4-openssl-dev libcunit1-dev)
test_pkgs=(python3 python3-torch curl wrk sqlite3)
runtime_pkgs=(libmicrohttpd12 libjansson4 libsqlite3-0 libopenblas0 curl ca-certificates)
bench_pkgs=(python3 python3-numpy python3-faiss python3-hnswlib)

[ $# -gt 0 ] || set -- build
pkgs=()
for what in "$@"; do
    case "$what" in
        build) pkgs+=("${build_pkgs[@]}") ;;
        test | bench)
            pkgs+=("${build_pkgs[@]}")
            if [ "$what" = test ]; then pkgs+=("${test_pkgs[@]}"); else pkgs+=("${bench_pkgs[@]}"); fi
            # Node.js may come from Debian or from NodeSource (whose nodejs bundles npm and
            # conflicts with Debian's npm): ask for Debian's only when a command is missing.
            command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
            command -v npm >/dev/null 2>&1 || pkgs+=(npm)
            ;;
        runtime) pkgs+=("${runtime_pkgs[@]}") ;;
        *) echo "usage: $0 [build|test|runtime|bench]..." >&2; exit 2 ;;
    esac
done

missing=()
for p in $(printf '%s\n' "${pkgs[@]}" | sort -u); do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' ok installed$' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: run this as root to install them (sudo $0 $*)," >&2
    echo "install-deps: or: apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
