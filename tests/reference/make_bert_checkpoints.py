#!/usr/bin/env python3
"""make_bert_checkpoints.py — small RANDOM BERT checkpoints in the exact Hugging Face layouts,
with the real bert-base-uncased vocabulary, for the parity tests (write them to a temp or build
dir; never commit them).

usage: /usr/bin/python3 make_bert_checkpoints.py OUTDIR [--dtype F32|F16|BF16] [--seed N]
       [--hidden 32 --layers 2 --heads 4 --intermediate 64 --max-pos 64] [--sharded]
       [--only NAME]

Writes into OUTDIR (each dir also gets vocab.txt, tokenizer.json, tokenizer_config.json from
$RAGD_SHARED/testdata/tokenizers/bert-base-uncased, RAGD_SHARED defaulting to /work/shared):
  embedder-mean       sentence-transformers dir: Transformer, Pooling (mean), Normalize
  embedder-cls        cls pooling, no Normalize; layer_norm_eps 1e-3 (so an encoder that
                      hard-codes 1e-12 instead of reading config.json fails parity)
  embedder-max        max pooling, Normalize
  embedder-meansqrt   mean_sqrt_len pooling, Normalize
  reranker            BertForSequenceClassification, num_labels 1, `bert.` prefix,
                      activation_fn torch.nn.modules.activation.Sigmoid
  reranker-identity   the same layout with torch.nn.modules.linear.Identity
  embedder-f16, embedder-bf16, embedder-sharded
                      embedder-mean's weights stored as F16 / BF16 / in 2 shards + index
Embedder tensors have no prefix; every checkpoint includes the pooler and the legacy
`embeddings.position_ids` I64 [1,P] buffer (a loader must ignore it).
--dtype stores the float tensors of the first six dirs in that dtype; --sharded splits their
model.safetensors into model-00001-of-00002.safetensors, model-00002-of-00002.safetensors and
model.safetensors.index.json. --only writes one dir (benchmarks); its weights are the same as
in a full run (each dir draws from its own generator seeded by --seed and the dir's name).

Weights are far from BERT's init (std 0.02) so numerical mistakes show: matrices have std
0.5·sqrt(32/fan_in) (0.5 at the default shape, the same activation statistics at larger
shapes), embedding tables std 0.5, LayerNorm weights 1 ± 0.2, biases std 0.2. Two exceptions:
query/key use 0.25·sqrt(32/H), so attention logits have std ~4 as in a trained model (at 0.5
they reach std ~10 and float32's own rounding noise on hidden states rises to ~1e-5, at the
scale of the tolerances), and the pooler uses 0.2·sqrt(32/H) so tanh does not saturate.
"""
import argparse
import json
import os
import shutil
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

VOCAB = 30522
QK_GAIN = 0.25  # query/key: attention logits with std ~4, like a trained model (see the docstring)
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
TORCH_DTYPE_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
SIGMOID = "torch.nn.modules.activation.Sigmoid"
IDENTITY = "torch.nn.modules.linear.Identity"
# name -> (weights family, kind, pooling, normalize, extra config, stored dtype, sharded)
# dtype/sharded None means "as the command line says".
VARIANTS = {
    "embedder-mean": ("embedder-mean", "embed", "mean", True, {}, None, None),
    "embedder-cls": ("embedder-cls", "embed", "cls", False, {"layer_norm_eps": 1e-3}, None, None),
    "embedder-max": ("embedder-max", "embed", "max", True, {}, None, None),
    "embedder-meansqrt": ("embedder-meansqrt", "embed", "mean_sqrt_len", True, {}, None, None),
    "reranker": ("reranker", "rerank", SIGMOID, None, {}, None, None),
    "reranker-identity": ("reranker-identity", "rerank", IDENTITY, None, {}, None, None),
    "embedder-f16": ("embedder-mean", "embed", "mean", True, {}, "F16", None),
    "embedder-bf16": ("embedder-mean", "embed", "mean", True, {}, "BF16", None),
    "embedder-sharded": ("embedder-mean", "embed", "mean", True, {}, None, True),
}
POOLING_KEYS = [("cls", "pooling_mode_cls_token"), ("mean", "pooling_mode_mean_tokens"),
                ("max", "pooling_mode_max_tokens"), ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens"),
                ("weightedmean", "pooling_mode_weightedmean_tokens"), ("lasttoken", "pooling_mode_lasttoken")]


def bert_tensors(a, g):
    """BertModel tensors without prefix, float32, in the shapes of FORMATS.md §2.2."""
    H, I, P = a.hidden, a.intermediate, a.max_pos
    t = {}

    def randn(*shape, std):
        return torch.randn(*shape, generator=g) * std

    def linear(name, out_f, in_f, gain=0.5):
        t[name + ".weight"] = randn(out_f, in_f, std=gain * (32.0 / in_f) ** 0.5)
        t[name + ".bias"] = randn(out_f, std=0.2)

    def layer_norm(name):
        t[name + ".weight"] = 1.0 + randn(H, std=0.2)
        t[name + ".bias"] = randn(H, std=0.2)

    t["embeddings.word_embeddings.weight"] = randn(VOCAB, H, std=0.5)
    t["embeddings.position_embeddings.weight"] = randn(P, H, std=0.5)
    t["embeddings.token_type_embeddings.weight"] = randn(2, H, std=0.5)
    layer_norm("embeddings.LayerNorm")
    for i in range(a.layers):
        p = "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            linear(p + "attention.self." + n, H, H, gain=QK_GAIN if n != "value" else 0.5)
        linear(p + "attention.output.dense", H, H)
        layer_norm(p + "attention.output.LayerNorm")
        linear(p + "intermediate.dense", I, H)
        linear(p + "output.dense", H, I)
        layer_norm(p + "output.LayerNorm")
    linear("pooler.dense", H, H, gain=0.2)
    t["embeddings.position_ids"] = torch.arange(P, dtype=torch.int64).reshape(1, P)
    return t


def config(a, dtype, extra):
    c = {"architectures": ["BertModel"], "model_type": "bert", "attention_probs_dropout_prob": 0.1,
         "classifier_dropout": None, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": a.hidden,
         "initializer_range": 0.02, "intermediate_size": a.intermediate, "layer_norm_eps": 1e-12,
         "max_position_embeddings": a.max_pos, "num_attention_heads": a.heads, "num_hidden_layers": a.layers,
         "pad_token_id": 0, "position_embedding_type": "absolute", "torch_dtype": TORCH_DTYPE_NAME[dtype],
         "transformers_version": "4.41.2", "type_vocab_size": 2, "use_cache": True, "vocab_size": VOCAB}
    c.update(extra)
    return c


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def copy_tokenizer(dst):
    src = os.path.join(os.environ.get("RAGD_SHARED", "/work/shared"), "testdata", "tokenizers", "bert-base-uncased")
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(dst, f)):
            os.remove(os.path.join(dst, f))
        shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))


def write_weights(t, d, dtype, sharded):
    t = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v) for k, v in t.items()}
    for stale in os.listdir(d):
        if stale.startswith("model") and (stale.endswith(".safetensors") or stale.endswith(".index.json")):
            os.remove(os.path.join(d, stale))
    if sharded:
        safetensors_io.save_sharded(t, d, shards=2)
    else:
        safetensors_io.save(t, os.path.join(d, "model.safetensors"))


def write_embedder(a, d, t, pooling, normalize, dtype, sharded, extra):
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    write_weights(t, d, dtype, sharded)
    write_json(os.path.join(d, "config.json"), config(a, dtype, extra))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        os.makedirs(os.path.join(d, "2_Normalize"), exist_ok=True)
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    write_json(os.path.join(d, "modules.json"), modules)
    pool_cfg = {"word_embedding_dimension": a.hidden}
    pool_cfg.update({key: mode == pooling for mode, key in POOLING_KEYS})
    pool_cfg["include_prompt"] = True
    write_json(os.path.join(d, "1_Pooling", "config.json"), pool_cfg)
    write_json(os.path.join(d, "sentence_bert_config.json"),
               {"max_seq_length": 48 if a.max_pos <= 64 else 256, "do_lower_case": False})
    write_json(os.path.join(d, "config_sentence_transformers.json"), {
        "__version__": {"sentence_transformers": "3.0.1", "transformers": "4.41.2", "pytorch": "2.3.0"},
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": None})


def write_reranker(a, d, t, g, activation, dtype, sharded, extra):
    os.makedirs(d, exist_ok=True)
    t = {"bert." + k: v for k, v in t.items()}
    t["classifier.weight"] = torch.randn(1, a.hidden, generator=g) * 0.5 * (32.0 / a.hidden) ** 0.5
    t["classifier.bias"] = torch.randn(1, generator=g) * 0.5
    write_weights(t, d, dtype, sharded)
    write_json(os.path.join(d, "config.json"), config(a, dtype, dict(extra, **{
        "architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0}, "sentence_transformers": {"activation_fn": activation, "version": "4.0.1"}})))


def write_variant(a, name):
    family, kind, how, normalize, extra, dtype, sharded = VARIANTS[name]
    seed = (a.seed * 1000003 + zlib.crc32(family.encode())) % (1 << 63)
    g = torch.Generator().manual_seed(seed)
    t = bert_tensors(a, g)
    dtype = dtype or a.dtype
    sharded = a.sharded if sharded is None else sharded
    d = os.path.join(a.out, name)
    os.makedirs(d, exist_ok=True)
    if kind == "embed":
        write_embedder(a, d, t, how, normalize, dtype, sharded, extra)
    else:
        write_reranker(a, d, t, g, how, dtype, sharded, extra)
    copy_tokenizer(d)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="F32")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=64)
    p.add_argument("--max-pos", dest="max_pos", type=int, default=64)
    p.add_argument("--sharded", action="store_true")
    p.add_argument("--only", choices=sorted(VARIANTS), help="write just this dir")
    a = p.parse_args()
    if a.hidden % a.heads:
        p.error("--hidden must be a multiple of --heads")
    src = os.path.join(os.environ.get("RAGD_SHARED", "/work/shared"), "testdata", "tokenizers", "bert-base-uncased")
    if not os.path.isfile(os.path.join(src, "vocab.txt")):
        sys.exit("make_bert_checkpoints: %s/vocab.txt not found (set RAGD_SHARED)" % src)
    os.makedirs(a.out, exist_ok=True)
    for name in ([a.only] if a.only else VARIANTS):
        write_variant(a, name)


if __name__ == "__main__":
    main()
