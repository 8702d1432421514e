#!/usr/bin/env bash
# One LoRA SFT step on the GPT-2 124M shape (random weights), batch 4 x 128, ragd beside
# PyTorch (same data, same thread count), each in its own process so peak RSS is its own, for
# both batches of train_bench.c (text: packed, every token scored; completion: padded rows,
# completion-only loss). Runs alternate ragd, torch, ragd, torch. Debian's torch links the
# pthreads OpenBLAS, whose own thread pool torch.set_num_threads does not size: left alone it
# runs every product on all cores (about 1.5 cores busy at "1 thread"). The peer therefore
# gets OPENBLAS_NUM_THREADS=THREADS (same threads); below all the cores, torch with its BLAS
# left at its default is timed too (torch_blas_default, for reference). Prints one JSON line
# per batch with the ratios, by wall clock and by process CPU time per step, and the load
# average before and after.   usage: bench/train_bench.sh [BUILD_DIR] [THREADS] [text|completion|all]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-1}
which=${3:-all}
[ "$which" = all ] && which="text completion"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 tests/reference/make_gpt2_checkpoints.py "$work" --124m
dir="$work/gpt2-124m"
load0=$(cut -d' ' -f1 /proc/loadavg)
for data in $which; do
    for round in 1 2; do
        "$build/bench/train_bench" "$dir" "$threads" "$data"
        OPENBLAS_NUM_THREADS=$threads /usr/bin/python3 bench/train_peer.py "$dir" "$threads" "$data"
        if [ "$threads" -lt "$(nproc)" ]; then
            /usr/bin/python3 bench/train_peer.py "$dir" "$threads" "$data" | sed 's/"torch"/"torch_blas_default"/'
        fi
    done
done >"$work/results.jsonl"
load1=$(cut -d' ' -f1 /proc/loadavg)
/usr/bin/python3 - "$work/results.jsonl" "$load0" "$load1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for data in dict.fromkeys(r["data"] for r in rows):
    def med(impl, key):
        return statistics.median(r[key] for r in rows if r["impl"] == impl and r["data"] == data)
    r, t = med("ragd", "step_s"), med("torch", "step_s")
    rc, tc = med("ragd", "cpu_s"), med("torch", "cpu_s")
    mr, mt = med("ragd", "peak_rss_mb"), med("torch", "peak_rss_mb")
    dflt = {}
    if any(x["impl"] == "torch_blas_default" for x in rows):
        d, dc = med("torch_blas_default", "step_s"), med("torch_blas_default", "cpu_s")
        dflt = {"torch_blas_default_step_s": d, "torch_blas_default_cpu_s": dc,
                "speedup_vs_torch_blas_default": round(d / r, 2)}
    print(json.dumps({"bench": "train_lora_sft_step", "shape": "gpt2-124m, batch 4 x 128, LoRA r=8 c_attn",
                      "data": data, "scored_tokens": med("ragd", "scored_tokens"), "threads": rows[0]["threads"],
                      "ragd_step_s": r, "torch_step_s": t, "speedup_vs_torch": round(t / r, 2),
                      "ragd_cpu_s": rc, "torch_cpu_s": tc, "cpu_speedup_vs_torch": round(tc / rc, 2),
                      "ragd_peak_rss_mb": mr, "torch_peak_rss_mb": mt, "rss_ratio": round(mr / mt, 2),
                      **dflt, "loss": [med("ragd", "loss"), med("torch", "loss")],
                      "load_average": [float(sys.argv[2]), float(sys.argv[3])]}))
PY
