#!/usr/bin/env python3
"""encoder_peer.py — the PyTorch peer of bench/encoder_bench.c: the same checkpoint, the same
token ids, the same measurements, with tests/reference/bert_oracle.py's plain-torch BERT
(the math of transformers' eager BertModel), under torch.no_grad, torch's threads = THREADS.

usage: /usr/bin/python3 bench/encoder_peer.py EMBEDDER_DIR RERANKER_DIR THREADS"""
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import bert_oracle  # noqa: E402

RUNS = 5


def make(n, T, pair):
    x, ids, types = 12345, [], []
    for _ in range(n):
        row = []
        for t in range(T):
            x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            row.append(101 if t == 0 else 102 if t == T - 1 else 1000 + (x >> 33) % 29000)
        ids.append(row)
        types.append([1 if pair and t >= T // 2 else 0 for t in range(T)])
    return torch.tensor(ids), torch.tensor(types), torch.ones(n, T, dtype=torch.long)


def median(fn):
    runs = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return sorted(runs)[RUNS // 2]


def main():
    emb_dir, rer_dir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    cfg, w, modes, normalize, _ = bert_oracle.load(emb_dir)
    rcfg, rw, _, _, _ = bert_oracle.load(rer_dir)

    def embed(ids, types, mask):
        e = bert_oracle.pool(modes, bert_oracle.forward(cfg, w, ids, types, mask), mask)
        return torch.nn.functional.normalize(e, p=2, dim=1)

    def score(ids, types, mask):
        h = bert_oracle.forward(rcfg, rw, ids, types, mask)
        pooled = torch.tanh(h[:, 0] @ rw["pooler.dense.weight"].T + rw["pooler.dense.bias"])
        return pooled @ rw["classifier.weight"].T + rw["classifier.bias"]

    out = []
    with torch.no_grad():
        for T in (16, 64, 128):
            batch = make(32, T, False)
            out.append({"what": "embed_b32_t%d" % T, "per_s": round(32 / median(lambda: embed(*batch)), 1)})
        one = make(1, 16, False)
        out.append({"what": "latency_1x16_ms", "ms": round(median(lambda: embed(*one)) * 1e3, 3)})
        pairs = make(32, 128, True)
        out.append({"what": "rerank_b32_t128", "per_s": round(32 / median(lambda: score(*pairs)), 1)})
    out.append({"what": "peak_rss_mb", "mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
    for o in out:
        print(json.dumps({"impl": "torch", "threads": threads, **o}))


if __name__ == "__main__":
    main()
