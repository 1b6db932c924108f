#!/bin/bash
# Encode throughput, tokenizer.c vs Hugging Face's tokenizers (Rust, via the npm package
# @anush008/tokenizers), on the test corpus, single-threaded, in the same run.
# Two measurements each: every corpus string encoded by its own call (what a data loader
# does; the Node binding adds per-call overhead to HF here), and the corpus as one text.
# usage: bash test/bench_tokenizer.sh   (make bench builds ./bench_tokenizer, installs the npm packages and runs this)
set -eu
cd "$(dirname "$0")/.."
tmp=test/tmp/tokenizer
lenml=test/node/node_modules/@lenml
mkdir -p "$tmp"
[ -f test/node/node_modules/@anush008/tokenizers/index.js ] || { echo "error: the reference tokenizers are not installed: make test-deps" >&2; exit 1; }
[ -x ./bench_tokenizer ] || { echo "error: ./bench_tokenizer is missing: make bench_tokenizer" >&2; exit 1; }
[ -f "$tmp/corpus.bin" ] || /usr/bin/python3 test/make_corpus.py "$tmp" >/dev/null
export RAYON_NUM_THREADS=1 UV_THREADPOOL_SIZE=1 OMP_NUM_THREADS=1
source test/bench_load.sh  # defines: measure, load_line
for name in llama3 llama2; do
    echo "== $name ($(stat -c %s "$tmp/corpus.bin") byte corpus); $(load_line)"
    measure ours ./bench_tokenizer "$lenml/tokenizer-$name/models" "$tmp/corpus.bin"
    echo "$ours"; echo "  others used $others of the CPUs meanwhile"
    measure hf node test/hf_tokenize.js bench "$lenml/tokenizer-$name/models/tokenizer.json" "$tmp/corpus.bin"
    echo "$hf"; echo "  others used $others of the CPUs meanwhile"
    for mode in per-string whole-text; do
        a=$(echo "$ours" | grep "$mode" | awk '{print $3}')
        b=$(echo "$hf" | grep "$mode" | awk '{print $3}')
        echo "$mode: tokenizer.c $a MB/s, Hugging Face $b MB/s, ratio $(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.1fx", a/b}')"
    done
done
