#!/usr/bin/env python3
"""gpt2_oracle.py — a plain-PyTorch GPT2LMHeadModel (eval) per shared/spec/FORMATS.md §5.4,
reading the same checkpoint directories as ragd (names with or without `transformer.`,
tied or untied head, buffers ignored, weights upcast to float32).

With "adapter": a PEFT directory (shared/spec/FORMATS.md §6), the model runs as PEFT's
PeftModelForCausalLM would, written from PEFT's formulas and independent of ragd's reading:
LORA adds scaling·(x·Aᵀ)·Bᵀ to each module whose tensors are present (and checks that they are
exactly the modules target_modules selects by PEFT's matching rule); PROMPT_TUNING puts the
virtual token embeddings in front of the inputs (positions 0..nvt+T-1, logits of the real
tokens returned); PREFIX_TUNING views the saved [nvt, 2·L·C] tensor as [nvt, 2L, heads, D],
permutes it to [2L, heads, nvt, D] and uses 2l/2l+1 as layer l's past key/value, real tokens
at positions nvt.. as GPT-2 numbers them after a past.

stdin, one JSON object per line: {"dir": D, "ids": [...], "greedy": N, "adapter"?: A}
stdout, one JSON line each: {"logits": [[V floats] per position], "greedy": [N ids],
"greedy_logprobs": [N floats]}
(greedy continues the ids N tokens, recomputing the whole sequence each step; each token's
logprob is its log_softmax over the vocabulary at that step.)
"""
import re
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


def target_selects(targets, full):
    """PEFT's check_target_module_exists: a regex string must fullmatch; a list entry must
    equal the name or be its dotted suffix."""
    if isinstance(targets, str):
        return re.fullmatch(targets, full) is not None
    return any(full == t or full.endswith("." + t) for t in targets)


def load_adapter(d, cfg):
    if d in _cache:
        return _cache[d]
    acfg = json.load(open(os.path.join(d, "adapter_config.json")))
    t = safetensors_io.load(os.path.join(d, "adapter_model.safetensors"))
    t = {k: v.float() for k, v in t.items()}
    a = {"type": acfg["peft_type"]}
    if a["type"] == "LORA":
        r, alpha = acfg["r"], acfg["lora_alpha"]
        scaling = alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r
        layers = acfg.get("layers_to_transform")
        layers = [layers] if isinstance(layers, int) else layers
        a["lora"] = {}
        for i in range(cfg["n_layer"]):
            for mod in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                key = "base_model.model.transformer.h.%d.%s.lora_%%s.weight" % (i, mod)
                selected = target_selects(acfg.get("target_modules") or ["c_attn"], "transformer.h.%d.%s" % (i, mod))
                selected = selected and (layers is None or i in layers)
                if selected != (key % "A" in t) or selected != (key % "B" in t):
                    raise SystemExit("oracle: %s: tensors of %s disagree with target_modules" % (d, key))
                if selected:
                    a["lora"][(i, mod)] = (t.pop(key % "A"), t.pop(key % "B"), scaling)
        if t:
            raise SystemExit("oracle: %s: unexpected tensors %s" % (d, sorted(t)))
    else:
        a["prompt"] = t["prompt_embeddings"]
        a["nvt"] = acfg["num_virtual_tokens"]
    _cache[d] = a
    return a


def layer_norm(x, g, b, eps):
    m = x.mean(-1, keepdim=True)
    v = ((x - m) ** 2).mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(v + eps) * g + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def forward(cfg, w, ids, adapter=None):
    C, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    D, eps, T = C // H, cfg.get("layer_norm_epsilon", 1e-5), len(ids)
    kind = adapter["type"] if adapter else None
    lora = adapter["lora"] if kind == "LORA" else {}
    x = w["wte.weight"][torch.tensor(ids)]
    past, nvt = None, adapter["nvt"] if kind in ("PROMPT_TUNING", "PREFIX_TUNING") else 0
    if kind == "PROMPT_TUNING":  # inputs_embeds = cat(P, wte[ids]); positions 0..nvt+T-1
        x = torch.cat([adapter["prompt"], x])
        x = x + w["wpe.weight"][:nvt + T]
    else:  # after a prefix of nvt past positions, GPT-2 numbers the real tokens from nvt
        x = x + w["wpe.weight"][nvt:nvt + T]
    if kind == "PREFIX_TUNING":  # get_prompt: view [nvt, 2L, H, D], permute to [2L, H, nvt, D]
        past = adapter["prompt"].view(nvt, 2 * L, H, D).permute(1, 2, 0, 3)
    Tq = x.shape[0]
    Tk = Tq + (nvt if past is not None else 0)
    # Query i sees every prefix key and the real keys up to itself.
    see = torch.tril(torch.ones(Tq, Tk, dtype=torch.bool), diagonal=Tk - Tq)

    def linear(i, mod, inp):
        y = inp @ w["h.%d.%s.weight" % (i, mod)] + w["h.%d.%s.bias" % (i, mod)]
        if (i, mod) in lora:
            A, B, s = lora[(i, mod)]
            y = y + (inp @ A.T) @ B.T * s
        return y

    for i in range(L):
        p = "h.%d." % i
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = linear(i, "attn.c_attn", h)
        q, k, v = (t.view(Tq, H, D).transpose(0, 1) for t in qkv.split(C, dim=1))
        if past is not None:
            k, v = torch.cat([past[2 * i], k], 1), torch.cat([past[2 * i + 1], v], 1)
        s = (q @ k.transpose(-1, -2)) / (D ** 0.5)
        s = torch.where(see, s, torch.tensor(torch.finfo(torch.float32).min))
        a = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(Tq, C)
        x = x + linear(i, "attn.c_proj", a)
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = x + linear(i, "mlp.c_proj", gelu_new(linear(i, "mlp.c_fc", h)))
    logits = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], eps) @ w["lm_head.weight"].T
    return logits[nvt:] if kind == "PROMPT_TUNING" else logits


def main():
    for line in sys.stdin:
        req = json.loads(line)
        cfg, w = load(req["dir"])
        ad = load_adapter(req["adapter"], cfg) if req.get("adapter") else None
        with torch.no_grad():
            logits = forward(cfg, w, req["ids"], ad)
            seq, greedy, logprobs = list(req["ids"]), [], []
            for _ in range(req.get("greedy", 0)):
                last = forward(cfg, w, seq, ad)[-1]
                nxt = int(last.argmax())
                greedy.append(nxt)
                logprobs.append(float(torch.log_softmax(last, dim=-1)[nxt]))
                seq.append(nxt)
        print(json.dumps({"logits": logits.tolist(), "greedy": greedy, "greedy_logprobs": logprobs}), flush=True)


if __name__ == "__main__":
    main()
