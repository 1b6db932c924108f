#!/bin/bash
# Makes data/base, the small Llama-architecture base model that `./train` fine-tunes by
# default, from nothing but this project's code:
#   1. data/make_corpus.py writes a generated English + Chinese corpus and plain-style chats
#   2. ./tokenizer train learns a 3840-token byte-level BPE vocabulary (4096 with the 256 special tokens) on the corpus
#      (Llama 3 special tokens; the Llama 3 chat template is added to tokenizer_config.json)
#   3. ./train --from_scratch --full_finetune pre-trains the weights from random
#      initialisation on the corpus and the chats, then writes them as bfloat16
# usage: bash data/make_base_model.sh [steps]     (run by `make base-model`; default 1000 steps)
# Takes about STEPS x 4096 tokens at the tok/s the log shows (about 30 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1000}
build=data/build
rm -rf "$build"
mkdir -p "$build/init"
make -s train tokenizer

echo "== corpus"
python3 data/make_corpus.py "$build"

echo "== tokenizer (byte-level BPE, 4096 tokens)"
./tokenizer train --corpus "$build/corpus.txt" --vocab_size 3840 --out "$build/init"
# The trainer puts the 256 Llama 3 special tokens at the top of the vocabulary:
# <|begin_of_text|> = 3840, <|end_of_text|> = 3841, <|eot_id|> = 3849.
python3 - "$build/init" <<'PY'
import json, sys
d = sys.argv[1]
tok = json.load(open(f"{d}/tokenizer.json", encoding="utf-8"))
ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
assert (ids["<|begin_of_text|>"], ids["<|end_of_text|>"], ids["<|eot_id|>"]) == (3840, 3841, 3849), ids
cfg = json.load(open(f"{d}/tokenizer_config.json", encoding="utf-8"))
# the Llama 3 (3.0) chat format: no system header with dates, so short examples stay short
cfg["chat_template"] = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                        "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
json.dump(cfg, open(f"{d}/tokenizer_config.json", "w", encoding="utf-8"), ensure_ascii=False, indent=2)
PY
cat > "$build/init/config.json" <<'JSON'
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 256,
  "intermediate_size": 768,
  "num_hidden_layers": 6,
  "num_attention_heads": 8,
  "num_key_value_heads": 4,
  "head_dim": 32,
  "vocab_size": 4096,
  "max_position_embeddings": 1024,
  "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0,
  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192},
  "tie_word_embeddings": true,
  "initializer_range": 0.02,
  "bos_token_id": 3840,
  "eos_token_id": [3841, 3849],
  "torch_dtype": "bfloat16"
}
JSON
printf '{"bos_token_id": 3840, "eos_token_id": [3841, 3849], "do_sample": false}\n' > "$build/init/generation_config.json"

echo "== pre-training from random weights ($steps steps of 16 x 256 tokens)"
start=$(date +%s)
./train --model "$build/init" --from_scratch --full_finetune \
    --data "$build/corpus.txt,$build/chat_plain.jsonl" --template llama3 \
    --packing --max_seq_length 256 --batch_size 16 --max_steps "$steps" \
    --learning_rate 2e-3 --lr_scheduler_type cosine --warmup_steps 100 --min_lr 1e-4 \
    --weight_decay 0.1 --max_grad_norm 1.0 --train_on_inputs --val_size 200 --eval_steps 200 --save_steps 400 \
    --seed 1 --output_dir "$build/pretrain" | tee "$build/pretrain.txt"
end=$(date +%s)

rm -rf data/base
cp -r "$build/pretrain/model" data/base
cp "$build/pretrain/loss.svg" data/base_pretrain_loss.svg
echo "== data/base written in $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s of pre-training"
tail -n 1 "$build/pretrain/log.jsonl"
ls -l data/base
