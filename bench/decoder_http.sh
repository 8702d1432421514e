#!/usr/bin/env bash
# The GPT-2 124M shape (random weights) served over HTTP: decode tokens/s of one
# /generate_stream client, and the aggregate of 4 concurrent clients while all four decode
# (the window between the last one's first token and the first one's last token), each after
# a 128-token prompt, greedy. The in-process figures of the same step are decoder_bench's
# decode_b1 and decode_b4 (run beside it here, same threads): the server's batcher should
# reach them. Prints JSON.   usage: bench/decoder_http.sh [BUILD_DIR] [THREADS] [GPT2_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-1}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
dir=${3:-}
if [ -z "$dir" ]; then
    /usr/bin/python3 tests/reference/make_gpt2_checkpoints.py "$work" --124m
    dir="$work/gpt2-124m"
fi
"$build/ragd" serve --listen 127.0.0.1:0 --port-file "$work/port" --data-dir "$work/data" --generator "$dir" \
    --threads "$threads" --log-level warn >/dev/null 2>"$work/log" &
pid=$!
for _ in $(seq 600); do
    [ -s "$work/port" ] && curl -fs "http://127.0.0.1:$(cat "$work/port")/health" >/dev/null && break
    sleep 0.1
done
/usr/bin/python3 tests/reference/make_gpt2_adapters.py "$dir" "$work/adapters" --only lora --r 8 >/dev/null
"$build/bench/decoder_bench" "$dir" "$threads" "$work/adapters" >"$work/inproc.jsonl"
/usr/bin/python3 - "$(cat "$work/port")" "$threads" "$work/inproc.jsonl" <<'PY'
import http.client, json, statistics, sys, threading, time
port, threads = int(sys.argv[1]), int(sys.argv[2])
inproc = {r["what"]: r.get("per_s") for r in map(json.loads, open(sys.argv[3]))}
# About 128 GPT-2 tokens.
prompt = " ".join(["the quick brown fox jumps over the lazy dog near the river bank"] * 10)[:560]
def stream(out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/generate_stream", json.dumps({"inputs": prompt, "parameters": {"max_new_tokens": 96}}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()
    for line in r:
        if line.startswith(b"data:"):
            out.append(time.perf_counter())
    c.close()
def run(n):
    times = [[] for _ in range(n)]
    ts = [threading.Thread(target=stream, args=(times[i],)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    lo, hi = max(t[0] for t in times), min(t[-1] for t in times)
    return sum(sum(1 for x in t if lo < x <= hi) for t in times) / (hi - lo)
stream([])  # warm-up
res = {}
for n in (1, 4):
    res[n] = statistics.median(run(n) for _ in range(3))
b1, b4 = inproc["decode_b1_base_tokens_per_s"], inproc["decode_b4_base_tokens_per_s"]
print(json.dumps({"bench": "decoder_http", "threads": threads, "http_b1_tokens_per_s": round(res[1], 1),
                  "http_b4_tokens_per_s": round(res[4], 1), "http_b4_over_b1": round(res[4] / res[1], 2),
                  "in_process_b1": b1, "in_process_b4": b4, "in_process_b4_over_b1": round(b4 / b1, 2),
                  "http_over_in_process_b1": round(res[1] / b1, 2), "http_over_in_process_b4": round(res[4] / b4, 2)}))
PY
