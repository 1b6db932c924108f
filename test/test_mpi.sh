#!/bin/bash
# ./train_mpi on this machine's cores: R ranks x G micro-batches give the bits of one process with R*G
# (LoRA and full fine-tuning, packed and padded), resume across rank counts, and a rank that fails or is
# killed stops them all with the last checkpoint intact. Runs ./train_mpi and ./train, one thread per process.
cd "$(dirname "$0")/.."
# CI runs as root; 2 ranks may be more than the cores; no cross-memory attach inside containers
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMP_NUM_THREADS=1
mpirun="mpirun --oversubscribe"
tmp=test/tmp/mpi
rm -rf "$tmp"; mkdir -p "$tmp"
passed=0; failed=0
ok()   { echo "ok     $1"; passed=$((passed + 1)); }
bad()  { echo "FAIL   $1"; failed=$((failed + 1)); }
flags="--model data/base --data data/pirate.jsonl --val_size 16 --eval_steps 2 --max_seq_length 64 --lora_target all
       --lora_rank 8 --lora_dropout 0.1 --per_device_train_batch_size 2 --learning_rate 1e-3 --threads 1"
# the log without its timings: every step's loss, validation loss, learning rate and gradient norm
losses() { sed 's/, "tokens_per_second.*//' "$1/log.jsonl"; }
# max abs and relative difference of the tensors of two safetensors files
max_error() {
    /usr/bin/python3 - "$1" "$2" <<'EOF'
import json, struct, sys
import numpy as np
def read(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return {k: np.frombuffer(raw[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], np.float32)
            for k, v in header.items() if k != '__metadata__' and v['dtype'] == 'F32'}
a, b = read(sys.argv[1]), read(sys.argv[2])
abs_err = max(float(np.max(np.abs(a[k] - b[k]), initial=0)) for k in a)
rel_err = max(float(np.max(np.abs(a[k] - b[k]) / np.maximum(np.abs(b[k]), 1e-30), initial=0)) for k in a)
print(f"max abs {abs_err:.3g}, max rel {rel_err:.3g}")
EOF
}

# R ranks x G micro-batches against 1 process x RG: the same bits
same_as_one_process() {  # name, R, G, flags...
    local name=$1 R=$2 G=$3; shift 3
    local one=$tmp/$name-one two=$tmp/$name-two
    ./train $flags "$@" --gradient_accumulation_steps $((R * G)) --output_dir $one > $one.log 2>&1
    $mpirun -np $R ./train_mpi $flags "$@" --gradient_accumulation_steps $G --output_dir $two > $two.log 2>&1
    local status=$?
    if [ $status != 0 ] || ! grep -q "^step 4/4" $two.log; then
        bad "$name: $R ranks: status $status: $(tail -3 $two.log)"; return
    fi
    local error; error=$(max_error $one/checkpoint.safetensors $two/checkpoint.safetensors)
    if [ -n "$(losses $one)" ] && [ "$(losses $one)" = "$(losses $two)" ] &&
       cmp -s $one/checkpoint.safetensors $two/checkpoint.safetensors; then
        ok "$name: $R ranks x $G = 1 process x $((R * G)): per-step losses equal, checkpoint bytes identical ($error, tolerance 0)"
    else
        bad "$name: $R ranks x $G differ from 1 process x $((R * G)): $error; $(diff <(losses $one) <(losses $two) | head -4)"
    fi
}
same_as_one_process lora 2 1 --max_steps 4
same_as_one_process lora-packing 2 2 --max_steps 4 --packing
same_as_one_process full 2 2 --max_steps 4 --full_finetune --learning_rate 1e-4
same_as_one_process full-packing 2 1 --max_steps 4 --full_finetune --learning_rate 1e-4 --packing
same_as_one_process lora-4-ranks 4 1 --max_steps 4 --packing
# 13 training examples in micro-batches of 2: 7 a epoch, and each epoch's second step has 3 of 4 (rank 1's
# second micro-batch is empty)
head -29 data/pirate.jsonl > $tmp/29.jsonl
same_as_one_process short-last-step 2 2 --data $tmp/29.jsonl --num_train_epochs 2
grep -q "an epoch's last step has 3" $tmp/short-last-step-two.log ||
    bad "short-last-step: the schedule does not say so: $(grep '^schedule' $tmp/short-last-step-two.log)"
# the test can fail: 2 ranks x 1 is not 1 process x 1 (the step has half the examples)
./train $flags --max_steps 4 --output_dir $tmp/control > $tmp/control.log 2>&1
if ! cmp -s $tmp/control/checkpoint.safetensors $tmp/lora-two/checkpoint.safetensors; then
    ok "negative control: 1 process x 1 differs from 2 ranks x 1 ($(max_error $tmp/control/checkpoint.safetensors $tmp/lora-two/checkpoint.safetensors))"
else bad "negative control: 1 process x 1 gave the bits of 2 ranks x 1"; fi
for f in adapter_model.safetensors adapter_config.json checkpoint.safetensors log.jsonl loss.svg; do
    [ -s $tmp/lora-two/$f ] || bad "2 ranks: missing $f"
done
[ "$(grep -c '^step' $tmp/lora-two.log)" = 5 ] && ok "2 ranks: rank 0 alone prints (5 step lines) and writes every output" ||
    bad "2 ranks printed $(grep -c '^step' $tmp/lora-two.log) step lines"

# resume with another rank count: 2 ranks for 3 steps, then 1 process for 3 more, equals 6 straight steps
./train $flags --max_steps 6 --gradient_accumulation_steps 2 --output_dir $tmp/straight > $tmp/straight.log 2>&1
$mpirun -np 2 ./train_mpi $flags --max_steps 6 --stop_after_steps 3 --output_dir $tmp/resumed > $tmp/first.log 2>&1
./train $flags --max_steps 6 --gradient_accumulation_steps 2 --output_dir $tmp/resumed --resume > $tmp/second.log 2>&1
if grep -q "resumed from .* at step 3" $tmp/second.log && [ "$(losses $tmp/straight)" = "$(losses $tmp/resumed)" ] &&
   cmp -s $tmp/straight/adapter_model.safetensors $tmp/resumed/adapter_model.safetensors; then
    ok "resume: 2 ranks x 3 steps + 1 process x 3 steps = 6 straight steps (log and adapter bytes identical)"
else bad "resume across rank counts: $(tail -2 $tmp/second.log); $(diff <(losses $tmp/straight) <(losses $tmp/resumed) | head -4)"; fi
# and a changed step size (2 ranks x 2 after 2 ranks x 1) is refused
$mpirun -np 2 ./train_mpi $flags --max_steps 8 --gradient_accumulation_steps 2 --output_dir $tmp/resumed --resume > $tmp/refused.log 2>&1
[ $? != 0 ] && grep -q "error:.*checkpoint" $tmp/refused.log && ok "resume with another step size refused: $(grep -m1 'error:' $tmp/refused.log)" ||
    bad "resume with 4 micro-batches per step after 2: $(tail -2 $tmp/refused.log)"

# bad data on one rank (MPMD: rank 1 reads another file): every rank stops, the error names rank 1
head -c 3000 data/pirate.jsonl > $tmp/cut.jsonl
head -100 data/pirate.jsonl > $tmp/other.jsonl
for data in cut other; do
    start=$(date +%s)
    $mpirun -np 1 ./train_mpi $flags --max_steps 4 --output_dir $tmp/bad : \
            -np 1 ./train_mpi $flags --max_steps 4 --output_dir $tmp/bad --data $tmp/$data.jsonl > $tmp/bad.log 2>&1
    status=$?
    if [ $status != 0 ] && [ "$(grep -c ': error: ' $tmp/bad.log)" = 1 ] && grep -q "^rank 1: error: " $tmp/bad.log && [ $(($(date +%s) - start)) -lt 30 ]; then
        ok "$data data on rank 1: all ranks stop (status $status): $(grep -m1 '^rank 1: error' $tmp/bad.log)"
    else bad "$data data on rank 1: status $status: $(grep -m2 'error' $tmp/bad.log)"; fi
done

# a rank killed mid-run: mpirun and every rank exit non-zero within 30 s, the last checkpoint loads
$mpirun -np 2 ./train_mpi $flags --max_steps 100000 --save_steps 2 --output_dir $tmp/killed > $tmp/killed.log 2>&1 &
mpirun_pid=$!
for i in $(seq 600); do [ -s $tmp/killed/checkpoint.safetensors ] && break; sleep 0.1; done
# the ranks: mpirun's children (from /proc: fresh Debian images have no pgrep), rank 1 by its environment
ranks=$(for stat in /proc/[0-9]*/stat; do read -r pid comm state ppid rest < $stat 2>/dev/null &&
        [ "$ppid" = $mpirun_pid ] && tr '\0' ' ' < /proc/$pid/cmdline | grep -q train_mpi && echo $pid; done)
rank1=$(for p in $ranks; do tr '\0' '\n' < /proc/$p/environ | grep -q '^OMPI_COMM_WORLD_RANK=1$' && echo $p; done)
start=$(date +%s)
kill -9 $rank1
wait $mpirun_pid
status=$?
alive() { for p in $ranks; do kill -0 $p 2>/dev/null && echo $p; done; }
while [ -n "$(alive)" ] && [ $(($(date +%s) - start)) -lt 30 ]; do sleep 0.1; done
took=$(($(date +%s) - start))
alive=$(alive)
if [ -n "$rank1" ] && [ "$(echo $ranks | wc -w)" = 2 ] && [ $status != 0 ] && [ $took -lt 30 ] && [ -z "$alive" ]; then
    ok "rank 1 killed: mpirun exits with status $status after ${took} s, no rank left: $(grep -m1 'rank 1' $tmp/killed.log)"
else bad "rank 1 (pid '$rank1') killed: status $status after ${took} s, still alive: '$alive'"; fi
./train $flags --max_steps 100000 --gradient_accumulation_steps 2 --output_dir $tmp/killed --resume --stop_after_steps 1 \
    > $tmp/reload.log 2>&1
[ $? = 0 ] && grep -q "^resumed from .* at step [1-9]" $tmp/reload.log && ok "the checkpoint left by the killed run loads: $(grep -m1 '^resumed' $tmp/reload.log)" ||
    bad "the checkpoint left by the killed run: $(tail -2 $tmp/reload.log)"

echo "$passed passed, $failed failed"
[ $failed = 0 ]
