#!/bin/bash
# One LoRA training step, train.c vs PyTorch, same shapes and thread count, in one run.
# usage: test/bench_train.sh [layers] [B] [T] [steps]    (default 4 1 512 3)
# (make bench builds ./bench_train, installs PyTorch and runs this)
set -e
cd "$(dirname "$0")/.."
[ -x ./bench_train ] || { echo "error: ./bench_train is missing: make bench_train" >&2; exit 1; }
threads=${OMP_NUM_THREADS:-$(nproc)}
args=("${1:-4}" "${2:-1}" "${3:-512}" "${4:-3}")
c_line=$(OMP_NUM_THREADS=$threads ./bench_train "${args[@]}")
echo "$c_line"
py_line=$(/usr/bin/python3 test/bench_train.py "${args[@]}" "$threads")
echo "$py_line"
c_best=$(echo "$c_line" | sed -E 's/.*best ([0-9.]+) s.*/\1/')
py_best=$(echo "$py_line" | sed -E 's/.*best ([0-9.]+) s.*/\1/')
awk -v c="$c_best" -v p="$py_best" 'BEGIN { printf "speed ratio (PyTorch time / train.c time): %.2fx\n", p / c }'
