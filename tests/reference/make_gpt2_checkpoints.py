#!/usr/bin/env python3
"""make_gpt2_checkpoints.py — small random GPT-2 checkpoints in the Hugging Face layout
(GPT2LMHeadModel: Conv1D [in, out] weights), with the real gpt2 tokenizer files.

usage: /usr/bin/python3 make_gpt2_checkpoints.py OUTDIR [--seed N] [--124m]
Writes: gpt2-tied (names without `transformer.`, lm_head tied to wte, legacy attn.bias
buffers included), gpt2-untied (with `transformer.` and an lm_head.weight), gpt2-f16 (tied,
stored as F16), and PEFT adapters of every type for gpt2-untied in adapters-untied/ and a
LoRA for the real gpt2-names-makemore checkpoint in adapters-makemore/ (make_gpt2_adapters.py). Shape: vocab 50257, 48 positions, n_embd 32, 2 layers, 4 heads. With --124m,
only gpt2-124m: the real GPT-2 shape (1024 positions, n_embd 768, 12 layers, 12 heads), for
benchmarks.
"""
import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_gpt2_adapters  # noqa: E402
import safetensors_io  # noqa: E402

V = 50257
P, C, L, NH = 48, 32, 2, 4


def tensors(g, prefix, untied):
    t = {}

    def mat(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    t["wte.weight"] = mat(V, C)
    t["wpe.weight"] = mat(P, C, scale=0.1)
    for i in range(L):
        p = "h.%d." % i
        t[p + "ln_1.weight"] = 1 + mat(C, scale=0.1)
        t[p + "ln_1.bias"] = mat(C, scale=0.1)
        t[p + "attn.c_attn.weight"] = mat(C, 3 * C)
        t[p + "attn.c_attn.bias"] = mat(3 * C, scale=0.1)
        t[p + "attn.c_proj.weight"] = mat(C, C)
        t[p + "attn.c_proj.bias"] = mat(C, scale=0.1)
        t[p + "ln_2.weight"] = 1 + mat(C, scale=0.1)
        t[p + "ln_2.bias"] = mat(C, scale=0.1)
        t[p + "mlp.c_fc.weight"] = mat(C, 4 * C)
        t[p + "mlp.c_fc.bias"] = mat(4 * C, scale=0.1)
        t[p + "mlp.c_proj.weight"] = mat(4 * C, C, scale=0.15)
        t[p + "mlp.c_proj.bias"] = mat(C, scale=0.1)
        t[p + "attn.bias"] = torch.tril(torch.ones(P, P)).reshape(1, 1, P, P)
    t["ln_f.weight"] = 1 + mat(C, scale=0.1)
    t["ln_f.bias"] = mat(C, scale=0.1)
    t = {prefix + k: v for k, v in t.items()}
    if untied:
        t["lm_head.weight"] = mat(V, C)
    return t


def write(out, name, g, prefix, untied, dtype=torch.float32):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    t = {k: v.to(dtype) for k, v in tensors(g, prefix, untied).items()}
    safetensors_io.save(t, os.path.join(d, "model.safetensors"))
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": P,
           "n_embd": C, "n_layer": L, "n_head": NH, "n_inner": None, "activation_function": "gelu_new",
           "layer_norm_epsilon": 1e-5, "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": not untied}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    src = os.path.join(os.environ.get("RAGD_SHARED", "/work/shared"), "testdata", "tokenizers", "gpt2")
    for fn in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(src, fn), d)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--124m", dest="full", action="store_true")
    a = p.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    if a.full:
        global P, C, L, NH
        P, C, L, NH = 1024, 768, 12, 12
        return write(a.out, "gpt2-124m", g, "", False)
    write(a.out, "gpt2-tied", g, "", False)
    write(a.out, "gpt2-untied", g, "transformer.", True)
    write(a.out, "gpt2-f16", g, "", False, torch.float16)
    shared = os.environ.get("RAGD_SHARED", "/work/shared")
    make_gpt2_adapters.make(os.path.join(a.out, "gpt2-untied"), os.path.join(a.out, "adapters-untied"))
    make_gpt2_adapters.make(os.path.join(shared, "testdata", "checkpoints", "gpt2-names-makemore"),
                            os.path.join(a.out, "adapters-makemore"), r=4, only="lora")


if __name__ == "__main__":
    main()
