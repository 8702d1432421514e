#!/usr/bin/env bash
# Runs every test: installs dependencies, builds normally and with ASan+UBSan, and runs the
# whole suite (unit, fuzz-corpus replay, parity against PyTorch and npm oracles,
# integration against the real daemon) in both builds. Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh test
if [ -f tests/parity/package-lock.json ] && [ ! -d tests/parity/node_modules ]; then
    npm ci --prefix tests/parity --no-audit --no-fund --loglevel=error
fi
bash scripts/build.sh >/dev/null
bash scripts/build.sh --asan >/dev/null
status=0
for dir in build build-asan; do
    echo "== meson test in $dir"
    meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier 3 || status=1
done
/usr/bin/python3 - <<'PY'
import json
counts = {"passed": 0, "failed": 0, "skipped": 0}
for d in ("build", "build-asan"):
    for line in open(d + "/meson-logs/testlog.json"):
        r = json.loads(line)["result"]
        key = "passed" if r in ("OK", "EXPECTEDFAIL") else "skipped" if r == "SKIP" else "failed"
        counts[key] += 1
print("%(passed)d passed, %(failed)d failed, %(skipped)d skipped" % counts)
PY
exit $status
