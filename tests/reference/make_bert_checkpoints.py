#!/usr/bin/env python3
"""make_bert_checkpoints.py — small random BERT checkpoints in the exact Hugging Face layouts,
with the real bert-base-uncased vocabulary, for the parity tests (never committed).

usage: /usr/bin/python3 make_bert_checkpoints.py OUTDIR [--seed N] [--hidden 32 --layers 2
       --heads 4 --intermediate 64 --max-pos 64] [--only embedder-mean|reranker]

Writes into OUTDIR:
  embedder-mean, embedder-cls, embedder-max   sentence-transformers directories (no `bert.`
                                              prefix, legacy position_ids buffer included)
  embedder-f16, embedder-bf16                 mean pooling, weights stored as F16 / BF16
  embedder-sharded                            mean pooling, two shards + index
  reranker, reranker-identity                 BertForSequenceClassification (num_labels 1,
                                              `bert.` prefix) with Sigmoid / Identity activation
Random weights are larger than the initializer's so numerical differences show.
"""
import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

VOCAB = 30522


def bert_tensors(a, g, prefix=""):
    H, I, P = a.hidden, a.intermediate, a.max_pos
    t = {}

    def mat(*shape):
        return torch.randn(*shape, generator=g) * 0.5

    def ln(name):
        t[name + ".weight"] = 1.0 + torch.randn(H, generator=g) * 0.2
        t[name + ".bias"] = torch.randn(H, generator=g) * 0.2

    t["embeddings.word_embeddings.weight"] = mat(VOCAB, H)
    t["embeddings.position_embeddings.weight"] = mat(P, H)
    t["embeddings.token_type_embeddings.weight"] = mat(2, H)
    ln("embeddings.LayerNorm")
    for i in range(a.layers):
        p = "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            t[p + "attention.self.%s.weight" % n] = mat(H, H) / H ** 0.5 * 2
            t[p + "attention.self.%s.bias" % n] = mat(H) * 0.2
        t[p + "attention.output.dense.weight"] = mat(H, H) / H ** 0.5 * 2
        t[p + "attention.output.dense.bias"] = mat(H) * 0.2
        ln(p + "attention.output.LayerNorm")
        t[p + "intermediate.dense.weight"] = mat(I, H) / H ** 0.5 * 2
        t[p + "intermediate.dense.bias"] = mat(I) * 0.2
        t[p + "output.dense.weight"] = mat(H, I) / I ** 0.5 * 2
        t[p + "output.dense.bias"] = mat(H) * 0.2
        ln(p + "output.LayerNorm")
    t["pooler.dense.weight"] = mat(H, H) / H ** 0.5 * 2
    t["pooler.dense.bias"] = mat(H) * 0.2
    t = {prefix + k: v for k, v in t.items()}
    t[prefix + "embeddings.position_ids"] = torch.arange(P, dtype=torch.int64).reshape(1, P)
    return t


def config(a, extra):
    c = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": VOCAB, "hidden_size": a.hidden,
         "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "intermediate_size": a.intermediate,
         "hidden_act": "gelu", "max_position_embeddings": a.max_pos, "type_vocab_size": 2,
         "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute"}
    c.update(extra)
    return c


def copy_tokenizer(dst):
    src = os.path.join(os.environ.get("RAGD_SHARED", "/work/shared"), "testdata", "tokenizers", "bert-base-uncased")
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(src, f), dst)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def embedder(a, g, out, name, pooling, normalize, dtype=torch.float32, sharded=False):
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    t = bert_tensors(a, g)
    t = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in t.items()}
    if sharded:
        safetensors_io.save_sharded(t, d)
    else:
        safetensors_io.save(t, os.path.join(d, "model.safetensors"))
    write_json(os.path.join(d, "config.json"), config(a, {}))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        os.makedirs(os.path.join(d, "2_Normalize"), exist_ok=True)
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    write_json(os.path.join(d, "modules.json"), modules)
    write_json(os.path.join(d, "1_Pooling", "config.json"), {
        "word_embedding_dimension": a.hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False})
    write_json(os.path.join(d, "sentence_bert_config.json"), {"max_seq_length": min(48, a.max_pos) if a.max_pos <= 64 else 256,
                                                              "do_lower_case": False})
    write_json(os.path.join(d, "config_sentence_transformers.json"), {"prompts": {}, "similarity_fn_name": None})
    copy_tokenizer(d)


def reranker(a, g, out, name, activation):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    t = bert_tensors(a, g, prefix="bert.")
    t["classifier.weight"] = torch.randn(1, a.hidden, generator=g)
    t["classifier.bias"] = torch.randn(1, generator=g)
    safetensors_io.save(t, os.path.join(d, "model.safetensors"))
    write_json(os.path.join(d, "config.json"), config(a, {
        "architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
        "sentence_transformers": {"activation_fn": activation}}))
    copy_tokenizer(d)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=64)
    p.add_argument("--max-pos", dest="max_pos", type=int, default=64)
    p.add_argument("--only", choices=["embedder-mean", "reranker"], help="write just this variant (benchmarks)")
    a = p.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    if a.only == "embedder-mean":
        return embedder(a, g, a.out, "embedder-mean", "mean", True)
    if a.only == "reranker":
        return reranker(a, g, a.out, "reranker", "torch.nn.modules.activation.Sigmoid")
    embedder(a, g, a.out, "embedder-mean", "mean", True)
    embedder(a, g, a.out, "embedder-cls", "cls", False)
    embedder(a, g, a.out, "embedder-max", "max", True)
    embedder(a, g, a.out, "embedder-f16", "mean", True, torch.float16)
    embedder(a, g, a.out, "embedder-bf16", "mean", True, torch.bfloat16)
    embedder(a, g, a.out, "embedder-sharded", "mean", True, sharded=True)
    reranker(a, g, a.out, "reranker", "torch.nn.modules.activation.Sigmoid")
    reranker(a, g, a.out, "reranker-identity", "torch.nn.modules.linear.Identity")


if __name__ == "__main__":
    main()
