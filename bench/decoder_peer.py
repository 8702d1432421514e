#!/usr/bin/env python3
"""decoder_peer.py — the PyTorch peer of bench/decoder_bench.c: tests/reference/gpt2_oracle.py's
plain-torch GPT-2 math with a KV cache (keys and values kept per layer), on the same checkpoint:
prefill tokens/s for a 128-token prompt, decode tokens/s at batch 1. With ADAPTERS_DIR: decode
tokens/s at batch 1 and batch 4 (one [4, 1] step for four sequences), without and with the
PEFT LoRA in ADAPTERS_DIR/lora applied unmerged (y += s·(x·Aᵀ)·Bᵀ, as PEFT's lora.Linear does),
each after a 128-token prefill. torch threads = THREADS.

usage: /usr/bin/python3 bench/decoder_peer.py GPT2_DIR THREADS [ADAPTERS_DIR]"""
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gpt2_oracle  # noqa: E402


def step(cfg, w, ids, past, lora=None):
    """ids: [B][T] token ids after the cached positions; returns the last position's logits [B, V]."""
    C, H = cfg["n_embd"], cfg["n_head"]
    D, eps = C // H, cfg["layer_norm_epsilon"]
    B, T = len(ids), len(ids[0])
    p0 = past[0][0].shape[2] if past[0] else 0
    x = w["wte.weight"][torch.tensor(ids)] + w["wpe.weight"][p0:p0 + T]
    lora = lora or {}

    def linear(i, mod, inp):
        y = inp @ w["h.%d.%s.weight" % (i, mod)] + w["h.%d.%s.bias" % (i, mod)]
        if (i, mod) in lora:
            A, Bm, s = lora[(i, mod)]
            y = y + (inp @ A.T) @ Bm.T * s
        return y

    for i in range(cfg["n_layer"]):
        p = "h.%d." % i
        h = gpt2_oracle.layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in linear(i, "attn.c_attn", h).split(C, -1))
        if past[i]:
            k, v = torch.cat([past[i][0], k], 2), torch.cat([past[i][1], v], 2)
        past[i] = (k, v)
        s = q @ k.transpose(-1, -2) / math.sqrt(D)
        if T > 1:
            s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), torch.finfo(torch.float32).min)
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(i, "attn.c_proj", a)
        h = gpt2_oracle.layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = x + linear(i, "mlp.c_proj", gpt2_oracle.gelu_new(linear(i, "mlp.c_fc", h)))
    return gpt2_oracle.layer_norm(x[:, -1], w["ln_f.weight"], w["ln_f.bias"], eps) @ w["lm_head.weight"].T


def decode_rate(cfg, w, prompt, batch, lora, runs=3, steps=16):
    past = [None] * cfg["n_layer"]
    step(cfg, w, [prompt] * batch, past, lora)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(cfg, w, [[11]] * batch, past, lora)
        times.append(time.perf_counter() - t0)
    return batch * steps / sorted(times)[runs // 2]


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
            step(cfg, w, [prompt], past)
            pre.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(64):
                step(cfg, w, [[11]], past)
            dec.append((time.perf_counter() - t0) / 64)
        print(json.dumps({"impl": "torch", "threads": threads, "what": "prefill_128_tokens_per_s", "per_s": round(128 / sorted(pre)[2], 1)}))
        print(json.dumps({"impl": "torch", "threads": threads, "what": "decode_b1_tokens_per_s", "per_s": round(1 / sorted(dec)[2], 1)}))
        if len(sys.argv) > 3:
            lora = gpt2_oracle.load_adapter(os.path.join(sys.argv[3], "lora"), cfg)["lora"]
            for batch in (1, 4):
                for name, ad in (("base", None), ("lora", lora)):
                    print(json.dumps({"impl": "torch", "threads": threads, "what": "decode_b%d_%s_tokens_per_s" % (batch, name),
                                      "per_s": round(decode_rate(cfg, w, prompt, batch, ad), 1)}))


if __name__ == "__main__":
    main()
