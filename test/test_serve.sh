#!/bin/bash
# ./serve (and ./serve_asan) against real clients, on the model in data/ with the pirate
# adapter: the official OpenAI npm client (answers equal to ./generate --prompt's, streamed
# and not, a three-turn chat), bad requests and hostile clients, load with RSS before and
# after (test/serve_client.js), and Debian's chromium driving the chat page through
# puppeteer-core (test/serve_browser.js). Then SIGTERM must stop the server cleanly.
# Needs make serve serve_asan generate and make test-deps; the adapter is out/pirate from
# test_default_run.sh, or made here by the same ./train run when it is missing.
cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
ok() { echo "ok     $1"; passed=$((passed + 1)); }
bad() { echo "FAIL   $1"; [ -n "$2" ] && printf '%s\n' "$2" | sed 's/^/         | /'; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

MODEL=data/base
ADAPTER=out/pirate
for p in ./serve ./serve_asan ./generate ./train; do
    [ -x $p ] || { bad "$p is missing: make test builds it (make serve serve_asan generate train)"; finish; }
done
[ -d test/node/node_modules/openai ] && [ -d test/node/node_modules/puppeteer-core ] && command -v chromium >/dev/null ||
    { bad "the OpenAI client, puppeteer-core or chromium is missing: make test-deps installs them"; finish; }
mkdir -p test/tmp
if [ ! -f $ADAPTER/adapter_config.json ]; then
    echo "       (no $ADAPTER: fine-tuning it with ./train, as the README's first command does)"
    timeout 900 ./train > test/tmp/serve_train.log 2>&1 || { bad "./train failed" "$(tail -3 test/tmp/serve_train.log)"; finish; }
fi

# Starts $1 on a free port (--port 0); sets pid and port.
start_server() {
    log=test/tmp/serve_$(basename $1).log
    "$@" --model $MODEL --adapter $ADAPTER --port 0 --timeout 5 > $log 2>&1 &
    pid=$!
    port=""
    for _ in $(seq 600); do
        port=$(sed -n 's|^serving .* on http://127.0.0.1:\([0-9]*\)/.*|\1|p' $log)
        [ -n "$port" ] || ! kill -0 $pid 2>/dev/null && break
        sleep 0.1
    done
}

# Stops the server with SIGTERM: it must exit 0 within 10 s, sanitizers silent.
stop_server() {
    kill -TERM $pid
    for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    if kill -0 $pid 2>/dev/null; then
        kill -KILL $pid; bad "$1: still running 10 s after SIGTERM"
    else
        wait $pid
        status=$?
        [ $status -eq 0 ] && grep -q '^\[stopped\]' $log && ! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' $log &&
            ok "$1: SIGTERM stops it cleanly (exit 0, sanitizers silent)" ||
            bad "$1: unclean stop (exit status $status)" "$(grep -E -A8 'Sanitizer|runtime error' $log | head -20; tail -3 $log)"
    fi
}

run_node() {  # a node script's ok/FAIL lines and summary, added to ours
    local out
    out=$(timeout "$1" node "${@:2}" 2>&1)
    local status=$?
    echo "$out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
    passed=$((passed + $(echo "$out" | grep -c '^ok ')))
    failed=$((failed + $(echo "$out" | grep -c '^FAIL ')))
    [ $status -eq 124 ] && bad "node $2 did not finish within $1 s"
    echo "$out" | grep -qE '^[0-9]+ passed, [0-9]+ failed$' || bad "node $2 ended without its summary (status $status)"
}

for server in ${SERVE_PROGRAMS:-./serve ./serve_asan}; do
    echo "--- $server"
    # ASan keeps freed memory in quarantine (256 MiB by default); a small one keeps RSS meaningful.
    # The same load under ASan: ~1 s a request (the prefill at -O1), about 5 minutes in all.
    export ASAN_OPTIONS=quarantine_size_mb=16 SERVE_RSS_GROWTH_KIB=4096 SERVE_LOAD="200 8 10"
    [ $server = ./serve_asan ] && SERVE_RSS_GROWTH_KIB=32768
    generate=./generate weights=""
    # ./serve_asan, built without -march, runs the portable kernels: it and the ./generate
    # answering it hold the base in fp32, since a bf16 base's sampled answers move with the
    # kernel's summation order (rounding to bf16 magnifies it)
    if [ $server = ./serve_asan ]; then
        mkdir -p test/tmp
        printf '#!/bin/sh\nexec ./generate --weights f32 "$@"\n' > test/tmp/generate_f32
        chmod +x test/tmp/generate_f32
        generate=test/tmp/generate_f32 weights="--weights f32"
    fi
    start_server $server $weights
    [ -n "$port" ] || { bad "$server did not start" "$(tail -5 $log)"; continue; }
    ok "$server listens on 127.0.0.1:$port"
    run_node 600 test/serve_client.js $port $pid $log $generate $MODEL $ADAPTER
    run_node 300 test/serve_browser.js $port $generate $MODEL $ADAPTER test/tmp/serve_chat_$(basename $server).png
    stop_server $server
done
finish
