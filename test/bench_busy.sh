#!/bin/bash
# OpenMP's waiting threads on a busy machine: libgomp's default spin against the short one
# ./train and ./generate ask for (llmc/threads.h), on the machine as we find it ("idle") and
# with one CPU-bound process pinned to core 1 ("loaded"), in one run. The busy process runs
# in its own session (setsid), as another user's program would: Linux's autogroups share
# the CPUs between sessions first, so a busy loop in this script's own session would only
# compete with our threads inside our share and hide most of the effect (default spin 2.7x
# slower instead of 14x).
#   train:  ./train on data/base (the default run's model and data), a few LoRA steps;
#           the mean step time from its log.jsonl, first step left out (it warms up); the
#           mean, since steps differ in length, but every run trains the same batches
#   decode: ./generate on data/base, 200 tokens after a 3-token prompt; its ms/token
# The default is GOMP_SPINCOUNT=300000 (libgomp's own default, set explicitly, which makes
# threads_init leave it alone); ours is whatever threads_init sets (nothing in the environment).
# Prints each side's median (min-max) over `rounds` alternations, the idle cost of the short
# spin, and the loaded slowdown of each, as a ratio to the idle speed with libgomp's default.
# usage: test/bench_busy.sh [idle_rounds] [loaded_rounds] [train_steps]   (default 7 3 8)
set -e
cd "$(dirname "$0")/.."
source test/bench_load.sh  # defines: measure, load_line
for p in train generate; do [ -x ./$p ] || { echo "error: ./$p is missing: make $p" >&2; exit 1; }; done
[ "$CPUS" -ge 2 ] || { echo "skip: bench_busy needs 2 CPUs (it loads one of them)"; exit 0; }
idle_rounds=${1:-7}
loaded_rounds=${2:-3}
steps=${3:-8}
tmp=test/tmp/busy
mkdir -p "$tmp"
spin=$(sed -n 's/^#define THREADS_SPINCOUNT "\([0-9]*\)"/\1/p' llmc/threads.h)
unset OMP_WAIT_POLICY GOMP_SPINCOUNT

# The programs run under `$with`: `env GOMP_SPINCOUNT=300000` for the default, `env` for ours.
# seconds per training step: the mean of steps 2.. from log.jsonl's cumulative "elapsed"
train_step() {
    $with ./train --data data/pirate.jsonl --max_steps "$steps" --output_dir "$tmp/train" >/dev/null 2>&1
    sed -E 's/.*"elapsed": ([0-9.]+).*/\1/' "$tmp/train/log.jsonl" | awk 'NR == 1 { first = $1 } END { print ($1 - first) / (NR - 1) }'
}
# seconds per decoded token
decode_token() {
    $with ./generate --model data/base --ids 1,2,3 --max_new_tokens 200 --temperature 0 2>&1 >/dev/null |
        sed -nE 's/.*decode ([0-9]+) tokens ([0-9.]+) s.*/\1 \2/p' | awk '{ print $2 / $1 }'
}
# median (min-max) of the numbers in $1, in ms
ms() { echo "$1" | tr ' ' '\n' | grep . | sort -g | awk '
    function f(x) { return sprintf(x < 10 ? "%.2f" : x < 100 ? "%.1f" : "%.0f", x) }
    { v[NR] = 1e3 * $1 } END { printf "%s ms (%s-%s)", f(NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), f(v[1]), f(v[NR]) }'; }
median() { ms "$1" | awk '{ print $1 }'; }

# measures both workloads under both settings, $1 rounds alternating; results in
# times_<workload>_<setting>, the others' CPU share in $phase_others
run_phase() {
    local w s r value all=""
    for w in train decode; do for s in default ours; do printf -v "times_${w}_$s" '%s' ""; done; done
    for r in $(seq 1 "$1"); do
        for w in train decode; do
            for s in default ours; do
                with=env; [ $s = default ] && with="env GOMP_SPINCOUNT=300000"
                if [ $w = train ]; then measure value train_step; else measure value decode_token; fi
                local var="times_${w}_$s"
                printf -v "$var" '%s' "${!var} $value"
                all="$all ${others%%%*}"
            done
        done
    done
    phase_others=$(echo "$all" | tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { printf "%d-%d%%", v[1], v[NR] }')
}

echo "== busy machine: OpenMP spin, libgomp's default (GOMP_SPINCOUNT=300000) vs ours (threads_init:" \
     "GOMP_SPINCOUNT=$spin); train = ./train on data/base, mean of steps 2-$steps;" \
     "decode = ./generate on data/base, 200 tokens"
echo "idle: the machine as found ($(load_line)), $idle_rounds rounds"
run_phase "$idle_rounds"
for w in train decode; do
    d="times_${w}_default"; o="times_${w}_ours"
    printf -v "idle_$w" '%s' "$(median "${!d}")"
    echo "  $w: default $(ms "${!d}"), ours $(ms "${!o}"): the short spin costs" \
         "$(awk -v d="$(median "${!d}")" -v o="$(median "${!o}")" 'BEGIN { printf "%+.1f%%", 100 * (o / d - 1) }') idle"
done
echo "  others used $phase_others of the CPUs during the runs"
busiest=${phase_others#*-}
[ "${busiest%\%}" -le 10 ] || echo "  warning: the machine was not idle (other processes used up to $busiest of the" \
    "CPUs in a run), so the idle figures above and the ratios to them below are skewed: rerun when it is quiet"

echo "loaded: one busy loop pinned to core 1 (taskset -c 1) in its own session, $loaded_rounds rounds"
setsid timeout 900 taskset -c 1 sh -c 'while :; do :; done' &
hog=$!
trap 'kill $hog 2>/dev/null || true' EXIT
sleep 1
run_phase "$loaded_rounds"
kill $hog 2>/dev/null; wait $hog 2>/dev/null || true
for w in train decode; do
    d="times_${w}_default"; o="times_${w}_ours"; idle="idle_$w"
    echo "  $w: default $(ms "${!d}") = $(awk -v l="$(median "${!d}")" -v i="${!idle}" 'BEGIN { printf "%.1fx", l / i }')" \
         "the idle time; ours $(ms "${!o}") = $(awk -v l="$(median "${!o}")" -v i="${!idle}" 'BEGIN { printf "%.1fx", l / i }')"
done
echo "  others used $phase_others of the CPUs during the runs (the busy loop is one CPU of the $CPUS: 50%)"
