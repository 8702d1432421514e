#!/usr/bin/env bash
# Configures (when needed) and builds ragd:
#   scripts/build.sh [TARGET...]          build/       (default compiler, debugoptimized)
#   scripts/build.sh --asan [TARGET...]   build-asan/  (clang, AddressSanitizer + UBSan)
# With no TARGET everything is built (ragd, tests, benchmarks); `scripts/build.sh ragd`
# builds the daemon only. Compiler output goes to stderr; stdout gets one line, the path
# of the binary, so callers can write bin=$(scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
setup=()
if [ "${1:-}" = "--asan" ]; then
    shift
    dir=build-asan
    setup=("-Db_sanitize=address,undefined" -Db_lundef=false)
    export CC=clang
fi

if [ ! -f "$dir/build.ninja" ]; then
    # A directory left behind by an interrupted or failed set-up is configured afresh.
    wipe=()
    [ -f "$dir/meson-private/coredata.dat" ] && wipe=(--wipe)
    meson setup "${wipe[@]}" "${setup[@]}" "$dir" >&2
fi
ninja --quiet -C "$dir" "$@" >&2
echo "$dir/ragd"
