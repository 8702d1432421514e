#!/usr/bin/env bash
# ragd's GPT-2 decoder beside PyTorch on the GPT-2 124M shape (random weights), in one run:
# ragd and torch alternating, 1 thread each (torch's best here), then ragd at 2 threads.
# Decode also with a PEFT LoRA (r=8 on c_attn, c_proj, c_fc, built by
# tests/reference/make_gpt2_adapters.py) and for 4 concurrent sequences.
# Prints JSON with ratios.   usage: bench/decoder_bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 tests/reference/make_gpt2_checkpoints.py "$work" --124m
dir="$work/gpt2-124m"
/usr/bin/python3 tests/reference/make_gpt2_adapters.py "$dir" "$work/adapters" --only lora --r 8
for round in 1 2; do
    "$build/bench/decoder_bench" "$dir" 1 "$work/adapters"
    /usr/bin/python3 bench/decoder_peer.py "$dir" 1 "$work/adapters"
    "$build/bench/decoder_bench" "$dir" 2 "$work/adapters"
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
# LoRA overhead (decode with the adapter / without) and 4 concurrent sequences against one.
for threads in (1, 2):
    for impl, th in (("ragd", threads), ("torch", 1)):
        if impl == "torch" and threads == 2:
            continue
        b1, b1l = med(impl, th, "decode_b1_base_tokens_per_s"), med(impl, th, "decode_b1_lora_tokens_per_s")
        b4, b4l = med(impl, th, "decode_b4_base_tokens_per_s"), med(impl, th, "decode_b4_lora_tokens_per_s")
        print(json.dumps({"bench": "decoder_lora", "impl": impl, "threads": th, "b1": b1, "b1_lora": b1l, "b4": b4,
                          "b4_lora": b4l, "lora_overhead_b1": round(1 - b1l / b1, 3), "lora_overhead_b4": round(1 - b4l / b4, 3),
                          "b4_over_b1": round(b4 / b1, 2), "b4_lora_over_b1_lora": round(b4l / b1l, 2)}))
for what in ("decode_b1_lora_tokens_per_s", "decode_b4_lora_tokens_per_s", "decode_b4_base_tokens_per_s"):
    t = med("torch", 1, what)
    for threads in (1, 2):
        r = med("ragd", threads, what)
        print(json.dumps({"bench": "decoder", "what": what, "ragd_threads": threads, "ragd": r, "torch_1_thread": t,
                          "speedup_vs_torch": round(r / t, 2)}))
PY
