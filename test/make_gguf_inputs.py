#!/usr/bin/env python3
"""
Model directories for test/test_gguf.sh that the repository does not hold as such.

  make_gguf_inputs.py tiny SRC_MODEL OUT
      SRC_MODEL (test/models/tiny*, which have no tokenizer: their tests feed ids) copied
      with a 301-token Llama 2 style tokenizer (SentencePiece BPE with byte fallback):
      <unk> <s> </s>, the 256 byte tokens, 15 characters and 27 merges.
  make_gguf_inputs.py vocab TOKENIZER_DIR OUT
      a one-layer model of hidden size 32 (fixed random weights) around a real tokenizer
      (tokenizer.json + tokenizer_config.json), so llama.cpp can load its vocabulary from
      an exported GGUF file.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import write_safetensors  # noqa: E402

CHARS = ["\u2581", "e", "t", "a", "o", "i", "n", "s", "r", "h", "l", "d", "u", "c", "m"]
MERGES = [("\u2581", "t"), ("h", "e"), ("\u2581t", "he"), ("\u2581", "a"), ("i", "n"), ("e", "r"), ("a", "n"),
          ("o", "n"), ("r", "e"), ("e", "n"), ("\u2581", "s"), ("\u2581", "c"), ("\u2581", "m"), ("e", "d"),
          ("o", "r"), ("a", "t"), ("i", "s"), ("\u2581", "h"), ("s", "t"), ("\u2581", "d"), ("l", "e"),
          ("\u2581a", "n"), ("\u2581an", "d"), ("i", "t"), ("\u2581", "o"), ("o", "u"), ("a", "r")]


def tiny_tokenizer():
    specials = ["<unk>", "<s>", "</s>"]
    vocab = specials + [f"<0x{b:02X}>" for b in range(256)] + CHARS + [a + b for a, b in MERGES]
    assert len(vocab) == 301 and len(set(vocab)) == 301
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, s in enumerate(specials)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": {"String": " "},
                                                            "content": "\u2581"}]},
        "pre_tokenizer": None, "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "vocab": {s: i for i, s in enumerate(vocab)}, "merges": [f"{a} {b}" for a, b in MERGES]},
    }


def tiny(src, out):
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    json.dump(tiny_tokenizer(), open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True},
              open(os.path.join(out, "tokenizer_config.json"), "w"))


def vocab(tokenizer_dir, out):
    tok = json.load(open(os.path.join(tokenizer_dir, "tokenizer.json"), encoding="utf-8"))
    ids = list(tok["model"]["vocab"].values()) + [a["id"] for a in tok.get("added_tokens", [])]
    V, C, I = max(ids) + 1, 32, 64
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C, "intermediate_size": I,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16,
           "vocab_size": V, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
           "tie_word_embeddings": True, "torch_dtype": "float32"}
    rng = np.random.default_rng(0)
    shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,),
              "model.layers.0.input_layernorm.weight": (C,), "model.layers.0.post_attention_layernorm.weight": (C,),
              "model.layers.0.self_attn.q_proj.weight": (C, C), "model.layers.0.self_attn.k_proj.weight": (C, C),
              "model.layers.0.self_attn.v_proj.weight": (C, C), "model.layers.0.self_attn.o_proj.weight": (C, C),
              "model.layers.0.mlp.gate_proj.weight": (I, C), "model.layers.0.mlp.up_proj.weight": (I, C),
              "model.layers.0.mlp.down_proj.weight": (C, I)}
    tensors = [(name, torch.from_numpy((rng.standard_normal(shape) * 0.02).astype(np.float32)), "F32")
               for name, shape in shapes.items()]
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors, {"format": "pt"})
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, f), out)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in ("tiny", "vocab"):
        (tiny if sys.argv[1] == "tiny" else vocab)(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
