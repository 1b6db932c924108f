#!/bin/bash
# train_mpi on this machine: the optimizer step of 2 ranks x 1 thread against 1 process x 2 threads, the same
# 2 micro-batches per step (the demo run's 8 x 128 tokens each, data/base), alternated 3 times, with the load;
# then the bytes ranks exchange per step for real shapes (./bench_mpi). Informational: 2 shared cores.
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
tmp=test/tmp/bench_mpi
rm -rf "$tmp"; mkdir -p "$tmp"
flags="--model data/base --data data/pirate.jsonl --lora_target all --lora_rank 16 --lora_alpha 32 --max_seq_length 128
       --per_device_train_batch_size 8 --max_steps 12 --eval_steps 0"
# median seconds per step over steps 3.. (the first ones warm up): differences of log.jsonl's elapsed
step_seconds() {
    /usr/bin/python3 -c '
import json, sys
e = [json.loads(l)["elapsed"] for l in open(sys.argv[1]) if "elapsed" in l]
t = sorted(b - a for a, b in zip(e[2:], e[3:]))
print(f"{t[len(t) // 2]:.3f}")' "$1/log.jsonl"
}
echo "load before: $(uptime)"
for round in 1 2 3; do
    ./train $flags --threads 2 --gradient_accumulation_steps 2 --output_dir $tmp/threads > /dev/null 2>&1
    OMP_NUM_THREADS=1 mpirun --oversubscribe -np 2 ./train_mpi $flags --threads 1 --output_dir $tmp/ranks > /dev/null 2>&1
    a=$(step_seconds $tmp/threads); b=$(step_seconds $tmp/ranks)
    echo "round $round: 1 process x 2 threads $a s/step, 2 ranks x 1 thread $b s/step, ratio ranks/threads $(awk "BEGIN {printf \"%.2f\", $b / $a}")"
done
echo "load after: $(uptime)"
./bench_mpi 2
