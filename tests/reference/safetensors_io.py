"""safetensors_io.py — read and write safetensors files with only struct, json and torch
(the `safetensors` package is not available here). The writer lays files out as the
reference writer does (shared/spec/FORMATS.md §1.3)."""
import json
import struct

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
          "F64": torch.float64, "I32": torch.int32}
NAMES = {v: k for k, v in DTYPES.items()}


def load(path):
    """Returns {name: tensor} with every tensor in its stored dtype."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def save(tensors, path):
    """Writes {name: tensor}: sorted by name, compact header with __metadata__ first,
    padded with spaces to a multiple of 8, data concatenated without gaps."""
    header = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def save_sharded(tensors, directory, shards=2):
    """Splits tensors over `shards` files plus model.safetensors.index.json."""
    names = sorted(tensors)
    weight_map, total = {}, 0
    for k in range(shards):
        part = {n: tensors[n] for n in names[k::shards]}
        fname = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        save(part, "%s/%s" % (directory, fname))
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    with open("%s/model.safetensors.index.json" % directory, "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
