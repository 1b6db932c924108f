# bench_load.sh: sourced by the benchmarks to say how busy the machine was while they measured.
#   measure VAR command...   runs the command, its stdout into VAR, and sets $others to the
#                            share of all CPUs that other processes used meanwhile, from
#                            /proc/stat's busy time less this command's own CPU time, e.g.
#                            "31% (niced 25%)": niced processes (nice > 0) mostly yield to ours
#   load_line                "load average 1.02 (1 min), 2 CPUs"
# On a shared machine a benchmark is only as good as its quietest run: the scripts print
# $others beside every figure and the README quotes it.

CPUS=$(getconf _NPROCESSORS_ONLN)  # not nproc, which counts OMP_NUM_THREADS
TICKS=$(getconf CLK_TCK)

# seconds every CPU together spent busy (user, nice, system, irq, softirq) since boot, and
# of them at nice > 0
cpu_busy_seconds() { awk -v hz="$TICKS" '/^cpu / { printf "%.2f %.2f", ($2 + $3 + $4 + $7 + $8) / hz, $3 / hz }' /proc/stat; }

measure() {
    local var=$1 busy0 busy1 mine0 mine1 wall0 wall1 result
    shift
    times > "${TMPDIR:-/tmp}/bench_times.$$"; mine0=$(sed -n 2p "${TMPDIR:-/tmp}/bench_times.$$")
    busy0=$(cpu_busy_seconds); wall0=$(date +%s.%N)
    result=$("$@")
    busy1=$(cpu_busy_seconds); wall1=$(date +%s.%N)
    times > "${TMPDIR:-/tmp}/bench_times.$$"; mine1=$(sed -n 2p "${TMPDIR:-/tmp}/bench_times.$$")
    rm -f "${TMPDIR:-/tmp}/bench_times.$$"
    printf -v "$var" '%s' "$result"
    others=$(awk -v b0="$busy0" -v b1="$busy1" -v w0="$wall0" -v w1="$wall1" -v m0="$mine0" -v m1="$mine1" \
                 -v cpus="$CPUS" '
        function seconds(s,   n, i, p) { n = 0; split(s, f, " ")
            for (i = 1; i <= 2; i++) { split(f[i], p, /[ms]/); n += p[1] * 60 + p[2] } return n }
        BEGIN { split(b0, x, " "); split(b1, y, " ")
                o = (y[1] - x[1]) - (seconds(m1) - seconds(m0)); if (o < 0) o = 0
                printf "%.0f%% (niced %.0f%%)", 100 * o / ((w1 - w0) * cpus), 100 * (y[2] - x[2]) / ((w1 - w0) * cpus) }')
}

load_line() { echo "load average $(cut -d' ' -f1 /proc/loadavg) (1 min), $CPUS CPUs"; }
