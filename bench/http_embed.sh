#!/usr/bin/env bash
# /embed end to end over HTTP with concurrent clients (wrk, loopback, bounded in time) on the
# MiniLM-L6 shape, beside PyTorch's in-process rate for the same texts (the ceiling a Python
# server on torch could reach). Prints JSON.   usage: bench/http_embed.sh [BUILD_DIR] [CONNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
conns=${2:-16}
secs=${3:-15}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
/usr/bin/python3 tests/reference/make_bert_checkpoints.py "$work" --hidden 384 --layers 6 --heads 12 \
    --intermediate 1536 --max-pos 512 --only embedder-mean
"$build/ragd" serve --listen 127.0.0.1:0 --port-file "$work/port" --data-dir "$work/data" \
    --embedder "$work/embedder-mean" --log-level warn >/dev/null 2>"$work/log" &
pid=$!
for _ in $(seq 200); do
    [ -s "$work/port" ] && curl -fs "http://127.0.0.1:$(cat "$work/port")/health" >/dev/null && break
    sleep 0.1
done
port=$(cat "$work/port")
# Each request embeds 4 texts of about 16 tokens.
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":["the quick brown fox jumps over the lazy dog near the river bank today",' ..
  '"a short sentence about search and ranking of documents in a system",' ..
  '"retrieval augmented generation needs embeddings and a reranker to work",' ..
  '"one more text of roughly sixteen tokens to fill the batch of four"]}'
LUA
out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "http://127.0.0.1:$port/embed")
rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
torch=$(/usr/bin/python3 - "$work/embedder-mean" <<'PY'
import os, sys, time, torch
sys.path.insert(0, os.path.join("tests", "reference"))
import bert_oracle
torch.set_num_threads(1)
cfg, w, modes, normalize, _ = bert_oracle.load(sys.argv[1])
ids = torch.randint(1000, 29000, (64, 16)); ids[:, 0] = 101; ids[:, -1] = 102
types, mask = torch.zeros_like(ids), torch.ones_like(ids)
with torch.no_grad():
    runs = []
    for _ in range(5):
        t0 = time.perf_counter(); bert_oracle.forward(cfg, w, ids, types, mask); runs.append(time.perf_counter() - t0)
print(round(64 / sorted(runs)[2], 1))
PY
)
python3 -c "
import json; r=float('$rps'); t=float('$torch')
print(json.dumps({'bench':'http_embed','connections':$conns,'texts_per_request':4,'requests_per_s':r,'texts_per_s':round(4*r,1),
  'latency_p50':'$p50','latency_p99':'$p99','non_2xx':'${non2xx:-0}','torch_in_process_texts_per_s_1_thread':t,'ratio':round(4*r/t,2)}))"
