#!/bin/bash
# Runs ./train_asan (AddressSanitizer + UBSan build; `make train_asan`) on broken model
# directories and bad flags. Each must fail cleanly: exit status 1 and exactly one stderr
# line "error: ..." that names the problem (and the offending file, where there is one),
# with no sanitizer report. The broken models come from test/make_bad_inputs.py.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
cd "$(dirname "$0")/.." || exit 1
export ASAN_OPTIONS=detect_leaks=0  # errors exit(1) on purpose without freeing
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=2
BAD=test/tmp/bad_inputs
passed=0
failed=0

if [ ! -x ./train_asan ]; then
    echo "FAIL   ./train_asan is missing; run make train_asan"
    echo "0 passed, 1 failed"
    exit 1
fi
rm -rf "$BAD"
mkdir -p test/tmp
if ! /usr/bin/python3 test/make_bad_inputs.py "$BAD"; then
    echo "FAIL   test/make_bad_inputs.py could not write the bad inputs"
    echo "0 passed, 1 failed"
    exit 1
fi

# run NAME ARGS...: runs train_asan for one step; sets $status and $err (stderr)
run() {
    local errfile="test/tmp/bad_input_stderr"
    timeout 120 ./train_asan --max_steps 1 "$@" >/dev/null 2>"$errfile"
    status=$?
    err=$(cat "$errfile")
    rm -f "$errfile"
}

result() {  # result NAME WHY (empty WHY = pass)
    if [ -z "$2" ]; then
        echo "ok     $1: $3"
        passed=$((passed + 1))
    else
        echo "FAIL   $1: $2"
        [ -n "$err" ] && printf '%s\n' "$err" | sed 's/^/         | /'
        failed=$((failed + 1))
    fi
}

# expect NAME PATTERN FILE ARGS...: train_asan ARGS must exit 1 with one stderr line
# "error: ..." matching the extended regex PATTERN and containing FILE (unless empty).
expect() {
    local name="$1" pattern="$2" file="$3"; shift 3
    run "$@"
    local why=""
    if printf '%s' "$err" | grep -qE 'AddressSanitizer|LeakSanitizer|runtime error|Segmentation'; then
        why="sanitizer report or crash (exit status $status)"
    elif [ "$status" -ne 1 ]; then
        why="exit status $status, expected 1$([ "$status" -eq 124 ] && echo ' (timed out)')"
    elif [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || [ "${err#error: }" = "$err" ]; then
        why="expected exactly one stderr line starting with 'error: '"
    elif ! printf '%s' "$err" | grep -qE -- "$pattern"; then
        why="message does not match /$pattern/"
    elif [ -n "$file" ] && ! printf '%s' "$err" | grep -qF -- "$file"; then
        why="message does not name the file $file"
    fi
    result "$name" "$why" "$err"
}

# positive control: the unmodified copy trains one step
run --model "$BAD/good"
if [ "$status" -eq 0 ] && ! printf '%s' "$err" | grep -qE 'Sanitizer|runtime error'; then
    result good "" "trains one step (exit status 0)"
else
    result good "the unmodified model failed with exit status $status"
fi

ST=model.safetensors
# case                 pattern (grep -E)                                    offending file                    flags
# safetensors framing
expect truncated            'truncated'                                      "$BAD/truncated/$ST"              --model "$BAD/truncated"
expect too_short            'too short'                                      "$BAD/too_short/$ST"              --model "$BAD/too_short"
expect trailing_bytes       'trailing bytes'                                 "$BAD/trailing_bytes/$ST"         --model "$BAD/trailing_bytes"
expect header_len_past_eof  'header length.*past the end of the file'        "$BAD/header_len_past_eof/$ST"    --model "$BAD/header_len_past_eof"
expect header_len_huge      'header length.*100 MB'                          "$BAD/header_len_huge/$ST"        --model "$BAD/header_len_huge"
expect header_not_json      'header is not valid JSON'                       "$BAD/header_not_json/$ST"        --model "$BAD/header_not_json"
expect header_nul_in_name   'not valid JSON|invalid'                         "$BAD/header_nul_in_name/$ST"     --model "$BAD/header_nul_in_name"
# data_offsets
expect offsets_out_of_range "lm_head.weight.*data_offsets.*past the end"     "$BAD/offsets_out_of_range/$ST"   --model "$BAD/offsets_out_of_range"
expect offsets_overlap      "k_proj.weight' overlaps"                        "$BAD/offsets_overlap/$ST"        --model "$BAD/offsets_overlap"
expect offsets_hole         "hole .*before tensor 'model.norm.weight'"       "$BAD/offsets_hole/$ST"           --model "$BAD/offsets_hole"
# tensor entries
expect unknown_dtype        'unsupported dtype F8_E9'                        "$BAD/unknown_dtype/$ST"          --model "$BAD/unknown_dtype"
expect size_mismatch        "model.norm.weight' has 192 bytes .*188"         "$BAD/size_mismatch/$ST"          --model "$BAD/size_mismatch"
expect shape_overflow       "rotary_emb.inv_freq"                            "$BAD/shape_overflow/$ST"         --model "$BAD/shape_overflow"
expect wrong_shape          "q_proj.weight' has shape \[48,64\].*\[64,48\]"  "$BAD/wrong_shape/$ST"            --model "$BAD/wrong_shape"
expect missing_tensor       "missing tensor 'model.layers.1.mlp.up_proj.weight'" "$BAD/missing_tensor/$ST"     --model "$BAD/missing_tensor"
expect duplicate_key        "model.norm.weight' appears twice"               "$BAD/duplicate_key/$ST"          --model "$BAD/duplicate_key"
# config.json
expect config_no_hidden_size '"hidden_size"'                                 "$BAD/config_no_hidden_size/config.json" --model "$BAD/config_no_hidden_size"
expect config_not_json      'not valid JSON'                                 "$BAD/config_not_json/config.json" --model "$BAD/config_not_json"
expect rope_scaling_yarn    'rope_scaling type "yarn" is not supported'      "$BAD/rope_scaling_yarn/config.json" --model "$BAD/rope_scaling_yarn"
expect config_wrong_model   "embed_tokens.weight' has shape \[301,48\]"      "$BAD/config_wrong_model/$ST"     --model "$BAD/config_wrong_model"
# which files are there
expect no_weights           'no weights found'                               "$BAD/no_weights"                 --model "$BAD/no_weights"
expect shard_missing        'No such file|does not exist'                    "$BAD/shard_missing/model-00002-of-00002.safetensors" --model "$BAD/shard_missing"
expect index_not_json       'not valid JSON'                                 "$BAD/index_not_json/model.safetensors.index.json" --model "$BAD/index_not_json"
expect no_such_dir          'does not exist'                                 "$BAD/no_such_dir"                --model "$BAD/no_such_dir"
# bad combinations and a model no memory holds (a sparse file: refused from the plan, nothing read)
expect base_bf16_on_f16     'checkpoint is float16.*--base_dtype fp32'      ""                                --model test/models/tiny_f16 --base_dtype bf16
expect bf16_full_finetune   '--base_dtype bf16 keeps the base frozen.*--full_finetune' "" --model test/models/tiny_bf16 --full_finetune --base_dtype bf16
# QLoRA: a quantisation the model cannot take, bad combinations, an adapter of a quantised base onto another base
expect nf4_ragged_rows      "embed_tokens.weight: 48 columns, not a multiple of NF4's block of 64.*int8" "" --model test/models/tiny --quantization_bit 4
expect quantization_bit_3   '--quantization_bit must be 8 \(int8\) or 4 \(NF4\), got 3' ""         --model "$BAD/good" --quantization_bit 3
expect quantized_full       '--quantization_bit 8 keeps the base frozen.*--full_finetune' ""         --model "$BAD/good" --quantization_bit 8 --full_finetune
run --model test/models/tiny --quantization_bit 8 --output_dir test/tmp/bad_input_int8  # one step: an adapter of tiny's int8 base
expect adapter_wrong_base   'trained on the int8 quantisation of another base model' "test/tmp/bad_input_int8/adapter_model.safetensors" --model test/models/tiny_tied --init_adapter test/tmp/bad_input_int8 --merge --output_dir test/tmp/bad_input_int8_merged
expect too_big_for_memory   'needs [0-9.]+ GiB but only [0-9.]+ GiB is available; no one flag makes it fit' "" --model "$BAD/too_big_for_memory"
# flags
expect flag_unknown         'unknown flag --lerning_rate; did you mean --learning_rate' "" --model "$BAD/good" --lerning_rate 1e-3
expect flag_bad_number      "--max_steps expects .*'abc'"                    ""                                --model "$BAD/good" --max_steps abc
expect flag_bad_lora_target "--lora_target: unknown module 'foo_proj'"       ""                                --model "$BAD/good" --lora_target foo_proj
expect flag_missing_value   '--learning_rate needs a value'                  ""                                --model "$BAD/good" --learning_rate

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
