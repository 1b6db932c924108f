#!/bin/bash
# Hostile files. Builds nothing: `make test_hostile` (or make fuzz_replay train_asan generate) first.
#  1. Every file of the regression corpus test/corpus/<harness>/ through its harness's replay
#     program test/fuzz/bin/replay_<harness> (ASan + UBSan), one process per file, under
#     `timeout 10`. A file named good* must be accepted; any other must be rejected with
#     exactly one stderr line "error: ...". A crash, a sanitizer report, a timeout or a
#     memory blow-up fails. Memory is measured by the harness itself (test/fuzz/fuzz.h: 16 MiB
#     plus 64 times the input) and by the peak RSS (at most 1 GiB, /usr/bin/time), not with
#     ulimit -v, which AddressSanitizer's shadow memory breaks.
#  2. Large inputs made here (not committed): they must finish in linear time.
#  3. End to end: ./train_asan and ./generate on hostile model directories, checkpoints and
#     adapters (test/fuzz/make_hostile.py) fail with one line naming the file and the field.
# Prints one "ok ..." or "FAIL ..." line per check and ends with "N passed, M failed".
cd "$(dirname "$0")/.." || exit 1
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=2
tmp=test/tmp/hostile
rm -rf "$tmp"
mkdir -p "$tmp"
passed=0
failed=0
ok()  { echo "ok     $1"; passed=$((passed + 1)); }
bad() {
    echo "FAIL   $1"
    [ -n "$2" ] && printf '%s\n' "$2" | head -20 | sed 's/^/         | /'
    failed=$((failed + 1))
}

# why_failed STATUS STDERR: empty when the process ended normally and cleanly
why_failed() {
    if printf '%s' "$2" | grep -qE 'AddressSanitizer|LeakSanitizer|runtime error|Segmentation|fuzz: '; then
        echo "crash, sanitizer report, memory blow-up or broken check (exit status $1)"
    elif [ "$1" -eq 124 ]; then echo "timed out (10 s)"
    elif [ "$1" -ne 0 ]; then echo "exit status $1"
    fi
}

measure=""  # the peak RSS of each replay, with GNU time where there is one
[ -x /usr/bin/time ] && measure="/usr/bin/time -f %M -o $tmp/rss"

# replay HARNESS FILE [NAME]: one corpus file through its harness
replay() {
    local harness=$1 file=$2 name=${3:-$(basename "$2")}
    local bin=test/fuzz/bin/replay_$harness
    local out err status why verdict
    rm -f "$tmp/rss"
    out=$($measure timeout 10 "$bin" "$file" 2>"$tmp/stderr")
    status=$?
    err=$(cat "$tmp/stderr")
    why=$(why_failed $status "$err")
    local rss_kb
    rss_kb=$(tail -1 "$tmp/rss" 2>/dev/null)
    [ -z "$why" ] && [ "${rss_kb:-0}" -gt $((1024 * 1024)) ] && why="peak RSS $((rss_kb / 1024)) MiB, over 1 GiB"
    verdict=${out##*: }
    if [ -z "$why" ] && [ "${name#good}" != "$name" ]; then
        [ "$verdict" = accepted ] || why="a good input was rejected"
    elif [ -z "$why" ]; then
        if [ "$verdict" != rejected ]; then why="a bad input was accepted"
        elif [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || [ "${err#error: }" = "$err" ]; then
            why="expected exactly one stderr line starting with 'error: '"
        fi
    fi
    if [ -z "$why" ]; then ok "$harness/$name: ${err:-accepted}"; else bad "$harness/$name: $why" "$err"; fi
}

# 1. the corpus
for harness in safetensors config generation_config adapter_config checkpoint dataset; do
    if [ ! -x test/fuzz/bin/replay_$harness ]; then
        bad "test/fuzz/bin/replay_$harness is missing; run make fuzz_replay"
        continue
    fi
    for file in test/corpus/$harness/*; do replay $harness "$file"; done
done

# 2. large inputs, made here: they must take linear time (the quadratic header trim took minutes)
if [ -x test/fuzz/bin/replay_dataset ]; then
    { printf 'c'; head -c 4000000 /dev/zero | tr '\0' ' '; printf 'question,answer\nq,a\n'; } > "$tmp/big_header.csv"
    replay dataset "$tmp/big_header.csv" "good: CSV header with 4 MB of leading spaces"
    { printf 'l'; seq 1 20000 | sed 's/.*/{"text": "line &"}/'; printf '{"text": "x"}\0\n'; } > "$tmp/late_nul.jsonl"
    replay dataset "$tmp/late_nul.jsonl" "JSONL with a NUL byte on line 20001"
fi

# 3. end to end
# expect NAME PATTERN FILE PROGRAM ARGS...: PROGRAM must exit 1 with one stderr line
# "error: ..." matching PATTERN (grep -E) and naming FILE, within 60 s
expect() {
    local name=$1 pattern=$2 file=$3; shift 3
    local err status why
    timeout 60 "$@" >/dev/null 2>"$tmp/stderr"
    status=$?
    err=$(grep -v '^model .*| context ' "$tmp/stderr")  # ./generate's banner line, before any generation
    if printf '%s' "$err" | grep -qE 'AddressSanitizer|runtime error|Segmentation'; then
        why="crash or sanitizer report (exit status $status)"
    elif [ $status -ne 1 ]; then why="exit status $status, expected 1$([ $status -eq 124 ] && echo ' (timed out)')"
    elif [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || [ "${err#error: }" = "$err" ]; then
        why="expected exactly one line 'error: ...'"
    elif ! printf '%s' "$err" | grep -qE -- "$pattern"; then why="message does not match /$pattern/"
    elif ! printf '%s' "$err" | grep -qF -- "$file"; then why="message does not name $file"
    fi
    if [ -z "$why" ]; then ok "$name: $err"; else bad "$name: $why" "$err"; fi
}

MAKE=test/fuzz/make_hostile.py
if [ ! -x ./train_asan ]; then
    bad "./train_asan is missing; run make train_asan"
else
    T="./train_asan --max_steps 1 --output_dir $tmp/out"
    config_case() {  # config_case CASE NAME PATTERN: train_asan on test/models/tiny with a config.json value changed
        /usr/bin/python3 $MAKE model $tmp/$1 $1
        expect "config: $2" "$3" $tmp/$1/config.json $T --model $tmp/$1
    }
    config_case rope_theta_zero       "rope_theta 0"        '"rope_theta" must be a number'
    config_case bos_token_id_1e300    "bos_token_id 1e300"  '"bos_token_id" must be an integer'
    config_case hidden_act_gelu       "hidden_act gelu"     'hidden_act "gelu" is not supported'
    config_case attention_bias_true   "attention_bias true" '"attention_bias": true is not supported'
    config_case heads_huge            "2^30 heads"          '"num_attention_heads" must be an integer'
    config_case rms_norm_eps_negative "rms_norm_eps < 0"    '"rms_norm_eps" must be a number'
    mkdir -p $tmp/endless_config && ln -sf /dev/zero $tmp/endless_config/config.json
    expect "config: config.json is /dev/zero" 'more than 64 MiB' $tmp/endless_config/config.json $T --model $tmp/endless_config
    /usr/bin/python3 $MAKE model $tmp/nan_weights nan_weights
    expect "weights: a NaN" "down_proj.weight' holds nan" $tmp/nan_weights/model.safetensors $T --model $tmp/nan_weights
    /usr/bin/python3 $MAKE index $tmp/big_index 200000
    expect "index naming 200000 shards (sorted, not compared pairwise)" 'No such file' \
        $tmp/big_index/shard-0000000.safetensors $T --model $tmp/big_index

    # checkpoints: a real one, then its metadata rewritten; resumed with the same flags
    run="./train_asan --model test/models/tiny --max_steps 4 --max_seq_length 16 --per_device_train_batch_size 4"
    if $run --stop_after_steps 2 --output_dir $tmp/run > /dev/null 2> "$tmp/stderr"; then
        ck=$tmp/run/checkpoint.safetensors
        for change in cursor=-1 cursor=65 epoch=2147483647 step=abc step=-3 step=12abc; do
            /usr/bin/python3 $MAKE checkpoint $ck $tmp/ck_$change.safetensors "$change"
            expect "checkpoint: $change" "metadata \"${change%%=*}\" is" $tmp/ck_$change.safetensors \
                $run --output_dir $tmp/resumed --resume_from_checkpoint $tmp/ck_$change.safetensors
        done
        # adapters: --init_adapter with a rank its tensors do not have, or out of range
        /usr/bin/python3 $MAKE adapter $tmp/run $tmp/adapter_r60000 r=60000
        expect "adapter: r 60000 on a rank-8 adapter" 'has shape \[8,48\] but adapter_config.json \(r = 60000\)' \
            $tmp/adapter_r60000/adapter_model.safetensors $T --model test/models/tiny --init_adapter $tmp/adapter_r60000
        /usr/bin/python3 $MAKE adapter $tmp/run $tmp/adapter_r1e6 r=1e6
        expect "adapter: r 1e6" '"r" must be an integer' $tmp/adapter_r1e6/adapter_config.json \
            $T --model test/models/tiny --init_adapter $tmp/adapter_r1e6
        /usr/bin/python3 $MAKE adapter $tmp/run $tmp/adapter_dora use_dora=true
        expect "adapter: use_dora true" '"use_dora": true is not supported' $tmp/adapter_dora/adapter_config.json \
            $T --model test/models/tiny --init_adapter $tmp/adapter_dora
    else
        bad "training the tiny model for the checkpoint cases failed" "$(cat "$tmp/stderr")"
    fi

    # datasets (data/base has a tokenizer)
    printf '{"text": "one"}\n{"text": "two"}\0\n{"text": "three"}\n' > $tmp/nul.jsonl
    expect "dataset: JSONL with a NUL byte" 'line 2: a NUL byte' $tmp/nul.jsonl \
        $T --model data/base --data $tmp/nul.jsonl
    printf '[{"text": "one"}]\n[{"text": "two"}]\n' > $tmp/two_arrays.json
    expect "dataset: .json with a second array" 'line 2: text after the JSON value' $tmp/two_arrays.json \
        $T --model data/base --data $tmp/two_arrays.json
    printf '{"text": "cut\\u0000here"}\n' > $tmp/nul_escape.jsonl
    expect "dataset: \\u0000 in a string" 'line 1: a \\u0000 escape' $tmp/nul_escape.jsonl \
        $T --model data/base --data $tmp/nul_escape.jsonl
fi

GEN=./generate_asan
[ -x $GEN ] || GEN=./generate
if [ ! -x $GEN ]; then
    bad "./generate is missing; run make generate"
else
    for case in generation_top_k_1e20 generation_top_p_negative huge_lm_head; do
        /usr/bin/python3 $MAKE model $tmp/$case $case
    done
    expect "generation_config: top_k 1e20" '"top_k" must be an integer' \
        $tmp/generation_top_k_1e20/generation_config.json \
        $GEN --model $tmp/generation_top_k_1e20 --ids 1,2
    expect "generation_config: top_p -0.5" '"top_p" must be a number' \
        $tmp/generation_top_p_negative/generation_config.json \
        $GEN --model $tmp/generation_top_p_negative --ids 1,2
    expect "generate: logits overflow from huge (finite) weights" 'logits after 2 tokens are not finite' config.json \
        $GEN --model $tmp/huge_lm_head --ids 1,2
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
