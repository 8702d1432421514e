#!/usr/bin/env bash
# Runs every libFuzzer target under ASan+UBSan for SECONDS each (default 60).
# New coverage goes to a scratch corpus; a crash leaves its input in build-fuzz/crashes/
# and the script exits non-zero. Add a fixed crash input to tests/fuzz/corpus/NAME/ so it
# replays in every normal test run.
#   usage: tests/fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
if [ ! -d build-fuzz ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C build-fuzz >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c | sed 's/^fuzz_//')"); done
fi
export RAGD_SHARED=${RAGD_SHARED:-$(cd .. && pwd)/shared}
mkdir -p build-fuzz/crashes
status=0
for t in "${targets[@]}"; do
    scratch="build-fuzz/corpus-$t"
    mkdir -p "$scratch"
    echo "== fuzz_$t for ${secs}s"
    if ! build-fuzz/tests/fuzz/fuzz_"$t" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix=build-fuzz/crashes/"$t"- "$scratch" tests/fuzz/corpus/"$t" 2>&1 |
        grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==ERROR|SUMMARY)'; then
        :
    fi
    if ls build-fuzz/crashes/"$t"-* >/dev/null 2>&1; then
        echo "fuzz_$t: crash inputs in build-fuzz/crashes/" >&2
        status=1
    fi
done
exit $status
