#!/bin/bash
# The training program end to end on the tiny model: resume is bit-identical, outputs
# are written atomically (a failed write keeps the previous checkpoint), bad output
# directories and full disks give one clear error. Runs ./train_asan (ASan + UBSan).
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
tmp=test/tmp/program
rm -rf "$tmp"; mkdir -p "$tmp"
passed=0; failed=0
ok()   { echo "ok     $1"; passed=$((passed + 1)); }
bad()  { echo "FAIL   $1"; failed=$((failed + 1)); }
run()  { ./train_asan "$@" > "$tmp/stdout" 2> "$tmp/stderr"; }
flags="--model test/models/tiny --max_steps 6 --val_size 8 --eval_steps 2 --max_seq_length 32 --learning_rate 1e-2 --lora_target all --lora_dropout 0.1"

# resume: 6 steps straight, versus 3 steps, stop, resume, 3 more
run $flags --output_dir $tmp/straight && cp $tmp/stdout $tmp/straight.log
run $flags --output_dir $tmp/resumed --stop_after_steps 3 && cp $tmp/stdout $tmp/first.log
run $flags --output_dir $tmp/resumed --resume && cp $tmp/stdout $tmp/second.log
straight=$(grep '^step' $tmp/straight.log | cut -d'|' -f1-3)
resumed=$(cat $tmp/first.log $tmp/second.log | grep '^step' | cut -d'|' -f1-3)
if [ -n "$straight" ] && [ "$straight" = "$resumed" ]; then ok "resume: losses of 3 + 3 steps equal 6 straight steps"; else bad "resume: losses differ"; fi
if cmp -s $tmp/straight/adapter_model.safetensors $tmp/resumed/adapter_model.safetensors; then ok "resume: final adapter bytes identical"; else bad "resume: adapters differ"; fi
for f in adapter_config.json adapter_model.safetensors checkpoint.safetensors log.jsonl loss.svg; do
    [ -s $tmp/straight/$f ] && ok "output written: $f" || bad "missing output $f"
done
[ "$(wc -l < $tmp/straight/log.jsonl)" = 7 ] && head -1 $tmp/straight/log.jsonl | grep -q '"step": 0, "loss": null, "val_loss": [0-9]' &&
    ok "log.jsonl has the validation loss before training and one record per step" || bad "log.jsonl has $(wc -l < $tmp/straight/log.jsonl) lines: $(head -1 $tmp/straight/log.jsonl)"

# an epoch's last step takes what is left of it, as Hugging Face's Trainer does: 7 examples in steps of
# 3 micro-batches are steps of 3, 3 and 1, and they train on the same tokens as one step of 7
head -8 data/pirate.csv > $tmp/seven.csv
epoch_flags="--model data/base --data $tmp/seven.csv --num_train_epochs 1 --per_device_train_batch_size 1 --max_seq_length 128"
run $epoch_flags --gradient_accumulation_steps 3 --output_dir $tmp/epoch3 && cp $tmp/stdout $tmp/epoch3.log
run $epoch_flags --gradient_accumulation_steps 7 --output_dir $tmp/epoch7
step_tokens() { sed -n 's/.*"tokens": \([0-9]*\).*/\1/p' "$1/log.jsonl" | paste -sd' '; }
steps3=$(step_tokens $tmp/epoch3); steps7=$(step_tokens $tmp/epoch7)
sum3=$(echo "$steps3" | tr ' ' '\n' | awk '{ s += $1 } END { print s + 0 }')
if grep -q "^schedule: 3 steps, each 3 micro-batches .*an epoch's last step has 1)" $tmp/epoch3.log &&
   [ "$(echo $steps3 | wc -w)" = 3 ] && [ -n "$steps7" ] && [ "$sum3" = "$steps7" ]; then
    ok "1 epoch of 7 examples in steps of 3: 3 steps, tokens $steps3 = one step of 7's $steps7"
else
    bad "1 epoch of 7 examples in steps of 3: tokens per step '$steps3' (sum $sum3), one step of 7: '$steps7'; $(grep '^schedule' $tmp/epoch3.log) $(cat $tmp/stderr)"
fi

# a checkpoint write that fails midway (file-size limit) keeps the previous checkpoint
cp $tmp/resumed/checkpoint.safetensors $tmp/before.safetensors
(ulimit -f 100; ./train_asan $flags --max_steps 8 --output_dir $tmp/resumed --resume --save_steps 1 > $tmp/stdout 2> $tmp/stderr)
status=$?
if [ $status = 1 ] && grep -q "^error: cannot write .*checkpoint.safetensors: File too large" $tmp/stderr && cmp -s $tmp/before.safetensors $tmp/resumed/checkpoint.safetensors \
   && [ -z "$(ls $tmp/resumed | grep tmp)" ]; then
    ok "interrupted checkpoint write: clear error, previous checkpoint intact, no temporary file left ($(cat $tmp/stderr))"
else
    bad "interrupted checkpoint write: status $status, stderr: $(cat $tmp/stderr)"
fi

# an output directory that cannot be created or written
run $flags --output_dir /proc/no_such_dir/out
if [ $? = 1 ] && grep -q "^error: cannot create directory /proc/no_such_dir" $tmp/stderr && [ "$(wc -l < $tmp/stderr)" = 1 ]; then
    ok "unwritable output dir: $(cat $tmp/stderr)"; else bad "unwritable output dir: $(cat $tmp/stderr)"; fi
run $flags --output_dir /dev/full
if [ $? = 1 ] && grep -q "^error: /dev/full exists and is not a directory" $tmp/stderr; then
    ok "output dir that is a device: $(cat $tmp/stderr)"; else bad "output dir /dev/full: $(cat $tmp/stderr)"; fi

# datasets through the chat model made by test_data (test/tmp/chat_model)
model=test/tmp/chat_model
data=test/tmp/data
if [ -f $model/tokenizer.json ]; then
    run --model $model --data $data/chat.jsonl,$data/qa.csv --output_dir $tmp/chat --max_steps 4 --per_device_train_batch_size 2 \
        --gradient_accumulation_steps 2 --packing --max_seq_length 128 --learning_rate 1e-2 --merge
    if [ $? = 0 ] && grep -q "^step 4/4" $tmp/stdout && [ -s $tmp/chat/merged/model.safetensors ] && [ -s $tmp/chat/merged/tokenizer.json ]; then
        ok "train on chat JSONL + CSV with packing and gradient accumulation, then --merge"
    else bad "training on a dataset: $(tail -3 $tmp/stdout) $(cat $tmp/stderr)"; fi

    expect_error() {  # name, expected stderr pattern, flags...
        local name=$1 pattern=$2; shift 2
        rm -rf $tmp/fail
        run --model $model --output_dir $tmp/fail --max_steps 1 "$@"
        local status=$?
        if [ $status = 1 ] && [ "$(wc -l < $tmp/stderr)" = 1 ] && grep -q -- "$pattern" $tmp/stderr && [ ! -e $tmp/fail/adapter_model.safetensors ]; then
            ok "$name: $(cat $tmp/stderr)"
        else
            bad "$name: status $status, stderr: $(cat $tmp/stderr)"
        fi
    }
    printf 'question,answer\n"unterminated,oops\n' > $tmp/unterminated.csv
    expect_error "CSV with an unterminated quote" "unterminated.csv line 2: unterminated quoted field" --data $tmp/unterminated.csv
    printf 'query,reply\nhi,hello\n' > $tmp/columns.csv
    expect_error "CSV with missing columns" "columns.csv: header has columns query,reply; expected" --data $tmp/columns.csv
    printf '{"instruction": "Say hi"}\n' > $tmp/missing.jsonl
    expect_error "JSON record with a missing field" 'missing.jsonl line 1: has "instruction" or "output" but not both' --data $tmp/missing.jsonl
    : > $tmp/empty.jsonl
    expect_error "empty dataset" "empty.jsonl: the dataset has no examples" --data $tmp/empty.jsonl
    expect_error "every example longer than --max_seq_length" "every example is longer than --max_seq_length" --data $data/chat.jsonl --max_seq_length 8 --drop_long
    expect_error "unknown template" "unknown" --data $data/qa.csv --template llama9
    expect_error "missing dataset file" "cannot open $tmp/nope.csv" --data $tmp/nope.csv
    mkdir -p $tmp/small_vocab && cp $model/tokenizer.json $model/tokenizer_config.json $model/model.safetensors $tmp/small_vocab/
    sed 's/"vocab_size": [0-9]*/"vocab_size": 100/' $model/config.json > $tmp/small_vocab/config.json
    rm -rf $tmp/fail; ./train_asan --model $tmp/small_vocab --data $data/qa.csv --output_dir $tmp/fail --max_steps 1 > $tmp/stdout 2> $tmp/stderr
    if [ $? = 1 ] && grep -q "the tokenizer does not belong to this model" $tmp/stderr; then ok "tokenizer larger than the model's vocabulary: $(cat $tmp/stderr)"
    else bad "tokenizer/vocab mismatch: $(cat $tmp/stderr)"; fi
else
    bad "test/tmp/chat_model is missing: run ./test_data first"
fi

# LLaMA-Factory's Llama 3 tutorial command as written (paths, program and --max_steps changed) on the
# bf16 base model: the bf16 base, checkpointing, the memory plan and its check at the end
lf_flags="--model_name_or_path data/base --stage sft --do_train --dataset data/pirate.csv --template llama3
    --finetuning_type lora --lora_target q_proj,v_proj --lora_rank 4 --output_dir $tmp/llama_factory --overwrite_cache
    --per_device_train_batch_size 1 --gradient_accumulation_steps 4 --lr_scheduler_type cosine --logging_steps 2
    --save_steps 100 --learning_rate 5e-5 --num_train_epochs 1 --plot_loss --fp16 --cutoff_len 64
    --gradient_checkpointing --max_steps 3"
if run $lf_flags && grep -q 'base in bf16' $tmp/stdout && grep -q '(checkpointed)' $tmp/stdout &&
   grep -q '^memory: planned .* peak resident' $tmp/stdout && [ "$(grep '^step' $tmp/stdout | cut -d' ' -f2 | paste -sd' ')" = "1/3 2/3 3/3" ]; then
    ok "LLaMA-Factory's command line: bf16 base, checkpointing, steps 1 (the first), 2 and 3 (the last) logged (--logging_steps 2), memory plan vs peak"
else
    bad "LLaMA-Factory's command line: $(tail -3 $tmp/stderr $tmp/stdout)"
fi

echo "$passed passed, $failed failed"
[ $failed = 0 ]
