#!/usr/bin/env bash
# The overload soak (docs/RELIABILITY.md §5), loopback only, bounded in time:
#  0. unloaded latency: each route alone, one connection, closed loop, 10 s;
#  1. capacity of the mix: /embed (MiniLM-L6 shape, one 16-token text), /search (a 384-d
#     vector over 2,000 documents, k 10, filtered to 1,500 of them) and /generate (the small random GPT-2, 32 new
#     tokens) at once, each closed loop with 16 connections for 20 s: each route's 2xx rate;
#  2. overload: the three at once again, each open loop at twice that rate, for SECONDS,
#     sampling ragd's VmRSS every 5 s and its histograms at each tenth;
#  3. SIGTERM while /generate runs closed loop with 16 connections: in-flight requests finish
#     with 200 and ragd exits 0.
# Each route has a gate of GATE places (--max-model-requests for /embed and /generate,
# --max-route-requests for /search): at most GATE admitted requests are in the server at once.
# Checks: every response 2xx or 429/503 with Retry-After, no other 5xx or transport error,
# memory flat (last sample within 10% + 16 MB of the sample taken after the first tenth),
# and the admitted requests' latency bounded. Their p99 in the server (ragd's own histogram
# of the route's 200s, from the request's headers to its reply sent) is counted in requests
# of the route served meanwhile (p99 x the admitted rate), which the box's speed does not
# change: a gate of GATE places keeps GATE requests in the server, so a slower box serves
# them more slowly and each waits longer, in the same number of requests (Little's law: on
# average at most GATE). Bounded means: within 1.5x the same figure at capacity (step 1:
# GATE connections per route, as many requests in the server as the gate admits under
# overload: twice the load must leave the requests let in waiting as long, in requests, as
# a full server's), and not growing (the median of the figure over the last five tenths of
# the run within 1.5x that of the first five, from ragd's histograms read at each tenth).
# The p99s in ms are printed beside it, and the p99 from send, as the client sees it, by
# tenth and as a multiple of the unloaded p99 of step 0, with the load average: on one
# machine it includes the client's own waits for CPU.
# Prints one JSON object per phase and a verdict; exits 1 when a check fails.
#   usage: bench/soak.sh [BUILD_DIR] [SECONDS]
#   SOAK_ROUTES="search" (any of embed, search, generate) loads only those routes in steps
#   0-2, the other models loaded and idle: to see one route's tail without the others' load.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
secs=${2:-600}
gate=16
gen="$build/bench/load_gen"
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

/usr/bin/python3 tests/reference/make_bert_checkpoints.py "$work" --hidden 384 --layers 6 --heads 12 \
    --intermediate 1536 --max-pos 512 --only embedder-mean >/dev/null
/usr/bin/python3 tests/reference/make_gpt2_checkpoints.py "$work/gpt" >/dev/null
start() {
    rm -f "$work/port"
    "$build/ragd" serve --listen 127.0.0.1:0 --port-file "$work/port" --data-dir "$work/data" \
        --embedder "$work/embedder-mean" --generator "$work/gpt/gpt2-untied" \
        --max-connections 1024 --max-connections-per-ip 1024 --max-concurrent 128 \
        --max-model-requests "$gate" --max-route-requests "$gate" \
        --log-level warn >/dev/null 2>>"$work/log" &
    pid=$!
    for _ in $(seq 600); do
        [ -s "$work/port" ] && curl -fs "http://127.0.0.1:$(cat "$work/port")/health" >/dev/null && break
        sleep 0.1
    done
    base="http://127.0.0.1:$(cat "$work/port")"
}
start

# 2,000 documents with random unit vectors, and the three request bodies.
/usr/bin/python3 - "$base" "$work" <<'PY'
import json, random, sys, urllib.request
base, work = sys.argv[1], sys.argv[2]
def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
def unit(r):
    v = [r.gauss(0, 1) for _ in range(384)]
    n = sum(x * x for x in v) ** 0.5
    return [round(x / n, 6) for x in v]
r = random.Random(7)
post("/collections", {"name": "soak", "dimension": 384, "distance": "cosine"})
for b in range(0, 2000, 32):
    post("/collections/soak/documents",
         {"documents": [{"id": i, "vector": unit(r), "metadata": {"n": i}} for i in range(b, b + 32)]})
bodies = {
    "embed": {"inputs": ["the quick brown fox jumps over the lazy dog near the river bank today"]},
    "search": {"collection": "soak", "vector": unit(r), "k": 10, "filter": {"must": [{"key": "n", "range": {"lt": 1500}}]}},
    "generate": {"inputs": "Hello world, this is", "parameters": {"max_new_tokens": 32}},
}
for name, body in bodies.items():
    open(f"{work}/{name}.json", "w").write(json.dumps(body))
PY

read -r -a routes <<<"${SOAK_ROUTES:-embed search generate}"
for r in "${routes[@]}"; do
    "$gen" "$base/$r" "$work/$r.json" 10 1 0 >"$work/unl-$r.json"
done
declare -A rate
curl -fs "$base/metrics" >"$work/metrics-cap-0"
loaders=()
for r in "${routes[@]}"; do
    "$gen" "$base/$r" "$work/$r.json" 20 "$gate" 0 >"$work/cap-$r.json" &
    loaders+=($!)
done
wait "${loaders[@]}"
curl -fs "$base/metrics" >"$work/metrics-cap-1"
for r in "${routes[@]}"; do
    rate[$r]=$(/usr/bin/python3 -c "import json,sys; print(max(1, round(2 * json.load(open(sys.argv[1]))['ok_per_s'])))" \
        "$work/cap-$r.json")
done

: >"$work/rss"
: >"$work/loadavg"
( while kill -0 "$pid" 2>/dev/null; do
      awk '/^VmRSS/ {print $2}' "/proc/$pid/status" >>"$work/rss" 2>/dev/null || true
      cut -d' ' -f1 /proc/loadavg >>"$work/loadavg"
      sleep 5
  done ) &
sampler=$!
curl -fs "$base/metrics" >"$work/metrics-0"
loaders=()
for r in "${routes[@]}"; do
    "$gen" "$base/$r" "$work/$r.json" "$secs" 300 "${rate[$r]}" >"$work/over-$r.json" &
    loaders+=($!)
done
# ragd's histograms at each tenth of the overload, for the p99 in the server by tenth.
( for t in $(seq 9); do
      sleep "$(/usr/bin/python3 -c "print($secs / 10)")"
      curl -fs "$base/metrics" >"$work/metrics-$t"
  done ) &
tenths=$!
wait "${loaders[@]}"
kill "$sampler" "$tenths" 2>/dev/null || true
curl -fs "$base/metrics" >"$work/metrics-10"

# SIGTERM under load.
"$gen" "$base/generate" "$work/generate.json" 10 16 0 >"$work/term-load.json" &
loader=$!
sleep 3
kill -TERM "$pid"
set +e
wait "$pid"
term_rc=$?
set -e
pid=
wait "$loader"

/usr/bin/python3 - "$work" "$secs" "$term_rc" "$gate" "${routes[@]}" <<'PY'
import json, os, re, statistics, sys
work, secs, term_rc, gate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
routes = sys.argv[5:]
ok = True

def buckets(path, route):
    """ragd's histogram of the route's 200s: {upper bound in s: cumulative count}."""
    pat = re.compile(r'ragd_http_request_duration_seconds_bucket\{method="POST",route="/%s",status="200",'
                     r'le="([^"]+)"\} (\d+)' % route)
    return {float(m.group(1)): int(m.group(2)) for m in map(pat.match, open(path)) if m}

def in_server(route, before, after, seconds, client_p99_ms=float("inf")):
    """The admitted requests' p99 time in ragd (from their headers to their reply sent) in ms,
    and their rate, between two of its histograms (the files metrics-BEFORE and metrics-AFTER,
    `seconds` apart). The p99 is interpolated linearly within its bucket as Prometheus's
    histogram_quantile does; each request's time in the server is within its time from send,
    so the interpolation (coarse at the buckets) is capped by the client's exact p99 over the
    same phase when given. (None, 0) without requests."""
    b, a = buckets(f"{work}/metrics-{before}", route), buckets(f"{work}/metrics-{after}", route)
    les = sorted(a)
    cum = [a[le] - b.get(le, 0) for le in les]
    if not cum or cum[-1] == 0:
        return None, 0.0
    want, lo, below = 0.99 * cum[-1], 0.0, 0
    for le, c in zip(les, cum):
        if c >= want:
            p99 = lo if le == float("inf") else lo + (le - lo) * (want - below) / max(c - below, 1)
            return min(p99 * 1e3, client_p99_ms), cum[-1] / seconds
        lo, below = le, c

def served(p99_ms, rate):
    """A p99 in requests of the route served meanwhile: p99 x the rate at which they were."""
    return None if p99_ms is None else p99_ms / 1e3 * rate

for r in routes:
    u = json.load(open(f"{work}/unl-{r}.json"))
    c = json.load(open(f"{work}/cap-{r}.json"))
    o = json.load(open(f"{work}/over-{r}.json"))
    bad = o["retry_after_missing"] + o["other_5xx"] + o["transport_errors"] + o["other_4xx"]
    ok &= bad == 0 and o["status_2xx"] > 0
    cap_p99, cap_rate = in_server(r, "cap-0", "cap-1", c["seconds"], c["p99_ms"])
    over_p99, over_rate = in_server(r, 0, 10, o["seconds"], o["p99_ms_from_send"])
    at_capacity, under_overload = served(cap_p99, cap_rate), served(over_p99, over_rate)
    by_tenth = [in_server(r, t, t + 1, o["seconds"] / 10) for t in range(10)]
    tenths = [served(*pr) or 0.0 for pr in by_tenth]
    growth = statistics.median(tenths[5:]) / max(statistics.median(tenths[:5]), 1e-9)
    bounded = (under_overload is not None and at_capacity is not None and under_overload <= 1.5 * at_capacity and
               growth <= 1.5)
    ok &= bounded
    print(json.dumps({"phase": "overload", "route": "/" + r, "unloaded_p99_ms": u["p99_ms"],
                      "capacity_per_s": c["ok_per_s"], "capacity_p99_ms": c["p99_ms"], "offered_per_s": o["rate"],
                      "ratio_offered_to_capacity": round(o["rate"] / max(c["ok_per_s"], 1e-9), 2),
                      "sent_per_s": round(o["sent"] / o["seconds"], 1),
                      "ratio_sent_to_capacity": round(o["sent"] / o["seconds"] / max(c["ok_per_s"], 1e-9), 2), **o,
                      "p99_from_send_over_unloaded_p99": round(o["p99_ms_from_send"] / max(u["p99_ms"], 1e-9), 1),
                      "p99_ms_in_server_at_capacity": cap_p99 and round(cap_p99, 1),
                      "p99_ms_in_server": over_p99 and round(over_p99, 1),
                      "p99_ms_in_server_by_tenth": [round(p or 0.0, 1) for p, _ in by_tenth],
                      "p99_in_requests_served_at_capacity": at_capacity and round(at_capacity, 1),
                      "p99_in_requests_served": under_overload and round(under_overload, 1),
                      "p99_in_requests_served_by_tenth": [round(t, 1) for t in tenths],
                      "p99_in_requests_served_over_capacity": under_overload and at_capacity and
                      round(under_overload / at_capacity, 2),
                      "growth_last_half_over_first": round(growth, 2), "bounded": bounded}))
rss = [int(x) for x in open(f"{work}/rss").read().split()]
first = rss[max(1, len(rss) // 10)] if len(rss) > 1 else rss[0]
flat = rss[-1] <= first * 1.10 + 16 * 1024
ok &= flat
print(json.dumps({"phase": "memory", "samples": len(rss), "rss_kb_start": rss[0], "rss_kb_after_first_tenth": first,
                  "rss_kb_end": rss[-1], "rss_kb_max": max(rss), "flat": flat, "rss_kb_every_5s": rss}))
t = json.load(open(f"{work}/term-load.json"))
drained = term_rc == 0 and t["other_5xx"] == 0 and t["retry_after_missing"] == 0 and t["status_2xx"] > 0
ok &= drained
print(json.dumps({"phase": "sigterm", "exit_code": term_rc, **t, "drained": drained}))
load = [float(x) for x in open(f"{work}/loadavg").read().split()]
print(json.dumps({"soak": "pass" if ok else "FAIL", "seconds": secs, "cores": os.cpu_count(),
                  "loadavg_1min_during_overload": {"min": min(load), "median": statistics.median(load),
                                                   "max": max(load)}}))
sys.exit(0 if ok else 1)
PY
