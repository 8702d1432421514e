#!/usr/bin/env bash
# ragd's GPT-2 decoder beside PyTorch on the GPT-2 124M shape (random weights), in one run:
# ragd and torch alternating, 1 thread each (torch's best here), then ragd at 2 threads.
# Prints JSON with ratios.   usage: bench/decoder_bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 tests/reference/make_gpt2_checkpoints.py "$work" --124m
dir="$work/gpt2-124m"
for round in 1 2; do
    "$build/bench/decoder_bench" "$dir" 1
    /usr/bin/python3 bench/decoder_peer.py "$dir" 1
    "$build/bench/decoder_bench" "$dir" 2
done >"$work/results.jsonl"
/usr/bin/python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["what"] == "decode_bandwidth_fraction":
        print(json.dumps({"bench": "decoder", **r}))
def med(impl, threads, what):
    return statistics.median(r["per_s"] for r in rows if r["impl"] == impl and r["threads"] == threads and r["what"] == what)
for what in ("prefill_128_tokens_per_s", "decode_b1_tokens_per_s"):
    t = med("torch", 1, what)
    for threads in (1, 2):
        r = med("ragd", threads, what)
        print(json.dumps({"bench": "decoder", "what": what, "ragd_threads": threads, "ragd": r, "torch_1_thread": t,
                          "speedup_vs_torch": round(r / t, 2)}))
PY
