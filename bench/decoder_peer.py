#!/usr/bin/env python3
"""decoder_peer.py — the PyTorch peer of bench/decoder_bench.c: tests/reference/gpt2_oracle.py's
plain-torch GPT-2 math with a KV cache (keys and values kept per layer), on the same checkpoint:
prefill tokens/s for a 128-token prompt, decode tokens/s at batch 1. torch threads = THREADS.

usage: /usr/bin/python3 bench/decoder_peer.py GPT2_DIR THREADS"""
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gpt2_oracle  # noqa: E402


def step(cfg, w, ids, past):
    C, H = cfg["n_embd"], cfg["n_head"]
    D, eps, T = C // H, cfg["layer_norm_epsilon"], len(ids)
    p0 = past[0][0].shape[1] if past[0] else 0
    x = w["wte.weight"][torch.tensor(ids)] + w["wpe.weight"][p0:p0 + T]
    for i in range(cfg["n_layer"]):
        p = "h.%d." % i
        h = gpt2_oracle.layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        q, k, v = (t.view(T, H, D).transpose(0, 1) for t in (h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]).split(C, 1))
        if past[i]:
            k, v = torch.cat([past[i][0], k], 1), torch.cat([past[i][1], v], 1)
        past[i] = (k, v)
        s = q @ k.transpose(-1, -2) / math.sqrt(D)
        if T > 1:
            s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), torch.finfo(torch.float32).min)
        a = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, C)
        x = x + a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = gpt2_oracle.layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = x + gpt2_oracle.gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    return gpt2_oracle.layer_norm(x[-1:], w["ln_f.weight"], w["ln_f.bias"], eps) @ w["lm_head.weight"].T


def main():
    d, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    cfg, w = gpt2_oracle.load(d)
    prompt = [(i * 7919) % 50000 for i in range(128)]
    pre, dec = [], []
    with torch.no_grad():
        for _ in range(5):
            past = [None] * cfg["n_layer"]
            t0 = time.perf_counter()
            step(cfg, w, prompt, past)
            pre.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(64):
                step(cfg, w, [11], past)
            dec.append((time.perf_counter() - t0) / 64)
    print(json.dumps({"impl": "torch", "threads": threads, "what": "prefill_128_tokens_per_s", "per_s": round(128 / sorted(pre)[2], 1)}))
    print(json.dumps({"impl": "torch", "threads": threads, "what": "decode_b1_tokens_per_s", "per_s": round(1 / sorted(dec)[2], 1)}))


if __name__ == "__main__":
    main()
