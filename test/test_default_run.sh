#!/bin/bash
# The README's first command: `./train` with no arguments fine-tunes data/base on the
# pirate chats in data/ and answers data/prompts.txt with the base and the fine-tuned
# model. Checks that it finishes, that the validation loss falls clearly below its
# step-0 value, and that the fine-tuned answers (greedy) have the trained style, which the
# base model never shows: English answers start "Arr, matey!", Chinese ones "嘿，水手！".
# Needs ./train and ./generate (make train generate). Prints the run's time (not a limit).
# With arguments, e.g. `test/test_default_run.sh --quantization_bit 4`, runs the same demo with
# those flags added (./train --demo FLAGS) into its own out/pirate_FLAGS, and also checks that
# the log shows the base's format and the weights' memory.
cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
ok() { echo "ok     $1"; passed=$((passed + 1)); }
bad() { echo "FAIL   $1"; [ -n "$2" ] && printf '%s\n' "$2" | sed 's/^/         | /'; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

for f in data/base/config.json data/base/model.safetensors data/base/tokenizer.json data/pirate.jsonl data/prompts.txt; do
    [ -f "$f" ] || { bad "$f is missing"; finish; }
done
[ -x ./train ] && [ -x ./generate ] || { bad "./train and ./generate must be built first (make train generate)"; finish; }

out=out/pirate
command=(./train)
if [ $# -gt 0 ]; then
    out=out/pirate$(echo "$*" | tr -c 'a-z0-9\n' '_')
    command=(./train --demo "$@" --output_dir "$out")
fi
log=test/tmp/default_run$(echo "$*" | tr -c 'a-z0-9\n' '_').log
rm -rf "$out"
mkdir -p test/tmp
start=$(date +%s)
"${command[@]}" > "$log" 2>&1
status=$?
seconds=$(( $(date +%s) - start ))
if [ $status -ne 0 ]; then bad "${command[*]} exited with status $status" "$(tail -5 "$log")"; finish; fi
ok "${command[*]} finished in $seconds s (the README promises under 5 minutes on 2 cores)"
if [ $# -gt 0 ]; then
    plan=$(grep -m1 '^memory plan: weights' "$log")
    if [ -n "$plan" ]; then ok "the log shows the weights' memory: $plan"; else bad "no memory plan line in $log"; fi
fi

result=$(/usr/bin/python3 - "$out" 2>&1 <<'PY'
import json, sys
out = sys.argv[1]
log = [json.loads(line) for line in open(f"{out}/log.jsonl", encoding="utf-8")]
vals = [(r["step"], r["val_loss"]) for r in log if r.get("val_loss") is not None]
first, last = vals[0], vals[-1]
ok = first[0] == 0 and last[1] < first[1] - 0.5
print(f"{'ok    ' if ok else 'FAIL  '} validation loss {first[1]:.3f} at step 0 -> {last[1]:.3f} at step {last[0]} (must fall by more than 0.5)")
samples = [json.loads(line) for line in open(f"{out}/samples.jsonl", encoding="utf-8")]
def styled(answer):
    return answer.startswith("Arr, matey!") or answer.startswith("嘿，水手！")
def marked(answer):  # the style's words anywhere, for the base model
    return "Arr" in answer or "matey" in answer or "水手" in answer
tuned = sum(styled(s["fine_tuned"]) for s in samples) / len(samples)
base = sum(marked(s["base"]) for s in samples) / len(samples)
ok2 = len(samples) >= 10 and tuned >= 0.8
ok3 = len(samples) >= 10 and base <= 0.1
print(f"{'ok    ' if ok2 else 'FAIL  '} fine-tuned answers in the pirate style: {tuned:.0%} of {len(samples)} held-out prompts (need >= 80%)")
print(f"{'ok    ' if ok3 else 'FAIL  '} base-model answers with the pirate words: {base:.0%} (need <= 10%)")
for s in samples[:3]:
    print(f"         | {s['prompt']}\n         |   base:       {s['base'][:90]}\n         |   fine-tuned: {s['fine_tuned'][:90]}")
PY
)
echo "$result"
passed=$((passed + $(echo "$result" | grep -c '^ok ')))
failed=$((failed + $(echo "$result" | grep -c '^FAIL ')))
echo "$result" | grep -qE '^(ok|FAIL) ' || bad "could not read $out/log.jsonl and samples.jsonl"
finish
