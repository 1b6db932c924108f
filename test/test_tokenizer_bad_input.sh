#!/bin/bash
# Bad input for tokenizer.c: each case must exit 1 with one clear "error: ..." line naming
# the problem, and never crash. Run against the AddressSanitizer build of the CLI.
# usage: bash test/test_tokenizer_bad_input.sh TOKENIZER_BINARY GOOD_TOKENIZER_DIR WORK_DIR
set -u
bin=$1; good=$2; work=$3
mkdir -p "$work"
passed=0; failed=0

# bad tokenizer.json files, each derived from a good one
/usr/bin/python3 - "$good/tokenizer.json" "$work" <<'EOF'
import json, os, sys
good, work = json.load(open(sys.argv[1])), sys.argv[2]
def write(name, obj):
    os.makedirs(os.path.join(work, name), exist_ok=True)
    with open(os.path.join(work, name, "tokenizer.json"), "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
t = json.loads(json.dumps(good)); del t["model"]; write("no_model", t)
t = json.loads(json.dumps(good)); del t["model"]["vocab"]; write("no_vocab", t)
t = json.loads(json.dumps(good)); del t["model"]["merges"]; write("no_merges", t)
t = json.loads(json.dumps(good)); t["model"]["type"] = "WordPiece"; write("unknown_type", t)
t = json.loads(json.dumps(good)); t["model"]["merges"].append(["a", "not_a_token"]); write("merge_unknown_token", t)
t = json.loads(json.dumps(good)); t["model"]["merges"].insert(0, "abc"); write("merge_one_token", t)
t = json.loads(json.dumps(good)); t["model"]["vocab"] = {}; write("empty_vocab", t)
t = json.loads(json.dumps(good)); t["model"]["vocab"]["x"] = -5; write("negative_id", t)
t = json.loads(json.dumps(good)); t["model"]["vocab"] = [1, 2]; write("vocab_not_object", t)
t = json.loads(json.dumps(good)); t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+"; write("other_regex", t)
t = json.loads(json.dumps(good)); t["added_tokens"].append({"id": 5, "content": ""}); write("empty_added_token", t)
write("truncated", json.dumps(good)[:5000])
write("not_json", "hello")
EOF
printf '[{"role": "user", "content": "hi"}, {"role": 5}]' > "$work/bad_chat.json"
printf '[{"role": "assistant", "content": "hi"}]' > "$work/llama2_order.json"

# expect NAME "PATTERN" COMMAND...: exit status 1, the pattern in stderr, no sanitizer report
expect() {
    local name=$1 pattern=$2; shift 2
    "$@" >"$work/out" 2>"$work/err" </dev/null
    local rc=$?
    local first; first=$(head -n 1 "$work/err")
    if [ $rc -eq 1 ] && grep -q -- "$pattern" "$work/err" && ! grep -q -E "AddressSanitizer|runtime error|LeakSanitizer" "$work/err"; then
        echo "ok bad input: $name -> $first"; passed=$((passed + 1))
    else
        echo "FAIL bad input: $name (exit $rc): $(head -c 400 "$work/err")"; failed=$((failed + 1))
    fi
}

expect "tokenizer.json without model" 'no "model"' "$bin" encode --tokenizer "$work/no_model" hi
expect "tokenizer.json without model.vocab" 'no "vocab"' "$bin" encode --tokenizer "$work/no_vocab" hi
expect "tokenizer.json without model.merges" 'no "merges"' "$bin" encode --tokenizer "$work/no_merges" hi
expect "unknown model type" 'supports only "BPE"' "$bin" encode --tokenizer "$work/unknown_type" hi
expect "merge naming an unknown token" 'not in model.vocab' "$bin" encode --tokenizer "$work/merge_unknown_token" hi
expect "merge that is not two tokens" 'not two tokens' "$bin" encode --tokenizer "$work/merge_one_token" hi
expect "empty vocab" 'empty' "$bin" encode --tokenizer "$work/empty_vocab" hi
expect "negative token id" 'non-negative' "$bin" encode --tokenizer "$work/negative_id" hi
expect "vocab that is not an object" 'must be an object' "$bin" encode --tokenizer "$work/vocab_not_object" hi
expect "another split regex" 'Llama 3 regex' "$bin" encode --tokenizer "$work/other_regex" hi
expect "added token without content" 'non-empty "content"' "$bin" encode --tokenizer "$work/empty_added_token" hi
expect "truncated JSON" 'invalid JSON' "$bin" encode --tokenizer "$work/truncated" hi
expect "not JSON" 'invalid JSON' "$bin" encode --tokenizer "$work/not_json" hi
expect "missing file" 'cannot open' "$bin" encode --tokenizer "$work/does_not_exist" hi
expect "decode id out of range" 'out of range' "$bin" decode --tokenizer "$good" 9906 99999999
expect "decode negative id" 'out of range' "$bin" decode --tokenizer "$good" -1
expect "decode non-number" 'not an integer' "$bin" decode --tokenizer "$good" 12abc
expect "unknown chat template" 'unknown chat template' "$bin" chat --tokenizer "$good" --template chatml "$work/bad_chat.json"
expect "chat message without content" 'needs string' "$bin" chat --tokenizer "$good" "$work/bad_chat.json"
expect "train without arguments" 'train needs' "$bin" train --corpus "$work/bad_chat.json"
expect "unknown flag" 'unknown flag --frobnicate' "$bin" encode --tokenizer "$good" --frobnicate hi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
