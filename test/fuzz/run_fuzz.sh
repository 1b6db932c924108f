#!/bin/bash
# run_fuzz.sh SECONDS HARNESS...: libFuzzer on each harness in turn (make fuzz builds them:
# test/fuzz/bin/fuzz_HARNESS), for SECONDS each, on a fresh copy of test/corpus/HARNESS in
# test/tmp/fuzz/HARNESS/corpus (the committed corpus never grows by itself). Prints the
# executions per harness; a crash, leak of the limits or timeout leaves its input in
# test/tmp/fuzz/HARNESS/ and fails. To keep a finding: minimise it
# (test/fuzz/bin/fuzz_HARNESS -minimize_crash=1 -runs=10000 FILE), fix the code, and copy it into
# test/corpus/HARNESS/ under a name that says what it tests (see test/fuzz/README.md).
cd "$(dirname "$0")/../.." || exit 1
seconds=$1; shift
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
[ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm  # the harnesses write each input to a file: 3x faster
found=0
for harness in "$@"; do
    dir=test/tmp/fuzz/$harness
    rm -rf "$dir"
    mkdir -p "$dir/corpus"
    cp test/corpus/$harness/* "$dir/corpus/"
    # -detect_leaks=0: a rejected input's buffers are freed by fuzz.h after the call, which
    # LeakSanitizer cannot see. -timeout: a hang; -rss_limit_mb: a blow-up fuzz.h misses.
    nice -n 10 test/fuzz/bin/fuzz_$harness -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -detect_leaks=0 -print_final_stats=1 -dict=test/fuzz/json.dict -artifact_prefix="$dir/" \
        "$dir/corpus" > "$dir/log" 2>&1
    status=$?
    rm -rf "${TMPDIR:-/tmp}"/fuzz_$harness.??????  # its scratch directory: libFuzzer's exits skip atexit
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/log" | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$dir/log" | grep -o '[0-9]*$')
    features=$(grep -o 'ft: [0-9]*' "$dir/log" | tail -1 | grep -o '[0-9]*$')
    if [ $status -eq 0 ]; then
        echo "fuzz_$harness: ${runs:-?} executions in ${seconds} s (${rate:-?}/s), ${features:-?} features, nothing found"
    else
        found=1
        echo "fuzz_$harness: FOUND something after ${runs:-?} executions (exit status $status): $(ls "$dir" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | sed "s|^|$dir/|" | tr '\n' ' ')"
        grep -E 'ERROR|SUMMARY|fuzz: |runtime error' "$dir/log" | head -5 | sed 's/^/    /'
    fi
done
exit $found
