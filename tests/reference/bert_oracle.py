#!/usr/bin/env python3
"""bert_oracle.py — a plain-PyTorch BertModel (eval) per shared/spec/FORMATS.md §2.3, with
sentence-transformers pooling and Normalize (§3.2) and the cross-encoder head (§2.5), reading
the same checkpoint directories as ragd (make_bert_checkpoints.py, or any HF BERT dir). It does
not tokenize: token ids come in. Weights are upcast to float32; one torch thread.

usage: /usr/bin/python3 bert_oracle.py < requests.jsonl > responses.jsonl

stdin, one JSON object per line (batch right-padded; type_ids default all 0, mask all 1):
  {"dir": D, "kind": "embed"|"rerank"|"hidden", "ids": [[...]], "type_ids": [[...]], "mask": [[...]]}
stdout, exactly one JSON line per request, in order:
  embed   {"embeddings": [[float]*width]*B}   the sentence-transformers pipeline after the
                                               Transformer module: Pooling, then Normalize if
                                               modules.json lists it
  rerank  {"logits": [float]*B, "scores": [float]*B}
                                               logit = classifier(tanh(pooler(h[:,0]))); score is
                                               sigmoid(logit) or the logit, per config.json's
                                               activation (num_labels must be 1)
  hidden  {"hidden": [[[float]*H]*T]*B}        last_hidden_state, padded rows included
  a bad request or checkpoint: {"error": "message"}; the oracle keeps going and exits 1 at end.
Floats are the float32 results written as Python floats (repr), so they round-trip exactly.
Each dir is loaded once and cached.

Library use: load(dir) -> (cfg, w, modes, normalize, sigmoid); forward(cfg, w, ids, types,
mask); pool(modes, hidden, mask); normalize_rows(x); rerank_logits(w, hidden).
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

torch.set_num_threads(1)
_cache = {}
MODES = [("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens"),
         ("mean", "pooling_mode_mean_tokens"), ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens"),
         ("weightedmean", "pooling_mode_weightedmean_tokens"), ("lasttoken", "pooling_mode_lasttoken")]
ST = "sentence_transformers.models."
ACTS = {"torch.nn.modules.activation.Sigmoid": True, "torch.nn.Sigmoid": True,
        "torch.nn.modules.linear.Identity": False, "torch.nn.Identity": False}
GELUS = {
    "gelu": torch.nn.functional.gelu,
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3)))),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": torch.relu,
}


class OracleError(Exception):
    pass


def _json(path):
    with open(path) as f:
        return json.load(f)


def _rename(k):
    k = k[5:] if k.startswith("bert.") else k
    if k.endswith(".gamma"):
        k = k[:-6] + ".weight"
    elif k.endswith(".beta"):
        k = k[:-5] + ".bias"
    return k


def _expected_shapes(cfg):
    H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    s = {"embeddings.word_embeddings.weight": [cfg["vocab_size"], H],
         "embeddings.position_embeddings.weight": [cfg["max_position_embeddings"], H],
         "embeddings.token_type_embeddings.weight": [cfg.get("type_vocab_size", 2), H],
         "embeddings.LayerNorm.weight": [H], "embeddings.LayerNorm.bias": [H],
         "pooler.dense.weight": [H, H], "pooler.dense.bias": [H]}
    for i in range(L):
        p = "encoder.layer.%d." % i
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            s[p + n + ".weight"], s[p + n + ".bias"] = [H, H], [H]
        s[p + "intermediate.dense.weight"], s[p + "intermediate.dense.bias"] = [I, H], [I]
        s[p + "output.dense.weight"], s[p + "output.dense.bias"] = [H, I], [H]
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            s[p + n + ".weight"], s[p + n + ".bias"] = [H], [H]
    return s


def _activation(cfg):
    """True for sigmoid, False for identity (§2.5)."""
    st = cfg.get("sentence_transformers") or {}
    name = st.get("activation_fn", cfg.get("sbert_ce_default_activation_function"))
    if name is None:
        return True  # num_labels == 1 (checked by the caller): CrossEncoder's default Sigmoid
    if name not in ACTS:
        raise OracleError("unsupported cross-encoder activation %r" % name)
    return ACTS[name]


def _modules(d, cfg):
    """Pooling modes and Normalize from modules.json; [] and False without it."""
    path = os.path.join(d, "modules.json")
    if not os.path.exists(path):
        return [], False
    modes, normalize = None, False
    for m in _json(path):
        kind = m["type"]
        if kind == ST + "Transformer":
            continue
        if kind == ST + "Pooling":
            pc = _json(os.path.join(d, m["path"], "config.json"))
            modes = [mode for mode, key in MODES if pc.get(key, mode == "mean")]
            if pc.get("word_embedding_dimension", cfg["hidden_size"]) != cfg["hidden_size"]:
                raise OracleError("1_Pooling word_embedding_dimension differs from hidden_size")
        elif kind == ST + "Normalize":
            if modes is None:
                raise OracleError("Normalize before Pooling is not supported")
            normalize = True
        else:
            raise OracleError("unsupported sentence-transformers module %r" % kind)
    if not modes:
        raise OracleError("modules.json has no Pooling module (or no pooling mode is on)")
    return modes, normalize


def load(d):
    """Returns (cfg, w, modes, normalize, sigmoid); w maps names without `bert.` to float32."""
    if d in _cache:
        return _cache[d]
    cfg = _json(os.path.join(d, "config.json"))
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise OracleError("position_embedding_type %r is not supported" % cfg["position_embedding_type"])
    if cfg.get("hidden_act", "gelu") not in GELUS:
        raise OracleError("hidden_act %r is not supported" % cfg["hidden_act"])
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise OracleError("hidden_size is not a multiple of num_attention_heads")
    raw = safetensors_io.load_dir(d)
    w = {}
    for k, v in raw.items():
        k = _rename(k)
        if k == "embeddings.position_ids":
            continue
        if k in w:
            raise OracleError("tensor %s appears twice (with and without `bert.`)" % k)
        w[k] = v.float() if v.is_floating_point() else v
    for k, shape in _expected_shapes(cfg).items():
        if k not in w:
            raise OracleError("%s: missing tensor %s" % (d, k))
        if list(w[k].shape) != shape or not w[k].is_floating_point():
            raise OracleError("%s: %s has shape %s %s, expected %s" % (d, k, list(w[k].shape), w[k].dtype, shape))
    sigmoid = None
    if "classifier.weight" in w:
        num_labels = len(cfg["id2label"]) if "id2label" in cfg else cfg.get("num_labels", 2)
        if num_labels != 1 or list(w["classifier.weight"].shape) != [1, cfg["hidden_size"]]:
            raise OracleError("the oracle scores num_labels == 1 cross-encoders only")
        sigmoid = _activation(cfg)
    modes, normalize = _modules(d, cfg)
    _cache[d] = (cfg, w, modes, normalize, sigmoid)
    return _cache[d]


def layer_norm(x, w, b, eps):
    """torch's LayerNorm (§2.3 step 2): biased variance, eps inside the sqrt."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def forward(cfg, w, ids, types, mask):
    """last_hidden_state [B,T,H] of BertModel in eval mode (§2.3)."""
    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    D, eps = H // heads, cfg.get("layer_norm_eps", 1e-12)
    act = GELUS[cfg.get("hidden_act", "gelu")]
    B, T = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types]
    x = x + w["embeddings.position_embeddings.weight"][:T]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    dt = x.dtype
    add = (1.0 - mask.to(dt))[:, None, None, :] * torch.finfo(dt).min  # keys only, broadcast
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i

        def lin(name, v):
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (lin("attention.self." + n, x).view(B, T, heads, D).transpose(1, 2) for n in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(D) + add
        ctx = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, H)
        a = layer_norm(lin("attention.output.dense", ctx) + x, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        h = act(lin("intermediate.dense", a))
        x = layer_norm(lin("output.dense", h) + a, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def pool(modes, hidden, mask):
    """sentence-transformers Pooling (§3.2 step 4), modes concatenated in MODES order."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    count = m.sum(1).clamp(min=1e-9)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(hidden.masked_fill(m == 0, -1e9).max(1).values)
        elif mode == "mean":
            out.append((hidden * m).sum(1) / count)
        elif mode == "mean_sqrt_len":
            out.append((hidden * m).sum(1) / torch.sqrt(count))
        elif mode == "weightedmean":
            wt = m * torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None]
            out.append((hidden * wt).sum(1) / wt.sum(1).clamp(min=1e-9))
        elif mode == "lasttoken":
            last = (mask.shape[1] - 1 - mask.flip(1).argmax(1)).long()
            out.append(hidden[torch.arange(hidden.shape[0]), last])
        else:
            raise OracleError("unknown pooling mode %r" % mode)
    return torch.cat(out, -1)


def normalize_rows(x):
    """F.normalize(p=2, dim=1): x / max(||x||, 1e-12)."""
    return torch.nn.functional.normalize(x, p=2, dim=1)


def rerank_logits(w, hidden):
    pooled = torch.tanh(hidden[:, 0] @ w["pooler.dense.weight"].T + w["pooler.dense.bias"])
    return (pooled @ w["classifier.weight"].T + w["classifier.bias"])[:, 0]


def _batch(req, cfg):
    ids = req.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(r, list) and r for r in ids):
        raise OracleError("ids must be a non-empty list of non-empty lists")
    B, T = len(ids), len(ids[0])
    out = []
    for key, default in (("ids", None), ("type_ids", 0), ("mask", 1)):
        rows = req.get(key, [[default] * T for _ in range(B)])
        if len(rows) != B or any(len(r) != T or not all(isinstance(v, int) for v in r) for r in rows):
            raise OracleError("%s must be %d rows of %d integers" % (key, B, T))
        out.append(torch.tensor(rows, dtype=torch.long))
    ids, types, mask = out
    if T > cfg["max_position_embeddings"]:
        raise OracleError("T=%d exceeds max_position_embeddings %d" % (T, cfg["max_position_embeddings"]))
    if ids.min() < 0 or ids.max() >= cfg["vocab_size"]:
        raise OracleError("token id out of range")
    if types.min() < 0 or types.max() >= cfg.get("type_vocab_size", 2):
        raise OracleError("token type id out of range")
    if not ((mask == 0) | (mask == 1)).all() or (mask[:, 0] != 1).any():
        raise OracleError("mask must be 0/1 with position 0 real")
    if (mask[:, 1:] > mask[:, :-1]).any():
        raise OracleError("mask must be right-padded (no 1 after a 0)")
    return ids, types, mask


def answer(req):
    cfg, w, modes, normalize, sigmoid = load(req["dir"])
    ids, types, mask = _batch(req, cfg)
    kind = req.get("kind")
    with torch.no_grad():
        hidden = forward(cfg, w, ids, types, mask)
        if kind == "hidden":
            return {"hidden": hidden.tolist()}
        if kind == "embed":
            if not modes:
                raise OracleError("%s has no modules.json: not a sentence-transformers embedder" % req["dir"])
            e = pool(modes, hidden, mask)
            return {"embeddings": (normalize_rows(e) if normalize else e).tolist()}
        if kind == "rerank":
            if sigmoid is None:
                raise OracleError("%s has no classifier: not a cross-encoder" % req["dir"])
            logits = rerank_logits(w, hidden)
            return {"logits": logits.tolist(), "scores": (torch.sigmoid(logits) if sigmoid else logits).tolist()}
        raise OracleError("kind must be embed, rerank or hidden, not %r" % kind)


def main():
    failed = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            out = answer(json.loads(line))
        except (OracleError, safetensors_io.SafetensorsError, OSError, KeyError, ValueError, TypeError) as e:
            failed += 1
            msg = "request %d: %s: %s" % (n, type(e).__name__, e)
            print("bert_oracle: " + msg, file=sys.stderr)
            out = {"error": msg}
        print(json.dumps(out), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
