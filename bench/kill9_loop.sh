#!/usr/bin/env bash
# The long kill -9 loop: the integration suite's crash test (tests/integration/test_durability.c,
# "kill -9 during ingestion") with CYCLES restarts instead of 6. Each cycle streams batch
# upserts, SIGKILLs ragd at a random moment, then checks PRAGMA integrity_check, that every
# acknowledged batch is present, that no batch is half there, and that the index (loaded from
# its records, not rebuilt) finds every row. Prints the per-cycle lines and the CUnit summary.
#   usage: bench/kill9_loop.sh [BUILD_DIR] [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cycles=${2:-100}
RAGD_KILL9_CYCLES=$cycles RAGD_BIN="$build/ragd" RAGD_SOURCE_ROOT=. RAGD_SHARED=../shared \
    "$build/tests/integration/it_durability" 2>&1 | grep -E "kill -9 cycle|Test: kill|asserts|FAILED|expected"
