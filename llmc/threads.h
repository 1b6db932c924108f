// threads.h: threads_init, which bounds how long OpenMP's waiting threads spin, so that a
// program sharing its cores with another keeps its speed
#ifndef LLMC_THREADS_H
#define LLMC_THREADS_H

#include <stdlib.h>
#include <unistd.h>

// A thread that reaches the end of a parallel region first spins until the others arrive:
// libgomp's default is 300000 spins before it sleeps, 12 ms on the development machine (a
// spin is a `pause`, ~40 ns there), longer than a scheduler time slice. On an idle machine
// the spin saves a wake-up. When another process holds one of the cores, the thread being
// waited for is descheduled and the spinning one burns the time slice that thread needs, at
// each of the hundreds of parallel regions of a training step or a decoded token: ./train
// ran 20-45x slower on a 2-core machine with one other busy process. 2000 spins (~80 us)
// still cover the gaps between the regions of a step, so an idle machine loses little, and
// then a waiting thread sleeps and gives its core away. Chosen by measurement over 0 to
// 300000 on data/base (test/bench_busy.sh; README "On a busy machine"): at 2000 the idle
// cost is within noise (training step +0-4%, decode +0%) and a loaded step 2.2-2.5x the idle
// time; at 1000 decode loses ~10% idle, at 100 or 0 (= OMP_WAIT_POLICY=passive) it runs 2.5x
// slower idle (every region wakes a sleeping thread); from 3000 up the loaded slowdown grows
// back towards the default's.
#define THREADS_SPINCOUNT "2000"

// The first line of each program's main; not of the test programs, which keep libgomp's default
// (the tests that run ./train and ./generate get what users get).
// libgomp reads GOMP_SPINCOUNT and OMP_WAIT_POLICY once, when it is loaded, before main;
// so when the user has set neither, this sets GOMP_SPINCOUNT and runs the program again,
// once (the variable is then set, so the new process goes on). Programs this one starts
// inherit the setting. If the re-run fails, the program goes on with libgomp's default.
static inline void threads_init(char** argv) {
#ifdef _OPENMP
    if (getenv("OMP_WAIT_POLICY") != NULL || getenv("GOMP_SPINCOUNT") != NULL) return;
    setenv("GOMP_SPINCOUNT", THREADS_SPINCOUNT, 1);
    execv("/proc/self/exe", argv);
#else
    (void)argv;  // no OpenMP: nothing waits
#endif
}

#endif  // LLMC_THREADS_H
