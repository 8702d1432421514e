#!/usr/bin/env bash
# The long crash loop: the integration suite's it_crash (tests/integration/test_crash.c) with
# CYCLES kills instead of 4. Each cycle streams batch upserts and small training jobs into
# ragd (the gpt2-names-makemore checkpoint), SIGKILLs it -- every other cycle at a random
# moment, the others 0-20 ms after an adapter publish starts -- then checks the files
# (integrity_check, every acknowledged batch, no partial batch) and the restarted server
# (index and rows agree, no job left running, only whole adapters that load and generate,
# no temporaries). A new data directory is started every FRESH cycles (default 100).
# Prints the per-cycle lines, the summary and the CUnit totals; exits non-zero on a failure.
#   usage: bench/crash_loop.sh [BUILD_DIR] [CYCLES] [FRESH]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cycles=${2:-1000}
fresh=${3:-100}
set +e
RAGD_CRASH_CYCLES=$cycles RAGD_CRASH_FRESH_EVERY=$fresh RAGD_BIN="$build/ragd" RAGD_SOURCE_ROOT=. \
    RAGD_SHARED=${RAGD_SHARED:-../shared} "$build/tests/integration/it_crash" >"$build/crash_loop.log" 2>&1
status=$?
set -e
grep -E "crash loop|crash cycle|crash summary|asserts|FAILED|test_crash.c|left after|holds|listed|probes|running at the kill:|succeeded but" \
    "$build/crash_loop.log" || true
exit $status
