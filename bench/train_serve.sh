#!/usr/bin/env bash
# /embed latency while a training job runs, beside the same load on the idle server: one
# ragd with a MiniLM-L6-shape embedder and a GPT-2 124M-shape generator (random weights),
# wrk with CONNS connections for SECONDS on /embed (4 texts of ~16 tokens per request)
# three times: idle, while a LoRA SFT job trains (batch 4 x 128 tokens, r 8 on c_attn; its
# worker runs alone at nice 10; measured from its first finished step on), and idle again
# after cancelling it. Prints JSON with p50/p99
# and requests/s of each phase, the ratios training/idle, and the training steps done.
#   usage: bench/train_serve.sh [BUILD_DIR] [CONNS] [SECONDS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
conns=${2:-4}
secs=${3:-20}
threads=${4:-0}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT
/usr/bin/python3 tests/reference/make_bert_checkpoints.py "$work" --hidden 384 --layers 6 --heads 12 \
    --intermediate 1536 --max-pos 512 --only embedder-mean >/dev/null
/usr/bin/python3 tests/reference/make_gpt2_checkpoints.py "$work" --124m >/dev/null
"$build/ragd" serve --listen 127.0.0.1:0 --port-file "$work/port" --data-dir "$work/data" \
    --embedder "$work/embedder-mean" --generator "$work/gpt2-124m" --threads "$threads" \
    --train-workers 1 --log-level warn >/dev/null 2>"$work/log" &
pid=$!
for _ in $(seq 600); do
    [ -s "$work/port" ] && curl -fs "http://127.0.0.1:$(cat "$work/port")/health" >/dev/null 2>&1 && break
    sleep 0.2
done
url="http://127.0.0.1:$(cat "$work/port")"
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":["the quick brown fox jumps over the lazy dog near the river bank today",' ..
  '"a short sentence about search and ranking of documents in a system",' ..
  '"retrieval augmented generation needs embeddings and a reranker to work",' ..
  '"one more text of roughly sixteen tokens to fill the batch of four"]}'
LUA
load() { wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "$url/embed" >"$work/$1.txt"; }
job_field() { curl -fs "$url/jobs/$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }

load idle
# 64 rows of ~128 tokens, many epochs: the job outlasts the measurement.
/usr/bin/python3 - >"$work/job.json" <<'PY'
import json
words = "call me ishmael some years ago never mind how long precisely having little or no money".split()
rows = [{"text": " ".join(words[(i + k) % len(words)] for k in range(110))} for i in range(64)]
print(json.dumps({"adapter_name": "bench-lora", "data": rows, "peft": {"r": 8, "lora_alpha": 16},
                  "hyperparameters": {"epochs": 100, "batch_size": 4, "max_length": 128, "learning_rate": 1e-4}}))
PY
id=$(curl -fs -H 'Content-Type: application/json' --data-binary @"$work/job.json" "$url/finetune" |
     /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
# Measure the steady state: from the job's first finished step (its buffers are allocated by then).
for _ in $(seq 3000); do
    [ "$(job_field "$id" "j['progress']['step']")" -ge 1 ] && break
    sleep 0.2
done
step0=$(job_field "$id" "j['progress']['step']")
load training
step1=$(job_field "$id" "j['progress']['step']")
status=$(job_field "$id" "j['status']")
curl -fs -X POST "$url/jobs/$id/cancel" >/dev/null
for _ in $(seq 600); do
    [ "$(job_field "$id" "j['status']")" = cancelled ] && break
    sleep 0.1
done
load idle2
/usr/bin/python3 - "$work" "$conns" "$secs" "$status" "$step0" "$step1" <<'PY'
import json, re, sys
work, conns, secs, status, s0, s1 = sys.argv[1:]
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return round(float(n) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], 2)
def phase(name):
    out = open(f"{work}/{name}.txt").read()
    get = lambda pat: re.search(pat, out, re.M).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50_ms": ms(get(r"^\s+50%\s+(\S+)")), "p99_ms": ms(get(r"^\s+99%\s+(\S+)")),
            "requests_per_s": float(get(r"^Requests/sec:\s+(\S+)")), "non_2xx": int(non2xx.group(1)) if non2xx else 0}
idle, train, idle2 = phase("idle"), phase("training"), phase("idle2")
print(json.dumps({"bench": "embed_while_training", "connections": int(conns), "seconds": int(secs),
                  "idle": idle, "training": train, "idle_after": idle2,
                  "p99_training_over_idle": round(train["p99_ms"] / idle["p99_ms"], 2),
                  "rps_training_over_idle": round(train["requests_per_s"] / idle["requests_per_s"], 2),
                  "job_status_during": status, "training_steps_during": int(s1) - int(s0)}))
PY
