#!/bin/bash
# Runs test_generate (KV-cached decode vs train.c's model_forward, adapters, sampler), then
# drives ./generate from the command line: determinism, --dump_logits, adapters
# unmerged/merged, stop reasons, the same runs under AddressSanitizer and UBSan
# (./generate_asan), bad input (each must exit 1 with exactly one stderr line "error: ...")
# and a scripted chat. Needs ./generate, ./generate_asan, ./test_generate and ./tokenizer
# (make test builds them). Ends with "N passed, M failed" over everything; exits non-zero
# if anything failed.
cd "$(dirname "$0")/.." || exit 1
export ASAN_OPTIONS=detect_leaks=0  # errors exit(1) on purpose without freeing
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
passed=0
failed=0
ok() { echo "ok     $1"; passed=$((passed + 1)); }
bad() { echo "FAIL   $1"; [ -n "$2" ] && printf '%s\n' "$2" | sed 's/^/         | /'; failed=$((failed + 1)); }

for program in generate generate_asan test_generate tokenizer; do
    [ -x ./$program ] || { bad "./$program is missing: make test builds it (or make $program)"; echo "$passed passed, $failed failed"; exit 1; }
done
mkdir -p test/tmp

echo "=== test_generate: decode vs train.c's model_forward (writes test/tmp/generate)"
log=$(mktemp)
./test_generate | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
rm -f "$log"
if [ -z "$summary" ]; then
    bad "test_generate ended without a summary line (exit status $status)"
else
    p=${summary%% passed*}; f=${summary#*, }; f=${f%% failed}
    passed=$((passed + p)); failed=$((failed + f))
    [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && bad "test_generate exited with status $status"
fi
FIX=test/tmp/generate
[ -d $FIX/adapter ] || { echo "$passed passed, $((failed + 1)) failed"; exit 1; }

echo "=== ./generate from the command line"
TINY=test/models/tiny
PROMPT=1,5,7,9,11
# gen ARGS...: runs $generate; sets $out (stdout), $err (stderr), $status
generate=./generate
gen() {
    out=$(timeout 300 $generate "$@" 2>test/tmp/generate_stderr)
    status=$?
    err=$(cat test/tmp/generate_stderr)
}
gen --model $TINY --ids $PROMPT --max_new_tokens 30; first=$out
gen --model $TINY --ids $PROMPT --max_new_tokens 30
[ $status -eq 0 ] && [ -n "$first" ] && [ "$out" = "$first" ] && ok "greedy output identical in two runs: $out" || bad "greedy output differs between runs" "$first / $out / $err"
gen --model $TINY --ids $PROMPT --max_new_tokens 30 --threads 1
[ "$out" = "$first" ] && ok "greedy output identical with --threads 1" || bad "greedy output depends on the thread count" "$out"
echo "$err" | grep -qE 'prefill 5 tokens .* tok/s\) \| decode 29 tokens .* tok/s\)' && ok "prefill and decode tokens/s on stderr: $(echo "$err" | tail -1 | sed 's/.*prefill/prefill/')" || bad "no prefill/decode tokens/s line on stderr" "$err"
echo "$err" | grep -q '\[stopped: 30 new tokens (--max_new_tokens)\]' && ok "stop reason shown: max new tokens" || bad "max-new-tokens stop reason missing" "$err"

gen --model $TINY --ids $PROMPT --max_new_tokens 2 --dump_logits test/tmp/generate/dumped.f32
if cmp -s test/tmp/generate/dumped.f32 $FIX/ref_logits_1_5_7_9_11.f32 && [ "$(stat -c %s $FIX/dumped.f32)" -eq $((5 * 301 * 4)) ]; then
    ok "--dump_logits writes 5x301 float32 identical to model_forward's logits"
else
    bad "--dump_logits output differs from model_forward's logits" "$err"
fi

gen --model $TINY --adapter $FIX/adapter --ids $PROMPT --max_new_tokens 40; unmerged=$out
gen --model $TINY --adapter $FIX/adapter --merge_adapter --ids $PROMPT --max_new_tokens 40; merged_at_load=$out
gen --model $FIX/merged --ids $PROMPT --max_new_tokens 40; merged_dir=$out
gen --model $TINY --ids $PROMPT --max_new_tokens 40; base=$out
[ -n "$unmerged" ] && [ "$unmerged" = "$merged_at_load" ] && ok "adapter unmerged = --merge_adapter (40 greedy tokens)" || bad "unmerged and merged-at-load adapters differ" "$unmerged / $merged_at_load"
[ -n "$unmerged" ] && [ "$unmerged" = "$merged_dir" ] && ok "adapter unmerged = merged model directory (40 greedy tokens)" || bad "unmerged adapter and merged model directory differ" "$unmerged / $merged_dir"
[ "$unmerged" != "$base" ] && ok "the adapter changes the output" || bad "the adapter did not change the output"

gen --model $FIX/tiny_eos --ids $PROMPT --max_new_tokens 30
[ "$out" = "198 149" ] && echo "$err" | grep -q '\[stopped: end token 78\]' && ok "stops at config.json's eos_token_id (78 here), reason shown" || bad "end token did not stop generation" "$out / $err"
gen --model $TINY --ids $PROMPT --max_new_tokens 30 --context 8
[ "$(echo $out | wc -w)" -eq 4 ] && echo "$err" | grep -q 'context of 8 tokens is full' && ok "stops when the context is full (5 + 4 tokens in 8 positions), reason shown" || bad "context-full stop" "$out / $err"

gen --model $TINY --ids $PROMPT --max_new_tokens 30 --temperature 0.9 --top_p 0.95 --top_k 40 --repetition_penalty 1.1 --seed 7; s1=$out
gen --model $TINY --ids $PROMPT --max_new_tokens 30 --temperature 0.9 --top_p 0.95 --top_k 40 --repetition_penalty 1.1 --seed 7; s2=$out
gen --model $TINY --ids $PROMPT --max_new_tokens 30 --temperature 0.9 --top_p 0.95 --top_k 40 --repetition_penalty 1.1 --seed 8; s3=$out
[ -n "$s1" ] && [ "$s1" = "$s2" ] && [ "$s1" != "$s3" ] && ok "sampling: same seed same tokens, another seed other tokens" || bad "sampling seeds" "$s1 / $s2 / $s3"

help=$(./generate --help 2>test/tmp/generate_stderr); status=$?
flags=$(grep -o '{"--[a-z_]*"' generate.c | tr -d '{"')  # the names in GENERATE_FLAGS
unlisted=$(for f in $flags; do printf '%s\n' "$help" | grep -q -- "^  $f " || echo "$f"; done)
[ $status -eq 0 ] && [ ! -s test/tmp/generate_stderr ] && [ "$(echo $flags | wc -w)" -ge 20 ] && [ -z "$unlisted" ] &&
    ok "--help: exit status 0, all $(echo $flags | wc -w) flags of generate.c's table on stdout" || bad "--help (exit status $status; not listed: $unlisted)" "$help"

echo "=== the same runs under AddressSanitizer and UBSan (./generate_asan)"
# a sanitizer report exits non-zero (-fno-sanitize-recover), so status 0 means clean
generate=./generate_asan
gen --model $TINY --adapter $FIX/adapter --ids $PROMPT --max_new_tokens 40
[ $status -eq 0 ] && [ "$out" = "$unmerged" ] && ok "unmerged adapter: clean, same 40 greedy tokens as ./generate" || bad "unmerged adapter under ASan (exit status $status)" "$err"
gen --model $TINY --adapter $FIX/adapter --merge_adapter --ids $PROMPT --max_new_tokens 40
[ $status -eq 0 ] && [ "$out" = "$unmerged" ] && ok "--merge_adapter: clean, same 40 greedy tokens" || bad "--merge_adapter under ASan (exit status $status)" "$err"
gen --model $TINY --ids $PROMPT --max_new_tokens 30 --temperature 0.9 --top_p 0.95 --top_k 40 --repetition_penalty 1.1 --seed 7
[ $status -eq 0 ] && [ "$out" = "$s1" ] && ok "sampling: clean, same tokens as ./generate for the same seed" || bad "sampling under ASan (exit status $status)" "$err"
generate=./generate

e=$(./generate --model $TINY --adapter $FIX/adapter_int8 --ids 1,5,7 --max_new_tokens 3 2>&1 >/dev/null)
if printf '%s' "$e" | grep -q "decode weights int8"; then
    ok "an adapter trained on an int8 base decodes from tiny's int8 quantisation (--weights auto)"
else
    bad "an adapter trained on an int8 base: expected 'decode weights int8' (--weights auto)" "$e"
fi

echo "=== bad input: exit status 1 and one line 'error: ...' (under ASan and UBSan)"
# expect NAME PATTERN ARGS...: generate ARGS must exit 1 with one stderr line matching PATTERN
expect() {
    local name=$1 pattern=$2; shift 2
    local e
    e=$(timeout 300 ./generate_asan "$@" 2>&1 >/dev/null)
    local st=$?
    local lines
    lines=$(printf '%s\n' "$e" | grep -c .)
    if [ $st -eq 1 ] && [ "$lines" -eq 1 ] && printf '%s' "$e" | grep -qE "^error: .*$pattern"; then
        ok "$name: $e"
    else
        bad "$name (exit status $st, $lines stderr lines, expected /$pattern/)" "$e"
    fi
}
expect "prompt longer than --context" "prompt has 10 tokens but the context holds 8" --model $TINY --ids 1,2,3,4,5,6,7,8,9,10 --context 8
expect "prompt longer than max_position_embeddings" "prompt has 129 tokens but the context holds 128" --model $TINY --ids "$(seq -s, 1 129)"
expect "--context over max_position_embeddings" "max_position_embeddings" --model $TINY --ids 1,2 --context 200
expect "adapter for a different base (shape mismatch)" "adapter_other_base/adapter_model.safetensors: .*shape \[4,32\].*\[4,48\]" --model $TINY --adapter $FIX/adapter_other_base --ids 1,2
expect "adapter directory missing" "nonexistent/adapter_config.json" --model $TINY --adapter $FIX/nonexistent --ids 1,2
expect "missing tokenizer.json (--prompt)" "tiny/tokenizer.json: not found" --model $TINY --prompt "Hello"
expect "missing tokenizer.json (--chat)" "tiny/tokenizer.json: not found" --model $TINY --chat
expect "model dir with no weights" "no_weights: no weights found" --model $FIX/no_weights --ids 1,2
expect "model dir missing" "does not exist" --model $FIX/nonexistent --ids 1,2
expect "token id outside the vocabulary" "token id 400 is outside" --model $TINY --ids 1,400
expect "--ids not a list of ids" "not a comma-separated list" --model $TINY --ids "1,,2"
expect "unknown flag" "unknown flag --temp" --model $TINY --ids 1 --temp 0.5
expect "no prompt given" "exactly one of" --model $TINY
expect "bad --weights" "--weights must be" --model $TINY --ids 1 --weights f16
expect "--weights nf4 on rows that are not whole NF4 blocks" "48 columns, not a multiple of NF4's block of 64" --model $TINY --ids 1 --weights nf4
expect "--weights bf16 on a float16 checkpoint" "has dtype F16; .*./generate --weights f32" --model test/models/tiny_f16 --ids 1 --weights bf16
expect "adapter trained on an int8 base, onto another base" "adapter_int8/adapter_model.safetensors: trained on the int8 quantisation of another base model" --model test/models/tiny_tied --adapter $FIX/adapter_int8 --ids 1,2
expect "--merge_adapter onto a quantised base" "quantised base cannot take the merge" --model $TINY --adapter $FIX/adapter_int8 --merge_adapter --ids 1,2
expect "--top_p out of range" "--top_p expects a number" --model $TINY --ids 1 --top_p 1.5

echo "=== chat: a scripted two-turn chat on piped stdin, checked by ids"
# The expected ids come from the Llama 3 template written out as a string (SPEC §5) and
# encoded by the tokenizer CLI, not from chat_render: turn 2's prompt holds turn 1's
# answer as text (decoded, stripped), as Hugging Face's apply_chat_template would.
CHAT=$FIX/chat_model
# chat BINARY IDS_FILE: the scripted chat; its stderr goes to $FIX/chat_stderr
chat() {
    rm -f "$2"
    printf 'Hello there\n/reset\nHello there\nHow are you?\n/quit\nignored\n' |
        timeout 300 "$1" --model $CHAT --chat --template llama3 --max_new_tokens 12 --dump_ids "$2" >/dev/null 2>$FIX/chat_stderr
}
chat ./generate $FIX/chat_ids.txt
chat_status=$?
result=$(/usr/bin/python3 - "$CHAT/tokenizer.json" "$FIX/chat_ids.txt" <<'PY'
import subprocess, sys
tok, ids_file = sys.argv[1], sys.argv[2]
def encode(text):
    return [int(x) for x in subprocess.run(["./tokenizer", "encode", "--tokenizer", tok, text], capture_output=True, text=True, check=True).stdout.split()]
def decode(ids):
    return subprocess.run(["./tokenizer", "decode", "--tokenizer", tok, "--skip_special"] + [str(i) for i in ids], capture_output=True, text=True, check=True).stdout
lines = [[int(x) for x in l.split()] for l in open(ids_file)]
if len(lines) != 3: print(f"expected 3 turns in {ids_file} (one before /reset, two after), got {len(lines)}"); sys.exit()
header = lambda role: f"<|start_header_id|>{role}<|end_header_id|>\n\n"
p1 = encode("<|begin_of_text|>" + header("user") + "Hello there<|eot_id|>" + header("assistant"))
for n, line in enumerate(lines[:2]):
    if line[:len(p1)] != p1: print(f"turn {n + 1}: prompt ids {line[:len(p1)]} != template {p1}"); sys.exit()
if lines[0] != lines[1]: print("the turn after /reset differs from the first turn"); sys.exit()
answer1 = lines[1][len(p1):]
eot = encode("<|eot_id|>")[0]
text1 = decode([i for i in answer1 if i != eot]).strip()
p2 = encode("<|begin_of_text|>" + header("user") + "Hello there<|eot_id|>" + header("assistant") + text1 + "<|eot_id|>"
            + header("user") + "How are you?<|eot_id|>" + header("assistant"))
if lines[2][:len(p2)] != p2: print(f"turn 2: prompt ids {lines[2][:len(p2)]} != template {p2}"); sys.exit()
print(f"ok {len(p1)} + {len(p2)} prompt ids")
PY
)
if [ $chat_status -eq 0 ] && [ "${result%% *}" = ok ]; then
    ok "two-turn chat (piped stdin, /reset, /quit): every turn's ids = the Llama 3 template's ($result)"
else
    bad "scripted chat (exit status $chat_status)" "$result
$(cat $FIX/chat_stderr)"
fi
grep -q 'conversation reset' $FIX/chat_stderr && [ "$(grep -c 'stopped:' $FIX/chat_stderr)" -eq 3 ] && ok "chat: /reset acknowledged, /quit ends before the last line, stop reason and tokens/s per answer" || bad "chat commands" "$(cat $FIX/chat_stderr)"
chat ./generate_asan $FIX/chat_ids_asan.txt
[ $? -eq 0 ] && cmp -s $FIX/chat_ids.txt $FIX/chat_ids_asan.txt && ok "the same chat under ASan and UBSan: clean, same ids" || bad "chat under ASan" "$(cat $FIX/chat_stderr)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
