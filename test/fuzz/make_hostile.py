#!/usr/bin/python3
"""Hostile model directories, checkpoints and adapters for test/test_hostile.sh's end-to-end
checks through ./train_asan and ./generate. Standard library only.

  make_hostile.py model OUTDIR CASE          a copy of test/models/tiny with one thing wrong
  make_hostile.py checkpoint IN OUT KEY=VAL  IN with one metadata value replaced
  make_hostile.py adapter IN OUTDIR KEY=VAL  the adapter directory IN with one adapter_config.json value replaced
  make_hostile.py index OUTDIR COUNT         test/models/tiny's config and an index naming COUNT shards
"""
import json
import os
import shutil
import struct
import sys

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "tiny")


def read_safetensors(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), bytearray(blob[8 + n:])


def write_safetensors(path, header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))


def set_floats(header, data, name, value, count=1):
    begin = header[name]["data_offsets"][0]
    for i in range(count):
        data[begin + 4 * i:begin + 4 * i + 4] = struct.pack("<f", value)


# config.json changes, and weight changes: (tensor, value, how many of its first floats)
CONFIG_CASES = {
    "rope_theta_zero": {"rope_theta": 0},
    "bos_token_id_1e300": {"bos_token_id": 1e300},
    "hidden_act_gelu": {"hidden_act": "gelu"},
    "attention_bias_true": {"attention_bias": True},
    "heads_huge": {"num_attention_heads": 1 << 30, "num_key_value_heads": 1 << 30},
    "rms_norm_eps_negative": {"rms_norm_eps": -1e-5},
}
WEIGHT_CASES = {
    "nan_weights": ("model.layers.1.mlp.down_proj.weight", float("nan"), 1),
    # finite, but so large that the logits overflow: only the logits check can catch it
    "huge_lm_head": ("lm_head.weight", 3e38, 48 * 301),
}
GENERATION_CASES = {
    "generation_top_k_1e20": {"do_sample": True, "top_k": 1e20},
    "generation_top_p_negative": {"do_sample": True, "top_p": -0.5},
}


def model(out, case):
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(TINY, out)
    config = json.load(open(os.path.join(out, "config.json")))
    config.update(CONFIG_CASES.get(case, {}))
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
    if case in WEIGHT_CASES:
        name, value, count = WEIGHT_CASES[case]
        path = os.path.join(out, "model.safetensors")
        header, data = read_safetensors(path)
        set_floats(header, data, name, value, count)
        write_safetensors(path, header, data)
    if case in GENERATION_CASES:
        json.dump(GENERATION_CASES[case], open(os.path.join(out, "generation_config.json"), "w"))
    if case not in CONFIG_CASES and case not in WEIGHT_CASES and case not in GENERATION_CASES:
        sys.exit(f"make_hostile.py: unknown model case {case}")


def parse_value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main():
    what = sys.argv[1]
    if what == "model":
        model(sys.argv[2], sys.argv[3])
    elif what == "checkpoint":
        header, data = read_safetensors(sys.argv[2])
        key, value = sys.argv[4].split("=", 1)
        header["__metadata__"][key] = value
        write_safetensors(sys.argv[3], header, data)
    elif what == "adapter":
        shutil.rmtree(sys.argv[3], ignore_errors=True)
        shutil.copytree(sys.argv[2], sys.argv[3])
        path = os.path.join(sys.argv[3], "adapter_config.json")
        config = json.load(open(path))
        key, value = sys.argv[4].split("=", 1)
        config[key] = parse_value(value)
        json.dump(config, open(path, "w"), indent=2)
    elif what == "index":
        out, count = sys.argv[2], int(sys.argv[3])
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        shutil.copyfile(os.path.join(TINY, "config.json"), os.path.join(out, "config.json"))
        index = {"metadata": {}, "weight_map": {f"t{i}": f"shard-{i:07d}.safetensors" for i in range(count)}}
        json.dump(index, open(os.path.join(out, "model.safetensors.index.json"), "w"))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
