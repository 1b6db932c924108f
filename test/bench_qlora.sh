#!/bin/bash
# QLoRA: the frozen base in int8 or NF4 (train.c --quantization_bit 8|4, generate.c --weights
# int8|nf4), side by side in one run:
#  1. decode, Llama-3.2-1B shape (./bench_generate): tok/s with F32, BF16, int8 and NF4 decode
#     weights, each with its fraction of the read bandwidth measured on its own bytes in the
#     same run. Target: NF4 >= 2.5x BF16.
#  2. one LoRA step, Llama-3.2-1B shape (./bench_train: 16 layers, 1 x 512 tokens, r=8 on all
#     seven modules), with a bf16, an int8 and an NF4 base (after a warm-up step each).
#  3. Llama-3-8B shape (hidden 4096, MLP 14336, 32 layers, untied vocab 128256) with an NF4
#     base made in memory, the LLaMA-Factory tutorial's LoRA (q_proj,v_proj r=4), 1 x 512
#     tokens, gradient checkpointing: peak RSS (target <= 8 GiB) beside the memory plan, and
#     tokens/s of one (cold) step. Skipped (said so) when less than 9 GiB is free.
# usage: test/bench_qlora.sh [layers_1b] [T_1b]   (default 16 512; make bench runs it)
set -e
cd "$(dirname "$0")/.."
source test/bench_load.sh  # defines: measure, load_line
for program in bench_train bench_generate; do
    [ -x ./$program ] || { echo "error: ./$program is missing: make $program" >&2; exit 1; }
done
threads=${OMP_NUM_THREADS:-$CPUS}
layers=${1:-16}
T=${2:-512}
step_of() { echo "$1" | grep ' steps ' | sed -E 's/.* steps ([0-9.]+) s;.*/\1/'; }

echo "== QLoRA decode, Llama-3.2-1B shape, $threads threads; $(load_line) before"
measure decode env OMP_NUM_THREADS="$threads" ./bench_generate "$layers" 16 16 5
echo "$decode" | grep -E '^(decode|BF16 decode)'
echo "others used $others of the CPUs"

echo "== QLoRA training step, Llama-3.2-1B shape: $layers layers, 1 x $T tokens, LoRA r=8 on all modules;" \
     "$(load_line) before"
declare -A step
for base in bf16 int8 nf4; do
    measure line env OMP_NUM_THREADS="$threads" ./bench_train "$layers" 1 "$T" 1 "$base" 1b 2>/dev/null
    echo "$line; others used $others of the CPUs"
    step[$base]=$(step_of "$line")
done
awk -v t="$T" -v b="${step[bf16]}" -v i="${step[int8]}" -v n="${step[nf4]}" 'BEGIN {
    printf "LoRA step: bf16 base %.2f s (%.0f tok/s), int8 base %.2f s (%.0f tok/s, %.2fx bf16'"'"'s time), " \
           "NF4 base %.2f s (%.0f tok/s, %.2fx bf16'"'"'s time)\n", b, t / b, i, t / i, i / b, n, t / n, n / b }'

echo "== QLoRA, Llama-3-8B shape with an NF4 base: 32 layers, 1 x 512 tokens, LoRA q_proj,v_proj r=4," \
     "gradient checkpointing; $(load_line) before"
free_gib=$(awk '/^MemAvailable:/ { printf "%d", $2 / 1048576 }' /proc/meminfo)
if [ "$free_gib" -lt 9 ]; then
    echo "skip   only $free_gib GiB available; the 8B shape with an NF4 base needs 9 GiB free (its plan is about 5.5 GiB)"
else
    measure big env OMP_NUM_THREADS="$threads" ./bench_train 32 1 512 0 nf4 8b 2>/dev/null
    echo "$big; others used $others of the CPUs"
    awk -v s="$(step_of "$big")" 'BEGIN { printf "8B NF4: %.1f s per step, %.1f tokens/s\n", s, 512 / s }'
fi
echo "$(load_line) after"
