"""test_peft.py: the adapter train.c writes is what PEFT expects, and means the same thing.

test_train (run first) trains the tiny model a few steps, writes test/tmp/adapter and
the logits of the C model with that adapter. This script checks the adapter directory
against PEFT's format (the config fields PeftModel.from_pretrained needs, the key names
base_model.model.model.layers.N.{self_attn,mlp}.X_proj.lora_{A,B}.weight with no adapter
name, shapes [r,in] and [out,r]), then applies it to the PyTorch reference model as PEFT
would (y = x W^T + scaling * x A^T B^T, scaling = lora_alpha/r, or lora_alpha/sqrt(r)
with use_rslora) and compares the logits with the C model's.

usage (from the repository root): /usr/bin/python3 test/test_peft.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

ADAPTER = "test/tmp/adapter"
passed = failed = 0


def check(ok, what):
    global passed, failed
    print(f"{'ok' if ok else 'FAIL':6} {what}")
    passed += ok
    failed += not ok


def main():
    config = json.load(open(os.path.join(ADAPTER, "adapter_config.json")))
    required = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "bias": "none"}
    for key, value in required.items():
        check(config.get(key) == value, f"adapter_config.json {key} == {value!r} (got {config.get(key)!r})")
    for key in ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "base_model_name_or_path"):
        check(key in config, f"adapter_config.json has {key}")

    tensors, header_meta = reference.read_safetensors(os.path.join(ADAPTER, "adapter_model.safetensors"))
    check(header_meta.get("format") == "pt", "adapter_model.safetensors metadata format == 'pt' (transformers rejects others)")

    base_dir = config["base_model_name_or_path"]
    cfg = json.load(open(os.path.join(base_dir, "config.json")))
    weights, _ = reference.read_safetensors(os.path.join(base_dir, "model.safetensors"))
    r = config["r"]
    expected_keys = set()
    for layer in range(cfg["num_hidden_layers"]):
        for module in config["target_modules"]:
            for ab in ("A", "B"):
                expected_keys.add(reference.peft_key(layer, module, ab))
    check(set(tensors) == expected_keys, f"adapter has exactly PEFT's {len(expected_keys)} keys (no '.default', none missing)")
    shapes_ok = True
    for layer in range(cfg["num_hidden_layers"]):
        for module in config["target_modules"]:
            out_features, in_features = weights[reference.hf_name(layer, module)].shape
            shapes_ok &= tuple(tensors[reference.peft_key(layer, module, "A")].shape) == (r, in_features)
            shapes_ok &= tuple(tensors[reference.peft_key(layer, module, "B")].shape) == (out_features, r)
    check(shapes_ok, "lora_A is [r, in] and lora_B is [out, r] for every module")
    check(any(t.abs().max() > 0 for k, t in tensors.items() if "lora_B" in k), "lora_B is not all zero (the adapter does something)")

    spec = {"r": r, "alpha": config["lora_alpha"], "rslora": config["use_rslora"], "dropout": 0.0, "seed": 0,
            "targets": set(config["target_modules"])}
    lora = reference.Lora(spec, tensors, cfg["num_hidden_layers"], 0)
    ref, _ = reference.read_safetensors("test/ref/tiny.safetensors")
    logits = reference.forward(cfg, weights, ref["tokens"], ref["pos"], lora)
    c_logits = reference.read_safetensors("test/tmp/adapter_logits.safetensors")[0]["logits"]
    err = (logits.reshape(-1) - c_logits).abs().max().item()
    check(err <= 1e-4, f"logits of the PyTorch reference + adapter vs the C model: max abs {err:.2e} (tol 1e-4)")
    base_logits = reference.forward(cfg, weights, ref["tokens"], ref["pos"], None)
    moved = (base_logits.reshape(-1) - c_logits).abs().max().item()
    check(moved > 1e-2, f"the adapter changes the logits (max change {moved:.2e} > 1e-2)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
