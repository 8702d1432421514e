#!/usr/bin/env bash
# Runs every test (the README's second command, and what .ci/run calls): installs the
# Debian packages and the npm tokenizer oracles, builds twice -- build/ (default compiler)
# and build-asan/ (clang, AddressSanitizer + UndefinedBehaviorSanitizer) -- and runs the
# whole meson suite in each: unit, fuzz (corpus replay), parity (PyTorch and npm oracles),
# integration (the real daemon over HTTP). The last line is the total over both runs,
#   N passed, N failed, N skipped
# and the exit status is non-zero when anything failed. Works from a clean clone and on
# re-runs (builds are incremental). Extra arguments go to both `meson test` runs, e.g.
#   scripts/test.sh --suite unit
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

bash scripts/install-deps.sh test

# npm oracles for tests/parity: (re)installed when the lock file is newer than the install.
lock=tests/parity/package-lock.json
if [ -f "$lock" ] && { [ ! -f tests/parity/node_modules/.package-lock.json ] ||
                       [ "$lock" -nt tests/parity/node_modules/.package-lock.json ]; }; then
    npm ci --prefix tests/parity --no-audit --no-fund --loglevel=error
fi

dirs=(build build-asan)
bash scripts/build.sh >/dev/null
bash scripts/build.sh --asan >/dev/null

status=0
for dir in "${dirs[@]}"; do
    echo "== meson test -C $dir"
    rm -f "$dir/meson-logs/testlog.json"
    meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier 3 "$@" || status=1
done

echo "test: both runs finished in $(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s" >&2
# Totals from meson's own records of both runs (a run that wrote none counts as a failure).
/usr/bin/python3 - "${dirs[@]}" <<'PY' || status=1
import json, os, sys
n = {"passed": 0, "failed": 0, "skipped": 0}
for d in sys.argv[1:]:
    log = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        print("test: %s has no test log: meson test did not run there" % log, file=sys.stderr)
        n["failed"] += 1
        continue
    for line in open(log):
        if not line.strip():
            continue
        r = json.loads(line)["result"]
        n["passed" if r in ("OK", "EXPECTEDFAIL") else "skipped" if r == "SKIP" else "failed"] += 1
print("%(passed)d passed, %(failed)d failed, %(skipped)d skipped" % n)
sys.exit(1 if n["failed"] else 0)
PY
exit $status
