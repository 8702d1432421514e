#!/usr/bin/env python3
"""bert_oracle.py — a plain-PyTorch BertModel (eval) per shared/spec/FORMATS.md §2.3, with
sentence-transformers pooling (§3.2) and the cross-encoder head (§2.5), reading the same
checkpoint directories as ragd. It does not tokenize: token ids come in.

stdin, one JSON object per line:
  {"dir": D, "kind": "embed"|"rerank"|"hidden", "ids": [[...]], "type_ids": [[...]], "mask": [[...]]}
stdout, one JSON line each: {"embeddings": [[...]]} | {"logits": [...], "scores": [...]} |
  {"hidden": [[[...]]]}
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
    if d in _cache:
        return _cache[d]
    cfg = json.load(open(os.path.join(d, "config.json")))
    files = glob.glob(os.path.join(d, "model*.safetensors"))
    w = {}
    for f in files:
        w.update(safetensors_io.load(f))
    w = {(k[5:] if k.startswith("bert.") else k): v for k, v in w.items()}
    w = {k: v.float() for k, v in w.items() if not k.endswith("position_ids")}
    pooling, normalize = ["mean"], False
    mpath = os.path.join(d, "modules.json")
    if os.path.exists(mpath):
        for m in json.load(open(mpath)):
            if m["type"].endswith("Pooling"):
                pc = json.load(open(os.path.join(d, m["path"], "config.json")))
                pooling = [n for n, k in (("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens"),
                                          ("mean", "pooling_mode_mean_tokens")) if pc.get(k, n == "mean")]
            if m["type"].endswith("Normalize"):
                normalize = True
    act = (cfg.get("sentence_transformers") or {}).get("activation_fn", "Sigmoid")
    _cache[d] = (cfg, w, pooling, normalize, "Identity" not in act)
    return _cache[d]


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def forward(cfg, w, ids, types, mask):
    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    D, eps = H // heads, cfg.get("layer_norm_eps", 1e-12)
    B, T = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types]
    x = x + w["embeddings.position_embeddings.weight"][:T]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    add = (1.0 - mask.float())[:, None, None, :] * torch.finfo(torch.float32).min
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i

        def lin(name, v):
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (lin("attention.self." + n, x).view(B, T, heads, D).transpose(1, 2) for n in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(D) + add
        ctx = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, H)
        a = layer_norm(lin("attention.output.dense", ctx) + x, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        h = torch.nn.functional.gelu(lin("intermediate.dense", a))
        x = layer_norm(lin("output.dense", h) + a, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def pool(modes, hidden, mask):
    m = mask.unsqueeze(-1).float()
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(hidden.masked_fill(m == 0, -1e9).max(1).values)
        else:
            out.append((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9))
    return torch.cat(out, -1)


def main():
    for line in sys.stdin:
        req = json.loads(line)
        cfg, w, modes, normalize, sigmoid = load(req["dir"])
        ids, types, mask = (torch.tensor(req[k]) for k in ("ids", "type_ids", "mask"))
        with torch.no_grad():
            hidden = forward(cfg, w, ids, types, mask)
            if req["kind"] == "hidden":
                out = {"hidden": hidden.tolist()}
            elif req["kind"] == "embed":
                e = pool(modes, hidden, mask)
                if normalize:
                    e = torch.nn.functional.normalize(e, p=2, dim=1)
                out = {"embeddings": e.tolist()}
            else:
                pooled = torch.tanh(hidden[:, 0] @ w["pooler.dense.weight"].T + w["pooler.dense.bias"])
                logits = (pooled @ w["classifier.weight"].T + w["classifier.bias"])[:, 0]
                out = {"logits": logits.tolist(), "scores": (torch.sigmoid(logits) if sigmoid else logits).tolist()}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
