// roofline.h: roof_fp32_gflops, roof_bf16_gflops — the machine's arithmetic peaks, measured
// in the benchmark's own run (SPEC §7: the clock of this shared VM is not what its CPU name
// says, so no constant will do), for benchmarks to print each result as a fraction of them.
//
// Each is a register-only loop on every OpenMP thread: ROOF_CHAINS independent accumulator
// chains, so that the FMA units never wait for a result (latency 4 x 2 units needs 8 chains;
// 12 leave slack and fit the 16 ymm of AVX2 too), nothing loaded or stored. The roof is the
// best of a few bursts of about 30 ms, taken together by all threads.
//   fp32: vfmadd231ps, 2 FLOP per float lane
//   bf16: vdpbf16ps (AVX-512 BF16), 2 bf16 products summed into each fp32 lane: 4 FLOP per lane
#ifndef ROOFLINE_H
#define ROOFLINE_H

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#include "../llmc/utils.h"

enum { ROOF_CHAINS = 12, ROOF_BURSTS = 5 };
static const long ROOF_ITERATIONS = 1L << 24;  // per thread and burst

// Each returns the FLOPs it did; `scale` is 1 at run time, so nothing folds at compile time.
#if defined(__AVX512F__)
__attribute__((noinline)) static double fma_chains(long iterations, float scale, float* sink) {
    __m512 acc[ROOF_CHAINS], a = _mm512_set1_ps(0.999f * scale), b = _mm512_set1_ps(1e-3f);
    for (int i = 0; i < ROOF_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        #pragma GCC unroll 16
        for (int i = 0; i < ROOF_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    for (int i = 1; i < ROOF_CHAINS; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    *sink += _mm512_reduce_add_ps(acc[0]);
    return 2.0 * 16 * ROOF_CHAINS * (double)iterations;
}
#elif defined(__AVX2__) && defined(__FMA__)
__attribute__((noinline)) static double fma_chains(long iterations, float scale, float* sink) {
    __m256 acc[ROOF_CHAINS], a = _mm256_set1_ps(0.999f * scale), b = _mm256_set1_ps(1e-3f);
    for (int i = 0; i < ROOF_CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        #pragma GCC unroll 16
        for (int i = 0; i < ROOF_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    float lanes[8];
    for (int i = 1; i < ROOF_CHAINS; i++) acc[0] = _mm256_add_ps(acc[0], acc[i]);
    _mm256_storeu_ps(lanes, acc[0]);
    for (int j = 0; j < 8; j++) *sink += lanes[j];
    return 2.0 * 8 * ROOF_CHAINS * (double)iterations;
}
#else
static double fma_chains(long iterations, float scale, float* sink) {  // no FMA vectors: no roof
    (void)iterations; (void)scale; (void)sink;
    return 0.0;
}
#endif

#if defined(__AVX512BF16__)
__attribute__((noinline)) static double bf16_chains(long iterations, float scale, float* sink) {
    __m512 acc[ROOF_CHAINS];
    __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f * scale), _mm512_set1_ps(1e-3f));
    for (int i = 0; i < ROOF_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        #pragma GCC unroll 16
        for (int i = 0; i < ROOF_CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, a);
    }
    for (int i = 1; i < ROOF_CHAINS; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    *sink += _mm512_reduce_add_ps(acc[0]);
    return 4.0 * 16 * ROOF_CHAINS * (double)iterations;
}
#else
static double bf16_chains(long iterations, float scale, float* sink) {  // no AVX-512 BF16: no roof
    (void)iterations; (void)scale; (void)sink;
    return 0.0;
}
#endif

// GFLOP/s of `chains` on all threads at once: the best of ROOF_BURSTS bursts; 0 where this
// build has no such instruction
static double roof_gflops(double (*chains)(long, float, float*)) {
    static volatile float scale = 1.0f;
    float sink = 0.0f;
    double best = 0.0;
    for (int burst = 0; burst < ROOF_BURSTS; burst++) {
        double flops = 0.0, t0 = wall_seconds();
        #pragma omp parallel reduction(+:flops, sink)
        flops += chains(ROOF_ITERATIONS, scale, &sink);
        double gflops = flops / (wall_seconds() - t0) / 1e9;
        if (gflops > best) best = gflops;
    }
    if (sink == 12345.0f) printf(" ");  // keeps the sums alive
    return best;
}

static inline double roof_fp32_gflops(void) { return roof_gflops(fma_chains); }
static inline double roof_bf16_gflops(void) { return roof_gflops(bf16_chains); }

#endif  // ROOFLINE_H
