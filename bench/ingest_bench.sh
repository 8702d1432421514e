#!/usr/bin/env bash
# HTTP ingest into a collection (batches of vectors; then texts embedded by the server) beside
# the in-process store and /embed, measured in the same run. Prints JSON.
#   usage: bench/ingest_bench.sh [BUILD_DIR] [N] [DIM] [BATCH] [THREADS] [TEXTS] [EF_CONSTRUCTION]
# The embedder is a random checkpoint of the MiniLM-L6 shape (384 wide, 6 layers).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
n=${2:-20000}
dim=${3:-384}
batch=${4:-256}
threads=${5:-4}
texts=${6:-1024}
efc=${7:-200}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
/usr/bin/python3 tests/reference/make_bert_checkpoints.py "$work" --hidden 384 --layers 6 --heads 12 \
    --intermediate 1536 --max-pos 512 --only embedder-mean >/dev/null
"$build/ragd" serve --listen 127.0.0.1:0 --port-file "$work/port" --data-dir "$work/data" \
    --embedder "$work/embedder-mean" --max-batch "$batch" --max-body-bytes 67108864 \
    --log-level warn >/dev/null 2>"$work/log" &
pid=$!
for _ in $(seq 200); do
    [ -s "$work/port" ] && curl -fs "http://127.0.0.1:$(cat "$work/port")/health" >/dev/null && break
    sleep 0.1
done
"$build/bench/ingest_bench" "$(cat "$work/port")" "$n" "$dim" "$batch" "$threads" "$texts" "$efc"
