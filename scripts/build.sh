#!/usr/bin/env bash
# Configures (once) and builds ragd: build/ normally, build-asan/ with --asan
# (clang, AddressSanitizer + UndefinedBehaviorSanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--asan" ]; then
    dir=build-asan
    [ -f "$dir/build.ninja" ] || CC=clang meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized >/dev/null
else
    dir=build
    [ -f "$dir/build.ninja" ] || meson setup "$dir" >/dev/null
fi
ninja -C "$dir" >/dev/null
echo "$dir/ragd"
