#!/usr/bin/env python3
"""gpt2_grad_oracle.py — adapter gradients by torch autograd, for ragd's training parity.

A plain-PyTorch GPT2LMHeadModel (gpt2_oracle.py's weights and layer norm) with PEFT's
adapters written out as PEFT computes them (shared/spec/FORMATS.md §6.3-6.5): LoRA
y = x·W + b + s·(x·Aᵀ)·Bᵀ on the targeted Conv1D modules; prompt tuning's virtual embeddings
in front of the input (positions 0..nvt-1); prefix tuning's past_key_values from the
[nvt, 2·L·C] matrix viewed as [nvt, 2L, heads, D]. Losses as TRL computes them (§7.1, §7.4):
SFT mean cross-entropy over scored tokens; DPO sigmoid (cDPO label smoothing), ipo and hinge
on summed completion log-probs, the reference being the base model with the adapter off.
Dropout as model.train() applies it (embd_pdrop on the embeddings, attn_pdrop on the
attention probabilities, resid_pdrop on each attention and MLP output, lora_dropout on the
LoRA input), with the masks ragd draws (model/gpt2_train.h): element i of site (layer, site)
is kept when the top 24 bits of splitmix64(key + i) / 2^24 >= p, key = mix(seed ^ mix(layer
<< 8 | site)), sites 0-3 the LoRA modules, 4 embd, 5 attn, 6 and 7 the two residuals.

stdin, one JSON object per line:
  {"dir": CHECKPOINT, "adapter": {"type": "LORA"|"PROMPT_TUNING"|"PREFIX_TUNING",
   "file": SAFETENSORS with PEFT key names, "r", "lora_alpha", "use_rslora",
   "targets": ["attn.c_attn", ...], "num_virtual_tokens",
   "projection": {"file": SAFETENSORS with embedding/W1/b1/W2/b2} (prefix_projection)},
   "ids": [[B x T]], "len": [B], "scored": [[B x T]],
   "dropout"?: {"lora", "embd", "attn", "resid", "seed"},
   "loss": {"type": "sft"} | {"type": "dpo", "loss_type": "sigmoid"|"ipo"|"hinge", "beta",
            "label_smoothing"},
   "out": PATH}
or {"adamw": {"theta": [n], "n_decay": k (the first k are decayed), "grads": [[n] per step],
   "lr", "beta1", "beta2", "eps", "weight_decay", "warmup", "total", "max_norm"}, "out": PATH}:
torch.optim.AdamW with two parameter groups, transformers' linear schedule through LambdaLR
and clip_grad_norm_; writes "theta" [steps, n] (after each step) and "grad_norm" [steps].
Writes PATH (safetensors): the gradient of every adapter tensor under its own key (and of
the projection's tensors under theirs), "loss" [1] and "logp" [B, T] (the log-prob of each
scored token, 0 elsewhere). stdout: one JSON line per request, {"loss": L}.
"""
import json
import math
import os
import sys

import numpy
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from gpt2_oracle import gelu_new, layer_norm, load  # noqa: E402

torch.set_num_threads(1)
LORA_KEY = "base_model.model.transformer.h.%d.%s.lora_%s.weight"
MODULES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
SITE_EMBD, SITE_ATTN, SITE_RESID_ATTN, SITE_RESID_MLP = 4, 5, 6, 7
M64 = (1 << 64) - 1


def mix64(x):
    """splitmix64's finalizer, on a Python int or a numpy uint64 array (wrapping)."""
    if isinstance(x, int):
        x = (x + 0x9E3779B97F4A7C15) & M64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
        return x ^ (x >> 31)
    with numpy.errstate(over="ignore"):
        x = x + numpy.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> numpy.uint64(30))) * numpy.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> numpy.uint64(27))) * numpy.uint64(0x94D049BB133111EB)
        return x ^ (x >> numpy.uint64(31))


def dropout(x, drop, kind, layer, site):
    """x ⊙ mask / (1-p) with ragd's mask of (layer, site) over x's elements in order."""
    p = drop.get(kind, 0.0) if drop else 0.0
    if p <= 0:
        return x
    key = mix64(drop["seed"] ^ mix64((layer << 8) | site))
    with numpy.errstate(over="ignore"):
        u = mix64(numpy.arange(x.numel(), dtype=numpy.uint64) + numpy.uint64(key))
    keep = (u >> numpy.uint64(40)).astype(numpy.float64) / 16777216.0 >= float(numpy.float32(p))
    mask = torch.from_numpy(keep.astype(numpy.float32)).view(x.shape)
    return x * mask * (1.0 / (1.0 - numpy.float32(p)))


def block_modules(p):
    return {"attn.c_attn": p + "attn.c_attn", "attn.c_proj": p + "attn.c_proj",
            "mlp.c_fc": p + "mlp.c_fc", "mlp.c_proj": p + "mlp.c_proj"}


def forward(cfg, w, ids, ad, drop=None):
    """Logits [B, Tp, V] for ids [B, T]; Tp = T + prompt-tuning virtual tokens; `drop` the
    training dropout (None: eval)."""
    C, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    D, eps = C // H, cfg.get("layer_norm_epsilon", 1e-5)
    B, T = ids.shape
    typ = ad["type"] if ad else None
    nvt = ad["num_virtual_tokens"] if typ in ("PROMPT_TUNING", "PREFIX_TUNING") else 0
    x = w["wte.weight"][ids]
    past = 0
    if typ == "PROMPT_TUNING":
        x = torch.cat([ad["prompt"].unsqueeze(0).expand(B, -1, -1), x], dim=1)
    if typ == "PREFIX_TUNING":
        past = nvt
        kv = ad["prompt"].unsqueeze(0).expand(B, -1, -1).reshape(B, nvt, 2 * L, H, D).permute(2, 0, 3, 1, 4)
    Tp = x.shape[1]
    x = dropout(x + w["wpe.weight"][past:past + Tp], drop, "embd", 0, SITE_EMBD)
    Tk = past + Tp
    # query i (absolute position past + i) sees key j when j <= past + i
    mask = torch.arange(Tk).unsqueeze(0) <= (past + torch.arange(Tp)).unsqueeze(1)

    def lin(h, l, mod):
        name = "h.%d.%s" % (l, mod)
        y = h @ w[name + ".weight"] + w[name + ".bias"]
        if typ == "LORA" and (l, mod) in ad["lora"]:
            A, Bm, s = ad["lora"][(l, mod)]
            y = y + s * ((dropout(h, drop, "lora", l, MODULES.index(mod)) @ A.T) @ Bm.T)
        return y

    for l in range(L):
        p = "h.%d." % l
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        q, k, v = lin(h, l, "attn.c_attn").split(C, dim=2)
        q, k, v = (t.view(B, Tp, H, D).transpose(1, 2) for t in (q, k, v))
        if past:
            k = torch.cat([kv[2 * l], k], dim=2)
            v = torch.cat([kv[2 * l + 1], v], dim=2)
        s = (q @ k.transpose(-1, -2)) / (D ** 0.5)
        s = torch.where(mask, s, torch.tensor(torch.finfo(torch.float32).min))
        a = (dropout(torch.softmax(s, -1), drop, "attn", l, SITE_ATTN) @ v).transpose(1, 2).reshape(B, Tp, C)
        x = x + dropout(lin(a, l, "attn.c_proj"), drop, "resid", l, SITE_RESID_ATTN)
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = x + dropout(lin(gelu_new(lin(h, l, "mlp.c_fc")), l, "mlp.c_proj"), drop, "resid", l, SITE_RESID_MLP)
    return layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], eps) @ w["lm_head.weight"].T, Tp - T


def token_logps(logits, nvp, ids, scored):
    """logp[b, t] = log p(ids[b, t] | ids[b, <t]) where scored, else 0."""
    B, T = ids.shape
    ls = torch.log_softmax(logits, -1)
    out = torch.zeros(B, T)
    for b in range(B):
        for t in range(1, T):
            if scored[b][t]:
                out[b, t] = ls[b, nvp + t - 1, ids[b, t]]
    return out


def make_adapter(cfg, spec):
    if spec is None:
        return None, []
    t = safetensors_io.load(spec["file"])
    ad = {"type": spec["type"], "num_virtual_tokens": spec.get("num_virtual_tokens", 0), "lora": {}}
    leaves = []
    if spec["type"] == "LORA":
        r, alpha = spec["r"], spec["lora_alpha"]
        s = alpha / math.sqrt(r) if spec.get("use_rslora") else alpha / r
        for l in range(cfg["n_layer"]):
            for mod in spec["targets"]:
                ka, kb = LORA_KEY % (l, mod, "A"), LORA_KEY % (l, mod, "B")
                if ka in t:
                    A = t[ka].float().requires_grad_(True)
                    Bm = t[kb].float().requires_grad_(True)
                    ad["lora"][(l, mod)] = (A, Bm, s)
                    leaves += [(ka, A), (kb, Bm)]
    elif spec.get("projection"):
        pt = safetensors_io.load(spec["projection"]["file"])
        ps = {k: v.float().requires_grad_(True) for k, v in pt.items()}
        leaves += sorted(ps.items())
        e = ps["embedding.weight"]
        ad["prompt"] = torch.tanh(e @ ps["transform.0.weight"].T + ps["transform.0.bias"]) @ ps["transform.2.weight"].T \
            + ps["transform.2.bias"]
    else:
        P = t["prompt_embeddings"].float().requires_grad_(True)
        ad["prompt"] = P
        leaves.append(("prompt_embeddings", P))
    return ad, leaves


def dpo_loss(lg, ref, n, spec):
    beta, eps = spec.get("beta", 0.1), spec.get("label_smoothing", 0.0)
    P = lg.shape[0] // 2
    pc, pr, rc, rr = lg[:P], lg[P:], ref[:P], ref[P:]
    typ = spec.get("loss_type", "sigmoid")
    if typ == "ipo":
        nc, nr = n[:P].clamp(min=1), n[P:].clamp(min=1)
        d = (pc - rc) / nc - (pr - rr) / nr
        losses = (d - 1 / (2 * beta)) ** 2
    else:
        d = (pc - rc) - (pr - rr)
        if typ == "hinge":
            losses = torch.relu(1 - beta * d)
        else:
            losses = -(1 - eps) * torch.nn.functional.logsigmoid(beta * d) - \
                eps * torch.nn.functional.logsigmoid(-beta * d)
    return losses.mean()


def adamw(req):
    a = req["adamw"]
    theta = torch.tensor(a["theta"], dtype=torch.float32)
    k = a["n_decay"]
    p1, p2 = torch.nn.Parameter(theta[:k].clone()), torch.nn.Parameter(theta[k:].clone())
    opt = torch.optim.AdamW([{"params": [p1], "weight_decay": a["weight_decay"]}, {"params": [p2], "weight_decay": 0.0}],
                            lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"])
    W, N = a["warmup"], a["total"]

    def linear(s):  # transformers get_linear_schedule_with_warmup
        if s < W:
            return s / max(1, W)
        return max(0.0, (N - s) / max(1, N - W))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear)
    thetas, norms = [], []
    for g in a["grads"]:
        g = torch.tensor(g, dtype=torch.float32)
        p1.grad, p2.grad = g[:k].clone(), g[k:].clone()
        norms.append(float(torch.nn.utils.clip_grad_norm_([p1, p2], a["max_norm"])))
        opt.step()
        sched.step()
        opt.zero_grad()
        thetas.append(torch.cat([p1.detach(), p2.detach()]))
    safetensors_io.save({"theta": torch.stack(thetas), "grad_norm": torch.tensor(norms)}, req["out"])
    print(json.dumps({"steps": len(thetas)}), flush=True)


def main():
    for line in sys.stdin:
        req = json.loads(line)
        if "adamw" in req:
            adamw(req)
            continue
        cfg, w = load(req["dir"])
        ids = torch.tensor(req["ids"], dtype=torch.long)
        scored = req["scored"]
        ad, leaves = make_adapter(cfg, req.get("adapter"))
        logits, nvp = forward(cfg, w, ids, ad, req.get("dropout"))
        lg = token_logps(logits, nvp, ids, scored)
        spec = req["loss"]
        mask = torch.tensor(scored, dtype=torch.float32)
        if spec["type"] == "sft":
            loss = -(lg * mask).sum() / mask.sum()
        else:
            with torch.no_grad():
                rlogits, rnvp = forward(cfg, w, ids, None)
                ref = token_logps(rlogits, rnvp, ids, scored).sum(1)
            loss = dpo_loss(lg.sum(1), ref, mask.sum(1), spec)
        loss.backward()
        out = {k: (v.grad if v.grad is not None else torch.zeros_like(v)).detach().contiguous() for k, v in leaves}
        out["loss"] = loss.detach().reshape(1)
        out["logp"] = lg.detach().contiguous()
        safetensors_io.save(out, req["out"])
        print(json.dumps({"loss": float(loss)}), flush=True)


if __name__ == "__main__":
    main()
