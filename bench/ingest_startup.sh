#!/usr/bin/env bash
# Start-up of the real daemon with an N × DIM cosine collection (HNSW m 16, every vector
# indexed) in its data dir: the graph loaded from its node records, against the same data dir
# with the index header spoiled, which forces a rebuild (in the background: the daemon serves
# at once, searching the not-yet-indexed tail exactly). Each run is timed from exec to /health
# answering (ready) and to pending_vectors_count 0 (indexed); a rebuild still running after
# TIMEOUT seconds reports how many it had indexed instead. EF_CONSTRUCTION (default 200) only
# changes how long the data takes to make: the records have the same shape. The daemon's own
# start-up on an empty data dir is timed too, as the floor; ready_cpu_s is the CPU time the
# daemon had used when it became ready, which a shared box distorts far less than the wall
# clock. Prints JSON.
#   usage: bench/ingest_startup.sh [BUILD_DIR] [N] [DIM] [EF_CONSTRUCTION] [TIMEOUT]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
n=${2:-100000}
dim=${3:-384}
efc=${4:-200}
timeout=${5:-900}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$pid" ] && wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
ms() { echo $(($(date +%s%N) / 1000000)); }

t=$(ms)
"$build/bench/ingest_bench" make-data "$work/data" "$n" "$dim" "$efc"
make_ms=$(($(ms) - t))
bytes=$(du -sb "$work/data" | cut -f1)

# start [DATA_DIR]: runs the daemon on the data dir (an empty one: until /health only); prints {"index", "count", "indexed_vectors_count",
# "ready_s", "indexed_s" (or "timeout_s")}.
start() {
    rm -f "$work/port"
    local t0 now ready="" cpu=0
    t0=$(ms)
    "$build/ragd" serve --listen 127.0.0.1:0 --port-file "$work/port" --data-dir "${1:-$work/data}" \
        --log-level warn >/dev/null 2>"$work/log" &
    pid=$!
    while :; do
        if [ -z "$ready" ] && [ -s "$work/port" ] &&
            curl -fs "http://127.0.0.1:$(cat "$work/port")/health" >/dev/null 2>&1; then
            ready=$(($(ms) - t0))
            cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        fi
        if [ -n "$ready" ] && [ -n "${1:-}" ]; then
            echo '{"index": "ready", "count": 0, "indexed_vectors_count": 0, "pending_vectors_count": 0}' >"$work/coll"
            break
        fi
        if [ -n "$ready" ]; then
            curl -fs "http://127.0.0.1:$(cat "$work/port")/collections/startup" >"$work/coll" || true
            if /usr/bin/python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["pending_vectors_count"] != 0)' \
                "$work/coll" 2>/dev/null || [ $(($(ms) - t0)) -gt $((timeout * 1000)) ]; then
                break
            fi
        fi
        kill -0 "$pid" 2>/dev/null || { echo "ingest_startup: ragd exited: $(cat "$work/log")" >&2; exit 1; }
        sleep 0.05
    done
    now=$(ms)
    kill "$pid"
    wait "$pid" || true
    pid=
    /usr/bin/python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); done=c["pending_vectors_count"] == 0;
print(json.dumps({"index": c["index"], "count": c["count"], "indexed_vectors_count": c["indexed_vectors_count"],
                  "ready_s": int(sys.argv[2]) / 1000, "ready_cpu_s": int(sys.argv[4]) / int(sys.argv[5]),
                  ("indexed_s" if done else "timeout_s"): int(sys.argv[3]) / 1000}))' \
        "$work/coll" "$ready" "$((now - t0))" "$cpu" "$(getconf CLK_TCK)"
}

empty=$(start "$work/empty")
load=$(start)
/usr/bin/python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);
c.execute("UPDATE collections SET index_header = x'"'"'00'"'"'"); c.commit()' "$work/data/ragd.db"
rebuild=$(start)
/usr/bin/python3 -c 'import json,sys; l=json.loads(sys.argv[1]); r=json.loads(sys.argv[2]); e=json.loads(sys.argv[8]);
out = {"bench": "startup", "vectors": int(sys.argv[3]), "dim": int(sys.argv[4]), "ef_construction": int(sys.argv[7]),
       "data_dir_bytes": int(sys.argv[5]), "make_data_s": int(sys.argv[6]) / 1000, "empty_ready_s": e["ready_s"],
       "loaded": l, "rebuilt": r, "load_s_over_empty": round(l["ready_s"] - e["ready_s"], 3),
       "load_cpu_s_over_empty": round(l["ready_cpu_s"] - e["ready_cpu_s"], 2),
       "ratio_ready_rebuild_to_load": round(r["ready_s"] / l["ready_s"], 2)}
if "indexed_s" in r: out["ratio_indexed_rebuild_to_load"] = round(r["indexed_s"] / l["indexed_s"], 1)
else: out["rebuild_vectors_per_s"] = round(r["indexed_vectors_count"] / r["timeout_s"])
print(json.dumps(out))' "$load" "$rebuild" "$n" "$dim" "$bytes" "$make_ms" "$efc" "$empty"
