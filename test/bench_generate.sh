#!/bin/bash
# Prefill and decode speed of generate.c on a Llama-3.2-1B-shaped model with random
# weights (an F32, BF16, int8 and NF4 base), against the fp32 and bf16 roofs and the memory-bandwidth
# limit, both measured in the same run, and how busy the machine was meanwhile.
# usage: test/bench_generate.sh [layers] [prefill_tokens] [decode_tokens] [rounds]   (default 16 64 16 7)
# (make bench builds ./bench_generate and runs this)
set -e
cd "$(dirname "$0")/.."
[ -x ./bench_generate ] || { echo "error: ./bench_generate is missing: make bench_generate" >&2; exit 1; }
source test/bench_load.sh  # defines: measure, load_line
echo "== generation; $(load_line) before"
measure out ./bench_generate "${1:-16}" "${2:-64}" "${3:-16}" "${4:-7}"
echo "$out"
echo "others used $others of the CPUs during the run; $(load_line) after"
