#!/bin/bash
# Prefill and decode speed of generate.c on a Llama-3.2-1B-shaped model with random
# weights (F32 and BF16 decode weights), against the fp32 FMA peak and the measured
# memory-bandwidth limit. Builds ./bench_generate first.
# usage: test/bench_generate.sh [layers] [prefill_tokens] [decode_tokens] [rounds]   (default 16 64 16 7)
set -e
cd "$(dirname "$0")/.."
${CC:-gcc} -O3 -march=native -fopenmp -Wall -Wextra test/bench_generate.c -DTOKENIZER_NO_MAIN tokenizer.c -o bench_generate -lcjson -lm
./bench_generate "${1:-16}" "${2:-64}" "${3:-16}" "${4:-7}"
