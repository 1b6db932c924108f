// matmul.h: matmul_init, matmul (deterministic, blocked, multithreaded), matmul_serial (one thread's),
// Weight (a matrix in fp32, bf16, int8 or NF4; weight_get, weight_dequantize, weight_store),
// linear_forward/backward_input/backward_weight
#ifndef LLMC_MATMUL_H
#define LLMC_MATMUL_H

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "utils.h"
#include "quant.h"

// ----------------------------------------------------------------------------
// matmul: deterministic fp32 matrix multiply (BLIS-style blocking)
//
//   C (M,N) = (accumulate ? C : 0) + op(A) (M,K) @ op(B) (K,N)
//
// element (i,k) of op(A) is A[i*a_rs + k*a_cs], element (k,j) of op(B) is
// B[k*b_rs + j*b_cs], C is row-major with row stride ldc. The trainer's uses:
//   forward   out (T,OC)  = inp (T,IC) @ W^T      a_rs=IC a_cs=1   b_rs=1  b_cs=IC
//   backward  dinp (T,IC) += dout (T,OC) @ W      a_rs=OC a_cs=1   b_rs=IC b_cs=1
//   weights   dW (OC,IC) += dout^T @ inp          a_rs=1  a_cs=OC  b_rs=IC b_cs=1
//
// Blocking (loop nest of gemm_blocked, outermost first):
//   jc: C columns in blocks of NC
//    pc: K in blocks of KC, always in order 0, KC, 2KC, ...
//        pack op(B)[pc:pc+KC, jc:jc+NC] -> b_panel (KC x NC, lives in L3)
//     ic: C rows in blocks of MC
//         pack op(A)[ic:ic+MC, pc:pc+KC] -> a_block (MC x KC, lives in L2), unless
//         all of op(A) was packed once before (shared_a, when threads would repeat it)
//      jr: NR-wide micro-panels of b_panel (KC x NR, stays in L1)
//       ir: MR-tall micro-panels of a_block (MR x KC, streamed from L2)
//           micro_kernel: C[MR x NR] += a_micro @ b_micro in registers
// Packing copies op(A)/op(B) into contiguous micro-panels whatever the strides
// (so transposes cost nothing in the kernel) and zero-pads partial panels, so
// the kernel always computes a full MR x NR tile; edge tiles are computed into
// a local tile and only the valid part is added to C.
//
// Determinism: every C element is the sum of its KC-block partial sums in
// order pc = 0, KC, 2KC, ..., each partial sum an FMA chain over k in order.
// Threads only split C into disjoint blocks (split_work) and never split K,
// so results are bit-identical for any thread count (within one build; AVX-512,
// AVX2 and plain-C builds differ in the last bits).
//
// Scratch: matmul_init() allocates one a_block + b_panel per thread (sized by
// the fixed block sizes) and the shared_a all threads read; matmul calls never allocate.
//
// Narrow weights: op(B) is a Weight, a matrix in a storage format (fp32, bf16, int8, NF4).
// Only the packing of B reads it, so a format joins by adding its pack routine. int8 and
// NF4 are dequantised to fp32 as they are packed (a panel at a time, never a whole
// matrix) and the fp32 kernel runs. Against a
// bf16 B, A (the activations) is rounded to bf16 as it is packed and every product
// a*b is exact in fp32; the sums run in fp32:
//  - with AVX-512 BF16, both panels hold pairs (k, k+1) of bf16 in one 32-bit word and
//    the micro-kernel's vdpbf16ps does two multiply-adds per lane (twice an fp32 FMA's);
//    K is blocked in KC_BF16 = 2 KC (the same bytes as KC floats);
//  - without it, the bf16 values are widened to fp32 in the packing and the fp32
//    kernel runs: the same math, in a different summation order.
// Both stay deterministic and thread-count invariant, as above.
// ----------------------------------------------------------------------------


// ----------------------------------------------------------------------------
// SIMD layer: vfloat holds VLEN floats. The micro-tile is MR rows x NR columns
// (NR = NV vectors); MR*NV accumulators + NV b vectors + 1 broadcast fit in
// the register file (AVX-512: 24+2+1 of 32 zmm, AVX2: 12+2+1 of 16 ymm).

#if defined(__AVX512F__)
typedef __m512 vfloat;
enum { VLEN = 16, MR = 12, NV = 2 };
static inline vfloat vzero(void) { return _mm512_setzero_ps(); }
static inline vfloat vload(const float* p) { return _mm512_load_ps(p); }
static inline vfloat vloadu(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstoreu(float* p, vfloat x) { _mm512_storeu_ps(p, x); }
static inline vfloat vbroadcast(float x) { return _mm512_set1_ps(x); }
static inline vfloat vadd(vfloat x, vfloat y) { return _mm512_add_ps(x, y); }
static inline vfloat vfma(vfloat x, vfloat y, vfloat acc) { return _mm512_fmadd_ps(x, y, acc); }
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vfloat;
enum { VLEN = 8, MR = 6, NV = 2 };
static inline vfloat vzero(void) { return _mm256_setzero_ps(); }
static inline vfloat vload(const float* p) { return _mm256_load_ps(p); }
static inline vfloat vloadu(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstoreu(float* p, vfloat x) { _mm256_storeu_ps(p, x); }
static inline vfloat vbroadcast(float x) { return _mm256_set1_ps(x); }
static inline vfloat vadd(vfloat x, vfloat y) { return _mm256_add_ps(x, y); }
static inline vfloat vfma(vfloat x, vfloat y, vfloat acc) { return _mm256_fmadd_ps(x, y, acc); }
#else // portable plain C: "vectors" of one float, the compiler may vectorize
typedef float vfloat;
enum { VLEN = 1, MR = 4, NV = 16 };
static inline vfloat vzero(void) { return 0.0f; }
static inline vfloat vload(const float* p) { return *p; }
static inline vfloat vloadu(const float* p) { return *p; }
static inline void vstoreu(float* p, vfloat x) { *p = x; }
static inline vfloat vbroadcast(float x) { return x; }
static inline vfloat vadd(vfloat x, vfloat y) { return x + y; }
static inline vfloat vfma(vfloat x, vfloat y, vfloat acc) { return x * y + acc; }
#endif

// Block sizes (floats), tuned on a 2-core AMD EPYC (Zen 5: 48 KiB L1d,
// 1 MiB L2 per core). KC x NR b micro-panel in L1, MC x KC a_block in L2, the KC x NC
// b_panel (1 MiB) mostly in L2 too (NC 4096, in L3, was 2.5% slower on the 1B step).
enum { NR = NV * VLEN, KC = 256, MC = 240, NC = 1024, KC_BF16 = 2 * KC };
_Static_assert(MC % MR == 0 && NC % NR == 0, "blocks must hold whole micro-panels");

#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
#define MATMUL_BF16_NATIVE 1  // vdpbf16ps on pairs of bf16
#else
#define MATMUL_BF16_NATIVE 0  // bf16 widened to fp32 in the packing
#endif

// ----------------------------------------------------------------------------
// Weight: a matrix in its storage format. A frozen base may be held narrower than fp32.

typedef enum { WEIGHT_F32, WEIGHT_BF16, WEIGHT_INT8, WEIGHT_NF4 } WeightFormat;
static const char* WEIGHT_FORMAT_NAMES[] = {"fp32", "bf16", "int8", "nf4"};
static const size_t WEIGHT_FORMAT_BITS[] = {32, 16, 8, 4};  // per element, scales aside

typedef struct {
    const void* data;     // row-major elements in `format` (NF4: two a byte, see quant.h)
    WeightFormat format;
    const float* scales;  // int8 and NF4: one scale per `block` elements (int8: a row, NF4: NF4_BLOCK), else NULL
    size_t block;
} Weight;

static inline Weight weight_f32(const float* w) { return (Weight){w, WEIGHT_F32, NULL, 0}; }
static inline Weight weight_bf16(const uint16_t* w) { return (Weight){w, WEIGHT_BF16, NULL, 0}; }
// the weight that starts `elements` elements further on (whole blocks, for int8 and NF4)
static inline Weight weight_at(Weight w, size_t elements) {
    w.data = (const char*)w.data + elements * WEIGHT_FORMAT_BITS[w.format] / 8;
    if (w.scales) w.scales += elements / w.block;
    return w;
}
// out (n) <- elements e .. e+n-1 as fp32
static inline void weight_dequantize(float* out, Weight w, size_t e, size_t n) {
    switch (w.format) {
    case WEIGHT_F32: memcpy(out, (const float*)w.data + e, n * sizeof(float)); break;
    case WEIGHT_BF16: for (size_t i = 0; i < n; i++) out[i] = bf16_to_float(((const uint16_t*)w.data)[e + i]); break;
    case WEIGHT_INT8: dequantize_int8(out, (const int8_t*)w.data, w.scales, w.block, e, n); break;
    case WEIGHT_NF4: dequantize_nf4(out, (const uint8_t*)w.data, w.scales, e, n); break;
    }
}
// element e as fp32
static inline float weight_get(Weight w, size_t e) {
    float v = 0.0f;
    weight_dequantize(&v, w, e, 1);
    return v;
}
// Stores src (n) at elements e .. e+n-1 of w in its format: bf16 rounds, int8 and NF4
// quantise (e a whole number of blocks, n too unless it ends the matrix).
static inline void weight_store(Weight w, size_t e, const float* src, size_t n) {
    void* data = (void*)w.data;
    switch (w.format) {
    case WEIGHT_F32: memcpy((float*)data + e, src, n * sizeof(float)); break;
    case WEIGHT_BF16: for (size_t i = 0; i < n; i++) ((uint16_t*)data)[e + i] = float_to_bf16(src[i]); break;
    case WEIGHT_INT8: quantize_int8((int8_t*)data + e, (float*)w.scales + e / w.block, src, n, w.block); break;
    case WEIGHT_NF4: quantize_nf4((uint8_t*)data + e / 2, (float*)w.scales + e / NF4_BLOCK, src, n); break;
    }
}

// ----------------------------------------------------------------------------
// problem description and per-thread scratch

typedef struct {
    float* C;
    const float* A;
    Weight B;
    int M, N, K;
    ptrdiff_t a_rs, a_cs, b_rs, b_cs;
    ptrdiff_t c_rs, c_cs;  // element (i,j) of C is C[i*c_rs + j*c_cs]: row-major (c_cs 1), or transposed
    int accumulate;
    int round_bf16;  // fp32 A and B both rounded to bf16, multiplied as against a bf16 B (attention)
    const float* a_packed;  // all of op(A) packed at once (shared_a, see matmul_weight), or NULL: a block at a time
} MatmulProblem;

// bf16 products: B is bf16, or both operands are rounded to it
static inline int bf16_products(const MatmulProblem* p) { return p->B.format == WEIGHT_BF16 || p->round_bf16; }
// ... and with AVX-512 BF16 they run on panels of bf16 pairs (else the bf16 values are widened)
static inline int on_pairs(const MatmulProblem* p) { return MATMUL_BF16_NATIVE && bf16_products(p); }

typedef struct {
    float* a_block; // MC x KC: ceil(MC/MR) micro-panels, each kc x MR (bf16 pairs: kc/2 x MR words)
    float* b_panel; // KC x NC: ceil(NC/NR) micro-panels, each kc x NR (bf16 pairs: kc/2 x NR words)
} PackScratch;

static PackScratch* pack_scratch = NULL;  // one per thread, from matmul_init
static int pack_scratch_threads = 0;
// All of op(A) packed once for every thread (see matmul_weight), up to SHARED_A_BYTES;
// pages are only touched as far as a product uses them.
#define SHARED_A_BYTES ((size_t)64 << 20)
static float* shared_a = NULL;

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void matmul_init(void) {
    if (pack_scratch != NULL) { return; }
    pack_scratch_threads = max_threads();
    pack_scratch = malloc_check(pack_scratch_threads * sizeof(PackScratch), "matmul scratch");
    for (int t = 0; t < pack_scratch_threads; t++) {
        pack_scratch[t].a_block = malloc_check((size_t)MC * KC * sizeof(float), "matmul scratch");
        pack_scratch[t].b_panel = malloc_check((size_t)KC * NC * sizeof(float), "matmul scratch");
    }
    shared_a = malloc_check(SHARED_A_BYTES, "matmul scratch");
}

// ----------------------------------------------------------------------------
// packing

#if defined(__AVX512F__)
// r[0..15], 16 words each, transposed in place: word c of r[a] goes to word a of r[c].
// Words pair up (32-bit unpacks), then pairs (64-bit unpacks), which transposes each
// 128-bit lane's 4 x 4 block; then the 4 x 4 blocks of lanes move (two rounds of
// shuffle_i32x4): s[4g + q] lane j, rows 4g..4g+3 of column 4j + q, becomes r[4j + q] lane g.
static inline void transpose16_words(__m512i r[16]) {
    __m512i t[16], s[16];
    for (int a = 0; a < 16; a += 2) {
        t[a] = _mm512_unpacklo_epi32(r[a], r[a + 1]);
        t[a + 1] = _mm512_unpackhi_epi32(r[a], r[a + 1]);
    }
    for (int a = 0; a < 16; a += 4) {
        s[a] = _mm512_unpacklo_epi64(t[a], t[a + 2]);
        s[a + 1] = _mm512_unpackhi_epi64(t[a], t[a + 2]);
        s[a + 2] = _mm512_unpacklo_epi64(t[a + 1], t[a + 3]);
        s[a + 3] = _mm512_unpackhi_epi64(t[a + 1], t[a + 3]);
    }
    for (int q = 0; q < 4; q++) {
        __m512i lanes01 = _mm512_shuffle_i32x4(s[q], s[4 + q], 0x44), lanes23 = _mm512_shuffle_i32x4(s[q], s[4 + q], 0xEE);
        __m512i high01 = _mm512_shuffle_i32x4(s[8 + q], s[12 + q], 0x44);
        __m512i high23 = _mm512_shuffle_i32x4(s[8 + q], s[12 + q], 0xEE);
        r[q] = _mm512_shuffle_i32x4(lanes01, high01, 0x88);
        r[4 + q] = _mm512_shuffle_i32x4(lanes01, high01, 0xDD);
        r[8 + q] = _mm512_shuffle_i32x4(lanes23, high23, 0x88);
        r[12 + q] = _mm512_shuffle_i32x4(lanes23, high23, 0xDD);
    }
}

// the mask of a vector's first n lanes (none for n <= 0, all 16 for n >= 16)
static inline __mmask16 first_lanes(int n) { return n <= 0 ? 0 : n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1); }

// r[0..15] (16 rows of a panel's source, 16 words each) transposed and stored as the
// panel's next 16 rows (width words apart), `lanes` (<= 16) words of each
static inline void transpose16_store(void* dst, ptrdiff_t width, int lanes, __m512i r[16]) {
    transpose16_words(r);
    for (int c = 0; c < 16; c++) _mm512_mask_storeu_epi32((uint32_t*)dst + c * width, first_lanes(lanes), r[c]);
}
#endif

// Packs a kc x width panel: dst[k*width + w] = src[k*k_stride + w*w_stride]
// for w < valid, zero for valid <= w < width. Loops run along whichever
// source stride is 1 so the reads are contiguous; with AVX-512 a row of the panel is
// copied 16 lanes at a time, and source rows along k are transposed 16 x 16 in registers.
static inline void pack_panel(float* restrict dst, const float* restrict src, int kc,
                              int width, int valid, ptrdiff_t k_stride, ptrdiff_t w_stride) {
    int k = 0;
#if defined(__AVX512F__)
    if (w_stride == 1) {
        for (; k < kc; k++) {
            for (int w0 = 0; w0 < width; w0 += 16) {
                int lanes = width - w0 < 16 ? width - w0 : 16, present = valid - w0 < lanes ? valid - w0 : lanes;
                __m512 row = _mm512_maskz_loadu_ps(first_lanes(present), src + k * k_stride + w0);
                _mm512_mask_storeu_ps(dst + k * width + w0, first_lanes(lanes), row);
            }
        }
        return;
    }
    if (k_stride == 1) {
        for (; k + 16 <= kc; k += 16) {
            for (int w0 = 0; w0 < width; w0 += 16) {
                int lanes = width - w0 < 16 ? width - w0 : 16;
                __m512i r[16];
                for (int a = 0; a < 16; a++) {
                    r[a] = w0 + a < valid ? _mm512_loadu_si512(src + (w0 + a) * w_stride + k) : _mm512_setzero_si512();
                }
                transpose16_store(dst + k * width + w0, width, lanes, r);
            }
        }
    }
#endif
    if (w_stride == 1) {
        for (; k < kc; k++) {
            for (int w = 0; w < valid; w++) { dst[k * width + w] = src[k * k_stride + w]; }
            for (int w = valid; w < width; w++) { dst[k * width + w] = 0.0f; }
        }
    } else {
        for (int w = 0; w < width; w++) {
            for (int kk = k; kk < kc; kk++) { dst[kk * width + w] = w < valid ? src[w * w_stride + kk * k_stride] : 0.0f; }
        }
    }
}

// pack_panel for a Weight in a narrower format (int8, NF4, bf16 without AVX-512 BF16), dequantised
// to fp32 as it is packed; src's element (k, w) is at + k*k_stride + w*w_stride. A run along
// the source's unit stride is dequantised at once: no more than the panel is ever widened.
static inline void pack_panel_weight(float* restrict dst, Weight src, size_t at, int kc, int width, int valid,
                                     ptrdiff_t k_stride, ptrdiff_t w_stride) {
    if (w_stride == 1) {
        for (int k = 0; k < kc; k++) {
            weight_dequantize(dst + (size_t)k * width, src, at + k * k_stride, valid);
            for (int w = valid; w < width; w++) { dst[k * width + w] = 0.0f; }
        }
        return;
    }
    float run[KC];  // column w's kc values (kc <= KC outside the native bf16 path)
    for (int w = 0; w < width; w++) {
        size_t column = at + w * w_stride;
        if (w < valid && k_stride == 1) weight_dequantize(run, src, column, kc);
        for (int k = 0; k < kc; k++) {
            dst[k * width + w] = w >= valid ? 0.0f : k_stride == 1 ? run[k] : weight_get(src, column + k * k_stride);
        }
    }
}

#if MATMUL_BF16_NATIVE
// 16 fp32 bit patterns rounded to bf16 as float_to_bf16 rounds (nearest even): each lane's
// high half is its bf16
static inline __m512i round_bf16_high(__m512i x) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    return _mm512_add_epi32(x, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(x, 16), one)));
}

// 32 floats x[0..31] rounded to bf16 as float_to_bf16 does (nearest even), as 16 pair
// words: word j = bf16(x[2j]) | bf16(x[2j+1]) << 16.
static inline __m512i round_pairs(const float* x) {
    __m512i lo = round_bf16_high(_mm512_loadu_si512(x)), hi = round_bf16_high(_mm512_loadu_si512(x + 16));
    // the high half of every 32-bit lane, in order: 16-bit element e of the result is 2e + 1
    // of lo:hi (64 16-bit elements)
    const __m512i take_high = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33,
                                               31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(lo, take_high, hi);
}

// The fast paths of pack_pairs for the trainer's layouts; return the columns (w) done.
// Rows along k (k_stride 1): an fp32 row is rounded 32 values at a time, a bf16 row already
// holds its pairs as 32-bit words. Either way 16 rows' runs of 16 words are transposed in
// registers, and column w's words go to dst[kk*width + w], 16 columns (lanes) at a time.
static inline int pack_pairs_rows(uint32_t* restrict dst, const void* restrict src, WeightFormat src_format,
                                  int kc, int width, int valid, ptrdiff_t w_stride) {
    int kp = (kc + 1) / 2, whole = kc / 32 * 16;  // pair words of whole 32-value pieces
    if (src_format == WEIGHT_BF16 && (((uintptr_t)src | (uintptr_t)(w_stride * 2)) & 3)) return 0;
    for (int w0 = 0; w0 < width; w0 += 16) {
        int lanes = width - w0 < 16 ? width - w0 : 16;
        for (int kk0 = 0; kk0 < whole; kk0 += 16) {
            __m512i r[16];
            for (int a = 0; a < 16; a++) {
                if (w0 + a >= valid) {
                    r[a] = _mm512_setzero_si512();
                } else if (src_format == WEIGHT_F32) {
                    r[a] = round_pairs((const float*)src + (w0 + a) * w_stride + 2 * kk0);
                } else {
                    r[a] = _mm512_loadu_si512((const uint32_t*)((const uint16_t*)src + (w0 + a) * w_stride) + kk0);
                }
            }
            transpose16_store(dst + (size_t)kk0 * width + w0, width, lanes, r);
        }
    }
    for (int w = 0; w < width; w++) {  // k from 2 whole on (fewer than 32 values), a word at a time
        for (int kk = whole; kk < kp; kk++) {
            uint32_t lo = 0, hi = 0;
            if (w < valid && src_format == WEIGHT_F32) {
                const float* row = (const float*)src + w * w_stride;
                lo = float_to_bf16(row[2 * kk]), hi = 2 * kk + 1 < kc ? float_to_bf16(row[2 * kk + 1]) : 0;
            } else if (w < valid) {
                const uint16_t* row = (const uint16_t*)src + w * w_stride;
                lo = row[2 * kk], hi = 2 * kk + 1 < kc ? row[2 * kk + 1] : 0;
            }
            dst[(size_t)kk * width + w] = lo | hi << 16;
        }
    }
    return width;
}

// Columns along w (w_stride 1): rows 2kk and 2kk+1 give the low and high halves of the pair
// words, 16 columns at a time: bf16 values interleaved, fp32 ones rounded in their lanes.
static inline void pack_pairs_columns(uint32_t* restrict dst, const void* restrict src, WeightFormat src_format,
                                      int kc, int width, int valid, ptrdiff_t k_stride) {
    const __m512i interleave = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                                39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i high_half = _mm512_set1_epi32((int)0xffff0000u);
    size_t bytes = WEIGHT_FORMAT_BITS[src_format] / 8;
    for (int kk = 0; kk < (kc + 1) / 2; kk++) {
        const char* row0 = (const char*)src + (size_t)(2 * kk) * k_stride * bytes;
        const char* row1 = 2 * kk + 1 < kc ? row0 + k_stride * bytes : NULL;
        for (int w0 = 0; w0 < width; w0 += 16) {
            int lanes = width - w0 < 16 ? width - w0 : 16, present = valid - w0 < lanes ? valid - w0 : lanes;
            __mmask16 load = first_lanes(present);
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512(), words;
            if (src_format == WEIGHT_BF16) {
                lo = _mm512_zextsi256_si512(_mm256_maskz_loadu_epi16(load, row0 + w0 * bytes));
                if (row1) hi = _mm512_zextsi256_si512(_mm256_maskz_loadu_epi16(load, row1 + w0 * bytes));
                words = _mm512_permutex2var_epi16(lo, interleave, hi);
            } else {
                lo = round_bf16_high(_mm512_maskz_loadu_epi32(load, row0 + w0 * bytes));
                if (row1) hi = round_bf16_high(_mm512_maskz_loadu_epi32(load, row1 + w0 * bytes));
                words = _mm512_or_si512(_mm512_srli_epi32(lo, 16), _mm512_and_si512(hi, high_half));
            }
            _mm512_mask_storeu_epi32(dst + (size_t)kk * width + w0, first_lanes(lanes), words);
        }
    }
}
#endif

// Packs a kc x width panel of bf16 pairs: dst[kk*width + w] holds elements k = 2kk (low
// half) and 2kk+1 (high half) of column w, zero past kc and for valid <= w < width.
// src is fp32 (rounded to bf16 here) or bf16, as src_format says.
static inline void pack_pairs(uint32_t* restrict dst, const void* restrict src, WeightFormat src_format, int kc,
                              int width, int valid, ptrdiff_t k_stride, ptrdiff_t w_stride) {
#if MATMUL_BF16_NATIVE
    if (k_stride == 1 && pack_pairs_rows(dst, src, src_format, kc, width, valid, w_stride) == width) return;
    if (w_stride == 1) {
        pack_pairs_columns(dst, src, src_format, kc, width, valid, k_stride);
        return;
    }
#endif
    Weight s = {src, src_format, NULL, 0};  // any other layout: a value at a time
    for (int w = 0; w < width; w++) {
        for (int kk = 0; kk < (kc + 1) / 2; kk++) {
            uint32_t lo = 0, hi = 0;
            if (w < valid) {
                lo = float_to_bf16(weight_get(s, w * w_stride + 2 * kk * k_stride));
                if (2 * kk + 1 < kc) hi = float_to_bf16(weight_get(s, w * w_stride + (2 * kk + 1) * k_stride));
            }
            dst[kk * width + w] = lo | hi << 16;
        }
    }
}

// op(A)[i0:i0+mc, k0:k0+kc] -> a_block, as ceil(mc/MR) micro-panels of kc x MR; for bf16
// products rounded to bf16 (pairs when native, else widened back to fp32)
static void pack_a_block(float* restrict a_block, const MatmulProblem* p,
                         int i0, int mc, int k0, int kc) {
    int bf16 = bf16_products(p);
    for (int i = 0; i < mc; i += MR) {
        const float* src = p->A + (i0 + i) * p->a_rs + k0 * p->a_cs;
        int valid = mc - i < MR ? mc - i : MR;
        if (on_pairs(p)) {
            pack_pairs((uint32_t*)a_block + (size_t)i * ((kc + 1) / 2), src, WEIGHT_F32, kc, MR, valid,
                       p->a_cs, p->a_rs);
            continue;
        }
        float* dst = a_block + (size_t)i * kc;
        pack_panel(dst, src, kc, MR, valid, p->a_cs, p->a_rs);
        for (int e = 0; bf16 && e < kc * MR; e++) dst[e] = bf16_to_float(float_to_bf16(dst[e]));
    }
}

// op(B)[k0:k0+kc, j0:j0+nc] -> b_panel, as ceil(nc/NR) micro-panels of kc x NR: the one
// place that reads B's storage format. When B's rows are contiguous (b_cs 1: the backward's
// W), PACK_ROWS rows at a time go across all the micro-panels, so each row is read front to
// back (a micro-panel at a time would take a cache line from each of kc rows, a page apart).
enum { PACK_ROWS = 16 };
static void pack_b_panel(float* restrict b_panel, const MatmulProblem* p,
                         int k0, int kc, int j0, int nc) {
    int rows = p->b_cs == 1 ? PACK_ROWS : kc;
    for (int r0 = 0; r0 < kc; r0 += rows) {
        int rc = kc - r0 < rows ? kc - r0 : rows;
        for (int j = 0; j < nc; j += NR) {
            size_t at = (size_t)(k0 + r0) * p->b_rs + (size_t)(j0 + j) * p->b_cs;
            int valid = nc - j < NR ? nc - j : NR;
            uint32_t* pairs = (uint32_t*)b_panel + (size_t)j * ((kc + 1) / 2) + (size_t)r0 / 2 * NR;
            float* dst = b_panel + (size_t)j * kc + (size_t)r0 * NR;
            if (p->B.format == WEIGHT_BF16 && MATMUL_BF16_NATIVE) {  // each format's call its own: the packing inlined for it
                pack_pairs(pairs, (const uint16_t*)p->B.data + at, WEIGHT_BF16, rc, NR, valid, p->b_rs, p->b_cs);
            } else if (p->round_bf16 && MATMUL_BF16_NATIVE) {
                pack_pairs(pairs, (const float*)p->B.data + at, WEIGHT_F32, rc, NR, valid, p->b_rs, p->b_cs);
            } else if (p->B.format == WEIGHT_F32) {
                pack_panel(dst, (const float*)p->B.data + at, rc, NR, valid, p->b_rs, p->b_cs);
                for (int e = 0; p->round_bf16 && e < rc * NR; e++) dst[e] = bf16_to_float(float_to_bf16(dst[e]));
            } else {
                pack_panel_weight(dst, p->B, at, rc, NR, valid, p->b_rs, p->b_cs);
            }
        }
    }
}

// ----------------------------------------------------------------------------
// compute

// C[0:MR, 0:NR] = (load_c ? C : 0) + sum_k a[k*MR + i] * b[k*NR + j]
// a: kc x MR micro-panel, b: kc x NR micro-panel (64-byte aligned rows).
static void micro_kernel(int kc, const float* restrict a, const float* restrict b,
                         float* restrict c, ptrdiff_t ldc, int load_c) {
    vfloat acc[MR][NV];
    for (int i = 0; i < MR; i++) {
        for (int v = 0; v < NV; v++) { acc[i][v] = vzero(); }
    }
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        vfloat b_row[NV];
        for (int v = 0; v < NV; v++) { b_row[v] = vload(b + v * VLEN); }
        for (int i = 0; i < MR; i++) {
            vfloat a_ik = vbroadcast(a[i]);
            for (int v = 0; v < NV; v++) { acc[i][v] = vfma(a_ik, b_row[v], acc[i][v]); }
        }
    }
    for (int i = 0; i < MR; i++) {
        for (int v = 0; v < NV; v++) {
            float* c_iv = c + i * ldc + v * VLEN;
            vstoreu(c_iv, load_c ? vadd(vloadu(c_iv), acc[i][v]) : acc[i][v]);
        }
    }
}

#if MATMUL_BF16_NATIVE
// micro_kernel on bf16 pairs: a (kp x MR words), b (kp x NR words), kp = ceil(kc/2);
// each vdpbf16ps adds a[2kk]*b[2kk] + a[2kk+1]*b[2kk+1] to the fp32 accumulator.
// C's tile, added to at the end, is fetched PREFETCH_C pair rows before the end (it is
// often out of L2: a big product's C is visited once a K block); 2% off the 1B step.
enum { PREFETCH_C = 32 };
static void micro_kernel_bf16(int kp, const uint32_t* restrict a, const uint32_t* restrict b,
                              float* restrict c, ptrdiff_t ldc, int load_c) {
    __m512 acc[MR][NV];
    for (int i = 0; i < MR; i++) {
        for (int v = 0; v < NV; v++) { acc[i][v] = _mm512_setzero_ps(); }
    }
    for (int kk = 0; kk < kp; kk++, a += MR, b += NR) {
        if (kk == kp - PREFETCH_C && load_c) {
            for (int i = 0; i < MR; i++) {
                for (int v = 0; v < NV; v++) _mm_prefetch((const char*)(c + i * ldc + v * VLEN), _MM_HINT_T0);
            }
        }
        __m512bh b_row[NV];
        for (int v = 0; v < NV; v++) { b_row[v] = (__m512bh)_mm512_load_si512(b + v * VLEN); }
        for (int i = 0; i < MR; i++) {
            __m512bh a_ik = (__m512bh)_mm512_set1_epi32((int)a[i]);
            for (int v = 0; v < NV; v++) { acc[i][v] = _mm512_dpbf16_ps(acc[i][v], a_ik, b_row[v]); }
        }
    }
    for (int i = 0; i < MR; i++) {
        for (int v = 0; v < NV; v++) {
            float* c_iv = c + i * ldc + v * VLEN;
            vstoreu(c_iv, load_c ? vadd(vloadu(c_iv), acc[i][v]) : acc[i][v]);
        }
    }
}
#endif

// one MR x NR tile, in fp32 or (bf16 set) on bf16 pairs
static inline void tile_kernel(int bf16, int kc, const float* a, const float* b, float* c, ptrdiff_t ldc,
                               int load_c) {
#if MATMUL_BF16_NATIVE
    if (bf16) {
        micro_kernel_bf16((kc + 1) / 2, (const uint32_t*)a, (const uint32_t*)b, c, ldc, load_c);
        return;
    }
#endif
    (void)bf16;
    micro_kernel(kc, a, b, c, ldc, load_c);
}

// partial tile (m < MR or n < NR) or a transposed C: compute the full tile aside, add the
// valid part
static void edge_kernel(int bf16, int m, int n, int kc, const float* a, const float* b,
                        float* c, ptrdiff_t c_rs, ptrdiff_t c_cs, int load_c) {
    float tile[MR * NR];
    tile_kernel(bf16, kc, a, b, tile, NR, 0);
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            float* c_ij = c + i * c_rs + j * c_cs;
            *c_ij = load_c ? *c_ij + tile[i * NR + j] : tile[i * NR + j];
        }
    }
}

// 4-byte words per micro-panel row: MR floats, or MR pairs of bf16
static inline size_t panel_words(int bf16, int kc) { return bf16 ? (size_t)(kc + 1) / 2 : (size_t)kc; }
// K per block: KC floats, or KC pair words (KC_BF16 values)
static inline int block_depth(int bf16) { return bf16 ? KC_BF16 : KC; }

// Where the block of rows i0.. and K from k0 (kc deep) starts in shared_a, in words: the K
// blocks one after another, each all of op(A)'s micro-panels (rows rounded up to MR); with
// i0 = 0 and k0 = K, the words all of op(A) takes.
static inline size_t shared_a_offset(const MatmulProblem* p, int bf16, int i0, int k0, int kc) {
    int block_k = block_depth(bf16);
    size_t rows = (size_t)(p->M + MR - 1) / MR * MR;
    return rows * ((size_t)(k0 / block_k) * KC + panel_words(bf16, k0 % block_k)) + (size_t)i0 * panel_words(bf16, kc);
}

// C[0:mc, 0:nc] (+)= a_block (mc x kc) @ b_panel (kc x nc); bf16: panels of pairs
static void macro_kernel(int bf16, int mc, int nc, int kc, const float* a_block, const float* b_panel,
                         float* c, ptrdiff_t c_rs, ptrdiff_t c_cs, int load_c) {
    size_t panel_k = panel_words(bf16, kc);
    for (int j = 0; j < nc; j += NR) {
        for (int i = 0; i < mc; i += MR) {
            const float* a = a_block + i * panel_k;
            const float* b = b_panel + j * panel_k;
            float* c_ij = c + i * c_rs + j * c_cs;
            if (mc - i >= MR && nc - j >= NR && c_cs == 1) {
                tile_kernel(bf16, kc, a, b, c_ij, c_rs, load_c);
            } else {
                int m = mc - i < MR ? mc - i : MR, n = nc - j < NR ? nc - j : NR;
                edge_kernel(bf16, m, n, kc, a, b, c_ij, c_rs, c_cs, load_c);
            }
        }
    }
}

// the serial BLIS loop nest (see banner) on the C block [m0,m1) x [n0,n1)
static void gemm_blocked(const MatmulProblem* p, int m0, int m1, int n0, int n1,
                         const PackScratch* s) {
    int bf16 = on_pairs(p), block_k = block_depth(bf16);
    for (int jc = n0; jc < n1; jc += NC) {
        int nc = n1 - jc < NC ? n1 - jc : NC;
        for (int pc = 0; pc < p->K; pc += block_k) {
            int kc = p->K - pc < block_k ? p->K - pc : block_k;
            int load_c = p->accumulate || pc > 0;
            pack_b_panel(s->b_panel, p, pc, kc, jc, nc);
            for (int ic = m0; ic < m1; ic += MC) {
                int mc = m1 - ic < MC ? m1 - ic : MC;
                const float* a_block = s->a_block;
                if (p->a_packed) a_block = p->a_packed + shared_a_offset(p, bf16, ic, pc, kc);
                else pack_a_block(s->a_block, p, ic, mc, pc, kc);
                macro_kernel(bf16, mc, nc, kc, a_block, s->b_panel,
                             p->C + ic * p->c_rs + jc * p->c_cs, p->c_rs, p->c_cs, load_c);
            }
        }
    }
}

// Thread t of nt computes a contiguous share of C: the larger of M, N is cut
// into nt near-equal ranges of whole micro-tiles. (Cutting N makes threads
// read the same A, packed once into shared_a where it fits; cutting M makes them each
// pack all of B; cutting the larger dim costs less.)
static inline int splits_columns(const MatmulProblem* p) { return p->M < p->N; }
static void split_work(const MatmulProblem* p, int t, int nt, const PackScratch* s) {
    if (!splits_columns(p)) {
        int tiles = (p->M + MR - 1) / MR;
        int m0 = tiles * t / nt * MR, m1 = tiles * (t + 1) / nt * MR;
        gemm_blocked(p, m0, m1 < p->M ? m1 : p->M, 0, p->N, s);
    } else {
        int tiles = (p->N + NR - 1) / NR;
        int n0 = tiles * t / nt * NR, n1 = tiles * (t + 1) / nt * NR;
        gemm_blocked(p, 0, p->M, n0, n1 < p->N ? n1 : p->N, s);
    }
}

// ----------------------------------------------------------------------------
// public API

// A thin fp32 product (N below a micro-tile's width, M larger: a LoRA rank's r columns) is
// computed as C^T (N,M) = op(B)^T op(A)^T, its N rows filling a micro-tile's MR rows far
// better than its NR columns. Every element keeps its summation order: bit-identical.
static MatmulProblem make_problem(float* C, const float* A, Weight B, int M, int N, int K,
                                  int a_rs, int a_cs, int b_rs, int b_cs, int ldc, int accumulate) {
    if (B.format == WEIGHT_F32 && N < NR && M > N) {
        return (MatmulProblem){C, (const float*)B.data, weight_f32(A), N, M, K, b_cs, b_rs, a_cs, a_rs, 1, ldc,
                               accumulate, 0, NULL};
    }
    return (MatmulProblem){C, A, B, M, N, K, a_rs, a_cs, b_rs, b_cs, ldc, 1, accumulate, 0, NULL};
}

// K == 0: the product is empty, C = accumulate ? C : 0
static void clear_c_if_needed(const MatmulProblem* p) {
    if (p->accumulate) { return; }
    for (int i = 0; i < p->M; i++) {
        for (int j = 0; j < p->N; j++) p->C[i * p->c_rs + j * p->c_cs] = 0.0f;
    }
}

// Threads a parallel region that calls matmul_serial may use: one scratch each.
static int matmul_threads(void) {
    matmul_init();
    return max_threads() < pack_scratch_threads ? max_threads() : pack_scratch_threads;
}

// matmul on the calling thread alone, with that thread's scratch: for the inside of a
// parallel region of at most matmul_threads() threads. The same blocking and summation
// order as matmul, so the result does not depend on which thread runs it. round_bf16:
// both operands rounded to bf16 as they are packed, bf16 products summed in fp32.
static void matmul_serial(float* C, const float* A, const float* B, int M, int N, int K,
                          int a_rs, int a_cs, int b_rs, int b_cs, int ldc, int accumulate, int round_bf16) {
    MatmulProblem p = make_problem(C, A, weight_f32(B), M, N, K, a_rs, a_cs, b_rs, b_cs, ldc, accumulate);
    p.round_bf16 = round_bf16;
    if (K == 0) { clear_c_if_needed(&p); return; }
    gemm_blocked(&p, 0, p.M, 0, p.N, &pack_scratch[thread_id()]);
}

// The bytes of shared_a that all of an op(A) of M rows and depth K packs into (bf16: as
// bf16 pairs where they are native), or 0 when it does not fit and is packed a block at a time
size_t matmul_shared_a_bytes(int M, int K, int bf16) {
    MatmulProblem p = {.M = M, .K = K, .round_bf16 = bf16};
    size_t bytes = shared_a_offset(&p, on_pairs(&p), 0, K, 0) * sizeof(float);
    return bytes <= SHARED_A_BYTES ? bytes : 0;
}

// Thread t of nt packs its share of op(A)'s micro-panels (every K block) into shared_a.
static void pack_shared_a(const MatmulProblem* p, int t, int nt) {
    int bf16 = on_pairs(p), block_k = block_depth(bf16);
    int tiles = (p->M + MR - 1) / MR, i0 = tiles * t / nt * MR, i1 = tiles * (t + 1) / nt * MR;
    if (i1 > p->M) i1 = p->M;
    for (int pc = 0; pc < p->K && i0 < i1; pc += block_k) {
        int kc = p->K - pc < block_k ? p->K - pc : block_k;
        pack_a_block(shared_a + shared_a_offset(p, bf16, i0, pc, kc), p, i0, i1 - i0, pc, kc);
    }
}

// matmul with op(B) in any storage format. When the threads would pack the same rows of
// op(A) more than once between them (they split C's columns, or a thread's columns take
// more than one NC block), op(A) is packed once into shared_a first, if it fits.
void matmul_weight(float* C, const float* A, Weight B, int M, int N, int K,
                   int a_rs, int a_cs, int b_rs, int b_cs, int ldc, int accumulate) {
    MatmulProblem p = make_problem(C, A, B, M, N, K, a_rs, a_cs, b_rs, b_cs, ldc, accumulate);
    if (K == 0) { clear_c_if_needed(&p); return; }
    matmul_init();  // once; not from inside a parallel region
    int threads = matmul_threads(), repacked = (splits_columns(&p) && threads > 1) || p.N > NC;
    if (repacked && matmul_shared_a_bytes(p.M, p.K, bf16_products(&p)) > 0) p.a_packed = shared_a;
#ifdef _OPENMP
    #pragma omp parallel num_threads(threads)
#endif
    {
        if (p.a_packed) {
            pack_shared_a(&p, thread_id(), team_size());
#ifdef _OPENMP
            #pragma omp barrier
#endif
        }
        split_work(&p, thread_id(), team_size(), &pack_scratch[thread_id()]);
    }
}

void matmul(float* C, const float* A, const float* B, int M, int N, int K,
            int a_rs, int a_cs, int b_rs, int b_cs, int ldc, int accumulate) {
    matmul_weight(C, A, weight_f32(B), M, N, K, a_rs, a_cs, b_rs, b_cs, ldc, accumulate);
}

// the obvious triple loop (double accumulator): the test oracle. Against a bf16 B, A is
// rounded to bf16 as the fast path rounds it.
void matmul_naive_weight(float* C, const float* A, Weight B, int M, int N, int K,
                         int a_rs, int a_cs, int b_rs, int b_cs, int ldc, int accumulate) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double sum = accumulate ? C[(size_t)i * ldc + j] : 0.0;
            for (int k = 0; k < K; k++) {
                float a = A[(size_t)i * a_rs + (size_t)k * a_cs];
                if (B.format == WEIGHT_BF16) a = bf16_to_float(float_to_bf16(a));
                sum += (double)a * weight_get(B, (size_t)k * b_rs + (size_t)j * b_cs);
            }
            C[(size_t)i * ldc + j] = (float)sum;
        }
    }
}

void matmul_naive(float* C, const float* A, const float* B, int M, int N, int K,
                  int a_rs, int a_cs, int b_rs, int b_cs, int ldc, int accumulate) {
    matmul_naive_weight(C, A, weight_f32(B), M, N, K, a_rs, a_cs, b_rs, b_cs, ldc, accumulate);
}

// The three products a linear layer y = x W^T needs, W (out,in) row-major; the first
// two read W in its storage format (a frozen base may be bf16, int8 or NF4), dW is always fp32.
// y (N,out) (+)= x (N,in) @ W^T
static void linear_forward(float* y, const float* x, Weight W, int N, int in, int out, int accumulate) {
    matmul_weight(y, x, W, N, out, in, in, 1, 1, in, out, accumulate);
}
// dx (N,in) (+)= dy (N,out) @ W
static void linear_backward_input(float* dx, const float* dy, Weight W, int N, int in, int out, int accumulate) {
    matmul_weight(dx, dy, W, N, in, out, out, 1, in, 1, in, accumulate);
}
// dW (out,in) += dy^T (out,N) @ x (N,in)
static void linear_backward_weight(float* dW, const float* dy, const float* x, int N, int in, int out) {
    matmul(dW, dy, x, out, in, N, 1, out, in, 1, in, 1);
}

#endif  // LLMC_MATMUL_H
