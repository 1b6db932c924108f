#!/bin/bash
# The bf16 frozen base (train.c --base_dtype bf16), side by side in one run:
#  1. Llama-3.2-1B shape (16 layers, vocab 128256, LoRA r=8 on all seven modules, 1 x 1024
#     tokens): train.c's fp32 base, train.c's bf16 base, PyTorch fp32 (its AVX-512 OpenBLAS
#     kernel: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from its environment only, as in
#     test/bench_train.sh) and PyTorch with a bf16 base (oneDNN's bf16 matmuls). After a
#     warm-up step, train.c's step time is the median of three (the host's other tenants can
#     slow a single step by 15%), PyTorch's one step (it takes minutes); tokens/s, GFLOP/s as
#     a fraction of the bf16 roof measured in the same train.c run (test/roofline.h), peak memory.
#     Targets (issue 15): bf16 >= 1.7x fp32 tokens/s, ahead of PyTorch bf16, >= 70% of the bf16 roof.
#  2. Llama-3-8B shape (hidden 4096, MLP 14336, 32 layers, 32/8 heads of 128, vocab 128256,
#     untied), the LLaMA-Factory tutorial's LoRA (q_proj,v_proj r=4), 1 x 512 tokens, gradient
#     checkpointing, random bf16 weights made in memory: peak RSS (target <= 20 GiB) beside the
#     memory plan, tokens/s and seconds per step (one step, cold). Skipped (said so) when less than 17 GiB is free.
#  3. Only with a model directory as the third argument (a real Llama-3-8B-Instruct, say): ./train
#     as the README's command runs it on that checkpoint, one optimizer step of 512 packed tokens
#     of data/pirate.csv: the seconds to load the file, the step's tokens/s, peak RSS and plan.
# usage: test/bench_bf16.sh [layers_1b] [T_1b] [model_dir]   (default 16 1024, no model_dir; make bench runs it)
set -e
cd "$(dirname "$0")/.."
source test/bench_load.sh  # defines: measure, load_line
[ -x ./bench_train ] || { echo "error: ./bench_train is missing: make bench_train" >&2; exit 1; }
threads=${OMP_NUM_THREADS:-$CPUS}
layers=${1:-16}
T=${2:-1024}
model_dir=$3
if [ -n "$model_dir" ] && [ ! -f "$model_dir/config.json" ]; then
    echo "error: $model_dir/config.json is missing: the third argument is a Hugging Face model directory" >&2; exit 1
fi
pytorch_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
if [ -z "${OMP_WAIT_POLICY}${GOMP_SPINCOUNT}" ]; then
    pytorch_env+=(GOMP_SPINCOUNT="$(sed -n 's/^#define THREADS_SPINCOUNT "\([0-9]*\)"/\1/p' llmc/threads.h)")
fi
# a run's step time: the median of its timed steps ("steps 7.9 8.1 8.0 s;")
step_of() {
    echo "$1" | grep ' steps ' | sed -E 's/.* steps ([0-9. ]+) s;.*/\1/' | tr ' ' '\n' | grep . | sort -n |
        awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
field() { echo "$1" | sed -E "s/.*$2 ([0-9.]+).*/\1/"; }

echo "== bf16 base, Llama-3.2-1B shape: $layers layers, 1 x $T tokens, LoRA r=8 on all modules, $threads threads;" \
     "$(load_line) before"
measure c32 env OMP_NUM_THREADS="$threads" ./bench_train "$layers" 1 "$T" 3 fp32 1b 2>/dev/null
echo "$c32; others used $others of the CPUs"
measure c16 env OMP_NUM_THREADS="$threads" ./bench_train "$layers" 1 "$T" 3 bf16 1b 2>/dev/null
echo "$c16; others used $others of the CPUs"
measure p32 "${pytorch_env[@]}" /usr/bin/python3 test/bench_train.py "$layers" 1 "$T" 1 "$threads" fp32 2>/dev/null
echo "$(echo "$p32" | tail -1); others used $others of the CPUs"
echo "PyTorch's BLAS: $(echo "$p32" | head -1 | sed 's/^pytorch [^:]*: //')"
measure p16 "${pytorch_env[@]}" /usr/bin/python3 test/bench_train.py "$layers" 1 "$T" 1 "$threads" bf16 2>/dev/null
echo "$(echo "$p16" | tail -1); others used $others of the CPUs"
gflop=$(field "$c16" GFLOP)
roof=$(field "$c16" bf16)
awk -v t="$T" -v f="$gflop" -v roof="$roof" -v c32="$(step_of "$c32")" -v c16="$(step_of "$c16")" \
    -v p32="$(step_of "$(echo "$p32" | tail -1)")" -v p16="$(step_of "$(echo "$p16" | tail -1)")" 'BEGIN {
    printf "tokens/s: train.c bf16 %.0f, train.c fp32 %.0f, PyTorch fp32 %.0f, PyTorch bf16 %.0f\n", t / c16, t / c32, t / p32, t / p16
    printf "train.c bf16: %.2fx train.c fp32 (target >= 1.7), %.2fx PyTorch bf16 (target > 1), %.2fx PyTorch fp32; " \
           "%.0f GFLOP/s = %.0f%% of the bf16 roof %.0f GFLOP/s (target >= 70%%)\n", c32 / c16, p16 / c16, p32 / c16,
           f / c16, 100 * f / c16 / roof, roof }'

echo "== bf16 base, Llama-3-8B shape: 32 layers, 1 x 512 tokens, LoRA q_proj,v_proj r=4, gradient checkpointing;" \
     "$(load_line) before"
free_gib=$(awk '/^MemAvailable:/ { printf "%d", $2 / 1048576 }' /proc/meminfo)
if [ "$free_gib" -lt 17 ]; then
    echo "skip   only $free_gib GiB available; the 8B shape needs 17 GiB free (its plan is about 15.5 GiB)"
else
    measure c8 env OMP_NUM_THREADS="$threads" ./bench_train 32 1 512 0 bf16 8b 2>/dev/null
    echo "$c8; others used $others of the CPUs"
    awk -v s="$(step_of "$c8")" 'BEGIN { printf "8B: %.1f s per step, %.1f tokens/s\n", s, 512 / s }'
fi
if [ -n "$model_dir" ]; then
    echo "== bf16 base, $model_dir read from disk: LoRA q_proj,v_proj r=4, one step of 1 x 512 packed tokens," \
         "gradient checkpointing; $(load_line) before"
    out=test/tmp/bench_bf16_model
    rm -rf "$out"
    measure real env OMP_NUM_THREADS="$threads" ./train --model_name_or_path "$model_dir" --stage sft --do_train \
        --dataset data/pirate.csv --finetuning_type lora --lora_target q_proj,v_proj --lora_rank 4 \
        --output_dir "$out" --per_device_train_batch_size 1 --gradient_accumulation_steps 1 --max_steps 1 \
        --cutoff_len 512 --packing --gradient_checkpointing
    echo "$real" | grep -E '^model |^step 1/|^memory: planned'
    echo "others used $others of the CPUs"
    rm -rf "$out"
fi
echo "$(load_line) after"
