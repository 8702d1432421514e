#!/usr/bin/env python3
"""ann_peer.py — the peers of bench/ann_bench.c on the same files (WORK/base.f32, queries.f32,
gt.i32, meta.json written by `ann_bench prepare`): FAISS IndexHNSWFlat (Debian python3-faiss)
and hnswlib (Debian python3-hnswlib), both on unit vectors with inner product, the same M and
efConstruction as ragd. Prints the same JSON lines as ann_bench.c.

  build: one thread (as ragd's insert), timed; the index is saved to WORK for the rounds.
  query: load the saved index, then for each ef recall@10 and queries/s at 1 and 2 threads,
         all queries in one batch call (the peers' fastest path), median of 3.

usage: /usr/bin/python3 bench/ann_peer.py build WORK M EFC
       /usr/bin/python3 bench/ann_peer.py query WORK ROUND EF..."""
import json
import os
import sys
import time

import numpy as np

REPS = 3
TOPK = 10


def load(work):
    meta = json.load(open(os.path.join(work, "meta.json")))
    n, nq, dim = meta["n"], meta["nq"], meta["dim"]
    base = np.fromfile(os.path.join(work, "base.f32"), dtype=np.float32).reshape(n, dim)
    q = np.fromfile(os.path.join(work, "queries.f32"), dtype=np.float32).reshape(nq, dim)
    gt = np.fromfile(os.path.join(work, "gt.i32"), dtype=np.int32).reshape(nq, TOPK)
    return meta, base, q, gt


def recall(found, gt):
    hit = sum(len(set(f[f >= 0].tolist()) & set(g.tolist())) for f, g in zip(found, gt))
    return hit / gt.size


def emit(meta, **kv):
    print(json.dumps({"bench": "ann", "data": meta["data"], **kv}), flush=True)


def faiss_build(work, meta, base, m, efc):
    import faiss
    # Debian's FAISS builds slowly (SSE only: 100k × 384 takes ~20 min on one thread here);
    # it builds on 2 threads unless ANN_FAISS_BUILD_THREADS says otherwise; the count is printed.
    threads = int(os.environ.get("ANN_FAISS_BUILD_THREADS", "2"))
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(meta["dim"], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    t0 = time.perf_counter()
    index.add(base)
    secs = time.perf_counter() - t0
    faiss.write_index(index, os.path.join(work, "faiss.idx"))
    emit(meta, impl="faiss", what="build", threads=threads, m=m, ef_construction=efc, seconds=round(secs, 2),
         per_s=round(len(base) / secs))


def hnswlib_build(work, meta, base, m, efc):
    import hnswlib
    index = hnswlib.Index(space="ip", dim=meta["dim"])
    index.init_index(max_elements=len(base), ef_construction=efc, M=m, random_seed=42)
    t0 = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=1)
    secs = time.perf_counter() - t0
    index.save_index(os.path.join(work, "hnswlib.idx"))
    emit(meta, impl="hnswlib", what="build", threads=1, m=m, ef_construction=efc, seconds=round(secs, 2),
         per_s=round(len(base) / secs))


def timed(fn):
    runs = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return sorted(runs)[REPS // 2], out


def faiss_query(work, meta, q, gt, rnd, efs):
    import faiss
    t0 = time.perf_counter()
    index = faiss.read_index(os.path.join(work, "faiss.idx"))
    emit(meta, impl="faiss", what="load", round=rnd, n=meta["n"], seconds=round(time.perf_counter() - t0, 3))
    for ef in efs:
        index.hnsw.efSearch = ef
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            secs, (_, found) = timed(lambda: index.search(q, TOPK))
            emit(meta, impl="faiss", what="query", round=rnd, threads=threads, ef=ef,
                 recall=round(recall(found, gt), 4), qps=round(len(q) / secs, 1))


def hnswlib_query(work, meta, q, gt, rnd, efs):
    import hnswlib
    index = hnswlib.Index(space="ip", dim=meta["dim"])
    t0 = time.perf_counter()
    index.load_index(os.path.join(work, "hnswlib.idx"), max_elements=meta["n"])
    emit(meta, impl="hnswlib", what="load", round=rnd, n=meta["n"], seconds=round(time.perf_counter() - t0, 3))
    for ef in efs:
        index.set_ef(max(ef, TOPK))
        for threads in (1, 2):
            secs, (found, _) = timed(lambda: index.knn_query(q, k=TOPK, num_threads=threads))
            emit(meta, impl="hnswlib", what="query", round=rnd, threads=threads, ef=ef,
                 recall=round(recall(found.astype(np.int64), gt), 4), qps=round(len(q) / secs, 1))


def main():
    step, work = sys.argv[1], sys.argv[2]
    meta, base, q, gt = load(work)
    if step == "build":
        m, efc = int(sys.argv[3]), int(sys.argv[4])
        faiss_build(work, meta, base, m, efc)
        hnswlib_build(work, meta, base, m, efc)
    elif step == "query":
        rnd, efs = int(sys.argv[3]), [int(e) for e in sys.argv[4:]]
        faiss_query(work, meta, q, gt, rnd, efs)
        hnswlib_query(work, meta, q, gt, rnd, efs)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
