#!/bin/bash
# Prefill and decode speed of generate.c on a Llama-3.2-1B-shaped model with random
# weights (F32 and BF16 decode weights), against the fp32 FMA peak and the measured
# memory-bandwidth limit.
# usage: test/bench_generate.sh [layers] [prefill_tokens] [decode_tokens] [rounds]   (default 16 64 16 7)
# (make bench builds ./bench_generate and runs this)
set -e
cd "$(dirname "$0")/.."
[ -x ./bench_generate ] || { echo "error: ./bench_generate is missing: make bench_generate" >&2; exit 1; }
./bench_generate "${1:-16}" "${2:-64}" "${3:-16}" "${4:-7}"
