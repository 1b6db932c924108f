#!/bin/bash
# Downloads Llama-3.2-1B-Instruct from Hugging Face into data/Llama-3.2-1B-Instruct, for
# fine-tuning a real model with the same binaries. Needs internet access and a Hugging Face
# token for an account that has accepted Meta's licence on the model page
# (https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct). Never run by the tests.
#
# usage: HF_TOKEN=hf_... bash data/fetch_llama.sh [repo] [dir]
#   repo  default meta-llama/Llama-3.2-1B-Instruct (any Llama 2/3 repository in HF layout works)
#   dir   default data/<name of the repo>
set -euo pipefail
cd "$(dirname "$0")/.."
repo=${1:-meta-llama/Llama-3.2-1B-Instruct}
dir=${2:-data/${repo##*/}}
files="config.json generation_config.json tokenizer.json tokenizer_config.json special_tokens_map.json model.safetensors"

if [ -z "${HF_TOKEN:-}" ]; then
    echo "error: set HF_TOKEN to a Hugging Face access token (https://huggingface.co/settings/tokens)" >&2
    echo "       after accepting the licence on https://huggingface.co/$repo" >&2
    exit 1
fi
command -v curl >/dev/null || { echo "error: curl is missing; install it with: apt-get install -y curl" >&2; exit 1; }
mkdir -p "$dir"
for f in $files; do
    [ -s "$dir/$f" ] && { echo "have  $dir/$f"; continue; }
    echo "fetch $dir/$f"
    # a partial download never takes the final name
    if ! curl -fL --retry 3 -H "Authorization: Bearer $HF_TOKEN" -o "$dir/$f.part" \
            "https://huggingface.co/$repo/resolve/main/$f"; then
        rm -f "$dir/$f.part"
        [ "$f" = special_tokens_map.json ] && continue   # optional
        echo "error: could not download $f from $repo (is the licence accepted for this token?)" >&2
        exit 1
    fi
    mv "$dir/$f.part" "$dir/$f"
done

cat <<MSG

$dir is ready. Fine-tune it on a question,answer CSV like data/pirate.csv:

$(head -3 data/pirate.csv)

  make train generate
  ./train --model $dir --data data/pirate.csv --output_dir out/llama-pirate \\
          --lora_target all --lora_rank 16 --lora_alpha 32 --learning_rate 2e-4 \\
          --num_train_epochs 1 --per_device_train_batch_size 4 --max_seq_length 256
  ./generate --model $dir --adapter out/llama-pirate --chat
MSG
