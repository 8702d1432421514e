#!/usr/bin/env python3
"""make_gpt2_adapters.py — PEFT adapters for a GPT-2 checkpoint, built from PEFT's formulas
with random non-zero weights and saved in PEFT's on-disk layout (shared/spec/FORMATS.md §6):
adapter_config.json (indent 2, sorted keys, inference_mode true) and adapter_model.safetensors
(F32, metadata {"format": "pt"}), keys as save_pretrained writes them for GPT2LMHeadModel.

usage: /usr/bin/python3 make_gpt2_adapters.py BASE_DIR OUT_DIR [--seed N] [--only lora] [--r 8]
Writes OUT_DIR/{lora, lora-rs, prompt, prefix}:
  lora     LORA r, alpha 2r, target_modules ["c_attn", "c_proj", "c_fc"], fan_in_fan_out true
  lora-rs  LORA r=4, alpha 6, use_rslora, target_modules ["attn.c_attn", "mlp.c_proj"],
           layers_to_transform [last layer] (regex-free list matching, one layer only)
  prompt   PROMPT_TUNING, 5 virtual tokens, N(0,1) like PEFT's RANDOM init
  prefix   PREFIX_TUNING, 4 virtual tokens, prefix_projection true: the saved tensor is the
           projected output tanh(E·W1 + b1)·W2 + b2, as get_prompt_embedding_to_save writes it
With --only lora, only the first (for checkpoints too small for the others' positions).
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

KEY = "base_model.model.transformer.h.%d.%s.lora_%s.weight"


def dims(cfg):
    C = cfg["n_embd"]
    inner = cfg.get("n_inner") or 4 * C
    return {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, inner), "mlp.c_proj": (inner, C)}


def common(cfg, peft_type):
    return {"peft_type": peft_type, "task_type": "CAUSAL_LM", "base_model_name_or_path": cfg.get("_name", "gpt2"),
            "inference_mode": True, "revision": None, "modules_to_save": None}


def save(out, name, config, tensors):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True))
    safetensors_io.save({k: v.float().contiguous() for k, v in tensors.items()},
                        os.path.join(d, "adapter_model.safetensors"), {"format": "pt"})


def lora(cfg, g, out, name, r, alpha, targets, modules, layers=None, use_rslora=False):
    """`modules` are the full module names the target list selects (the oracle checks this
    independently with PEFT's matching rule)."""
    t = {}
    for i in range(cfg["n_layer"]):
        if layers is not None and i not in layers:
            continue
        for mod in modules:
            fin, fout = dims(cfg)[mod]
            bound = 1.0 / math.sqrt(fin)  # kaiming_uniform(a=sqrt(5)) for nn.Linear(fin, r)
            t[KEY % (i, mod, "A")] = (torch.rand(r, fin, generator=g) * 2 - 1) * bound
            t[KEY % (i, mod, "B")] = torch.randn(fout, r, generator=g) * 0.2  # trained: non-zero
    c = common(cfg, "LORA")
    c.update({"r": r, "lora_alpha": alpha, "lora_dropout": 0.05, "target_modules": targets, "fan_in_fan_out": True,
              "bias": "none", "use_rslora": use_rslora, "init_lora_weights": True,
              "layers_to_transform": layers, "layers_pattern": "h" if layers is not None else None,
              "rank_pattern": {}, "alpha_pattern": {}, "use_dora": False})
    save(out, name, c, t)


def prompt_common(cfg, peft_type, nvt):
    c = common(cfg, peft_type)
    c.update({"num_virtual_tokens": nvt, "token_dim": cfg["n_embd"], "num_transformer_submodules": 1,
              "num_attention_heads": cfg["n_head"], "num_layers": cfg["n_layer"]})
    return c


def prompt(cfg, g, out, nvt=5):
    c = prompt_common(cfg, "PROMPT_TUNING", nvt)
    c.update({"prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None, "tokenizer_name_or_path": None,
              "tokenizer_kwargs": None})
    save(out, "prompt", c, {"prompt_embeddings": torch.randn(nvt, cfg["n_embd"], generator=g)})


def prefix(cfg, g, out, nvt=4):
    C, L = cfg["n_embd"], cfg["n_layer"]
    hidden = 2 * C
    emb = torch.randn(nvt, C, generator=g)
    w1, b1 = torch.randn(C, hidden, generator=g) / math.sqrt(C), torch.randn(hidden, generator=g) * 0.1
    w2, b2 = torch.randn(hidden, 2 * L * C, generator=g) / math.sqrt(hidden), torch.randn(2 * L * C, generator=g) * 0.1
    c = prompt_common(cfg, "PREFIX_TUNING", nvt)
    c.update({"encoder_hidden_size": hidden, "prefix_projection": True})
    save(out, "prefix", c, {"prompt_embeddings": torch.tanh(emb @ w1 + b1) @ w2 + b2})


def make(base, out, seed=11, r=8, only=None):
    cfg = json.load(open(os.path.join(base, "config.json")))
    cfg["_name"] = os.path.basename(os.path.normpath(base))
    g = torch.Generator().manual_seed(seed)
    lora(cfg, g, out, "lora", r, 2 * r, ["c_attn", "c_proj", "c_fc"],
         ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"])
    if only == "lora":
        return
    last = cfg["n_layer"] - 1
    lora(cfg, g, out, "lora-rs", 4, 6, ["attn.c_attn", "mlp.c_proj"], ["attn.c_attn", "mlp.c_proj"], [last], True)
    prompt(cfg, g, out)
    prefix(cfg, g, out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--only", choices=["lora"])
    a = p.parse_args()
    make(a.base, a.out, a.seed, a.r, a.only)


if __name__ == "__main__":
    main()
