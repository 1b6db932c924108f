#!/usr/bin/env python3
"""
An independent GGUF reader (NumPy only, none of llmc/gguf.h's code) that checks what
./train --export_gguf wrote, and the NumPy Q4_0 round trip the Q4_0 figure is printed beside.

  gguf_read.py check GGUF MODEL_DIR
      every key: known, of its type, with the value config.json / tokenizer.json imply;
      every tensor: the names llama.cpp expects, shape (innermost first), type, offset
      alignment, no overlap, the file ending where the data does; and its values against
      MODEL_DIR's weights (q/k rows in llama.cpp's rope order): F32, F16, BF16 exact, Q8_0
      within half a step, Q4_0 within a step (each plus the f16 scale's rounding), rope_freqs as transformers' llama3 rule gives.
      Prints "ok ..."/"FAIL ..." lines.
  gguf_read.py q4_0_round_trip MODEL_DIR OUT_DIR
      MODEL_DIR with every matrix whose rows are whole 32-value blocks quantised to Q4_0 and
      back (fp32 safetensors), for ./generate.
"""
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import read_safetensors, write_safetensors  # noqa: E402

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALARS = {U8: "<u1", I8: "<i1", U16: "<u2", I16: "<i2", U32: "<u4", I32: "<i4", F32: "<f4", BOOL: "<u1",
           U64: "<u8", I64: "<i8", F64: "<f8"}
GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 8: ("Q8_0", 32, 34), 30: ("BF16", 1, 2)}
FILE_TYPES = {0: 0, 1: 1, 32: 30, 7: 8, 2: 2}  # general.file_type -> the ggml type of its matrices

failures = 0


def check(ok, text):
    global failures
    print(("ok     " if ok else "FAIL   ") + text)
    failures += 0 if ok else 1


class Reader:
    def __init__(self, path):
        self.data = open(path, "rb").read()
        self.pos = 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, t):
        if t == STR:
            return self.string()
        if t == ARR:
            et, n = self.take("I"), self.take("Q")
            if et == STR:
                return (et, [self.string() for _ in range(n)])
            a = np.frombuffer(self.data, SCALARS[et], n, self.pos)
            self.pos += a.nbytes
            return (et, a)
        a = np.frombuffer(self.data, SCALARS[t], 1, self.pos)
        self.pos += a.nbytes
        return a[0]


def read_gguf(path):
    r = Reader(path)
    assert r.data[:4] == b"GGUF", "not a GGUF file"
    r.pos = 4
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    kv = {}
    for _ in range(n_kv):
        key = r.string()
        t = r.take("I")
        kv[key] = (t, r.value(t))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("Q") for _ in range(r.take("I"))]
        tensors.append((name, dims, r.take("I"), r.take("Q")))
    return r.data, version, kv, tensors, r.pos


def f16_bits(x):
    return x.astype(np.float16).view(np.uint16)


def bf16_bits(x):  # round to nearest even on the top 16 bits
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def dequantize(raw, type_, n):
    """(values, per-value scale d) of n values in a quantised type."""
    name, block, size = GGML[type_]
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, size)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    if name == "Q8_0":
        q = blocks[:, 2:].view(np.int8).astype(np.float32)
    else:  # Q4_0: byte j holds value j (low nibble) and value j+16 (high)
        qs = blocks[:, 2:]
        q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32) - 8
    return (d * q).reshape(n), np.repeat(d, 32, axis=1).reshape(n)


def quantize_q4_0(w):
    """Q4_0 from its definition: d = (value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5))."""
    x = w.reshape(-1, 32).astype(np.float32)
    idx = np.abs(x).argmax(axis=1)
    d = (x[np.arange(len(x)), idx] / np.float32(-8)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(15, np.trunc(x * inv[:, None] + np.float32(8.5)))
    d16 = d.astype(np.float16).astype(np.float32)
    return ((q - 8) * d16[:, None]).reshape(w.shape)


def permute(w, heads):
    """Hugging Face rotate-half rows -> llama.cpp's interleaved pairs (as llama.cpp's converter does)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else \
        ["model.safetensors"]
    w = {}
    for f in files:
        w.update(read_safetensors(os.path.join(model_dir, f))[0])
    return {k: v.numpy().astype(np.float32) for k, v in w.items()}


def expected_tensors(cfg, w):
    """llama.cpp name -> the fp32 values (HF shape) the file must hold."""
    NH, NKV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    out = {"token_embd.weight": w["model.embed_tokens.weight"], "output_norm.weight": w["model.norm.weight"]}
    if not cfg.get("tie_word_embeddings", False):
        out["output.weight"] = w["lm_head.weight"]
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(cfg["num_hidden_layers"]):
        for hf, ll in names.items():
            t = w[f"model.layers.{i}.{hf}.weight"]
            t = permute(t, NH) if ll == "attn_q" else permute(t, NKV) if ll == "attn_k" else t
            out[f"blk.{i}.{ll}.weight"] = t
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":  # transformers' _compute_llama3_parameters
        hs = cfg.get("head_dim", cfg["hidden_size"] // NH)
        old, lo, hi, factor = rs["original_max_position_embeddings"], rs["low_freq_factor"], \
            rs["high_freq_factor"], rs["factor"]
        factors = []
        for i in range(hs // 2):
            f = cfg["rope_theta"] ** (-2.0 * i / hs)
            wl = 2 * math.pi / f
            if wl < old / hi:
                adjusted = f
            elif wl > old / lo:
                adjusted = f / factor
            else:
                s = (old / wl - lo) / (hi - lo)
                adjusted = (1 - s) * f / factor + s * f
            factors.append(f / adjusted)
        out["rope_freqs.weight"] = np.array(factors, np.float32)
    return out


def expected_keys(cfg, tok, V):
    """key -> (GGUF type, array element type or None, expected value or None)."""
    NH = cfg["num_attention_heads"]
    hs = cfg.get("head_dim", cfg["hidden_size"] // NH)
    spm = tok["model"].get("byte_fallback", False)
    keys = {
        "general.architecture": (STR, None, "llama"), "general.type": (STR, None, "model"),
        "general.name": (STR, None, None), "general.file_type": (U32, None, None),
        "general.quantization_version": (U32, None, 2),
        "llama.block_count": (U32, None, cfg["num_hidden_layers"]),
        "llama.context_length": (U32, None, cfg["max_position_embeddings"]),
        "llama.embedding_length": (U32, None, cfg["hidden_size"]),
        "llama.feed_forward_length": (U32, None, cfg["intermediate_size"]),
        "llama.attention.head_count": (U32, None, NH),
        "llama.attention.head_count_kv": (U32, None, cfg.get("num_key_value_heads", NH)),
        "llama.attention.key_length": (U32, None, hs), "llama.attention.value_length": (U32, None, hs),
        "llama.rope.dimension_count": (U32, None, hs),
        "llama.rope.freq_base": (F32, None, np.float32(cfg["rope_theta"])),
        "llama.attention.layer_norm_rms_epsilon": (F32, None, np.float32(cfg["rms_norm_eps"])),
        "llama.vocab_size": (U32, None, V),
        "tokenizer.ggml.model": (STR, None, "llama" if spm else "gpt2"),
        "tokenizer.ggml.tokens": (ARR, STR, None), "tokenizer.ggml.token_type": (ARR, I32, None),
        "tokenizer.ggml.bos_token_id": (U32, None, None), "tokenizer.ggml.eos_token_id": (U32, None, None),
        "tokenizer.ggml.add_bos_token": (BOOL, None, 1), "tokenizer.ggml.add_eos_token": (BOOL, None, 0),
    }
    optional = {"tokenizer.ggml.eot_token_id": (U32, None, None), "tokenizer.ggml.unknown_token_id": (U32, None, None),
                "tokenizer.chat_template": (STR, None, None)}
    if spm:
        keys["tokenizer.ggml.scores"] = (ARR, F32, None)
        keys["tokenizer.ggml.add_space_prefix"] = (BOOL, None, 1)
    else:
        keys["tokenizer.ggml.pre"] = (STR, None, "llama-bpe")
        keys["tokenizer.ggml.merges"] = (ARR, STR, None)
    return keys, optional


def check_file(path, model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    tok = json.load(open(os.path.join(model_dir, "tokenizer.json")))
    name = os.path.basename(os.path.dirname(path))
    data, version, kv, tensors, end = read_gguf(path)
    V = cfg["vocab_size"]
    check(version == 3, f"{name}: GGUF version {version} (3)")
    keys, optional = expected_keys(cfg, tok, V)
    bad = []
    for key, (t, value) in kv.items():
        want = keys.get(key) or optional.get(key)
        if want is None:
            bad.append(f"{key} is not a key llama.cpp's converter writes")
        elif t != want[0] or (t == ARR and value[0] != want[1]):
            bad.append(f"{key} has type {t}{'/' + str(value[0]) if t == ARR else ''}, expected {want[0]}")
        elif want[2] is not None and value != want[2]:
            bad.append(f"{key} = {value!r}, expected {want[2]!r}")
        elif t == ARR and key != "tokenizer.ggml.merges" and len(value[1]) != V:
            bad.append(f"{key} has {len(value[1])} entries, the model {V} tokens")
    bad += [f"{key} is missing" for key in keys if key not in kv]
    check(not bad, f"{name}: {len(kv)} keys, each of its type and value" + ("".join("\n         | " + b for b in bad)))
    vocab = dict(tok["model"]["vocab"])
    vocab.update({a["content"]: a["id"] for a in tok.get("added_tokens", [])})
    tokens = kv["tokenizer.ggml.tokens"][1][1]
    wrong = [i for s, i in vocab.items() if i < V and tokens[i] != s]
    check(not wrong, f"{name}: every token of tokenizer.json at its id ({len(vocab)} tokens"
          + (f"; {len(wrong)} differ, e.g. id {wrong[0]}: {tokens[wrong[0]]!r}" if wrong else "") + ")")
    if "tokenizer.ggml.merges" in kv:
        merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
        check(kv["tokenizer.ggml.merges"][1][1] == merges, f"{name}: the {len(merges)} merges in rank order")

    # tensors: names, shapes, types, offsets
    want = expected_tensors(cfg, load_weights(model_dir))
    file_type = FILE_TYPES[int(kv["general.file_type"][1])]
    data_start = (end + 31) // 32 * 32
    check(all(b == 0 for b in data[end:data_start]), f"{name}: tensor data starts at {data_start}, aligned to 32")
    problems, worst, pos = [], {}, 0
    for tname, dims, t, offset in sorted(tensors, key=lambda x: x[3]):
        ref = want.pop(tname, None)
        if ref is None:
            problems.append(f"unexpected tensor {tname}")
            continue
        shape = list(reversed(ref.shape))  # innermost first
        expect_type = 0 if len(dims) == 1 else file_type if dims[0] % GGML[file_type][1] == 0 else 1
        if dims != shape or t != expect_type:
            problems.append(f"{tname}: dims {dims} type {t}, expected {shape} type {expect_type}")
            continue
        tn, block, size = GGML[t]
        nbytes = ref.size // block * size
        if offset % 32 or offset < pos or data_start + offset + nbytes > len(data):
            problems.append(f"{tname}: offset {offset} misaligned, overlapping or past the end")
            continue
        pos = offset + nbytes
        raw = data[data_start + offset:data_start + offset + nbytes]
        x = ref.reshape(-1)
        if tn == "F32":
            err = np.abs(np.frombuffer(raw, "<f4") - x).max() / (1e-6 if tname == "rope_freqs.weight" else 1)
            err = 0.0 if tname == "rope_freqs.weight" and err <= 1.0 else err
        elif tn == "F16":
            err = float((np.frombuffer(raw, "<u2") != f16_bits(x)).sum())
        elif tn == "BF16":
            err = float((np.frombuffer(raw, "<u2") != bf16_bits(x)).sum())
        else:  # within half a step (Q8_0; Q4_0's clamp at 15 can cost a whole step), plus the scale's
            # rounding to f16 (2^-11 relative) times the largest q (127 or 8)
            values, d = dequantize(raw, t, ref.size)
            bound = 0.5 + 127 / 2048 if tn == "Q8_0" else 1 + 8 / 2048
            err = (np.abs(values - x) / np.maximum(np.abs(d), 1e-30)).max() / bound
            err = 0.0 if err <= 1.0 + 1e-6 else err
        worst[tn] = max(worst.get(tn, 0.0), err)
        if err != 0:
            problems.append(f"{tname}: {tn} values differ from the model's (measure {err:g})")
    problems += [f"missing tensor {n}" for n in want]
    padded_end = data_start + (pos + 31) // 32 * 32
    if padded_end != len(data):
        problems.append(f"the file is {len(data)} bytes; its data ends at {padded_end}")
    check(not problems, f"{name}: {len(tensors)} tensors: names, shapes, types ({', '.join(sorted(worst))}), "
          f"32-byte aligned offsets, values vs the model" + "".join("\n         | " + p for p in problems[:8]))


def q4_0_round_trip(model_dir, out_dir):
    w = load_weights(model_dir)
    out = {k: quantize_q4_0(v) if v.ndim == 2 and v.shape[1] % 32 == 0 else v for k, v in w.items()}
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "model.safetensors"),
                      [(k, torch.from_numpy(v), "F32") for k, v in out.items()], {"format": "pt"})
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    cfg["torch_dtype"] = "float32"
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(model_dir, f)):
            shutil.copy(os.path.join(model_dir, f), out_dir)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        check_file(sys.argv[2], sys.argv[3])
        sys.exit(1 if failures else 0)
    if len(sys.argv) == 4 and sys.argv[1] == "q4_0_round_trip":
        q4_0_round_trip(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(__doc__)
