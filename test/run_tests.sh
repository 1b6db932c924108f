#!/bin/bash
# Runs every test program and adds up their "N passed, M failed" lines.
# Each suite's own output is shown as it runs; exits non-zero if anything failed.
# `make test` builds every program and installs every tool these need, then runs this.
cd "$(dirname "$0")/.."
total_passed=0
total_failed=0

run_suite() {
    local name="$1"; shift
    echo "=== $name"
    local log
    log=$(mktemp)
    "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    local summary
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
    rm -f "$log"
    if [ -z "$summary" ]; then
        echo "FAIL   $name ended without a summary line (exit status $status)"
        total_failed=$((total_failed + 1))
        return
    fi
    local p f
    p=${summary%% passed*}
    f=${summary#*, }; f=${f%% failed}
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL   $name exited with status $status"
        total_failed=$((total_failed + 1))
    fi
}

run_suite "train.c vs PyTorch reference (test_train)" ./test_train
run_suite "train.c vs PyTorch reference, built without AVX-512 BF16 (test_train_nobf16)" ./test_train_nobf16
run_suite "train.c vs PyTorch reference under AddressSanitizer+UBSan (test_train_asan)" env OMP_NUM_THREADS=2 ./test_train_asan
run_suite "int8 and NF4 codes vs an independent NumPy implementation (test_quant.sh)" bash test/test_quant.sh
run_suite "bad input (train_asan)" bash test/test_bad_input.sh
run_suite "datasets, templates and loss masks (test_data)" ./test_data
run_suite "training program: resume, atomic outputs, output errors (train_asan)" bash test/test_train_program.sh
run_suite "tokenizer.c vs Hugging Face tokenizers, chat templates, BPE trainer (test_tokenizer.sh)" bash test/test_tokenizer.sh
run_suite "generate.c: KV-cache decode, sampling, adapters, chat (test_generate.sh)" bash test/test_generate.sh
run_suite "hostile files: the regression corpus under ASan+UBSan, with time and memory limits (test_hostile.sh)" bash test/test_hostile.sh
run_suite "data-parallel ranks: 2 ranks = 1 process to the bit, resume, a failed or killed rank (test_mpi.sh)" bash test/test_mpi.sh
run_suite "GGUF export in the real llama.cpp (node-llama-cpp), an independent reader (test_gguf.sh)" bash test/test_gguf.sh
run_suite "the quick start: ./train with no arguments on data/ (test_default_run.sh)" bash test/test_default_run.sh
run_suite "./serve: OpenAI client, bad requests, load, the chat page in chromium; and under ASan+UBSan (test_serve.sh, after test_default_run)" bash test/test_serve.sh
run_suite "QLoRA: the quick start on a 4-bit NF4 base (test_default_run.sh --quantization_bit 4)" bash test/test_default_run.sh --quantization_bit 4
run_suite "QLoRA: the quick start on an int8 base (test_default_run.sh --quantization_bit 8)" bash test/test_default_run.sh --quantization_bit 8
run_suite "train.cu vs the same reference (make test_gpu; a skip without a CUDA device)" make -s test_gpu
# needs Debian's python3-torch, which make test-deps installs: without it this suite fails
run_suite "PEFT adapter format and meaning (test_peft.py, after test_train)" /usr/bin/python3 test/test_peft.py

echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
