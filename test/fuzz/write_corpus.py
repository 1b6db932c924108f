#!/usr/bin/python3
"""Writes the hand-made regression corpus of the fuzz harnesses: test/corpus/<harness>/.

Usage: /usr/bin/python3 test/fuzz/write_corpus.py [OUTDIR]   (default test/corpus)

One small file per case, named after what it tests. A name starting with "good" must be
accepted by its harness; every other file must be rejected with one clear error line,
never crash, hang or blow up memory (test/test_hostile.sh checks both). Files the fuzzer
found are added by hand next to these (see test/fuzz/README.md); this script only
rewrites the files it makes. Standard library only.

The adapter and checkpoint cases are for the tiny model of test/fuzz/fuzz_model.h:
hidden 8, MLP 16, 2 layers, 2 heads of 4, 1 key/value head, vocabulary 16, LoRA rank 2
on q_proj and v_proj (checkpoints: 10 training examples, run signature "fuzz").
"""
import json
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8}


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def f32(values):
    return b"".join(struct.pack("<f", v) for v in values)


def safetensors(tensors, metadata=None, header_text=None, pad=True):
    """tensors: list of (name, dtype, shape, data bytes), laid out in order."""
    header, offset, blob = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blob += data
    text = header_text if header_text is not None else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def raw_safetensors(header_text, data=b""):
    return struct.pack("<Q", len(header_text)) + header_text + data


# ----------------------------------------------------------------------------
def safetensors_cases():
    h = "safetensors"
    good = [("a", "F32", [2, 3], f32(range(6))), ("b", "BF16", [4], b"\x80\x3f" * 4), ("c", "F16", [1], b"\x00\x3c")]
    put(h, "good-three-dtypes", safetensors(good, {"format": "pt"}))
    put(h, "good-empty", safetensors([]))
    put(h, "good-zero-size-tensor", safetensors([("empty", "F32", [0, 5], b""), ("x", "F32", [1], f32([1]))]))
    put(h, "good-integer-valued-float-offsets",  # 8.0 is the integer 8, exactly
        raw_safetensors(b'{"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0.0,8.0]}}   ', f32([1, 2])))
    put(h, "metadata-repeated", raw_safetensors(b'{"__metadata__":{"format":"pt"},"__metadata__":{"format":"pt"}}'))
    put(h, "too-short", b"\x05\x00\x00\x00\x00")
    put(h, "header-length-past-eof", struct.pack("<Q", 1000) + b'{"x":1}')
    put(h, "header-length-over-100mb", struct.pack("<Q", 200_000_000) + b"{}      ")
    put(h, "header-length-2-to-the-64-minus-1", b"\xff" * 8 + b"{}")
    put(h, "header-not-json", raw_safetensors(b'{"x":{"dtype":"F32",      '))
    put(h, "header-not-object", raw_safetensors(b"[1,2,3]     "))
    put(h, "header-raw-nul-in-name", raw_safetensors(b'{"a\x00b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'))
    put(h, "header-nul-escape-in-name",
        raw_safetensors(b'{"a\\u0000b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}   '))
    put(h, "header-invalid-utf8-in-name", raw_safetensors(b'{"a\xff":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'))
    put(h, "header-text-after-json", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} {"y":2}',
                                                     f32([1])))
    put(h, "header-second-object-after-padding", raw_safetensors(b"{}      {}"))
    put(h, "header-nesting-too-deep", raw_safetensors(b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}"))
    put(h, "entry-not-object", raw_safetensors(b'{"x":5}'))
    put(h, "entry-missing-dtype", raw_safetensors(b'{"x":{"shape":[0],"data_offsets":[0,0]}}'))
    put(h, "dtype-unknown", safetensors([("x", "F8_E9", [1], b"\x00")]))
    put(h, "dtype-not-string", raw_safetensors(b'{"x":{"dtype":7,"shape":[0],"data_offsets":[0,0]}}'))
    put(h, "shape-float", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,6]}}', b"\x00" * 6))
    put(h, "shape-negative", raw_safetensors(b'{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}'))
    put(h, "shape-1e300", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1e300],"data_offsets":[0,0]}}'))
    put(h, "shape-product-wraps-to-zero",
        raw_safetensors(b'{"x":{"dtype":"F32","shape":[2147483648,2147483648,4],"data_offsets":[0,0]}}'))
    put(h, "shape-nine-dimensions",
        raw_safetensors(b'{"x":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}}', f32([1])))
    put(h, "offsets-float", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0.5,4.5]}}', f32([1])))
    put(h, "offsets-beyond-2-to-the-53",
        raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[1e20,100000000000000000004]}}', f32([1])))
    put(h, "offsets-negative", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}', f32([1])))
    put(h, "offsets-reversed", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', f32([1])))
    put(h, "offsets-three-entries", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}', f32([1])))
    put(h, "offsets-past-data", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32([1])))
    put(h, "offsets-overlap", raw_safetensors(b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                              b'"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', f32([1, 2, 3])))
    put(h, "offsets-hole", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32([1, 2])))
    put(h, "data-trailing-bytes", safetensors([("x", "F32", [1], f32([1]))]) + b"junk")
    put(h, "size-mismatch", raw_safetensors(b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', f32([1])))
    put(h, "duplicate-tensor-name", raw_safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                                    b'"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32([1, 2])))
    put(h, "metadata-not-object", raw_safetensors(b'{"__metadata__":"pt"}'))
    put(h, "metadata-value-not-string", raw_safetensors(b'{"__metadata__":{"format":1}}'))
    put(h, "weights-nan-f32", safetensors([("x", "F32", [2], f32([1.0, float("nan")]))]))
    put(h, "weights-inf-bf16", safetensors([("x", "BF16", [2], b"\x80\x3f\x80\x7f")]))
    put(h, "weights-inf-f16", safetensors([("x", "F16", [1], b"\x00\x7c")]))


# ----------------------------------------------------------------------------
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 48, "intermediate_size": 136,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 301,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 32},
        "max_position_embeddings": 128, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "initializer_range": 0.02,
        "pretraining_tp": 1, "use_cache": True, "tie_word_embeddings": False, "torch_dtype": "float32"}


def config_cases():
    h = "config"

    def cfg(name, **changes):
        c = dict(TINY)
        for k, v in changes.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        put(h, name, json.dumps(c, indent=1))

    cfg("good-tiny")
    cfg("good-minimal", **{k: None for k in TINY if k not in (
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")})
    put(h, "good-llama-3.2-1b-shape", json.dumps(dict(
        TINY, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, rope_theta=500000.0, bos_token_id=128000,
        eos_token_id=[128001, 128008, 128009], max_position_embeddings=131072, tie_word_embeddings=True,
        torch_dtype="bfloat16", rope_scaling=dict(TINY["rope_scaling"], factor=32.0,
                                                  original_max_position_embeddings=8192))))
    cfg("good-rope-scaling-null", rope_scaling=None)
    text = json.dumps(TINY)
    put(h, "good-duplicate-key-last-wins", text[:-1] + ', "vocab_size": 300}')  # Hugging Face reads the last
    put(h, "duplicate-key-last-is-bad", text[:-1] + ', "vocab_size": -5}')
    cfg("bos-token-id-1e300", bos_token_id=1e300)
    cfg("bos-token-id-past-vocab", bos_token_id=301)
    cfg("bos-token-id-float", bos_token_id=1.5)
    cfg("eos-token-id-float", eos_token_id=2.5)
    cfg("eos-token-id-negative-in-list", eos_token_id=[2, -1])
    cfg("eos-token-id-list-too-long", eos_token_id=list(range(9)))
    cfg("eos-token-id-string", eos_token_id="2")
    cfg("rope-theta-zero", rope_theta=0)
    cfg("rope-theta-negative", rope_theta=-10000.0)
    put(h, "rope-theta-overflows-to-infinity", text.replace('"rope_theta": 10000.0', '"rope_theta": 1e999'))
    cfg("rope-theta-tiny", rope_theta=1e-300)
    cfg("rms-norm-eps-zero", rms_norm_eps=0)
    cfg("rms-norm-eps-negative", rms_norm_eps=-1e-5)
    cfg("rms-norm-eps-string", rms_norm_eps="1e-5")
    cfg("initializer-range-huge", initializer_range=1e30)
    cfg("hidden-size-1e9", hidden_size=1000000000)
    cfg("hidden-size-float", hidden_size=48.5)
    cfg("hidden-size-zero", hidden_size=0)
    cfg("intermediate-size-1e20", intermediate_size=1e20)
    cfg("layers-negative", num_hidden_layers=-2)
    cfg("heads-overflow-attention-scratch", num_attention_heads=1 << 30, num_key_value_heads=1 << 30, head_dim=1 << 20)
    cfg("kv-heads-more-than-heads", num_key_value_heads=8)
    cfg("kv-heads-not-a-divisor", num_attention_heads=6, num_key_value_heads=4, head_dim=8)
    cfg("head-dim-odd", head_dim=15)
    cfg("head-dim-default-zero", hidden_size=2, num_attention_heads=4, num_key_value_heads=4, head_dim=None)
    cfg("vocab-size-zero", vocab_size=0)
    cfg("vocab-size-2-to-the-31", vocab_size=2147483648)
    cfg("max-position-embeddings-negative", max_position_embeddings=-1)
    cfg("rope-scaling-yarn", rope_scaling={"rope_type": "yarn", "factor": 4.0})
    cfg("rope-scaling-factor-zero", rope_scaling=dict(TINY["rope_scaling"], factor=0))
    cfg("rope-scaling-high-not-above-low", rope_scaling=dict(TINY["rope_scaling"], high_freq_factor=1.0))
    cfg("rope-scaling-original-max-float", rope_scaling=dict(TINY["rope_scaling"], original_max_position_embeddings=3.5))
    cfg("rope-scaling-not-object", rope_scaling=[1, 2])
    cfg("hidden-act-gelu", hidden_act="gelu")
    cfg("attention-bias-true", attention_bias=True)
    cfg("mlp-bias-true", mlp_bias=True)
    cfg("model-type-gpt2", model_type="gpt2")
    cfg("sliding-window-shorter-than-context", model_type="mistral", sliding_window=64)
    cfg("tie-word-embeddings-string", tie_word_embeddings="true")
    cfg("torch-dtype-float64", torch_dtype="float64")
    put(h, "text-after-json", text + ' {"vocab_size": 5}')
    put(h, "raw-nul-byte", text[:20] + "\0" + text[20:])
    put(h, "nul-escape-in-string", text.replace('"float32"', '"float32\\u0000x"'))
    put(h, "not-an-object", "[1, 2, 3]")
    put(h, "empty", "")


# ----------------------------------------------------------------------------
def generation_config_cases():
    h = "generation_config"

    def gen(name, **fields):
        put(h, name, json.dumps(fields))

    gen("good-llama3-sampling", bos_token_id=1, eos_token_id=[2, 8, 9], do_sample=True, temperature=0.6, top_p=0.9)
    gen("good-greedy", bos_token_id=1, eos_token_id=2, do_sample=False)
    gen("good-top-k-larger-than-vocab", do_sample=True, top_k=100000, repetition_penalty=1.3)
    gen("good-unused-values-in-range", do_sample=False, temperature=1.5, top_p=0.5, top_k=3)
    put(h, "good-duplicate-key-last-wins", '{"do_sample": true, "top_k": -1, "top_k": 5}')
    gen("top-k-1e20", do_sample=True, top_k=1e20)
    gen("top-k-negative", do_sample=True, top_k=-3)
    gen("top-k-float", do_sample=True, top_k=2.5)
    gen("top-k-out-of-range-without-sampling", do_sample=False, top_k=1e20)
    gen("temperature-negative", do_sample=True, temperature=-0.7)
    put(h, "temperature-infinite", '{"do_sample": true, "temperature": 1e999}')
    gen("top-p-negative", do_sample=True, top_p=-0.1)
    gen("top-p-zero", do_sample=True, top_p=0)
    gen("top-p-above-one", do_sample=True, top_p=1.5)
    gen("repetition-penalty-zero", repetition_penalty=0)
    gen("repetition-penalty-negative", repetition_penalty=-1.2)
    gen("do-sample-string", do_sample="true")
    gen("eos-token-id-past-vocab", eos_token_id=301)
    gen("eos-token-id-1e300", eos_token_id=1e300)
    gen("eos-token-id-list-too-long", eos_token_id=list(range(9)))
    gen("eos-token-id-list-of-strings", eos_token_id=["2"])
    put(h, "text-after-json", '{"do_sample": false} {"do_sample": true}')
    put(h, "nul-escape-in-key", '{"do_sample\\u0000": 1, "top_k": 1e30}')
    put(h, "not-an-object", "3")


# ----------------------------------------------------------------------------
C, I, L, NH, NKV, HS, V = 8, 16, 2, 2, 1, 4, 16
MODULES = {"q_proj": ("self_attn", C, NH * HS), "k_proj": ("self_attn", C, NKV * HS), "v_proj": ("self_attn", C, NKV * HS),
           "o_proj": ("self_attn", NH * HS, C), "gate_proj": ("mlp", C, I), "up_proj": ("mlp", C, I),
           "down_proj": ("mlp", I, C)}
ORDER = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapter_tensors(r, targets, value=lambda i: 0.01 * (i % 7)):
    out, k = [], 0
    for l in range(L):
        for mod in ORDER:
            if mod not in targets:
                continue
            part, fan_in, fan_out = MODULES[mod]
            for which, shape in (("A", [r, fan_in]), ("B", [fan_out, r])):
                n = shape[0] * shape[1]
                out.append((f"base_model.model.model.layers.{l}.{part}.{mod}.lora_{which}.weight", "F32", shape,
                            f32(value(k + i) for i in range(n))))
                k += n
    return out


PEFT = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "fuzz", "r": 2, "lora_alpha": 4,
        "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "bias": "none", "use_rslora": False,
        "fan_in_fan_out": False, "inference_mode": True, "use_dora": False, "alpha_pattern": {}, "rank_pattern": {},
        "layers_to_transform": None, "layers_pattern": None, "modules_to_save": None, "lora_bias": False}


def adapter_cases():
    h = "adapter_config"

    def ad(name, tensors=None, **changes):
        c = dict(PEFT)
        for k, v in changes.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        data = json.dumps(c, indent=1).encode()
        if tensors is not None:
            data += b"\0" + safetensors(tensors, {"format": "pt"})
        put(h, name, data)

    ad("good-peft-defaults")
    ad("good-all-linear-rank-3", adapter_tensors(3, ORDER), r=3, target_modules="all-linear", use_rslora=True)
    ad("good-minimal", **{k: None for k in PEFT if k not in ("r", "lora_alpha", "target_modules")})
    ad("r-1e6", r=1000000)
    ad("r-65536-adapter-of-rank-2", r=65536)  # allocated 29 MB for a 1 KB adapter before its shapes were checked
    ad("r-1e6-adapter-of-rank-2", adapter_tensors(2, ["q_proj", "v_proj"]), r=1000000)
    ad("r-float", r=2.5)
    ad("r-zero", r=0)
    ad("r-missing", r=None)
    ad("lora-alpha-1e300", lora_alpha=1e300)
    ad("lora-alpha-negative", lora_alpha=-16)
    ad("lora-alpha-string", lora_alpha="16")
    ad("lora-dropout-one", lora_dropout=1.0)
    ad("lora-dropout-negative", lora_dropout=-0.1)
    ad("use-dora-true", use_dora=True)
    ad("alpha-pattern-non-empty", alpha_pattern={"q_proj": 8})
    ad("rank-pattern-non-empty", rank_pattern={"v_proj": 4})
    ad("layers-to-transform-set", layers_to_transform=[0])
    ad("modules-to-save-set", modules_to_save=["lm_head"])
    ad("bias-all", bias="all")
    ad("fan-in-fan-out-true", fan_in_fan_out=True)
    ad("lora-bias-true", lora_bias=True)
    ad("use-rslora-string", use_rslora="yes")
    ad("peft-type-prefix-tuning", peft_type="PREFIX_TUNING")
    ad("target-modules-empty", target_modules=[])
    ad("target-modules-regex-string", target_modules=".*proj")
    ad("target-modules-unknown", target_modules=["q_proj", "lm_head"])
    ad("target-modules-nul-escape", target_modules=["q_proj\u0000x", "v_proj"])
    text = json.dumps(PEFT)
    put(h, "text-after-json", text + " {}")
    put(h, "good-duplicate-key-last-wins", text[:-1] + ', "r": 5, "r": 2}')
    ad("adapter-nan-weight", adapter_tensors(2, ["q_proj", "v_proj"], lambda i: float("nan") if i == 7 else 0.1))
    ad("adapter-extra-tensor", adapter_tensors(2, ["q_proj", "v_proj"]) + [("extra", "F32", [1], f32([1]))])
    ad("adapter-missing-tensor", adapter_tensors(2, ["q_proj", "v_proj"])[1:])
    ad("adapter-rank-differs-from-config", adapter_tensors(4, ["q_proj", "v_proj"]))
    ad("adapter-huge-finite-weights-overflow-logits",  # found by the fuzzer: caught by generate's logits check
       adapter_tensors(3, ORDER, lambda i: 3e38), r=3, target_modules="all-linear")
    ad("adapter-alpha-overflows-scale", adapter_tensors(2, ["q_proj", "v_proj"]), lora_alpha=1e30)
    put(h, "adapter-safetensors-truncated", json.dumps(PEFT).encode() + b"\0" +
        safetensors(adapter_tensors(2, ["q_proj", "v_proj"]))[:100])


# ----------------------------------------------------------------------------
LORA_PARAMS = L * (2 * C + NH * HS * 2 + 2 * C + NKV * HS * 2)  # q_proj and v_proj, rank 2


def checkpoint(step=3, epoch=0, cursor=6, run="fuzz", lora=None, adam_m=None, adam_v=None, history=None,
               drop=(), extra_metadata=None):
    n = LORA_PARAMS
    meta = {"format": "pt", "step": step, "epoch": epoch, "cursor": cursor, "run": run}
    meta.update(extra_metadata or {})
    meta = {k: str(v) for k, v in meta.items() if v is not None}
    steps = history if history is not None else (int(step) + 1 if str(step).isdigit() else 1)
    lora = lora or [0.01 * (i % 5) for i in range(n)]
    tensors = [("lora", "F32", [len(lora)], f32(lora)),
               ("adam_m", "F32", [n], f32(adam_m or [1e-3] * n)),
               ("adam_v", "F32", [n], f32(adam_v or [1e-6] * n)),
               ("history_train", "F32", [steps], f32([float("nan")] + [2.0] * (steps - 1))),
               ("history_val", "F32", [steps], f32([2.5] + [float("nan")] * (steps - 1)))]
    return safetensors([t for t in tensors if t[0] not in drop], meta)


def checkpoint_cases():
    h = "checkpoint"
    put(h, "good-step-3", checkpoint())
    put(h, "good-step-0", checkpoint(step=0, cursor=0))
    put(h, "good-cursor-at-end-of-epoch", checkpoint(step=5, epoch=1, cursor=10))
    put(h, "cursor-negative", checkpoint(cursor=-1))
    put(h, "cursor-past-examples", checkpoint(cursor=11))
    put(h, "cursor-int-min", checkpoint(cursor=-2147483648))
    put(h, "cursor-empty", checkpoint(cursor=""))
    put(h, "epoch-int-max", checkpoint(epoch=2147483647))
    put(h, "epoch-negative", checkpoint(epoch=-3))
    put(h, "step-negative", checkpoint(step=-5, history=1))
    put(h, "step-not-a-number", checkpoint(step="abc", history=1))
    put(h, "step-trailing-garbage", checkpoint(step="3abc", history=4))
    put(h, "step-leading-plus", checkpoint(step="+3", history=4))
    put(h, "step-leading-space", checkpoint(step=" 3", history=4))
    put(h, "step-overflows-long", checkpoint(step="99999999999999999999", history=1))
    put(h, "step-past-max-steps", checkpoint(step=2000000000, history=1))
    put(h, "history-shorter-than-step", checkpoint(step=3, history=2))
    put(h, "history-missing", checkpoint(drop=("history_train", "history_val")))
    put(h, "adam-v-negative", checkpoint(adam_v=[-1e-6] * LORA_PARAMS))
    put(h, "adam-m-nan", checkpoint(adam_m=[float("nan")] * LORA_PARAMS))
    put(h, "lora-infinite", checkpoint(lora=[float("inf")] * LORA_PARAMS))
    # found by the fuzzer: finite weights so large the loss overflows, stopped as train_step stops a diverged run
    put(h, "lora-huge-finite-loss-overflows", checkpoint(lora=[3e38] * LORA_PARAMS))
    put(h, "adam-m-missing", checkpoint(drop=("adam_m",)))
    put(h, "run-signature-differs", checkpoint(run="model=other"))
    put(h, "metadata-cursor-missing", checkpoint(cursor=None))
    put(h, "lora-wrong-size", checkpoint(lora=[0.0] * (LORA_PARAMS + 1)))


# ----------------------------------------------------------------------------
def dataset_cases():
    h = "dataset"
    put(h, "good-csv", 'c' + 'instruction,input,output\n"Say hi","","Hello, matey!"\nName a fish,,Cod\n')
    put(h, "good-csv-empty-quoted-first-field", 'c' + '"",instruction,output\n"",a,b\n')
    put(h, "good-csv-header-leading-spaces", 'c' + " " * 4000 + "question , answer\t\nq,a\n")
    put(h, "good-csv-crlf-and-bom", 'c' + "\ufeffprompt,completion\r\nhi,there\r\n\r\n")
    put(h, "csv-unterminated-quote", 'c' + 'question,answer\n"oops,never closed\n')
    put(h, "csv-quote-in-unquoted-field", 'c' + 'question,answer\nsay "hi",ok\n')
    put(h, "csv-text-after-closing-quote", 'c' + 'question,answer\n"a"b,c\n')
    put(h, "csv-field-count-differs", 'c' + 'question,answer\nonly one field\n')
    put(h, "csv-unknown-columns", 'c' + 'query,reply\nhi,hello\n')
    put(h, "csv-raw-nul-byte", 'c' + 'question,answer\nq\0,a\n')
    put(h, "csv-empty", 'c')
    put(h, "good-json-array", 'j' + json.dumps([{"instruction": "Say hi", "output": "Ahoy"},
                                                {"messages": [{"role": "user", "content": "hi"},
                                                              {"role": "assistant", "content": "arr"}]}]))
    put(h, "json-second-value-after-array", 'j' + '[{"text": "one"}]\n[{"text": "two"}]\n')
    put(h, "json-trailing-garbage", 'j' + '[{"text": "one"}] garbage')
    put(h, "json-nul-escape-in-content", 'j' + '[{"text": "cut\\u0000here"}]')
    put(h, "json-array-not-closed", 'j' + '[{"text": "one"},\n{"text": "two"}\n')
    put(h, "json-record-not-object", 'j' + '[1, 2]')
    put(h, "good-jsonl-chat-and-sharegpt", 'l' + json.dumps({"messages": [{"role": "system", "content": "be a pirate"},
                                                                         {"role": "user", "content": "hi"},
                                                                         {"role": "assistant", "content": "arr"}]})
        + "\n" + json.dumps({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
        + "\n\n" + json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    put(h, "good-jsonl-duplicate-key-last-wins", 'l' + '{"text": 5, "text": "the last one"}\n')
    put(h, "jsonl-raw-nul-ends-line-2", 'l' + '{"text": "one"}\n{"text": "two"}\0\n{"text": "three"}\n')
    put(h, "jsonl-two-objects-on-one-line", 'l' + '{"text": "one"} {"text": "two"}\n')
    put(h, "jsonl-nul-escape-in-content", 'l' + '{"text": "one"}\n{"text": "two\\u0000three"}\n')
    put(h, "jsonl-nul-escape-in-key", 'l' + '{"text\\u0000": "x", "text": "y"}\n')
    put(h, "jsonl-half-a-pair", 'l' + '{"instruction": "Say hi"}\n')
    put(h, "jsonl-unknown-role", 'l' + '{"messages": [{"role": "pirate", "content": "arr"}]}\n')
    put(h, "jsonl-message-content-not-string", 'l' + '{"messages": [{"role": "user", "content": 5}]}\n')
    put(h, "jsonl-not-json", 'l' + '{"text": "one"\n')
    put(h, "good-text", 't' + "Once upon a time.\nThe end.\n")
    put(h, "text-raw-nul-byte", 't' + "Once upon\0 a time.\n")
    put(h, "text-empty", 't')


if __name__ == "__main__":
    safetensors_cases()
    config_cases()
    generation_config_cases()
    adapter_cases()
    checkpoint_cases()
    dataset_cases()
