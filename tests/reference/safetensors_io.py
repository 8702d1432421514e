"""safetensors_io.py — read and write safetensors files with only struct, json and torch
(the `safetensors` package is not available here).

Library use (import from tests/reference):
  load(path) -> {name: tensor}            every tensor in its stored dtype; validates the file
                                          as the Rust reader does (shared/spec/FORMATS.md §1.4)
                                          and raises SafetensorsError with the reason
  load_header(path) -> (header, n)        the parsed JSON header and its length N
  load_dir(directory) -> {name: tensor}   model.safetensors, or the shards named by
                                          model.safetensors.index.json (§1.5)
  save(tensors, path, metadata=None)      lays the file out as the reference writer does (§1.3):
                                          tensors sorted by dtype descending (enum order), then
                                          name; compact header, `__metadata__` {"format":"pt"}
                                          first; spaces to a multiple of 8; no gaps
  save_sharded(tensors, directory, shards=2)
                                          model-0000k-of-0000K.safetensors, filled in order like
                                          huggingface_hub, plus model.safetensors.index.json
Written dtypes: F32, F16, BF16, I64 (and F64, I32, I16, I8, U8, BOOL, which torch also has).
"""
import json
import os
import struct

import torch

# Every dtype of the safetensors enum in its declaration order (the writer's sort key) with
# its size in bits; the torch dtype where torch has one.
ENUM = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
        "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
        "F64", "I64", "U64"]
BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
        "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
        "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64}
DTYPES = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
          "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "F32": torch.float32,
          "F64": torch.float64, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100_000_000


class SafetensorsError(ValueError):
    pass


def _parse_header(data):
    """Checks steps 1-4 and 7 of §1.4; returns (header, n)."""
    if len(data) < 8:
        raise SafetensorsError("HeaderTooSmall: file of %d bytes" % len(data))
    n = struct.unpack("<Q", data[:8])[0]
    if n > MAX_HEADER:
        raise SafetensorsError("HeaderTooLarge: N=%d" % n)
    if 8 + n > len(data):
        raise SafetensorsError("InvalidHeaderLength: N=%d, file %d bytes" % (n, len(data)))

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise SafetensorsError("duplicate key in header")
        return dict(pairs)
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError("InvalidHeaderDeserialization: %s" % e) from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise SafetensorsError("__metadata__ must map strings to strings")
    return header, n


def _check_entries(header, buffer_len):
    """Checks steps 5-6 of §1.4; returns [(name, info)] in data order."""
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError("%s: entry needs exactly dtype, shape, data_offsets" % name)
        if info["dtype"] not in BITS:
            raise SafetensorsError("%s: unknown dtype %r" % (name, info["dtype"]))
        shape, offs = info["shape"], info["data_offsets"]
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise SafetensorsError("%s: bad shape %r" % (name, shape))
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and o >= 0 for o in offs)):
            raise SafetensorsError("%s: bad data_offsets %r" % (name, offs))
        entries.append((name, info))
    entries.sort(key=lambda e: tuple(e[1]["data_offsets"]))
    end = 0
    for name, info in entries:
        b, e = info["data_offsets"]
        if b != end:
            raise SafetensorsError("InvalidOffset: %s begins at %d, expected %d" % (name, b, end))
        if e < b:
            raise SafetensorsError("InvalidOffset: %s ends before it begins" % name)
        bits = BITS[info["dtype"]]
        for d in info["shape"]:
            bits *= d
        if bits % 8:
            raise SafetensorsError("MisalignedSlice: %s" % name)
        if bits // 8 != e - b:
            raise SafetensorsError("TensorInvalidInfo: %s has %d bytes for shape %s %s"
                                   % (name, e - b, info["shape"], info["dtype"]))
        end = e
    if end != buffer_len:
        raise SafetensorsError("MetadataIncompleteBuffer: tensors cover %d of %d bytes" % (end, buffer_len))
    return entries


def load_header(path):
    with open(path, "rb") as f:
        data = f.read()
    header, n = _parse_header(data)
    _check_entries(header, len(data) - 8 - n)
    return header, n


def load(path):
    """Returns {name: tensor} with every tensor in its stored dtype (owned copies)."""
    with open(path, "rb") as f:
        data = f.read()
    header, n = _parse_header(data)
    base = 8 + n
    out = {}
    for name, info in _check_entries(header, len(data) - base):
        if info["dtype"] not in DTYPES:
            raise SafetensorsError("%s: dtype %s is not readable here" % (name, info["dtype"]))
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def load_dir(directory):
    """Loads a model directory: model.safetensors, or the index and its shards. Every shard must
    hold exactly the tensors the weight_map assigns to it."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if not os.path.exists(index):
        return load(os.path.join(directory, "model.safetensors"))
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
        part = load(os.path.join(directory, shard))
        want = {k for k, v in weight_map.items() if v == shard}
        if set(part) != want:
            raise SafetensorsError("%s disagrees with the index on %s" % (shard, sorted(set(part) ^ want)))
        out.update(part)
    return out


def _to_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def serialize(tensors, metadata=None):
    """Returns the file's bytes. metadata defaults to {"format": "pt"} (§1.3: always write it)."""
    for name, t in tensors.items():
        if t.dtype not in NAMES:
            raise SafetensorsError("%s: cannot write dtype %s" % (name, t.dtype))
    order = sorted(tensors, key=lambda k: (-ENUM.index(NAMES[tensors[k].dtype]), k))
    header = {"__metadata__": dict(metadata if metadata is not None else {"format": "pt"})}
    blobs, offset = [], 0
    for name in order:
        t = tensors[name]
        raw = _to_bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def save(tensors, path, metadata=None):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def save_sharded(tensors, directory, shards=2):
    """Splits tensors over `shards` files (name order, each shard filled to about total/shards
    bytes, as huggingface_hub fills shards up to a size limit) plus model.safetensors.index.json
    (json.dumps(indent=2, sort_keys=True) + newline, as transformers writes it)."""
    names = sorted(tensors)
    sizes = {n: tensors[n].numel() * tensors[n].element_size() for n in names}
    total = sum(sizes.values())
    limit = -(-total // shards)
    parts, acc = [[]], 0
    for n in names:
        if parts[-1] and acc + sizes[n] > limit and len(parts) < shards:
            parts.append([])
            acc = 0
        parts[-1].append(n)
        acc += sizes[n]
    if len(parts) != shards:
        raise SafetensorsError("cannot split %d tensors into %d shards" % (len(names), shards))
    weight_map = {}
    for k, part in enumerate(parts):
        fname = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        save({n: tensors[n] for n in part}, os.path.join(directory, fname))
        weight_map.update({n: fname for n in part})
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n")
