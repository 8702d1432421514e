#!/usr/bin/env python3
"""train_peer.py — the PyTorch peer of bench/train_bench.c: the same LoRA SFT step (r=8 on
c_attn, batch 4 x 128, the same ids, lengths and LoRA weights) with torch autograd over
tests/reference/gpt2_grad_oracle.py's forward, base weights frozen (requires_grad False),
clip_grad_norm_ and torch.optim.AdamW. The batch as TRL collates it and transformers trains
on it: input_ids [4, 128] padded on the right with EOS, logits at every position, and
cross-entropy over labels with -100 on the prompt and padding (DATA completion) or on the
first token only (DATA text). Right padding under a causal mask leaves every real position's
output unchanged, so no attention mask is needed. Median step time over 5 steps after a
warm-up (wall clock and process CPU time), and peak RSS. torch threads = THREADS.

usage: /usr/bin/python3 bench/train_peer.py GPT2_DIR THREADS text|completion"""
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gpt2_grad_oracle  # noqa: E402
import gpt2_oracle  # noqa: E402

B, T = 4, 128
ROW_LEN, PROMPT_LEN = (128, 109, 93, 71), (41, 29, 52, 35)  # as in train_bench.c


def main():
    d, threads, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if data not in ("text", "completion"):
        sys.exit("usage: train_peer.py GPT2_DIR THREADS text|completion")
    completion = data == "completion"
    torch.set_num_threads(threads)
    cfg, w = gpt2_oracle.load(d)
    C = cfg["n_embd"]
    lora, params = {}, []
    for l in range(cfg["n_layer"]):
        n_a, n_b = 8 * C, 3 * C * 8
        A = torch.tensor([((i * 2654435761) % 2001 - 1000) * 1e-5 for i in range(n_a)], dtype=torch.float32)
        A = A.view(8, C).requires_grad_(True)
        Bm = torch.full((3 * C, 8), 1e-3).requires_grad_(True)
        lora[(l, "attn.c_attn")] = (A, Bm, 16 / 8)
        params += [A, Bm]
    ad = {"type": "LORA", "lora": lora, "num_virtual_tokens": 0}
    ids = torch.tensor([(i * 7919) % 50000 for i in range(B * T)]).view(B, T)
    labels = ids.clone()
    labels[:, 0] = -100
    n = sum(ROW_LEN[b] - PROMPT_LEN[b] if completion else T - 1 for b in range(B))
    if completion:
        for b in range(B):
            ids[b, ROW_LEN[b]:] = 50256
            labels[b, :PROMPT_LEN[b]] = -100
            labels[b, ROW_LEN[b]:] = -100
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    runs, cpu = [], []
    for r in range(6):
        t0, c0 = time.perf_counter(), time.process_time()
        logits, _ = gpt2_grad_oracle.forward(cfg, w, ids, ad)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels[:, 1:].reshape(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        if r:
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    step = statistics.median(runs)
    print(json.dumps({"impl": "torch", "data": data, "threads": threads, "step_s": round(step, 4),
                      "cpu_s": round(statistics.median(cpu), 4), "scored_tokens": n,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "loss": round(float(loss), 4)}))


if __name__ == "__main__":
    main()
