// distributed.h: data-parallel ranks: dist_init, dist_rank, dist_size, dist_sum_floats, dist_sum_doubles,
// dist_hash, dist_agree.
// Built with -DUSE_MPI (make train_mpi: train.c compiled by mpicc) these run on MPI; without it (./train)
// the program is the one rank of one, and every call below is a no-op, so train.c reads the same both ways.
//
// What crosses between ranks: the trainable gradients (dist_sum_floats, in a fixed order, so the result does
// not depend on timing and equals one process's pairwise sum, see train.c's train_step), the per-micro-batch
// losses (dist_sum_doubles), and hashes that must agree (dist_agree: the data, the starting weights).
// Rank 0 alone writes files and prints; the other ranks' stdout goes to /dev/null and their errors name them.
#ifndef LLMC_DISTRIBUTED_H
#define LLMC_DISTRIBUTED_H

#include <stdint.h>
#include <stdio.h>
#include "utils.h"
#ifdef USE_MPI
#include <mpi.h>
#endif

static int dist_rank_ = 0, dist_size_ = 1;  // this process's rank and the number of ranks
static inline int dist_rank(void) { return dist_rank_; }
static inline int dist_size(void) { return dist_size_; }

// 64-bit FNV-1a of n bytes, continuing from h (start from 14695981039346656037)
static inline uint64_t dist_hash(uint64_t h, const void* data, size_t n) {
    const unsigned char* p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
#define DIST_HASH_START 14695981039346656037ull

// A chunk of len values is cut into shards of `shard` values, shard q for rank q: the values in shard q
// (the last shards may be short, or empty)
static inline size_t dist_shard_length(size_t len, size_t shard, int q) {
    size_t begin = (size_t)q * shard;
    return begin >= len ? 0 : len - begin < shard ? len - begin : shard;
}

#ifdef USE_MPI
// MPI's int counts: the gradients go through in chunks of this many floats (64 MiB), one buffer that size
#define DIST_CHUNK ((size_t)1 << 24)
static float* dist_buffer = NULL;

static void dist_abort(void) { MPI_Abort(MPI_COMM_WORLD, 1); }  // fail(): stop every rank, not just this one

static void dist_finalize(void) {
    int finalized;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}

static inline void dist_init(int* argc, char*** argv) {
    int initialized;
    MPI_Initialized(&initialized);
    if (initialized) return;  // train_gpu_mpi starts MPI before train_main, to pick its GPU
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &dist_rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &dist_size_);
    atexit(dist_finalize);  // every normal exit, --help included
    fail_rank = dist_rank_;
    fail_exit = dist_abort;
    if (dist_rank_ > 0 && freopen("/dev/null", "w", stdout) == NULL) fail("cannot send stdout to /dev/null");
    dist_buffer = malloc_check(DIST_CHUNK * sizeof(float), "the gradient exchange buffer");
}

// x (n) on every rank becomes the sum over ranks of x, the same bits on every rank. Rank q adds up shard q
// (a 1/R of the chunk) from every rank, pairwise in rank order (((x0+x1)+(x2+x3)) for 4 ranks: one
// process's pairwise sum when R is a power of two), then every rank gathers every shard: the bytes of
// a ring all-reduce, 2(R-1)/R of x per rank, but in an order MPI_Allreduce does not promise.
static inline void dist_sum_floats(float* x, size_t n) {
    int R = dist_size_, me = dist_rank_;
    if (R == 1) return;
    size_t per_chunk = DIST_CHUNK / R;  // a chunk of x: R shards of per_chunk
    int counts[R], displs[R], mine[R];
    for (size_t start = 0; start < n; start += per_chunk * R) {
        size_t len = n - start < per_chunk * R ? n - start : per_chunk * R;
        size_t shard = (len + R - 1) / R;
        for (int q = 0; q < R; q++) {
            counts[q] = (int)dist_shard_length(len, shard, q);
            displs[q] = q * (int)shard;
        }
        for (int q = 0; q < R; q++) mine[q] = counts[me];
        float* chunk = x + start;
        MPI_Alltoallv(chunk, counts, displs, MPI_FLOAT, dist_buffer, mine, displs, MPI_FLOAT, MPI_COMM_WORLD);
        for (int stride = 1; stride < R; stride *= 2) {  // pairwise: rank q's shard += rank q+stride's
            for (int q = 0; q + stride < R; q += 2 * stride) {
                float* into = dist_buffer + (size_t)q * shard;
                const float* from = dist_buffer + (size_t)(q + stride) * shard;
                for (int i = 0; i < counts[me]; i++) into[i] += from[i];
            }
        }
        memcpy(chunk + displs[me], dist_buffer, counts[me] * sizeof(float));
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, chunk, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
    }
}

// x (n) becomes the sum over ranks. Used where each value comes from one rank and the others give 0,
// so the order of the additions cannot change a bit.
static inline void dist_sum_doubles(double* x, int n) {
    if (dist_size_ > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

// Stops every rank, naming the first that disagrees, unless value is the same on every rank. That rank
// says so and stops them all; the others wait for it in a barrier (and never write a file meanwhile).
static inline void dist_agree(uint64_t value, const char* what) {
    int R = dist_size_;
    if (R == 1) return;
    uint64_t values[R];
    MPI_Allgather(&value, 1, MPI_UINT64_T, values, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int q = 1; q < R; q++) {
        if (values[q] == values[0]) continue;
        if (dist_rank_ == q) {
            fail("the %s differ from rank 0's: every rank must read the same files (on several machines, "
                 "the same paths on each, or a shared filesystem)", what);
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
}
#else
static inline void dist_init(int* argc, char*** argv) { (void)argc, (void)argv; }
static inline void dist_sum_floats(float* x, size_t n) { (void)x, (void)n; }
static inline void dist_sum_doubles(double* x, int n) { (void)x, (void)n; }
static inline void dist_agree(uint64_t value, const char* what) { (void)value, (void)what; }
#endif

#endif  // LLMC_DISTRIBUTED_H
