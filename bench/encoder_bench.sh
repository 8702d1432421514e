#!/usr/bin/env bash
# ragd's BERT encoder beside PyTorch on the MiniLM-L6 shape (vocab 30522, hidden 384, 6 layers,
# 12 heads, FFN 1536; random weights), in one run: ragd and torch at 1 and at 2 threads,
# alternating, medians. Prints JSON: each figure with torch at the same thread count and
# with torch's best thread count (1 thread is often its best here: BENCHMARKING.md).
#   usage: bench/encoder_bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shape=(--hidden 384 --layers 6 --heads 12 --intermediate 1536 --max-pos 512)
/usr/bin/python3 tests/reference/make_bert_checkpoints.py "$work" "${shape[@]}" --only embedder-mean
/usr/bin/python3 tests/reference/make_bert_checkpoints.py "$work" "${shape[@]}" --only reranker
emb="$work/embedder-mean" rer="$work/reranker"
for round in 1 2; do
    for threads in 1 2; do
        "$build/bench/encoder_bench" "$emb" "$rer" $threads
        /usr/bin/python3 bench/encoder_peer.py "$emb" "$rer" $threads
    done
done >"$work/results.jsonl"
/usr/bin/python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["what"] == "sgemm_fraction_b32_t128":
        print(json.dumps({"bench": "encoder", **r}))
def val(r): return r.get("per_s", r.get("ms", r.get("mb")))
rows = [r for r in rows if r["what"] != "sgemm_fraction_b32_t128"]
def med(impl, threads, what):
    v = [val(r) for r in rows if r["impl"] == impl and r["threads"] == threads and r["what"] == what]
    return statistics.median(v)
for what in ["embed_b32_t16", "embed_b32_t64", "embed_b32_t128", "latency_1x16_ms", "rerank_b32_t128", "peak_rss_mb"]:
    higher_better = what.startswith(("embed", "rerank"))
    def speedup(r, t): return r / t if higher_better else t / r
    torch_at = {n: med("torch", n, what) for n in (1, 2)}
    best = max(torch_at.values()) if higher_better else min(torch_at.values())
    for threads in (1, 2):
        r = med("ragd", threads, what)
        print(json.dumps({"bench": "encoder", "what": what, "threads": threads, "ragd": r,
                          "torch": torch_at[threads], "speedup_same_threads": round(speedup(r, torch_at[threads]), 2),
                          "torch_best": best, "speedup_vs_torch_best": round(speedup(r, best), 2)}))
PY
