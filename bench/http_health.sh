#!/usr/bin/env bash
# GET /health under load: requests/s and latency with N concurrent connections (wrk from
# Debian, loopback only, bounded in time). Prints one JSON object.
#   usage: bench/http_health.sh [BUILD_DIR] [CONNECTIONS] [SECONDS]
set -euo pipefail
build=${1:-build}
conns=${2:-64}
secs=${3:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$build/ragd" serve --listen 127.0.0.1:0 --port-file "$work/port" --data-dir "$work/data" \
    --max-connections 1024 --max-connections-per-ip 1024 --log-level warn >/dev/null 2>"$work/log" &
pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
port=$(cat "$work/port")
out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/health")
rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
printf '{"bench":"http_health","connections":%s,"seconds":%s,"requests_per_s":%s,"latency_p50":"%s","latency_p99":"%s","errors":"%s"}\n' \
    "$conns" "$secs" "$rps" "$p50" "$p99" "$errors"
