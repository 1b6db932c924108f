#!/usr/bin/python3
"""Writes broken copies of test/models/tiny, one model directory per case, under OUTDIR.

Usage: /usr/bin/python3 test/make_bad_inputs.py OUTDIR

Each case is a realistic corruption made by parsing the real model.safetensors
(u64 little-endian header length N, N bytes of JSON, then the data buffer) and
writing it back with one thing wrong. Standard library only. test/test_bad_input.sh
runs ./train_asan on every directory and checks the error message it prints.
"""
import json
import os
import shutil
import struct
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "tiny")


def read_safetensors(path):
    """-> (header dict in file order, data buffer bytes)"""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def header_bytes(header):
    """JSON text of a header dict, space-padded to a multiple of 8 like real writers."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8)


def write_raw(path, header_text, data, length=None):
    """Writes a safetensors file; length overrides the u64 header length."""
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_text) if length is None else length))
        f.write(header_text)
        f.write(data)


def write_safetensors(path, header, data):
    write_raw(path, header_bytes(header), data)


def tensors(header):
    """The tensor entries (without __metadata__), in data order."""
    items = [(k, v) for k, v in header.items() if k != "__metadata__"]
    return sorted(items, key=lambda kv: kv[1]["data_offsets"][0])


def remove_tensor(header, data, name):
    """Drops a tensor from header and data, moving the tensors after it down."""
    begin, end = header[name]["data_offsets"]
    del header[name]
    for _, v in tensors(header):
        if v["data_offsets"][0] >= end:
            v["data_offsets"] = [o - (end - begin) for o in v["data_offsets"]]
    return data[:begin] + data[end:]


def main():
    out = sys.argv[1]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    st_path = os.path.join(SRC, "model.safetensors")
    config = json.load(open(os.path.join(SRC, "config.json")))
    blob = open(st_path, "rb").read()

    def case(name, weights=True, cfg=None):
        """Writes OUTDIR/name (config.json, plus the good model.safetensors if weights);
        returns (dir, a fresh parse of the good header, its data, the weights path)."""
        d = os.path.join(out, name)
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config if cfg is None else cfg, f, indent=2)
        if weights:
            shutil.copyfile(st_path, os.path.join(d, "model.safetensors"))
        header, data = read_safetensors(st_path)
        return d, header, data, os.path.join(d, "model.safetensors")

    # positive control: the unmodified model
    case("good")

    # --- safetensors framing
    d, h, data, p = case("truncated")  # download cut off in the middle of the data
    with open(p, "wb") as f:
        f.write(blob[:len(blob) // 2])

    d, h, data, p = case("too_short")  # a 5-byte file: not even a header length
    with open(p, "wb") as f:
        f.write(blob[:5])

    d, h, data, p = case("trailing_bytes")  # junk appended after the data buffer
    write_safetensors(p, h, data + b"\0" * 100)

    d, h, data, p = case("header_len_past_eof")  # header length beyond the end of the file
    write_raw(p, header_bytes(h), data, length=len(blob) + 1000)

    d, h, data, p = case("header_len_huge")  # header length over the 100 MB limit
    write_raw(p, header_bytes(h), data, length=200_000_000)

    d, h, data, p = case("header_not_json")  # JSON cut short; length kept, rest space-padded
    text = header_bytes(h)
    write_raw(p, text[:-40] + b" " * 40, data)

    # a NUL byte and an invalid UTF-8 byte in a tensor name (JSON forbids raw control
    # characters in strings); a C reader must not silently read it as a shorter name
    d, h, data, p = case("header_nul_in_name")
    text = header_bytes(h).replace(b"model.norm.weight", b"model.norm.weight\x00\xff", 1)
    write_raw(p, text + b" " * (-len(text) % 8), data)

    # --- data_offsets
    d, h, data, p = case("offsets_out_of_range")  # lm_head ends past the data buffer
    h["lm_head.weight"]["data_offsets"][1] += 4000
    h["lm_head.weight"]["data_offsets"][0] += 4000
    write_safetensors(p, h, data)

    # k_proj moved 16 bytes earlier: it shares bytes with q_proj, sizes stay right
    # and the last tensor still ends at the end of the buffer
    d, h, data, p = case("offsets_overlap")
    h["model.layers.0.self_attn.k_proj.weight"]["data_offsets"] = [
        o - 16 for o in h["model.layers.0.self_attn.k_proj.weight"]["data_offsets"]]
    write_safetensors(p, h, data)

    d, h, data, p = case("offsets_hole")  # 64 unused bytes before model.norm.weight
    begin = h["model.norm.weight"]["data_offsets"][0]
    for _, v in tensors(h):
        if v["data_offsets"][0] >= begin:
            v["data_offsets"] = [o + 64 for o in v["data_offsets"]]
    write_safetensors(p, h, data[:begin] + b"\0" * 64 + data[begin:])

    # --- tensor entries
    d, h, data, p = case("unknown_dtype")
    h["lm_head.weight"]["dtype"] = "F8_E9"
    write_safetensors(p, h, data)

    d, h, data, p = case("size_mismatch")  # shape says 47 floats, offsets hold 48
    h["model.norm.weight"]["shape"] = [47]
    write_safetensors(p, h, data)

    # a stray tensor whose shape product is 2^64 elements: 0 once it wraps around in
    # 64-bit arithmetic, which would match its empty byte range
    d, h, data, p = case("shape_overflow")
    h["model.layers.0.self_attn.rotary_emb.inv_freq"] = {
        "dtype": "F32", "shape": [2 ** 31, 2 ** 31, 4], "data_offsets": [len(data), len(data)]}
    write_safetensors(p, h, data)

    d, h, data, p = case("wrong_shape")  # q_proj stored transposed: [48, 64] instead of [64, 48]
    h["model.layers.0.self_attn.q_proj.weight"]["shape"] = [48, 64]
    write_safetensors(p, h, data)

    d, h, data, p = case("missing_tensor")
    data = remove_tensor(h, data, "model.layers.1.mlp.up_proj.weight")
    write_safetensors(p, h, data)

    d, h, data, p = case("duplicate_key")  # model.norm.weight listed twice (json.dumps can't)
    text = header_bytes(h).rstrip()
    dup = '"model.norm.weight":' + json.dumps(h["model.norm.weight"], separators=(",", ":"))
    text = text[:-1] + b"," + dup.encode() + b"}"
    write_raw(p, text + b" " * (-len(text) % 8), data)

    # --- config.json
    cfg = dict(config)
    del cfg["hidden_size"]
    case("config_no_hidden_size", cfg=cfg)

    d, h, data, p = case("config_not_json")  # config.json cut off half way
    text = open(os.path.join(d, "config.json")).read()
    open(os.path.join(d, "config.json"), "w").write(text[:len(text) // 2])

    cfg = dict(config, rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                     "original_max_position_embeddings": 32})
    case("rope_scaling_yarn", cfg=cfg)

    # the config of a much larger model next to the tiny weights (Llama-3.1-8B's shape)
    cfg = dict(config, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256)
    case("config_wrong_model", cfg=cfg)

    # --- which files are there
    case("no_weights", weights=False)  # config.json only

    # split into two shards with an index, as HF does for big models; shard 2 never arrived
    d, h, data, p = case("shard_missing", weights=False)
    names = [k for k, _ in tensors(h)]
    shard_of = {k: "model-0000%d-of-00002.safetensors" % (1 if i < len(names) // 2 else 2)
                for i, k in enumerate(names)}
    first = {k: dict(h[k]) for k in names[:len(names) // 2]}
    end = max(v["data_offsets"][1] for v in first.values())
    write_safetensors(os.path.join(d, "model-00001-of-00002.safetensors"), dict(first, __metadata__={"format": "pt"}), data[:end])
    index = {"metadata": {"total_size": len(data)}, "weight_map": shard_of}
    json.dump(index, open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)

    d, h, data, p = case("index_not_json", weights=False)  # the index file is cut off
    index_text = json.dumps(index, indent=2)
    open(os.path.join(d, "model.safetensors.index.json"), "w").write(index_text[:len(index_text) // 2])
    # (no_such_dir is a path test_bad_input.sh never creates)

    # a model far too big for any machine: a sparse file (headers and shapes are right, the data
    # are holes), so ./train must refuse it from its memory plan, before reading any weight
    big = dict(config, hidden_size=32768, intermediate_size=131072, num_hidden_layers=16, num_attention_heads=256,
               num_key_value_heads=64, head_dim=128, vocab_size=256000, tie_word_embeddings=False,
               torch_dtype="bfloat16")
    d, h, data, p = case("too_big_for_memory", weights=False, cfg=big)
    C, I, L, V = 32768, 131072, 16, 256000
    q, kv = 256 * 128, 64 * 128
    shapes = [("model.embed_tokens.weight", [V, C])]
    for layer in range(L):
        pre = "model.layers.%d." % layer
        shapes += [(pre + "input_layernorm.weight", [C]), (pre + "self_attn.q_proj.weight", [q, C]),
                   (pre + "self_attn.k_proj.weight", [kv, C]), (pre + "self_attn.v_proj.weight", [kv, C]),
                   (pre + "self_attn.o_proj.weight", [C, q]), (pre + "post_attention_layernorm.weight", [C]),
                   (pre + "mlp.gate_proj.weight", [I, C]), (pre + "mlp.up_proj.weight", [I, C]),
                   (pre + "mlp.down_proj.weight", [C, I])]
    shapes += [("model.norm.weight", [C]), ("lm_head.weight", [V, C])]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes:
        size = 2 * shape[0] * (shape[1] if len(shape) > 1 else 1)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = header_bytes(header)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)


if __name__ == "__main__":
    main()
