#!/bin/bash
# One LoRA training step, train.c vs PyTorch, same shapes and thread count, in one run.
# The two alternate (train.c, PyTorch, train.c, ...) `rounds` times, each run a warm-up step
# and `steps` timed ones, so both sides see the same machine; we print each side's min /
# median / max step time, as GFLOP/s and as a fraction of the fp32 roof measured in the
# same runs (test/roofline.h), and the range of the PyTorch / train.c ratio over the rounds.
# PyTorch runs on its best kernels for this CPU: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, when
# set (these machines force the AVX2 Haswell kernels with them), are removed from its
# environment only; its first line names the kernel that ran. Its OpenMP is libgomp, as ours,
# so it gets the same short spin as ./train (llmc/threads.h) unless the user set one: a busy
# machine then slows both alike.
# usage: test/bench_train.sh [layers] [B] [T] [steps] [rounds]    (default 4 1 512 1 5)
# (make bench builds ./bench_train, installs PyTorch and runs this)
set -e
cd "$(dirname "$0")/.."
source test/bench_load.sh  # defines: measure, load_line
[ -x ./bench_train ] || { echo "error: ./bench_train is missing: make bench_train" >&2; exit 1; }
threads=${OMP_NUM_THREADS:-$(nproc)}
args=("${1:-4}" "${2:-1}" "${3:-512}" "${4:-1}")
rounds=${5:-5}
pytorch_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
if [ -z "${OMP_WAIT_POLICY}${GOMP_SPINCOUNT}" ]; then
    pytorch_env+=(GOMP_SPINCOUNT="$(sed -n 's/^#define THREADS_SPINCOUNT "\([0-9]*\)"/\1/p' llmc/threads.h)")
fi
pytorch=("${pytorch_env[@]}" /usr/bin/python3 test/bench_train.py "${args[@]}" "$threads")

# stats "numbers...": "min A / median B / max C" (%.3g)
stats() {
    echo "$1" | tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END {
        printf "min %.3g / median %.3g / max %.3g", v[1], NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, v[NR] }'
}
median() { stats "$1" | awk '{ print $5 }'; }
steps_of() { echo "$1" | grep ' steps ' | sed -E 's/.* steps ([0-9. ]+) s;.*/\1/'; }

echo "== LoRA training step: layers ${args[0]} B ${args[1]} T ${args[2]}, $threads threads; $rounds rounds of" \
     "train.c then PyTorch, each run a warm-up and ${args[3]} timed steps; $(load_line) before"
echo "PyTorch: Debian python3-torch $(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null)," \
     "$(dpkg-query -W -f='${Package} ${Version}\n' 'libopenblas0-*' 2>/dev/null | grep -v '^libopenblas0-[a-z]* $' | head -1), run as: ${pytorch_env[*]} python3 ..."
c_times=""; py_times=""; roofs=""; bf16_roofs=""; ratios=""
for r in $(seq 1 "$rounds"); do
    measure c_out env OMP_NUM_THREADS="$threads" ./bench_train "${args[@]}" 2>/dev/null
    echo "round $r: $c_out; others used $others of the CPUs"
    measure py_out "${pytorch[@]}" 2>/dev/null
    echo "round $r: $(echo "$py_out" | tail -1); others used $others of the CPUs"
    [ "$r" = 1 ] && blas=$(echo "$py_out" | head -1 | sed 's/^pytorch [^:]*: //')
    c=$(steps_of "$c_out"); py=$(steps_of "$py_out")
    c_times="$c_times $c"; py_times="$py_times $py"
    roofs="$roofs $(echo "$c_out" | sed -E 's/.*roof fp32 ([0-9.]+) .*/\1/')"
    bf16_roofs="$bf16_roofs $(echo "$c_out" | sed -E 's/.* bf16 ([0-9.]+) GFLOP.*/\1/')"
    ratios="$ratios $(awk -v p="$(median "$py")" -v c="$(median "$c")" 'BEGIN { print p / c }')"
done

gflop=$(echo "$c_out" | sed -E 's/.*GFLOP ([0-9.]+) .*/\1/')
tokens=$((args[1] * args[2]))
roof=$(median "$roofs"); bf16_roof=$(median "$bf16_roofs")
echo "roofs measured in the train.c runs (all $threads threads, register-only loops): fp32 FMA $(stats "$roofs")" \
     "GFLOP/s, bf16 dot product $(stats "$bf16_roofs") GFLOP/s"
for side in "train.c" "PyTorch"; do
    times=$c_times; [ "$side" = PyTorch ] && times=$py_times
    echo "$side step $(stats "$times") s over $(echo $times | wc -w) steps:" \
         "$(awk -v f="$gflop" -v t="$tokens" -v m="$(median "$times")" -v roof="$roof" 'BEGIN {
             printf "median %.0f tok/s, %.1f GFLOP/s (4 x weights x tokens) = %.0f%% of the fp32 roof", t / m, f / m, 100 * f / m / roof }')"
done
echo "PyTorch's BLAS: $blas"
echo "speed ratio PyTorch time / train.c time, per round (median step of the adjacent runs): $(stats "$ratios")" \
     "over $rounds rounds" | sed -E 's/(min|median|max) ([0-9.]+)/\1 \2x/g'
echo "bf16: this compares fp32 bases; test/bench_bf16.sh runs train.c's bf16 base (--base_dtype bf16) against" \
     "PyTorch's (bf16 weights, oneDNN's AVX-512 BF16 matmuls), both against the bf16 roof"
echo "$(load_line) after"
