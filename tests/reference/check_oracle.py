#!/usr/bin/env python3
"""check_oracle.py — self-test of the PyTorch side of the BERT parity tests: safetensors_io.py,
make_bert_checkpoints.py and bert_oracle.py. Exits 0 when every check passes, 1 on any failure
(each printed as FAIL with the numbers), 77 when the shared vocabulary is missing.

usage: /usr/bin/python3 tests/reference/check_oracle.py [--keep DIR]
  (RAGD_SHARED locates testdata as for make_bert_checkpoints.py; --keep writes the generated
  checkpoints to DIR instead of a temp dir that is removed afterwards)

Checks:
 (a) safetensors: a golden byte string from FORMATS.md §1.3; bit-exact round trips of F32, F16,
     BF16, I64 (and F64, I32, U8, BOOL), rank 0, zero size, NaN/Inf/-0/subnormals; the layout
     (dtype-descending then name order, `__metadata__` first, 8-byte padding, no gaps); the
     reader rejecting corrupt files; shards + index; the generated checkpoints' names, dtypes,
     prefixes, position_ids buffer, configs, and determinism of --seed.
 (b) the oracle, driven through its stdin/stdout protocol, against an independent formulation:
     nn.Embedding + nn.LayerNorm + nn.TransformerEncoderLayer(norm_first=False,
     activation="gelu") (slow and fast paths), pooling by per-row loops, Normalize by hand, the
     cross-encoder head with the activation class named in config.json; within 1e-5.
 (c) padding invariance: each text alone and right-padded in a batch gives the same
     embedding / score within 1e-6.
 (d) the test material is not degenerate and float32 noise is far below the C side's 1e-4:
     the oracle in float64 vs float32, and distinct texts giving distinct embeddings.
"""
import argparse
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bert_oracle  # noqa: E402
import safetensors_io as sio  # noqa: E402

torch.set_num_threads(1)
FAILURES = []
EMBEDDERS = ["embedder-mean", "embedder-cls", "embedder-max", "embedder-meansqrt", "embedder-f16",
             "embedder-bf16", "embedder-sharded"]
RERANKERS = ["reranker", "reranker-identity"]
# Padding invariance in float32: normalized embeddings within 1e-6; unnormalized outputs (cls
# rows, logits; values up to ~4) within 2e-6, since a batch and a single row run matmuls of
# different shapes and round differently. The float64 check in (d) shows the invariance exact.
PAD_TOL_RAW = 2e-6


def check(ok, what, detail=""):
    print("%s %s%s" % ("ok  " if ok else "FAIL", what, (": " + detail) if detail else ""))
    if not ok:
        FAILURES.append(what)


def bits(t):
    return t.view(torch.int16) if t.element_size() == 2 else t.view(torch.int32) if t.dtype == torch.float32 \
        else t.view(torch.int64) if t.dtype == torch.float64 else t


# ---------------------------------------------------------------- (a) safetensors
def check_safetensors(tmp):
    golden = b'{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    golden += b" " * (-len(golden) % 8)
    golden = len(golden).to_bytes(8, "little") + golden + b"\x00\x00\x80\x3f\x00\x00\x00\x40"
    check(sio.serialize({"a": torch.tensor([1.0, 2.0])}) == golden, "safetensors: golden bytes of {a: F32 [1, 2]}")

    g = torch.Generator().manual_seed(7)
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-40, 3.4e38, -1.5])
    t = {"w.f32": torch.randn(3, 5, generator=g), "w.f16": (torch.randn(4, 3, generator=g) * 100).half(),
         "w.bf16": torch.randn(2, 7, generator=g).bfloat16(), "ids.i64": torch.tensor([[0, -1, 2 ** 62]]),
         "x.f64": torch.randn(3, generator=g, dtype=torch.float64), "x.i32": torch.tensor([-5, 7], dtype=torch.int32),
         "x.u8": torch.tensor([0, 255], dtype=torch.uint8), "x.bool": torch.tensor([True, False, True]),
         "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4), "special.f32": special,
         "special.f16": special.half(), "special.bf16": special.bfloat16()}
    path = os.path.join(tmp, "rt.safetensors")
    sio.save(t, path)
    back = sio.load(path)
    same = set(back) == set(t) and all(back[k].dtype == t[k].dtype and back[k].shape == t[k].shape
                                       and torch.equal(bits(back[k]), bits(t[k])) for k in t)
    check(same, "safetensors: bit-exact round trip of 13 tensors (F32 F16 BF16 I64 F64 I32 U8 BOOL, rank 0, empty)")

    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    text = data[8:8 + n].decode()
    header = json.loads(text)
    names = [k for k in header if k != "__metadata__"]
    want = sorted(names, key=lambda k: (-sio.ENUM.index(header[k]["dtype"]), k))
    offsets = [header[k]["data_offsets"] for k in names]
    check(n % 8 == 0 and text.startswith('{"__metadata__":{"format":"pt"},"') and text.rstrip(" ").endswith("}")
          and " " not in text.rstrip(" ") and names == want
          and all(offsets[i][1] == offsets[i + 1][0] for i in range(len(offsets) - 1)) and offsets[0][0] == 0
          and offsets[-1][1] == len(data) - 8 - n,
          "safetensors: layout (order %s)" % " ".join(header[k]["dtype"] for k in names))

    def corrupt(label, blob):
        p = os.path.join(tmp, "bad.safetensors")
        with open(p, "wb") as f:
            f.write(blob)
        try:
            sio.load(p)
            check(False, "safetensors: rejects " + label, "it was accepted")
        except sio.SafetensorsError as e:
            check(True, "safetensors: rejects %s (%s)" % (label, str(e)[:50]))

    def with_header(h, tail=b"\0" * 8):
        h = h.encode()
        return len(h).to_bytes(8, "little") + h + tail
    e = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'
    corrupt("a truncated file", data[:-1])
    corrupt("a trailing byte", data + b"\0")
    corrupt("N past the end", (len(data)).to_bytes(8, "little") + data[8:])
    corrupt("a 4-byte file", b"\0\0\0\0")
    corrupt("overlapping offsets", with_header('{%s,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' % e))
    corrupt("a size mismatch", with_header('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}'))
    corrupt("non-string metadata", with_header('{"__metadata__":{"n":1},%s}' % e))
    corrupt("duplicate names", with_header('{%s,%s}' % (e, e)))
    corrupt("a hole before the first tensor", with_header('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'))
    corrupt("an unknown dtype", with_header('{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}'))
    corrupt("invalid JSON", with_header('{"a":'))

    d = os.path.join(tmp, "sharded")
    os.mkdir(d)
    sio.save_sharded(t, d, shards=2)
    index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    back = sio.load_dir(d)
    files = sorted(set(index["weight_map"].values()))
    check(files == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
          and index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in t.values())
          and set(back) == set(t) and all(torch.equal(bits(back[k]), bits(t[k])) for k in t),
          "safetensors: 2 shards + index round trip (total_size %d)" % index["metadata"]["total_size"])


def check_checkpoints(ck, make):
    H, P = 32, 64
    emb = sio.load(os.path.join(ck, "embedder-mean", "model.safetensors"))
    rer = sio.load(os.path.join(ck, "reranker", "model.safetensors"))
    pid = emb.get("embeddings.position_ids")
    check(pid is not None and pid.dtype == torch.int64 and list(pid.shape) == [1, P]
          and not any(k.startswith("bert.") for k in emb) and "pooler.dense.weight" in emb
          and all(v.dtype == torch.float32 for k, v in emb.items() if k != "embeddings.position_ids"),
          "checkpoints: embedder-mean is headless F32 with pooler and I64 position_ids [1,%d]" % P)
    check(all(k.startswith("bert.") or k.startswith("classifier.") for k in rer)
          and list(rer["classifier.weight"].shape) == [1, H] and list(rer["classifier.bias"].shape) == [1]
          and "bert.embeddings.position_ids" in rer,
          "checkpoints: reranker has the bert. prefix and classifier [1,%d] + [1]" % H)
    for name, dt in (("embedder-f16", torch.float16), ("embedder-bf16", torch.bfloat16)):
        w = sio.load(os.path.join(ck, name, "model.safetensors"))
        check({v.dtype for k, v in w.items() if k != "embeddings.position_ids"} == {dt}
              and torch.equal(w["pooler.dense.weight"], emb["pooler.dense.weight"].to(dt)),
              "checkpoints: %s stores embedder-mean's weights as %s" % (name, dt))
    shard = sio.load_dir(os.path.join(ck, "embedder-sharded"))
    check(set(shard) == set(emb) and all(torch.equal(shard[k], emb[k]) for k in emb)
          and not os.path.exists(os.path.join(ck, "embedder-sharded", "model.safetensors")),
          "checkpoints: embedder-sharded = embedder-mean in 2 shards, no model.safetensors")
    cfg = json.load(open(os.path.join(ck, "embedder-mean", "config.json")))
    rcfg = json.load(open(os.path.join(ck, "reranker-identity", "config.json")))
    mods = json.load(open(os.path.join(ck, "embedder-mean", "modules.json")))
    check(cfg["architectures"] == ["BertModel"] and cfg["vocab_size"] == 30522 and cfg["hidden_act"] == "gelu"
          and cfg["type_vocab_size"] == 2 and cfg["layer_norm_eps"] == 1e-12
          and [m["path"] for m in mods] == ["", "1_Pooling", "2_Normalize"]
          and os.path.isdir(os.path.join(ck, "embedder-mean", "2_Normalize"))
          and not os.path.exists(os.path.join(ck, "embedder-cls", "2_Normalize"))
          and rcfg["architectures"] == ["BertForSequenceClassification"] and rcfg["id2label"] == {"0": "LABEL_0"}
          and rcfg["sentence_transformers"]["activation_fn"] == "torch.nn.modules.linear.Identity"
          and all(os.path.isfile(os.path.join(ck, n, f)) for n in EMBEDDERS + RERANKERS
                  for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json")),
          "checkpoints: config.json, modules.json, Normalize dirs, tokenizer files")
    again = os.path.join(ck, "again")
    make(again, "--only", "reranker")
    make(again, "--only", "embedder-mean", "--dtype", "BF16", "--sharded")
    same = open(os.path.join(again, "reranker", "model.safetensors"), "rb").read() == \
        open(os.path.join(ck, "reranker", "model.safetensors"), "rb").read()
    check(same, "checkpoints: --only reranker rewrites the full run's bytes (deterministic per --seed)")
    w = sio.load_dir(os.path.join(again, "embedder-mean"))
    check(torch.equal(w["pooler.dense.weight"], emb["pooler.dense.weight"].bfloat16())
          and os.path.exists(os.path.join(again, "embedder-mean", "model.safetensors.index.json")),
          "checkpoints: --dtype BF16 --sharded")
    return again


# ---------------------------------------------------------------- (b) independent formulation
class IndependentBert(torch.nn.Module):
    """BertModel assembled from torch.nn building blocks, weights copied from a checkpoint dir."""

    def __init__(self, d):
        super().__init__()
        cfg = json.load(open(os.path.join(d, "config.json")))
        raw = {(k[len("bert."):] if k.startswith("bert.") else k): v.to(torch.float32)
               for k, v in sio.load_dir(d).items() if not k.endswith("position_ids")}
        H, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.word = torch.nn.Embedding.from_pretrained(raw["embeddings.word_embeddings.weight"])
        self.pos = torch.nn.Embedding.from_pretrained(raw["embeddings.position_embeddings.weight"])
        self.ttype = torch.nn.Embedding.from_pretrained(raw["embeddings.token_type_embeddings.weight"])
        self.ln = torch.nn.LayerNorm(H, eps=eps)
        self.ln.load_state_dict({"weight": raw["embeddings.LayerNorm.weight"], "bias": raw["embeddings.LayerNorm.bias"]})
        self.layers = torch.nn.ModuleList()
        for i in range(cfg["num_hidden_layers"]):
            p = "encoder.layer.%d." % i
            layer = torch.nn.TransformerEncoderLayer(H, cfg["num_attention_heads"], cfg["intermediate_size"], dropout=0.0,
                                                     activation="gelu", layer_norm_eps=eps, batch_first=True,
                                                     norm_first=False)
            q, k, v = ("attention.self.%s" % n for n in ("query", "key", "value"))
            layer.load_state_dict({
                "self_attn.in_proj_weight": torch.cat([raw[p + x + ".weight"] for x in (q, k, v)]),
                "self_attn.in_proj_bias": torch.cat([raw[p + x + ".bias"] for x in (q, k, v)]),
                "self_attn.out_proj.weight": raw[p + "attention.output.dense.weight"],
                "self_attn.out_proj.bias": raw[p + "attention.output.dense.bias"],
                "linear1.weight": raw[p + "intermediate.dense.weight"], "linear1.bias": raw[p + "intermediate.dense.bias"],
                "linear2.weight": raw[p + "output.dense.weight"], "linear2.bias": raw[p + "output.dense.bias"],
                "norm1.weight": raw[p + "attention.output.LayerNorm.weight"],
                "norm1.bias": raw[p + "attention.output.LayerNorm.bias"],
                "norm2.weight": raw[p + "output.LayerNorm.weight"], "norm2.bias": raw[p + "output.LayerNorm.bias"]})
            self.layers.append(layer)
        self.pooler = torch.nn.Sequential(torch.nn.Linear(H, H), torch.nn.Tanh())
        self.pooler[0].load_state_dict({"weight": raw["pooler.dense.weight"], "bias": raw["pooler.dense.bias"]})
        self.head = None
        if "classifier.weight" in raw:
            self.head = torch.nn.Linear(H, 1)
            self.head.load_state_dict({"weight": raw["classifier.weight"], "bias": raw["classifier.bias"]})
            module, cls = cfg["sentence_transformers"]["activation_fn"].rsplit(".", 1)
            self.act = getattr(importlib.import_module(module), cls)()
        self.eval()

    def forward(self, ids, types, mask, fast=False):
        T = ids.shape[1]
        x = self.ln(self.word(ids) + self.pos(torch.arange(T))[None] + self.ttype(types))
        pad = mask == 0
        with torch.set_grad_enabled(not fast):  # grad enabled + trainable weights: the slow path
            for layer in self.layers:
                x = layer(x, src_key_padding_mask=pad)
        return x.detach()


def independent_pool(d, h, mask):
    pc = json.load(open(os.path.join(d, "1_Pooling", "config.json")))
    rows = []
    for i in range(h.shape[0]):
        real = h[i, :int(mask[i].sum())]
        parts = []
        if pc["pooling_mode_cls_token"]:
            parts.append(real[0])
        if pc["pooling_mode_max_tokens"]:
            parts.append(real.max(0).values)
        if pc["pooling_mode_mean_tokens"]:
            parts.append(real.sum(0) / len(real))
        if pc["pooling_mode_mean_sqrt_len_tokens"]:
            parts.append(real.sum(0) / math.sqrt(len(real)))
        rows.append(torch.cat(parts))
    e = torch.stack(rows)
    if os.path.isdir(os.path.join(d, "2_Normalize")):
        e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return e


def batch(rows):
    """Right-padded ids, type ids (all 0) and mask."""
    T = max(len(r) for r in rows)
    return [r + [0] * (T - len(r)) for r in rows], [[0] * T for _ in rows], [[1] * len(r) + [0] * (T - len(r)) for r in rows]


def run_oracle(requests):
    proc = subprocess.run([sys.executable, os.path.join(HERE, "bert_oracle.py")], capture_output=True, text=True,
                          input="".join(json.dumps(r) + "\n" for r in requests))
    lines = proc.stdout.splitlines()
    check(proc.returncode == 0 and len(lines) == len(requests),
          "oracle CLI: %d requests, %d answers, exit %d" % (len(requests), len(lines), proc.returncode),
          proc.stderr.strip()[-300:])
    return [json.loads(x) for x in lines]


def texts():
    """Token ids: the FORMATS.md §8 vectors, plus random ids up to 48 tokens."""
    g = torch.Generator().manual_seed(3)
    rows = [[101, 7592, 1010, 2026, 3899, 2003, 10140, 102], [101, 7592, 2088, 102],
            [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102],
            [101, 7592, 15743, 7668, 1781, 1755, 102], [101, 102]]
    for n in (3, 17, 30, 46):
        rows.append([101] + torch.randint(999, 30522, (n,), generator=g).tolist() + [102])
    return rows


def check_independent_and_padding(ck):
    rows = texts()
    ids, types, mask = batch(rows)
    pairs = [r + [4068, 2003, 2092, 2124, 1012, 102] for r in rows]  # "[CLS] a [SEP] berlin is well known . [SEP]"
    pids, _, pmask = batch(pairs)
    ptypes = [[int(len(rows[i]) <= t < len(pairs[i])) for t in range(len(pids[0]))] for i in range(len(pairs))]
    reqs = []
    for d in EMBEDDERS:
        reqs.append({"dir": os.path.join(ck, d), "kind": "embed", "ids": ids, "type_ids": types, "mask": mask})
        reqs += [{"dir": os.path.join(ck, d), "kind": "embed", "ids": [r], "type_ids": [[0] * len(r)],
                  "mask": [[1] * len(r)]} for r in rows]
    reqs.append({"dir": os.path.join(ck, "embedder-mean"), "kind": "hidden", "ids": ids, "type_ids": types, "mask": mask})
    for d in RERANKERS:
        reqs.append({"dir": os.path.join(ck, d), "kind": "rerank", "ids": pids, "type_ids": ptypes, "mask": pmask})
        reqs += [{"dir": os.path.join(ck, d), "kind": "rerank", "ids": [p], "type_ids": [pt[:len(p)]],
                  "mask": [[1] * len(p)]} for p, pt in zip(pairs, ptypes)]
    answers = iter(run_oracle(reqs))
    T = torch.tensor
    for d in EMBEDDERS:
        path = os.path.join(ck, d)
        got = T(next(answers)["embeddings"])
        ref = IndependentBert(path)
        h = ref(T(ids), T(types), T(mask))
        want = independent_pool(path, h, T(mask))
        diff = (got - want).abs().max().item()
        check(diff <= 1e-5, "(b) %s: oracle vs nn.TransformerEncoderLayer embeddings, max |diff| %.2e" % (d, diff))
        alone = T([next(answers)["embeddings"][0] for _ in rows])
        diff = (got - alone).abs().max().item()
        tol = 1e-6 if os.path.isdir(os.path.join(path, "2_Normalize")) else PAD_TOL_RAW
        check(diff <= tol, "(c) %s: each text alone vs padded in a batch of %d (float32), max |diff| %.2e"
              % (d, len(rows), diff))
    got = T(next(answers)["hidden"])
    ref = IndependentBert(os.path.join(ck, "embedder-mean"))
    slow, fast = ref(T(ids), T(types), T(mask)), ref(T(ids), T(types), T(mask), fast=True)
    real = T(mask).bool()
    d_slow, d_fast = (got - slow).abs().max().item(), (got[real] - fast[real]).abs().max().item()
    check(d_slow <= 1e-5 and d_fast <= 1e-5, "(b) last_hidden_state vs TransformerEncoderLayer slow path "
          "(all rows) %.2e, fast path (real rows) %.2e" % (d_slow, d_fast))
    for d in RERANKERS:
        ans = next(answers)
        logits, scores = T(ans["logits"]), T(ans["scores"])
        ref = IndependentBert(os.path.join(ck, d))
        want_logits = ref.head(ref.pooler(ref(T(pids), T(ptypes), T(pmask))[:, 0]))[:, 0].detach()
        want_scores = ref.act(want_logits)
        diff = max((logits - want_logits).abs().max().item(), (scores - want_scores).abs().max().item())
        check(diff <= 1e-5, "(b) %s (%s): logits and scores, max |diff| %.2e" % (d, type(ref.act).__name__, diff))
        alone = T([next(answers)["logits"][0] for _ in pairs])
        diff = (logits - alone).abs().max().item()
        check(diff <= PAD_TOL_RAW, "(c) %s: each pair alone vs padded in a batch (float32), max |diff| %.2e" % (d, diff))
    return ids, types, mask, pids, ptypes, pmask


def check_material(ck, ids, types, mask, pids, ptypes, pmask):
    T = torch.tensor
    worst = 0.0
    for d in EMBEDDERS + RERANKERS:
        cfg, w, modes, normalize, sigmoid = bert_oracle.load(os.path.join(ck, d))
        w64 = {k: v.double() for k, v in w.items()}
        a, b, c = (T(pids), T(ptypes), T(pmask)) if sigmoid is not None else (T(ids), T(types), T(mask))

        def out(ww, a, b, c):
            with torch.no_grad():
                h = bert_oracle.forward(cfg, ww, a, b, c)
                if sigmoid is not None:
                    return bert_oracle.rerank_logits(ww, h)
                e = bert_oracle.pool(modes, h, c)
                return bert_oracle.normalize_rows(e) if normalize else e
        o32, o64 = out(w, a, b, c), out(w64, a, b, c)
        worst = max(worst, (o32.double() - o64).abs().max().item())
        if sigmoid is None:
            e = bert_oracle.normalize_rows(o64)
            cos = (e @ e.T - torch.eye(len(e), dtype=e.dtype)).max().item()
            check(cos < 0.999, "(d) %s: distinct texts give distinct embeddings (max cosine %.3f)" % (d, cos))
        else:
            check(o64.std().item() > 0.1, "(d) %s: logits spread over the pairs (std %.3f)" % (d, o64.std().item()))
        pad = max((out(w64, *(x[i:i + 1, :int(c[i].sum())] for x in (a, b, c)))[0] - o64[i]).abs().max().item()
                  for i in range(len(a)))
        check(pad <= 1e-12, "(c) %s: alone vs padded in a batch in float64, max |diff| %.1e" % (d, pad))
    check(worst <= 1e-5, "(d) float32 oracle vs float64 oracle on every checkpoint, max |diff| %.2e" % worst)


def main():
    p = argparse.ArgumentParser(description="self-test of the BERT oracle (see the module docstring)")
    p.add_argument("--keep", help="generate checkpoints here and keep them")
    a = p.parse_args()
    shared = os.environ.get("RAGD_SHARED", "/work/shared")
    if not os.path.isfile(os.path.join(shared, "testdata", "tokenizers", "bert-base-uncased", "vocab.txt")):
        print("skipped: %s/testdata not found" % shared)
        return 77
    tmp = tempfile.mkdtemp(prefix="check-oracle-")
    ck = a.keep or os.path.join(tmp, "ck")

    def make(out, *args):
        subprocess.run([sys.executable, os.path.join(HERE, "make_bert_checkpoints.py"), out, *args], check=True)
    try:
        check_safetensors(tmp)
        make(ck)
        again = check_checkpoints(ck, make)
        shutil.rmtree(again)
        check_material(ck, *check_independent_and_padding(ck))
    finally:
        shutil.rmtree(tmp)
    if FAILURES:
        print("check_oracle: %d check(s) FAILED: %s" % (len(FAILURES), "; ".join(FAILURES)))
        return 1
    print("check_oracle: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
