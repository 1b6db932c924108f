#!/usr/bin/env python3
"""Reference numbers for the C Llama LoRA fine-tuner.

Run from the repository root:   /usr/bin/python3 test/reference.py

It needs only PyTorch and NumPy (no transformers, no safetensors package) and
regenerates, deterministically:

  test/models/tiny/        untied tiny Llama, F32, one model.safetensors
  test/models/tiny_bf16/   the same weights stored as BF16
  test/models/tiny_f16/    the same weights stored as F16
  test/models/tiny_tied/   a second tiny Llama, tied embeddings, F32, two shards
  test/ref/tiny.safetensors       inputs, logits, loss, gradients, AdamW run
  test/ref/tiny_tied.safetensors  (same for the tied model)
  test/ref/tiny_bf16base.safetensors  logits, loss and LoRA gradients of tiny_bf16 with
                                  train.c's bf16 base: weights in bf16, the input of every
                                  base matmul (x of x W^T, dy of dy W) rounded to bf16, and
                                  both operands of attention's matmuls

The model is written from plain tensor ops (rmsnorm, rope, attention, mlp,
lora) and differentiated with autograd.  All reference math runs in float64
on the fp32 weights; results are stored as F32.
"""

import json
import math
import os
import struct

import numpy as np
import torch

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

# Every dimension is deliberately "odd": hidden != heads*head_dim, nothing is a
# multiple of 16 except head_dim, the vocabulary is not a power of two.
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 48,
    "intermediate_size": 136,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 301,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    # With head_dim 16 these values make the llama3 rule keep frequency 0,
    # smooth frequency 1 and divide frequencies 2..7: all three branches.
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 4.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
    },
    "max_position_embeddings": 128,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "initializer_range": 0.02,
    "pretraining_tp": 1,
    "use_cache": True,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}

B, T = 2, 20  # batch size and sequence length of the reference batch

# The seven linear modules a LoRA adapter may target, with the module index
# used by the hash dropout (q=0 k=1 v=2 o=3 gate=4 up=5 down=6).
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTN_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj"}

# AdamW run settings (the same for both models).
ADAMW = {
    "learning_rate": 1e-2,
    "beta1": 0.9,
    "beta2": 0.999,
    "adam_eps": 1e-8,
    "weight_decay": 0.01,
    "steps": 10,
}

# The two test cases: model, LoRA configuration, seeds.
CASES = [
    {
        "name": "tiny",
        "model_dir": "test/models/tiny",
        "tied": False,
        "weight_seed": 1234,
        "lora": {"r": 4, "alpha": 8.0, "dropout": 0.1, "rslora": False,
                 "targets": list(MODULES), "seed": 42},
    },
    {
        "name": "tiny_tied",
        "model_dir": "test/models/tiny_tied",
        "tied": True,
        "weight_seed": 5678,
        "lora": {"r": 2, "alpha": 16.0, "dropout": 0.0, "rslora": True,
                 "targets": ["q_proj", "v_proj"], "seed": 7},
    },
]

# Seeds derived from the weight seed for the other random things (not part of
# the brief, fixed here so that the script is deterministic).
INPUT_SEED_OFFSET = 1  # tokens and the random target mask
LORA_SEED_OFFSET = 2   # initial LoRA A and B


# ---------------------------------------------------------------------------
# safetensors, written (and read back) by hand
# ---------------------------------------------------------------------------

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4}


def tensor_bytes(t, dtype):
    """Raw little-endian bytes of tensor t stored as safetensors dtype."""
    t = t.detach().cpu().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        # .to(bfloat16) rounds to nearest even; reinterpret the 16 bits.
        bits = t.to(torch.float32).to(torch.bfloat16).view(torch.int16)
        return bits.numpy().astype("<i2").tobytes()
    if dtype == "I32":
        return t.to(torch.int32).numpy().astype("<i4").tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor, dtype); written contiguously in order.

    File = u64 little-endian header length N, N bytes of JSON (padded with
    spaces so N is a multiple of 8), then the data buffer.
    """
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t, dtype in tensors:
        data = tensor_bytes(t, dtype)
        assert len(data) == t.numel() * DTYPE_SIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    return offset  # bytes of tensor data


def read_safetensors(path):
    """Inverse of write_safetensors (used to check what was written)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    np_dtype = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I32": "<i4"}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        a = np.frombuffer(data[b:e], dtype=np_dtype[info["dtype"]]).copy()
        if info["dtype"] == "BF16":  # bf16 = the top 16 bits of an f32
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(a.astype(np.float64)).reshape(info["shape"])
    return out, header.get("__metadata__", {})


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------

def make_weights(cfg, seed):
    """Random fp32 weights with Hugging Face names, in model order.

    embed ~ N(0, 0.5); linear [out,in] ~ N(0, 1/sqrt(in));
    norms = 1 + 0.1 N(0,1); lm_head ~ N(0, 1/sqrt(C)).
    """
    g = torch.Generator().manual_seed(seed)
    C, I = cfg["hidden_size"], cfg["intermediate_size"]
    NH, NKV, hs = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    V = cfg["vocab_size"]

    def normal(shape, std):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std

    def linear(out_f, in_f):
        return normal((out_f, in_f), 1.0 / math.sqrt(in_f))

    def norm():
        return 1.0 + normal((C,), 0.1)

    w = {"model.embed_tokens.weight": normal((V, C), 0.5)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = linear(NH * hs, C)
        w[p + "self_attn.k_proj.weight"] = linear(NKV * hs, C)
        w[p + "self_attn.v_proj.weight"] = linear(NKV * hs, C)
        w[p + "self_attn.o_proj.weight"] = linear(C, NH * hs)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = linear(I, C)
        w[p + "mlp.up_proj.weight"] = linear(I, C)
        w[p + "mlp.down_proj.weight"] = linear(C, I)
    w["model.norm.weight"] = norm()
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal((V, C), 1.0 / math.sqrt(C))
    return w


def module_shape(cfg, module):
    """(out_features, in_features) of a linear module."""
    C, I = cfg["hidden_size"], cfg["intermediate_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    return {"q_proj": (q, C), "k_proj": (kv, C), "v_proj": (kv, C), "o_proj": (C, q),
            "gate_proj": (I, C), "up_proj": (I, C), "down_proj": (C, I)}[module]


def hf_name(layer, module):
    group = "self_attn" if module in ATTN_MODULES else "mlp"
    return f"model.layers.{layer}.{group}.{module}.weight"


def peft_key(layer, module, ab):
    """PEFT adapter key, ab is "A" or "B"."""
    group = "self_attn" if module in ATTN_MODULES else "mlp"
    return f"base_model.model.model.layers.{layer}.{group}.{module}.lora_{ab}.weight"


def make_lora(cfg, lora, seed):
    """Initial LoRA tensors, fp32: A [r,in] ~ U(-1/sqrt(in), 1/sqrt(in)),
    B [out,r] ~ N(0, 0.1) (nonzero on purpose so that A gets gradients)."""
    g = torch.Generator().manual_seed(seed)
    r = lora["r"]
    out = {}
    for layer in range(cfg["num_hidden_layers"]):
        for m in MODULES:
            if m not in lora["targets"]:
                continue
            out_f, in_f = module_shape(cfg, m)
            bound = 1.0 / math.sqrt(in_f)
            out[peft_key(layer, m, "A")] = (torch.rand((r, in_f), generator=g) * 2 - 1) * bound
            out[peft_key(layer, m, "B")] = torch.randn((out_f, r), generator=g) * 0.1
    return out


def make_inputs(cfg, seed):
    """tokens, targets (next token, -1 = ignored) and position ids, int32 (B,T)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    targets = torch.full((B, T), -1, dtype=torch.int64)
    targets[:, :-1] = tokens[:, 1:]
    targets[0, :6] = -1                                  # row 0: a 6-token "prompt"
    drop = torch.rand((T,), generator=g) < 0.3           # row 1: random holes
    targets[1, drop] = -1
    pos = torch.arange(T).expand(B, T).contiguous()
    return tokens.int(), targets.int(), pos.int()


# ---------------------------------------------------------------------------
# Deterministic hash dropout (must match the C code bit for bit)
# ---------------------------------------------------------------------------

def mix32(x):
    """32-bit integer finaliser; x is a numpy uint32 array (wraps mod 2^32)."""
    x = np.asarray(x, dtype=np.uint32).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)
    return x


def dropout_scale(p, seed, step, n_layers, layer, module, rows, cols):
    """Multiplier (rows, cols) for drop(x): 1/(1-p) where kept, 0 where dropped.

    stream = (step*L + layer)*7 + mi;  key = mix32(seed ^ mix32(stream));
    element e = row*cols + col is kept iff (mix32(key ^ mix32(e)) >> 8) / 2^24 >= p.
    """
    if p == 0.0:
        return None
    mi = MODULES.index(module)
    stream = np.array([(step * n_layers + layer) * 7 + mi], dtype=np.uint32)
    key = mix32(np.uint32(seed) ^ mix32(stream))
    e = np.arange(rows * cols, dtype=np.uint32)
    h = mix32(key ^ mix32(e))
    u = (h >> np.uint32(8)).astype(np.float64) / 2.0 ** 24
    keep = u >= p
    scale = np.where(keep, 1.0 / (1.0 - p), 0.0)
    return torch.from_numpy(scale.reshape(rows, cols))


# ---------------------------------------------------------------------------
# The model, from plain ops
# ---------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    """x / sqrt(mean(x^2) + eps) * w, over the last dimension."""
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope_inv_freq(cfg):
    """inv_freq[i] = theta^(-2i/hs), adjusted by the llama3 rule (float64)."""
    hs, theta = cfg["head_dim"], cfg["rope_theta"]
    inv = [theta ** (-2.0 * i / hs) for i in range(hs // 2)]
    rs = cfg.get("rope_scaling")
    if rs is None:
        return torch.tensor(inv, dtype=torch.float64)
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_ctx = rs["original_max_position_embeddings"]
    lo_wl, hi_wl = old_ctx / lo, old_ctx / hi
    out = []
    for f in inv:
        wl = 2 * math.pi / f
        if wl < hi_wl:        # high frequency: keep
            out.append(f)
        elif wl > lo_wl:      # low frequency: divide by factor
            out.append(f / factor)
        else:                 # in between: interpolate
            s = (old_ctx / wl - lo) / (hi - lo)
            out.append((1 - s) * f / factor + s * f)
    return torch.tensor(out, dtype=torch.float64)


def rope(u, pos, inv_freq):
    """Rotate-half RoPE. u (B,T,H,hs), pos (B,T).

    out[i] = u[i] cos - u[i+hs/2] sin;  out[i+hs/2] = u[i+hs/2] cos + u[i] sin,
    angle = pos * inv_freq[i].
    """
    half = u.shape[-1] // 2
    angle = pos.to(u.dtype)[:, :, None] * inv_freq.to(u.dtype)  # (B,T,half)
    cos = torch.cos(angle)[:, :, None, :]                       # (B,T,1,half)
    sin = torch.sin(angle)[:, :, None, :]
    u1, u2 = u[..., :half], u[..., half:]
    return torch.cat([u1 * cos - u2 * sin, u2 * cos + u1 * sin], dim=-1)


def attention(q, k, v):
    """Causal GQA attention. q (B,T,NH,hs), k v (B,T,NKV,hs) -> (B,T,NH*hs).

    Query head h uses kv head h // (NH/NKV); scores = q.k / sqrt(hs)."""
    Bn, Tn, NH, hs = q.shape
    group = NH // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))         # (B,NH,T,hs)
    if BF16_BASE:
        out = Bf16Attention.apply(q, k, v)
        return out.transpose(1, 2).reshape(Bn, Tn, NH * hs)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hs)         # (B,NH,T,T)
    causal = torch.ones(Tn, Tn, dtype=torch.bool).tril()     # key s <= query t
    scores = scores.masked_fill(~causal, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v                  # (B,NH,T,hs)
    return out.transpose(1, 2).reshape(Bn, Tn, NH * hs)


class Bf16Attention(torch.autograd.Function):
    """Causal softmax(q k^T / sqrt(hs)) v as train.c computes it against a bf16 base: both
    operands of every matmul, forward and backward, rounded to bf16 (the products summed in
    fp32); the softmax and its gradient in fp32. q k v (B,NH,T,hs)."""

    @staticmethod
    def forward(ctx, q, k, v):
        r, scale, Tn = round_bf16, 1.0 / math.sqrt(q.shape[-1]), q.shape[2]
        causal = torch.ones(Tn, Tn, dtype=torch.bool).tril()
        p = torch.softmax((r(q) @ r(k).transpose(-1, -2) * scale).masked_fill(~causal, float("-inf")), dim=-1)
        out = r(p) @ r(v)
        ctx.save_for_backward(q, k, v, p, out)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, p, out = ctx.saved_tensors
        r, scale = round_bf16, 1.0 / math.sqrt(q.shape[-1])
        dp = r(dout) @ r(v).transpose(-1, -2)
        ds = p * (dp - (dout * out).sum(-1, keepdim=True)) * scale
        return r(ds) @ r(k), r(ds).transpose(-1, -2) @ r(q), r(p).transpose(-1, -2) @ r(dout)


class Lora:
    """LoRA settings plus the tensors, and the dropout step they run at."""

    def __init__(self, spec, tensors, n_layers, step):
        self.spec = spec
        self.tensors = tensors  # peft key -> tensor
        self.n_layers = n_layers
        self.step = step
        r, alpha = spec["r"], spec["alpha"]
        self.scale = alpha / math.sqrt(r) if spec["rslora"] else alpha / r


def round_bf16(t):
    """t rounded to bf16 (nearest even) by way of float32, as train.c rounds its fp32 values."""
    return t.float().bfloat16().to(t.dtype)


class Bf16BaseMatmul(torch.autograd.Function):
    """x W^T against a bf16 base as train.c's kernel does it: x rounded to bf16 in the
    forward, dy rounded to bf16 in the input gradient dy W (W is already bf16, frozen)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(w)
        return round_bf16(x) @ w.t()

    @staticmethod
    def backward(ctx, dy):
        (w,) = ctx.saved_tensors
        return round_bf16(dy) @ w, None


BF16_BASE = False  # set while computing the bf16-base reference


def base_matmul(x, w):
    """x W^T for a base weight: exact, or as the bf16 base computes it."""
    return Bf16BaseMatmul.apply(x, w) if BF16_BASE else x @ w.t()


def linear(x, w, layer, module, lora):
    """y = x W^T + s * (drop(x) A^T) B^T  (the LoRA term only if targeted)."""
    y = base_matmul(x, w)
    if lora is None or module not in lora.spec["targets"]:
        return y
    A = lora.tensors[peft_key(layer, module, "A")]
    Bm = lora.tensors[peft_key(layer, module, "B")]
    x2 = x.reshape(-1, x.shape[-1])                          # (B*T, in) row-major
    scale = dropout_scale(lora.spec["dropout"], lora.spec["seed"], lora.step,
                          lora.n_layers, layer, module, x2.shape[0], x2.shape[1])
    if scale is not None:
        x2 = x2 * scale.to(x2.dtype)
    delta = (x2 @ A.t()) @ Bm.t() * lora.scale
    return y + delta.reshape(y.shape)


def forward(cfg, w, tokens, pos, lora=None):
    """Logits (B,T,V) of the Llama model with weights w (HF names)."""
    eps = cfg["rms_norm_eps"]
    NH, NKV, hs = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    inv_freq = rope_inv_freq(cfg)
    Bn, Tn = tokens.shape
    x = w["model.embed_tokens.weight"][tokens.long()]        # (B,T,C)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        # attention block
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, w[hf_name(i, "q_proj")], i, "q_proj", lora).view(Bn, Tn, NH, hs)
        k = linear(h, w[hf_name(i, "k_proj")], i, "k_proj", lora).view(Bn, Tn, NKV, hs)
        v = linear(h, w[hf_name(i, "v_proj")], i, "v_proj", lora).view(Bn, Tn, NKV, hs)
        q, k = rope(q, pos, inv_freq), rope(k, pos, inv_freq)
        att = attention(q, k, v)
        x = x + linear(att, w[hf_name(i, "o_proj")], i, "o_proj", lora)
        # MLP block: down(silu(gate(h2)) * up(h2))
        h2 = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = linear(h2, w[hf_name(i, "gate_proj")], i, "gate_proj", lora)
        up = linear(h2, w[hf_name(i, "up_proj")], i, "up_proj", lora)
        x = x + linear(torch.nn.functional.silu(gate) * up,
                       w[hf_name(i, "down_proj")], i, "down_proj", lora)
    h = rmsnorm(x, w["model.norm.weight"], eps)
    lm_head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return base_matmul(h, lm_head)


def loss_fn(logits, targets):
    """Mean cross-entropy over positions whose target is not -1."""
    logp = torch.log_softmax(logits, dim=-1).reshape(-1, logits.shape[-1])
    t = targets.reshape(-1).long()
    valid = t != -1
    nll = -logp[valid, t[valid]]
    return nll.sum() / valid.sum()


# ---------------------------------------------------------------------------
# Writing the model directories
# ---------------------------------------------------------------------------

def write_config(model_dir, cfg):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def write_single_file_model(model_dir, cfg, weights, dtype, torch_dtype):
    cfg = dict(cfg, torch_dtype=torch_dtype)
    write_config(model_dir, cfg)
    tensors = [(n, t, dtype) for n, t in weights.items()]
    write_safetensors(os.path.join(model_dir, "model.safetensors"), tensors, {"format": "pt"})


def write_sharded_model(model_dir, cfg, weights):
    """Two shards: embeddings + layer 0, then layer 1 + final norm (+ a stray
    rotary_emb.inv_freq that readers must ignore), plus the index json."""
    write_config(model_dir, cfg)
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    shards = [[], []]
    for name, t in weights.items():
        second = name.startswith("model.layers.1.") or name == "model.norm.weight"
        shards[1 if second else 0].append((name, t, "F32"))
    hs, theta = cfg["head_dim"], cfg["rope_theta"]
    stray = theta ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    shards[1].append(("model.layers.0.self_attn.rotary_emb.inv_freq", stray.float(), "F32"))
    total = 0
    weight_map = {}
    for fname, tensors in zip(files, shards):
        total += write_safetensors(os.path.join(model_dir, fname), tensors, {"format": "pt"})
        for name, _, _ in tensors:
            weight_map[name] = fname
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(model_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def check_model_dir(model_dir, weights, tol):
    """Read the written files back and compare with the fp32 weights."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    loaded = {}
    for fname in files:
        loaded.update(read_safetensors(os.path.join(model_dir, fname))[0])
    for name, t in weights.items():
        err = (loaded[name] - t.double()).abs().max().item()
        assert err <= tol * t.abs().max().item(), (model_dir, name, err)


# ---------------------------------------------------------------------------
# Reference computations
# ---------------------------------------------------------------------------

def to64(d, requires_grad):
    return {k: v.double().clone().requires_grad_(requires_grad) for k, v in d.items()}


def gradients(case, cfg, weights, lora_init, tokens, targets, pos):
    """One training forward/backward at step 0 with every tensor trainable."""
    w = to64(weights, True)
    lt = to64(lora_init, True)
    lora = Lora(case["lora"], lt, cfg["num_hidden_layers"], step=0)
    logits = forward(cfg, w, tokens, pos, lora)
    loss = loss_fn(logits, targets)
    loss.backward()
    grads = {"grad.lora." + k: v.grad for k, v in lt.items()}
    grads.update({"grad." + k: v.grad for k, v in w.items()})
    return logits.detach(), loss.detach(), grads


def float32_loss(case, cfg, weights, lora_init, tokens, targets, pos):
    """The same step-0 training loss computed in float32 (a sanity check)."""
    w = {k: v.float() for k, v in weights.items()}
    lt = {k: v.float() for k, v in lora_init.items()}
    lora = Lora(case["lora"], lt, cfg["num_hidden_layers"], step=0)
    with torch.no_grad():
        return loss_fn(forward(cfg, w, tokens, pos, lora), targets).item()


def lora_grad_norm(case, cfg, weights, lora_init, tokens, targets, pos, step):
    """Global L2 norm of the LoRA gradients at a given dropout step."""
    w = to64(weights, False)
    lt = to64(lora_init, True)
    lora = Lora(case["lora"], lt, cfg["num_hidden_layers"], step=step)
    loss_fn(forward(cfg, w, tokens, pos, lora), targets).backward()
    return torch.sqrt(sum((v.grad ** 2).sum() for v in lt.values())).item()


def adamw_run(case, cfg, weights, lora_init, tokens, targets, pos, max_grad_norm):
    """Train only the LoRA tensors: per step forward (dropout step = step),
    backward, clip_grad_norm_(max_grad_norm), AdamW update."""
    w = to64(weights, False)
    lt = to64(lora_init, True)
    params = list(lt.values())
    opt = torch.optim.AdamW(params, lr=ADAMW["learning_rate"],
                            betas=(ADAMW["beta1"], ADAMW["beta2"]),
                            eps=ADAMW["adam_eps"], weight_decay=ADAMW["weight_decay"])
    losses, norms = [], []
    for step in range(ADAMW["steps"]):
        lora = Lora(case["lora"], lt, cfg["num_hidden_layers"], step=step)
        opt.zero_grad()
        loss = loss_fn(forward(cfg, w, tokens, pos, lora), targets)
        loss.backward()
        # clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to <= 1
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
    return losses, norms, {k: v.detach() for k, v in lt.items()}


def run_case(case):
    name = case["name"]
    cfg = dict(TINY_CONFIG, tie_word_embeddings=case["tied"])
    seed = case["weight_seed"]
    weights = make_weights(cfg, seed)
    lora_init = make_lora(cfg, case["lora"], seed + LORA_SEED_OFFSET)
    tokens, targets, pos = make_inputs(cfg, seed + INPUT_SEED_OFFSET)

    # --- model directories
    if case["tied"]:
        write_sharded_model(case["model_dir"], cfg, weights)
        check_model_dir(case["model_dir"], weights, 0.0)
    else:
        write_single_file_model(case["model_dir"], cfg, weights, "F32", "float32")
        write_single_file_model(case["model_dir"] + "_bf16", cfg, weights, "BF16", "bfloat16")
        write_single_file_model(case["model_dir"] + "_f16", cfg, weights, "F16", "float16")
        check_model_dir(case["model_dir"], weights, 0.0)
        check_model_dir(case["model_dir"] + "_bf16", weights, 2.0 ** -8)
        check_model_dir(case["model_dir"] + "_f16", weights, 2.0 ** -11)

    # --- forward + backward at step 0
    logits, loss, grads = gradients(case, cfg, weights, lora_init, tokens, targets, pos)
    loss32 = float32_loss(case, cfg, weights, lora_init, tokens, targets, pos)
    rel = abs(loss32 - loss.item()) / abs(loss.item())
    assert rel < 1e-5, f"{name}: float32 loss {loss32} vs float64 {loss.item()}"

    # --- AdamW run; clip at half the first step's norm (2 significant digits)
    first_norm = lora_grad_norm(case, cfg, weights, lora_init, tokens, targets, pos, 0)
    max_grad_norm = float(f"{0.5 * first_norm:.2g}")
    losses, norms, trained = adamw_run(case, cfg, weights, lora_init,
                                       tokens, targets, pos, max_grad_norm)

    # --- reference file
    lora = case["lora"]
    meta = {
        "format": "pt",
        "model": case["model_dir"],
        "B": str(B), "T": str(T),
        "lora_rank": str(lora["r"]),
        "lora_alpha": repr(lora["alpha"]),
        "lora_dropout": repr(lora["dropout"]),
        "use_rslora": "true" if lora["rslora"] else "false",
        "lora_target": ",".join(lora["targets"]),
        "seed": str(lora["seed"]),
        "learning_rate": repr(ADAMW["learning_rate"]),
        "beta1": repr(ADAMW["beta1"]),
        "beta2": repr(ADAMW["beta2"]),
        "adam_eps": repr(ADAMW["adam_eps"]),
        "weight_decay": repr(ADAMW["weight_decay"]),
        "max_grad_norm": repr(max_grad_norm),
        "adamw_steps": str(ADAMW["steps"]),
    }
    out = [("tokens", tokens, "I32"), ("targets", targets, "I32"), ("pos", pos, "I32"),
           ("logits", logits, "F32"), ("loss", loss.reshape(1), "F32")]
    out += [("lora." + k, v, "F32") for k, v in lora_init.items()]
    out += [(k, v, "F32") for k, v in grads.items()]
    out += [("adamw.losses", torch.tensor(losses), "F32"),
            ("adamw.grad_norms", torch.tensor(norms), "F32")]
    out += [("adamw." + k, v, "F32") for k, v in trained.items()]
    write_safetensors(f"test/ref/{name}.safetensors", out, meta)

    # --- summary
    lora_norm = math.sqrt(sum((g ** 2).sum().item() for k, g in grads.items()
                              if k.startswith("grad.lora.")))
    base_norm = math.sqrt(sum((g ** 2).sum().item() for k, g in grads.items()
                              if not k.startswith("grad.lora.")))
    n_valid = int((targets != -1).sum())
    print(f"== {name}: {n_valid} target tokens of {B * T}")
    print(f"   loss float64 {loss.item():.10f}  float32 {loss32:.10f}  rel diff {rel:.2e}")
    print(f"   grad norm: lora {lora_norm:.6f}  base {base_norm:.6f}")
    print(f"   max_grad_norm {max_grad_norm!r}  (clipped on "
          f"{sum(n > max_grad_norm for n in norms)} of {len(norms)} steps)")
    print("   adamw losses     " + " ".join(f"{x:.5f}" for x in losses))
    print("   adamw grad norms " + " ".join(f"{x:.5f}" for x in norms))


def run_bf16_base_case(case):
    """The first case's model as stored in BF16 (test/models/tiny_bf16), run with a bf16 base:
    logits, loss and the LoRA gradients at step 0 (the base is frozen: no base gradients)."""
    global BF16_BASE
    cfg = dict(TINY_CONFIG, tie_word_embeddings=case["tied"])
    seed = case["weight_seed"]
    weights = {k: round_bf16(v) for k, v in make_weights(cfg, seed).items()}
    lora_init = make_lora(cfg, case["lora"], seed + LORA_SEED_OFFSET)
    tokens, targets, pos = make_inputs(cfg, seed + INPUT_SEED_OFFSET)
    BF16_BASE = True
    w = to64(weights, False)
    lt = to64(lora_init, True)
    lora = Lora(case["lora"], lt, cfg["num_hidden_layers"], step=0)
    logits = forward(cfg, w, tokens, pos, lora)
    loss = loss_fn(logits, targets)
    loss.backward()
    BF16_BASE = False
    lora_spec = case["lora"]
    meta = {"format": "pt", "model": case["model_dir"] + "_bf16", "B": str(B), "T": str(T),
            "lora_rank": str(lora_spec["r"]), "lora_alpha": repr(lora_spec["alpha"]),
            "lora_dropout": repr(lora_spec["dropout"]),
            "use_rslora": "true" if lora_spec["rslora"] else "false",
            "lora_target": ",".join(lora_spec["targets"]), "seed": str(lora_spec["seed"])}
    out = [("tokens", tokens, "I32"), ("targets", targets, "I32"), ("pos", pos, "I32"),
           ("logits", logits.detach(), "F32"), ("loss", loss.detach().reshape(1), "F32")]
    out += [("lora." + k, v, "F32") for k, v in lora_init.items()]
    out += [("grad.lora." + k, v.grad, "F32") for k, v in lt.items()]
    write_safetensors(f"test/ref/{case['name']}_bf16base.safetensors", out, meta)
    print(f"== {case['name']}_bf16base: loss {loss.item():.10f}")


def main():
    # Paths in this script are relative to the repository root.
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    torch.set_num_threads(1)  # same summation order on every machine
    for case in CASES:
        run_case(case)
    run_bf16_base_case(CASES[0])


if __name__ == "__main__":
    main()
