#!/usr/bin/env bash
# Runs every libFuzzer target under ASan+UBSan for SECONDS each (default 60, wall clock).
# New coverage goes to a scratch corpus (build-fuzz/corpus-NAME, kept between runs, so
# repeated runs go on where the last one stopped); a crash leaves its input in
# build-fuzz/crashes/ and the script exits non-zero. Add a fixed crash input to
# tests/fuzz/corpus/NAME/ so it replays in every normal test run.
# On a shared machine the wall clock says little, so each target's line gives the CPU time
# it actually used (user + system, from /usr/bin/time) and its executions; the last line
# sums them. Run it under `nice -n 19` to take idle CPU only; a unit counts as slow after
# 120 s of wall clock (not libFuzzer's 10: a starved process is not a slow input).
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
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p build-fuzz/crashes
status=0
total_cpu=0
total_execs=0
for t in "${targets[@]}"; do
    scratch="build-fuzz/corpus-$t"
    log="build-fuzz/fuzz_$t.log"
    mkdir -p "$scratch"
    /usr/bin/time -f '%U %S %e' -o "build-fuzz/fuzz_$t.time" \
        build-fuzz/tests/fuzz/fuzz_"$t" -max_total_time="$secs" -print_final_stats=1 -report_slow_units=120 \
        -artifact_prefix=build-fuzz/crashes/"$t"- "$scratch" tests/fuzz/corpus/"$t" >"$log" 2>&1 || true
    grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_)' "$log" | head -20 || true
    read -r user sys wall < <(tail -1 "build-fuzz/fuzz_$t.time") || { user=0 sys=0 wall=0; }
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
    total_cpu=$(awk -v a="$total_cpu" -v b="$cpu" 'BEGIN { printf "%.1f", a + b }')
    total_execs=$((total_execs + ${execs:-0}))
    printf 'fuzz_%s: %s execs, %s CPU s, %s s wall, %s inputs in %s\n' "$t" "${execs:-?}" "$cpu" "$wall" \
        "$(ls "$scratch" | wc -l)" "$scratch"
    if ls build-fuzz/crashes/"$t"-* >/dev/null 2>&1; then
        echo "fuzz_$t: crash inputs in build-fuzz/crashes/ (see $log)" >&2
        status=1
    fi
done
printf 'total: %s execs, %s CPU s\n' "$total_execs" "$total_cpu"
exit $status
