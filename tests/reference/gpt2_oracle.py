#!/usr/bin/env python3
"""gpt2_oracle.py — a plain-PyTorch GPT2LMHeadModel (eval) per shared/spec/FORMATS.md §5.4,
reading the same checkpoint directories as ragd (names with or without `transformer.`,
tied or untied head, buffers ignored, weights upcast to float32).

stdin, one JSON object per line: {"dir": D, "ids": [...], "greedy": N}
stdout, one JSON line each: {"logits": [[V floats] per position], "greedy": [N ids]}
(greedy continues the ids N tokens, recomputing the whole sequence each step.)
"""
import glob
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

torch.set_num_threads(1)
_cache = {}


def load(d):
    if d not in _cache:
        cfg = json.load(open(os.path.join(d, "config.json")))
        w = {}
        for f in glob.glob(os.path.join(d, "model*.safetensors")):
            w.update(safetensors_io.load(f))
        w = {(k[12:] if k.startswith("transformer.") else k): v.float() for k, v in w.items()
             if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        if cfg.get("tie_word_embeddings", True) or "lm_head.weight" not in w:
            w["lm_head.weight"] = w["wte.weight"]
        _cache[d] = (cfg, w)
    return _cache[d]


def layer_norm(x, g, b, eps):
    m = x.mean(-1, keepdim=True)
    v = ((x - m) ** 2).mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(v + eps) * g + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def forward(cfg, w, ids):
    C, H = cfg["n_embd"], cfg["n_head"]
    D, eps, T = C // H, cfg.get("layer_norm_epsilon", 1e-5), len(ids)
    x = w["wte.weight"][torch.tensor(ids)] + w["wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(cfg["n_layer"]):
        p = "h.%d." % i
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (t.view(T, H, D).transpose(0, 1) for t in qkv.split(C, dim=1))
        s = (q @ k.transpose(-1, -2)) / (D ** 0.5)
        s = torch.where(causal, s, torch.tensor(torch.finfo(torch.float32).min))
        a = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, C)
        x = x + a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        m = gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    return layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], eps) @ w["lm_head.weight"].T


def main():
    for line in sys.stdin:
        req = json.loads(line)
        cfg, w = load(req["dir"])
        with torch.no_grad():
            logits = forward(cfg, w, req["ids"])
            seq, greedy = list(req["ids"]), []
            for _ in range(req.get("greedy", 0)):
                nxt = int(forward(cfg, w, seq)[-1].argmax())
                greedy.append(nxt)
                seq.append(nxt)
        print(json.dumps({"logits": logits.tolist(), "greedy": greedy}), flush=True)


if __name__ == "__main__":
    main()
