/*
generate.c: run a Llama model (and optionally a LoRA adapter trained by train.c) on the
CPU: a KV cache, sampling, and a chat.

The forward pass is train.c's: this file #includes train.c and the prompt goes through
its model_forward in one batch (prefill). The keys and values model_forward keeps
(acts.k, acts.v) fill a KV cache, and each new token then goes through a cached forward
built from the same layer functions (rmsnorm_forward, rope_forward, swiglu_forward,
lora_forward) with two additions: attention of new queries against the cache, and a
matrix-vector product that reads the model's frozen base in place at the memory's speed,
in the format it was loaded in: fp32, BF16 (a bfloat16 checkpoint stays BF16, and the
prefill runs train.c's bf16 kernel on it), or int8 or NF4 (QLoRA's, --weights int8|nf4),
so that decoding, which reads every weight once per token, can move a half, a quarter or
an eighth of fp32's bytes.

Read top to bottom: decode weights and the matvec kernels, the KV cache and the cached
forward, sampling, end tokens and generation_config.json, the generation loop, the text
side (tokenizer.c glue and the chat loop), main.

Shape letters as in train.c: C hidden, NH/NKV query/key-value heads, hs head size,
I MLP size, V vocabulary, L layers, r LoRA rank; n tokens in a chunk, maxT the context.
*/
#ifdef TRAIN_NO_MAIN
#include "train.c"     // a test or benchmark includes this file: it brings its own main
#else
#define TRAIN_NO_MAIN  // train.c as a library: everything but its main ...
#include "train.c"
#undef TRAIN_NO_MAIN   // ... and this file's own main at the end
#endif
#include "llmc/flags.h"  // defines: Flag, FlagTable, flags_parse
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// ----------------------------------------------------------------------------
// matvec: y (out) (+)= W (out,in) @ x (in), W fp32 or BF16, row-major: the model's own
// weights, read in place (a BF16 checkpoint stays BF16 in memory, 2 bytes a parameter,
// and the prefill's matmul reads the same copy). With BF16 weights x is rounded to BF16
// first, as train.c's bf16 matmul rounds its input, so decode and the prefill multiply
// the same numbers (the products are exact in fp32). Decoding one token reads every
// weight once and does 2 FLOPs with it, so speed is set by memory bandwidth; BF16 halves
// the bytes. A thread takes its rows one after another, front to back: one stream from
// memory, with x in L1. BF16 rows go through vdpbf16ps, 32 weights an instruction
// (widening them to fp32 first, or taking 8 rows side by side, decoded 5-15% slower).
// Each output's sum runs in a fixed order, so results do not depend on the thread count.

// x[i] as the products with W see it
static inline float matvec_input(Weight W, float x) {
    return W.format == WEIGHT_BF16 ? bf16_to_float(float_to_bf16(x)) : x;
}

// The readable version, and the test oracle of the fast one.
void matvec_naive(float* y, const float* x, Weight W, int in, int out, int accumulate) {
    for (int o = 0; o < out; o++) {
        float sum = 0.0f;
        for (int i = 0; i < in; i++) sum += weight_get(W, (size_t)o * in + i) * matvec_input(W, x[i]);
        y[o] = accumulate ? y[o] + sum : sum;
    }
}

#if defined(__AVX512F__)
// 16 BF16 values widened to fp32: a BF16 number is the top half of an fp32 one.
static inline __m512 load16_bf16(const uint16_t* p) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
static inline __m512 load16(Weight W, size_t e) {
    return W.format == WEIGHT_BF16 ? load16_bf16((const uint16_t*)W.data + e) : _mm512_loadu_ps((const float*)W.data + e);
}
// Row o of W with x (n). Four independent accumulators of 16 lanes keep enough loads in
// flight to stream at memory speed.
static float dot_row(Weight W, int o, const float* x, int n) {
    size_t row = (size_t)o * n;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_fmadd_ps(load16(W, row + i), _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(load16(W, row + i + 16), _mm512_loadu_ps(x + i + 16), acc1);
        acc2 = _mm512_fmadd_ps(load16(W, row + i + 32), _mm512_loadu_ps(x + i + 32), acc2);
        acc3 = _mm512_fmadd_ps(load16(W, row + i + 48), _mm512_loadu_ps(x + i + 48), acc3);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load16(W, row + i), _mm512_loadu_ps(x + i), acc0);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += weight_get(W, row + i) * x[i];
    return sum;
}
#else
// Portable: interleaved partial sums, which the compiler keeps in vector registers.
static float dot_row(Weight W, int o, const float* x, int n) {
    size_t row = (size_t)o * n;
    float partial[16] = {0}, w[16], sum = 0.0f;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        weight_dequantize(w, W, row + i, 16);
        for (int j = 0; j < 16; j++) partial[j] += w[j] * x[i + j];
    }
    for (int j = 0; j < 16; j++) sum += partial[j];
    for (; i < n; i++) sum += weight_get(W, row + i) * x[i];
    return sum;
}
#endif

// Row o of BF16 W with x in BF16 (xb, n), on CPUs with AVX-512 BF16: each vdpbf16ps adds
// 16 pairs of products to 16 lanes; a last piece of fewer than 32 columns is loaded under
// a mask (zeros). Elsewhere dot_row with x rounded (xr): the same products.
static float dot_row_bf16(Weight W, int o, const float* xr, const uint16_t* xb, int n) {
#if MATMUL_BF16_NATIVE
    (void)xr;
    const uint16_t* row = (const uint16_t*)W.data + (size_t)o * n;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int i = 0;
    for (; i + 128 <= n; i += 128) {
        for (int v = 0; v < 4; v++) {
            acc[v] = _mm512_dpbf16_ps(acc[v], (__m512bh)_mm512_loadu_si512(row + i + 32 * v),
                                      (__m512bh)_mm512_loadu_si512(xb + i + 32 * v));
        }
    }
    for (; i < n; i += 32) {
        __mmask32 m = n - i >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << (n - i)) - 1;
        acc[0] = _mm512_dpbf16_ps(acc[0], (__m512bh)_mm512_maskz_loadu_epi16(m, row + i),
                                  (__m512bh)_mm512_maskz_loadu_epi16(m, xb + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
#else
    (void)xb;
    return dot_row(W, o, xr, n);
#endif
}

void matvec(float* y, const float* x, Weight W, int in, int out, int accumulate) {
    int bf16 = W.format == WEIGHT_BF16;
    float xr[bf16 ? in : 1];     // BF16: x as the products see it
    uint16_t xb[bf16 ? in : 1];  // the same in BF16, for dot_row_bf16
    for (int i = 0; bf16 && i < in; i++) {
        xb[i] = float_to_bf16(x[i]);
        xr[i] = bf16_to_float(xb[i]);
    }
    #pragma omp parallel for schedule(static) if ((size_t)in * out >= 65536)  // threads only pay off on big ones
    for (int o = 0; o < out; o++) {
        float sum = bf16 ? dot_row_bf16(W, o, xr, xb, in) : dot_row(W, o, x, in);
        y[o] = accumulate ? y[o] + sum : sum;
    }
}

// ----------------------------------------------------------------------------
// matvec on a quantised base: y (out) (+)= W (out,in) @ x (in), W the model's int8 (a
// scale per row) or NF4 (blocks of 64 along each row) weights, read in place and decoded
// in registers: a quarter (int8) or an eighth (NF4, plus a scale per 64) of fp32's bytes.
// The same math as "dequantise, then matvec" in another rounding order (test_generate
// checks 1e-5 relative): int8 sums q * x and scales the row's sum once; NF4 looks each
// 4-bit code up in the block's 16 values NF4_CODE * absmax, taking the high halves of 16
// bytes (the even elements) and the low halves (the odd ones) as two vectors, so x is
// first reordered to match (`x_order`: per 32 values, the 16 even ones, then the 16 odd).

// x (n) -> x_order (n) for the NF4 loop, n a multiple of 32 (NF4 rows are whole blocks of 64)
static void nf4_order(float* x_order, const float* x, int n) {
    for (int i = 0; i < n; i += 32) {
        for (int j = 0; j < 16; j++) x_order[i + j] = x[i + 2 * j], x_order[i + 16 + j] = x[i + 2 * j + 1];
    }
}

#if defined(__AVX512F__)
// Row `row` of an int8 W with x (n): sum of q * x, times the row's scale
static float dot_row_int8(Weight W, int row, const float* x, int n) {
    const int8_t* q = (const int8_t*)W.data + (size_t)row * n;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        for (int v = 0; v < 4; v++) {
            __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(q + i + 16 * v))));
            acc[v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i + 16 * v), acc[v]);
        }
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    for (; i < n; i++) sum += (float)q[i] * x[i];
    return sum * W.scales[row];
}

// Row `row` of an NF4 W with x_order (n, nf4_order's): per block of 64 (32 bytes), the
// 16-value table, then four lookups. vpermps reads only the low 4 bits of each index, so a
// byte widened to 32 bits is its low half's index, and shifted right by 4 its high half's.
static float dot_row_nf4(Weight W, int row, const float* x_order, int n) {
    const uint8_t* q = (const uint8_t*)W.data + (size_t)row * n / 2;
    const float* absmax = W.scales + (size_t)row * n / NF4_BLOCK;
    __m512 code = _mm512_loadu_ps(NF4_CODE);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int i = 0; i < n; i += NF4_BLOCK, q += NF4_BLOCK / 2) {
        __m512 table = _mm512_mul_ps(code, _mm512_set1_ps(absmax[i / NF4_BLOCK]));
        __m512i first = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)q));          // elements 0..31
        __m512i second = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(q + 16)));  // elements 32..63
        acc[0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(first, 4), table),
                                 _mm512_loadu_ps(x_order + i), acc[0]);
        acc[1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(first, table), _mm512_loadu_ps(x_order + i + 16), acc[1]);
        acc[2] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(second, 4), table),
                                 _mm512_loadu_ps(x_order + i + 32), acc[2]);
        acc[3] = _mm512_fmadd_ps(_mm512_permutexvar_ps(second, table), _mm512_loadu_ps(x_order + i + 48), acc[3]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}
#else
// Portable: int8 as above; NF4 through quant.h's dequantiser, 32 values at a time.
static float dot_row_int8(Weight W, int row, const float* x, int n) {
    const int8_t* q = (const int8_t*)W.data + (size_t)row * n;
    float partial[64] = {0}, sum = 0.0f;
    int i = 0;
    for (; i + 64 <= n; i += 64) for (int j = 0; j < 64; j++) partial[j] += (float)q[i + j] * x[i + j];
    for (int j = 0; j < 64; j++) sum += partial[j];
    for (; i < n; i++) sum += (float)q[i] * x[i];
    return sum * W.scales[row];
}
static float dot_row_nf4(Weight W, int row, const float* x_order, int n) {
    float partial[32] = {0}, w[32], sum = 0.0f;
    for (int i = 0; i < n; i += 32) {
        weight_dequantize(w, W, (size_t)row * n + i, 32);
        for (int j = 0; j < 16; j++) {
            partial[j] += w[2 * j] * x_order[i + j];
            partial[16 + j] += w[2 * j + 1] * x_order[i + 16 + j];
        }
    }
    for (int j = 0; j < 32; j++) sum += partial[j];
    return sum;
}
#endif

// x_order: scratch of `in` floats (NF4)
void matvec_quantized(float* y, const float* x, Weight W, int in, int out, int accumulate, float* x_order) {
    if (W.format == WEIGHT_NF4) nf4_order(x_order, x, in);
    #pragma omp parallel for schedule(static) if ((size_t)in * out >= 65536)
    for (int o = 0; o < out; o++) {
        float sum = W.format == WEIGHT_NF4 ? dot_row_nf4(W, o, x_order, in) : dot_row_int8(W, o, x, in);
        y[o] = accumulate ? y[o] + sum : sum;
    }
}

// ----------------------------------------------------------------------------
// decode weights: the linear layers and lm_head as the matvec reads them: the model's
// frozen base in place, in the format it was loaded in (fp32, BF16, int8 or NF4).

typedef struct {
    WeightFormat format;                // the model's base_format
    Weight linear[NUM_LORA_MODULES];    // (L, out, in) per module, layer 0's
    Weight lm_head;                     // (V, C)
    float* x_order;                     // (max(C, NH*hs, I)) NF4's scratch: the input reordered
    size_t bytes_per_token;             // weight bytes one decode step reads (int8 and NF4: scales included)
} DecodeWeights;

void decode_weights_init(DecodeWeights* d, const Model* m) {
    const LlamaConfig* c = &m->config;
    memset(d, 0, sizeof(*d));
    d->format = m->base_format;
    d->lm_head = m->frozen[PARAMETER_LM_HEAD];
    size_t values = (size_t)c->V * c->C, scales = d->lm_head.block ? values / d->lm_head.block : 0;
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
        int in, out;
        lora_module_dims(c, mod, &in, &out);
        size_t numel = (size_t)c->L * in * out;
        d->linear[mod] = module_base(m, 0, mod);
        values += numel;
        scales += d->linear[mod].block ? numel / d->linear[mod].block : 0;
    }
    d->bytes_per_token = values * WEIGHT_FORMAT_BITS[d->format] / 8 + scales * sizeof(float);
    int widest = c->I > c->NH * c->hs ? c->I : c->NH * c->hs;
    d->x_order = calloc_floats(widest > c->C ? widest : c->C, "decode scratch");
}

// y (out) (+)= W (out, in) @ x (in) for decode weights in any format
static void decode_matvec(const DecodeWeights* d, float* y, const float* x, Weight W, int in, int out,
                          int accumulate) {
    if (W.format == WEIGHT_INT8 || W.format == WEIGHT_NF4) {
        matvec_quantized(y, x, W, in, out, accumulate, d->x_order);
    } else {
        matvec(y, x, W, in, out, accumulate);
    }
}

// W += s B A for every targeted module, then drop the adapter: the merged model. A BF16
// base takes W + s B A rounded to BF16, as a merge in PyTorch on a bf16 model does.
void model_merge_lora(Model* m) {
    const LlamaConfig* c = &m->config;
    int r = m->lora_config.rank;
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
        if (!m->lora_config.target[mod]) continue;
        int in, out;
        lora_module_dims(c, mod, &in, &out);
        float* scaled_B = malloc_check((size_t)out * r * sizeof(float), "merge");
        float* W = malloc_check((size_t)out * in * sizeof(float), "merge");  // one layer's matrix in fp32
        for (int l = 0; l < c->L; l++) {
            Weight base = module_base(m, l, mod);
            weight_dequantize(W, base, 0, (size_t)out * in);
            lora_merge(W, m->lora.A[mod] + (size_t)l * r * in, m->lora.B[mod] + (size_t)l * out * r, m->lora_scale,
                       in, out, r, scaled_B);
            weight_store(base, 0, W, (size_t)out * in);
        }
        free(scaled_B);
        free(W);
    }
    m->use_lora = 0;
}

// ----------------------------------------------------------------------------
// KV cache and the cached forward

typedef struct {
    Model* model;
    DecodeWeights weights;
    int maxT;          // context: positions 0..maxT-1
    int pos;           // tokens in the cache
    int* tokens;       // (maxT) the ids in the cache
    float* k_cache;    // (L, NKV, hs, maxT) keys after RoPE, transposed as train.c's attention does
    float* v_cache;    // (L, maxT, NKV*hs)
    float* logits;     // (V) predicting the token after the last one in the cache
    float* sample_logits; // (V) the copy sampling modifies
    int prefill_max;   // tokens model_forward takes at once (the model's activations are for that many)
    // scratch for a chunk of up to `chunk` tokens
    int chunk;
    int* positions;    // (chunk)
    float* x;          // (chunk, C) residual stream
    float* ln;         // (chunk, C) a norm's output
    float* rstd;       // (chunk)
    float* q;          // (chunk, NH*hs)
    float* k;          // (chunk, NKV*hs) the new keys, before they go into the cache
    float* att;        // (chunk, NH*hs)
    float* gate;       // (chunk, I)
    float* up;         // (chunk, I)
    float* act;        // (chunk, I)
    float* lora_xa;    // (chunk, r)
    float* lora_scaled;// (chunk, r)
    float* scores;     // (NH, maxT)
    float* cos_sin;    // (maxT, hs/2, 2) RoPE's table for the whole context (the model's covers prefill_max)
} Generator;

#define GENERATOR_CHUNK 64
// A prompt's first GENERATOR_PREFILL tokens go through model_forward at once, the rest in
// cached chunks: the activations model_forward keeps for 4096 tokens of an 8B model
// would take 32 GB, for 256 tokens 2 GB.
#define GENERATOR_PREFILL 256

// A generator for up to maxT tokens. The model must be loaded (adapter included);
// this allocates its activations for one sequence of prefill_max <= maxT tokens (train.c's
// model_allocate) for the prefill, and the cache.
void generator_create(Generator* g, Model* m, int maxT, int prefill_max) {
    const LlamaConfig* c = &m->config;
    if (maxT < 1 || maxT > c->max_seq_len) {
        fail("context %d must be in [1, %d] (max_position_embeddings in config.json); lower --context",
             maxT, c->max_seq_len);
    }
    if (prefill_max < 1 || prefill_max > maxT) fail("internal error: prefill of %d tokens, context %d", prefill_max, maxT);
    memset(g, 0, sizeof(*g));
    g->model = m;
    g->maxT = maxT;
    g->prefill_max = prefill_max;
    g->chunk = GENERATOR_CHUNK;
    model_allocate(m, 1, prefill_max, 0);
    m->attention_fp32 = 1;  // the prefill's attention as the cached one computes it
    decode_weights_init(&g->weights, m);
    size_t q = (size_t)c->NH * c->hs, kv = (size_t)c->NKV * c->hs, n = g->chunk;
    int r = m->use_lora ? m->lora_config.rank : 1;
    g->tokens = malloc_check(maxT * sizeof(int), "token history");
    g->k_cache = calloc_floats((size_t)c->L * maxT * kv, "KV cache (keys); lower --context");
    g->v_cache = calloc_floats((size_t)c->L * maxT * kv, "KV cache (values); lower --context");
    g->logits = calloc_floats(c->V, "logits");
    g->sample_logits = calloc_floats(c->V, "logits");
    g->positions = malloc_check(n * sizeof(int), "positions");
    g->x = calloc_floats(n * c->C, "decode scratch");
    g->ln = calloc_floats(n * c->C, "decode scratch");
    g->rstd = calloc_floats(n, "decode scratch");
    g->q = calloc_floats(n * q, "decode scratch");
    g->k = calloc_floats(n * kv, "decode scratch");
    g->att = calloc_floats(n * q, "decode scratch");
    g->gate = calloc_floats(n * c->I, "decode scratch");
    g->up = calloc_floats(n * c->I, "decode scratch");
    g->act = calloc_floats(n * c->I, "decode scratch");
    g->lora_xa = calloc_floats(n * r, "decode scratch");
    g->lora_scaled = calloc_floats(n * r, "decode scratch");
    g->scores = calloc_floats((size_t)c->NH * maxT, "attention scores");
    g->cos_sin = calloc_floats((size_t)maxT * c->hs, "RoPE table");
    rope_table(g->cos_sin, c, maxT);
}

// dst (B, NKV, hs, ld) columns 0..T-1 = src (B, T, NKV, hs): each head's keys as
// columns, so a query's scores against all keys are a loop over contiguous memory; the
// KV cache writes new columns into rows of ld = maxT.
static void transpose_heads(float* dst, const float* src, int B, int T, int NKV, int hs, int ld) {
    #pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * NKV * hs >= 65536)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NKV; h++) {
            float* d = dst + ((size_t)b * NKV + h) * hs * ld;
            for (int t = 0; t < T; t++) {
                const float* x = src + (((size_t)b * T + t) * NKV + h) * hs;
                for (int i = 0; i < hs; i++) d[(size_t)i * ld + t] = x[i];
            }
        }
    }
}

// y (n) += a x (n)
static inline void axpy(float* restrict y, float a, const float* restrict x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

// p[s] = scale * x . k_s for s0 <= s <= t, with the keys as columns of kT (hs, T).
static void row_scores(float* p, const float* x, const float* kT, int s0, int t, int T, int hs, float scale) {
    for (int s = s0; s <= t; s++) p[s] = 0.0f;
    for (int i = 0; i < hs; i++) {
        float xi = scale * x[i];
        const float* column = kT + (size_t)i * T;
        for (int s = s0; s <= t; s++) p[s] += xi * column[s];
    }
}

// Attention of n new queries against the cache: query i, at position p0+i, sees the
// cached keys 0..p0+i. q and out (n, NH, hs); k_cache (NKV, hs, maxT) and v_cache
// (maxT, NKV, hs) already hold the new tokens' keys and values; scores (NH, maxT) is
// scratch. The same math as train.c's attention_forward (which runs blocks of queries as matmuls).
void attention_cached_forward(float* out, float* scores, const float* q, const float* k_cache,
                              const float* v_cache, int p0, int n, int NH, int NKV, int hs, int maxT) {
    float scale = 1.0f / sqrtf((float)hs);
    int group = NH / NKV;
    #pragma omp parallel for schedule(static) if ((size_t)n * (p0 + n) * NH * hs >= 65536)
    for (int h = 0; h < NH; h++) {
        float* p = scores + (size_t)h * maxT;
        int kvh = h / group;
        for (int i = 0; i < n; i++) {
            int t = p0 + i;
            row_scores(p, q + ((size_t)i * NH + h) * hs, k_cache + (size_t)kvh * hs * maxT, 0, t, maxT, hs, scale);
            float maxv = -INFINITY;
            for (int s = 0; s <= t; s++) maxv = p[s] > maxv ? p[s] : maxv;
            for (int s = 0; s <= t; s++) p[s] = fast_exp(p[s] - maxv);
            float sum = 0.0f;
            for (int s = 0; s <= t; s++) sum += p[s];
            float* ot = out + ((size_t)i * NH + h) * hs;
            for (int e = 0; e < hs; e++) ot[e] = 0.0f;
            for (int s = 0; s <= t; s++) axpy(ot, p[s] / sum, v_cache + ((size_t)s * NKV + kvh) * hs, hs);
        }
    }
}

// y (n,out) (+)= x W^T for module mod of layer l, plus the unmerged LoRA term. One token
// reads the decode weights (matvec); a chunk uses train.c's matmul on the model's base.
static void generator_linear(Generator* g, int l, int mod, float* y, const float* x, int n, int accumulate) {
    Model* m = g->model;
    const LlamaConfig* c = &m->config;
    int in, out;
    lora_module_dims(c, mod, &in, &out);
    if (n == 1) {
        decode_matvec(&g->weights, y, x, weight_at(g->weights.linear[mod], (size_t)l * out * in), in, out, accumulate);
    } else {
        linear_forward(y, x, module_base(m, l, mod), n, in, out, accumulate);
    }
    if (!m->use_lora || !m->lora_config.target[mod]) return;
    int r = m->lora_config.rank;
    lora_forward(y, g->lora_xa, g->lora_scaled, x, m->lora.A[mod] + (size_t)l * r * in,
                 m->lora.B[mod] + (size_t)l * out * r, n, in, out, r, m->lora_scale, 0.0f, 0, 0);
}

// Forwards n <= chunk tokens at positions pos..pos+n-1 through the model, appending
// their keys and values to the cache; g->logits then predicts the token after them.
// The layer sequence is model_forward's, with attention reading the cache.
void generator_forward(Generator* g, const int* tokens, int n) {
    Model* m = g->model;
    const LlamaConfig* c = &m->config;
    const ParameterTensors* p = &m->params;
    int C = c->C, I = c->I, p0 = g->pos;
    size_t kv_dim = (size_t)c->NKV * c->hs;
    if (n < 1 || n > g->chunk) fail("internal error: chunk of %d tokens (1..%d)", n, g->chunk);
    if (p0 + n > g->maxT) fail("internal error: %d tokens do not fit the context of %d", p0 + n, g->maxT);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->V) fail("token id %d is outside the vocabulary [0, %d)", tokens[i], c->V);
        g->positions[i] = p0 + i;
    }
    embedding_forward(g->x, tokens, m->frozen[PARAMETER_EMBEDDINGS], n, C);
    for (int l = 0; l < c->L; l++) {
        float* k_cache = g->k_cache + (size_t)l * g->maxT * kv_dim;  // (NKV, hs, maxT) of layer l
        float* v_cache = g->v_cache + (size_t)l * g->maxT * kv_dim;  // (maxT, NKV*hs) of layer l
        float* v = v_cache + (size_t)p0 * kv_dim;                      // the new tokens' rows

        rmsnorm_forward(g->ln, g->rstd, g->x, p->ln1 + (size_t)l * C, n, C, c->norm_eps);
        generator_linear(g, l, LORA_Q, g->q, g->ln, n, 0);
        generator_linear(g, l, LORA_K, g->k, g->ln, n, 0);
        generator_linear(g, l, LORA_V, v, g->ln, n, 0);
        rope_forward(g->q, g->positions, g->cos_sin, n, c->NH, c->hs);
        rope_forward(g->k, g->positions, g->cos_sin, n, c->NKV, c->hs);
        transpose_heads(k_cache + p0, g->k, 1, n, c->NKV, c->hs, g->maxT);  // the new columns
        attention_cached_forward(g->att, g->scores, g->q, k_cache, v_cache, p0, n, c->NH, c->NKV, c->hs, g->maxT);
        generator_linear(g, l, LORA_O, g->x, g->att, n, 1);  // residual: x += o_proj(att)

        rmsnorm_forward(g->ln, g->rstd, g->x, p->ln2 + (size_t)l * C, n, C, c->norm_eps);
        generator_linear(g, l, LORA_GATE, g->gate, g->ln, n, 0);
        generator_linear(g, l, LORA_UP, g->up, g->ln, n, 0);
        swiglu_forward(g->act, g->gate, g->up, (size_t)n * I);
        generator_linear(g, l, LORA_DOWN, g->x, g->act, n, 1);  // residual: x += down(act)
    }
    // only the last token's logits are needed
    rmsnorm_forward(g->ln, g->rstd, g->x + (size_t)(n - 1) * C, p->lnf, 1, C, c->norm_eps);
    decode_matvec(&g->weights, g->logits, g->ln, g->weights.lm_head, C, c->V, 0);
    memcpy(g->tokens + p0, tokens, n * sizeof(int));
    g->pos += n;
}

// The prompt in one batch through train.c's model_forward; its keys and values
// (acts.k, acts.v: (L, 1, n, NKV*hs), after RoPE) become the cache. The logits of every
// prompt position stay in m->acts.logits (n, V) until the next model_forward.
void generator_prefill(Generator* g, const int* tokens, int n) {
    Model* m = g->model;
    const LlamaConfig* c = &m->config;
    size_t kv_dim = (size_t)c->NKV * c->hs;
    if (n > g->prefill_max) fail("internal error: prefill of %d tokens, at most %d", n, g->prefill_max);
    model_forward(m, tokens, NULL, NULL, 1, n, 0);
    for (int l = 0; l < c->L; l++) {
        transpose_heads(g->k_cache + (size_t)l * g->maxT * kv_dim, m->acts.k + (size_t)l * n * kv_dim,
                        1, n, c->NKV, c->hs, g->maxT);
        memcpy(g->v_cache + (size_t)l * g->maxT * kv_dim, m->acts.v + (size_t)l * n * kv_dim,
               n * kv_dim * sizeof(float));
    }
    memcpy(g->logits, m->acts.logits + (size_t)(n - 1) * c->V, c->V * sizeof(float));
    memcpy(g->tokens, tokens, n * sizeof(int));
    g->pos = n;
}

// Makes the cache hold exactly ids[0..n) and g->logits predict the token after them.
// The cached prefix ids share is kept (a chat's next turn only forwards the new tokens);
// from an empty cache the prompt's first prefill_max tokens go through model_forward, the
// rest (or all, after a kept prefix) in chunks. Returns the number of tokens forwarded.
int generator_extend(Generator* g, const int* ids, int n) {
    if (n < 1 || n > g->maxT) fail("internal error: %d tokens for a context of %d", n, g->maxT);
    int keep = 0;
    while (keep < g->pos && keep < n && g->tokens[keep] == ids[keep]) keep++;
    if (keep == n) keep = n - 1;  // forward at least the last token, for its logits
    g->pos = keep;
    int i = keep;
    if (keep == 0) {
        i = n < g->prefill_max ? n : g->prefill_max;
        generator_prefill(g, ids, i);
    }
    for (; i < n; i += g->chunk) generator_forward(g, ids + i, n - i < g->chunk ? n - i : g->chunk);
    return n - keep;
}

// ----------------------------------------------------------------------------
// sampling, in Hugging Face's order: repetition penalty, temperature, top-k, top-p

typedef struct {
    float prob;
    int id;
} Candidate;

typedef struct {
    float temperature;         // 0: greedy (argmax)
    float top_p;               // keep the smallest set of tokens with this much probability; 1: off
    int top_k;                 // keep the k most likely tokens; 0: off
    float repetition_penalty;  // divide positive logits (multiply negative ones) of seen tokens; 1: off
    uint64_t rng;              // xorshift64* state
    Candidate* candidates;     // (V) scratch
    uint8_t* seen;             // (V) scratch
} Sampler;

// Restarts the random stream: the same seed gives the same samples.
void sampler_seed(Sampler* s, uint64_t seed) {
    s->rng = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;  // never 0
}

void sampler_init(Sampler* s, int V, uint64_t seed) {
    sampler_seed(s, seed);
    s->candidates = malloc_check((size_t)V * sizeof(Candidate), "sampler");
    s->seen = malloc_check((size_t)V, "sampler");
}

// uniform in [0, 1)
static float random_uniform(uint64_t* state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (float)((*state * 0x2545F4914F6CDD1Dull) >> 40) * (1.0f / 16777216.0f);
}

static int compare_candidates(const void* a, const void* b) {
    const Candidate* x = a;
    const Candidate* y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return x->id - y->id;  // ties: lower id first, so the order is fully defined
}

// As transformers' RepetitionPenaltyLogitsProcessor: once per distinct token of history.
void apply_repetition_penalty(float* logits, uint8_t* seen, const int* history, int n, int V, float penalty) {
    memset(seen, 0, V);
    for (int i = 0; i < n; i++) {
        int id = history[i];
        if (seen[id]) continue;
        seen[id] = 1;
        logits[id] = logits[id] > 0.0f ? logits[id] / penalty : logits[id] * penalty;
    }
}

// Picks the next token from logits (V), which it modifies. history (n) is the context,
// for the repetition penalty.
int sample_token(Sampler* s, float* logits, int V, const int* history, int n) {
    if (s->repetition_penalty != 1.0f) apply_repetition_penalty(logits, s->seen, history, n, V, s->repetition_penalty);
    int best = 0;
    for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    if (s->temperature <= 0.0f) return best;
    // softmax(logits / temperature)
    float maxv = logits[best], sum = 0.0f;
    for (int i = 0; i < V; i++) {
        s->candidates[i].prob = expf((logits[i] - maxv) / s->temperature);
        s->candidates[i].id = i;
        sum += s->candidates[i].prob;
    }
    int count = V;
    if (s->top_k <= 0 && s->top_p < 1.0f) {
        // Tokens below (1-top_p)/(V-1) cannot be in the nucleus (all of them together
        // hold less than 1-top_p), so only the rest need sorting.
        float cutoff = (1.0f - s->top_p) / (V - 1) * sum;
        count = 0;
        for (int i = 0; i < V; i++) if (s->candidates[i].prob >= cutoff) s->candidates[count++] = s->candidates[i];
    }
    if (s->top_k > 0 || s->top_p < 1.0f) qsort(s->candidates, count, sizeof(Candidate), compare_candidates);
    if (s->top_k > 0 && s->top_k < count) count = s->top_k;
    float mass = 0.0f;
    for (int i = 0; i < count; i++) mass += s->candidates[i].prob;
    if (s->top_p < 1.0f) {  // smallest prefix holding top_p of what top-k left
        float cumulative = 0.0f;
        int keep = 0;
        while (keep < count && cumulative < s->top_p * mass) cumulative += s->candidates[keep++].prob;
        count = keep > 0 ? keep : 1;
        mass = cumulative > 0.0f ? cumulative : s->candidates[0].prob;
    }
    float r = random_uniform(&s->rng) * mass, cumulative = 0.0f;
    for (int i = 0; i < count; i++) {
        cumulative += s->candidates[i].prob;
        if (r < cumulative) return s->candidates[i].id;
    }
    return s->candidates[count - 1].id;  // rounding
}

// ----------------------------------------------------------------------------
// end tokens and sampling defaults from the model directory

#define MAX_STOP_TOKENS 16
typedef struct {
    int ids[MAX_STOP_TOKENS];
    int n;
} StopTokens;

static void stop_tokens_add(StopTokens* s, int id) {
    if (id < 0) return;
    for (int i = 0; i < s->n; i++) if (s->ids[i] == id) return;
    if (s->n < MAX_STOP_TOKENS) s->ids[s->n++] = id;
}

static int is_stop_token(const StopTokens* s, int id) {
    for (int i = 0; i < s->n; i++) if (s->ids[i] == id) return 1;
    return 0;
}

// Generation stops at config.json's eos_token_id (int or list), generation_config.json's
// eos_token_id, and the tokenizer's eos and <|eot_id|> (tokenizer may be NULL).
// generation_config.json also gives the sampling defaults, as in transformers
// (do_sample false means greedy).
void read_generation_defaults(const Model* m, const char* dir, const Tokenizer* tokenizer, StopTokens* stop,
                              Sampler* s) {
    const LlamaConfig* c = &m->config;
    memset(stop, 0, sizeof(*stop));
    for (int i = 0; i < c->num_eos; i++) stop_tokens_add(stop, c->eos_token_ids[i]);
    if (tokenizer != NULL) {
        stop_tokens_add(stop, tokenizer->eos_id);
        stop_tokens_add(stop, tokenizer->eot_id);
    }
    s->temperature = 0.0f;
    s->top_p = 1.0f;
    s->top_k = 0;
    s->repetition_penalty = 1.0f;
    char* path = path_join(dir, "generation_config.json");
    if (access(path, R_OK) == 0) {  // every value checked, whether or not do_sample uses it
        cJSON* json = json_read_object(path, "");
        cJSON* eos = json_field(json, "eos_token_id");
        if (cJSON_IsArray(eos)) {
            if (cJSON_GetArraySize(eos) > MAX_EOS_TOKENS) fail("%s: \"eos_token_id\" lists %d ids; at most %d are "
                                                               "supported", path, cJSON_GetArraySize(eos),
                                                               MAX_EOS_TOKENS);
            cJSON* e;
            cJSON_ArrayForEach(e, eos) stop_tokens_add(stop, (int)json_int_item(e, "eos_token_id", 0, c->V - 1, path));
        } else if (json_has(json, "eos_token_id")) {
            stop_tokens_add(stop, (int)json_int(json, "eos_token_id", 0, c->V - 1, 1, 0, path));
        }
        // the ranges of the matching flags (GENERATE_FLAGS)
        float temperature = (float)json_number(json, "temperature", 0, 100, 0, 1.0, path);
        float top_p = (float)json_number(json, "top_p", 1e-6, 1, 0, 1.0, path);
        int top_k = (int)json_int(json, "top_k", 0, 1 << 30, 0, 50, path);
        if (json_bool(json, "do_sample", 0, path)) {
            s->temperature = temperature;
            s->top_p = top_p;
            s->top_k = top_k;
        }
        s->repetition_penalty = (float)json_number(json, "repetition_penalty", 1e-3, 1e3, 0, 1.0, path);
        cJSON_Delete(json);
    }
    free(path);
}

// ----------------------------------------------------------------------------
// the text side: tokenizer.c (tokenizer.h) turns text into ids with the same chat
// template code training uses, and streams ids back to text without splitting a UTF-8
// character. Everything above works on ids only.

typedef struct {
    Tokenizer tokenizer;
    ChatOptions options;    // template, date; always with the generation prompt
    StreamDecoder stream;
    TextBuffer answer;      // the text of the answer being streamed
} Text;

// Loads dir/tokenizer.json. Without one: an error when required (text in or out),
// otherwise NULL (the --ids path needs no tokenizer).
Text* text_open(const char* dir, const char* template_name, const char* date, int required, int V) {
    char* path = path_join(dir, "tokenizer.json");
    int present = access(path, R_OK) == 0;
    if (!present && required) {
        fail("%s: not found; --prompt and --chat need the model's tokenizer.json (or give token ids with --ids)", path);
    }
    free(path);
    if (!present) return NULL;
    Text* text = calloc(1, sizeof(Text));
    if (text == NULL) fail("out of memory loading the tokenizer");
    tokenizer_load(&text->tokenizer, dir);
    if (text->tokenizer.vocab_size > V) {
        fail("%s/tokenizer.json: the tokenizer has %d tokens but config.json's vocab_size is %d; "
             "the tokenizer does not belong to this model",
             dir, text->tokenizer.vocab_size, V);
    }
    text->options = chat_options_default(&text->tokenizer);
    if (template_name) text->options.template_kind = chat_template_from_name(template_name);
    text->options.date = date;
    text->options.add_generation_prompt = 1;
    stream_decoder_init(&text->stream, &text->tokenizer, 1);
    return text;
}

// The conversation through the chat template, ending with the assistant header (the
// generation prompt); returns the number of ids written to *ids (malloc'd).
int text_render_chat(Text* t, const Message* messages, int n, int** ids) {
    ChatMessage* chat = malloc_check((n + 1) * sizeof(ChatMessage), "chat");
    for (int i = 0; i < n; i++) chat[i] = (ChatMessage){messages[i].role, messages[i].content};
    Tokens rendered = {0};
    chat_render(&t->tokenizer, &t->options, chat, n, &rendered);
    *ids = malloc_check((rendered.n + 1) * sizeof(int), "prompt ids");
    memcpy(*ids, rendered.ids, rendered.n * sizeof(int));
    int count = (int)rendered.n;
    tokens_free(&rendered);
    free(chat);
    return count;
}

// Prints the text of token id, holding back an incomplete UTF-8 character until the
// tokens that complete it arrive.
void text_stream_token(Text* t, int id, FILE* out) {
    const char* s = stream_decoder_push(&t->stream, id);
    fputs(s, out);
    text_append(&t->answer, s, strlen(s));
}

// Prints what the stream still holds and starts a new answer; *answer (when not NULL)
// gets the whole answer's text (malloc'd), for the chat history.
void text_stream_end(Text* t, FILE* out, char** answer) {
    const char* s = stream_decoder_flush(&t->stream);
    fputs(s, out);
    text_append(&t->answer, s, strlen(s));
    if (answer) *answer = strdup(t->answer.data ? t->answer.data : "");
    text_free(&t->answer);
    stream_decoder_free(&t->stream);
    stream_decoder_init(&t->stream, &t->tokenizer, 1);
}

// ----------------------------------------------------------------------------
// the generation loop

typedef enum { STOP_END_TOKEN, STOP_MAX_TOKENS, STOP_CONTEXT_FULL } StopReason;

// NaN or infinite logits come from broken weights or config values; sampling would turn
// them into some token without a word, so they stop generation here.
static void check_logits(const float* logits, int V, int pos) {
    int bad = 0;
    for (int i = 0; i < V; i++) bad += !(fabsf(logits[i]) <= FLT_MAX);  // NaN fails too
    for (int i = 0; bad && i < V; i++) {
        if (!(fabsf(logits[i]) <= FLT_MAX)) {
            fail("the logits after %d tokens are not finite (token %d: %g): the weights (the model's or the "
                 "adapter's) or the values in config.json are broken", pos, i, logits[i]);
        }
    }
}

// The next token after the context in g. With text out, only ids the tokenizer has: rows
// of the logits past it are padding of vocab_size.
int generator_sample(Generator* g, Sampler* s, const Text* text) {
    int V = g->model->config.V;
    check_logits(g->logits, V, g->pos);
    memcpy(g->sample_logits, g->logits, V * sizeof(float));
    return sample_token(s, g->sample_logits, text ? text->tokenizer.vocab_size : V, g->tokens, g->pos);
}

typedef struct {
    double prefill_seconds, decode_seconds;
    int prefill_tokens, decode_tokens;
} Timing;

// Samples up to max_new tokens after the context in g, storing each in out (max_new) and
// printing it to stream (unless NULL): as text through text, or as an id when text is NULL. The end token
// that stops generation is stored, not printed, and not forwarded (the next chat turn's
// prompt starts with it, so it is forwarded then). Returns why it stopped.
StopReason generate_tokens(Generator* g, Sampler* s, const StopTokens* stop, int max_new, Text* text,
                           FILE* stream, int* out, int* n_out, Timing* timing) {
    double t0 = wall_seconds();
    StopReason reason = STOP_MAX_TOKENS;
    *n_out = 0;
    while (*n_out < max_new) {
        int id = generator_sample(g, s, text);
        out[(*n_out)++] = id;
        if (is_stop_token(stop, id)) { reason = STOP_END_TOKEN; break; }
        if (stream != NULL && text != NULL) text_stream_token(text, id, stream);
        if (stream != NULL && text == NULL) fprintf(stream, "%s%d", *n_out > 1 ? " " : "", id);
        if (stream != NULL) fflush(stream);
        if (*n_out == max_new) break;
        if (g->pos == g->maxT) { reason = STOP_CONTEXT_FULL; break; }
        generator_forward(g, &id, 1);
        timing->decode_tokens++;
    }
    timing->decode_seconds += wall_seconds() - t0;
    return reason;
}

void print_stop_and_timing(StopReason reason, const int* out, int n_out, int max_new, const Generator* g,
                           const Timing* t) {
    if (reason == STOP_END_TOKEN) fprintf(stderr, "[stopped: end token %d]", out[n_out - 1]);
    else if (reason == STOP_MAX_TOKENS) fprintf(stderr, "[stopped: %d new tokens (--max_new_tokens)]", max_new);
    else fprintf(stderr, "[stopped: the context of %d tokens is full (--context)]", g->maxT);
    fprintf(stderr, " prefill %d tokens %.3f s (%.1f tok/s) | decode %d tokens %.3f s (%.1f tok/s)\n",
            t->prefill_tokens, t->prefill_seconds,
            t->prefill_seconds > 0 ? t->prefill_tokens / t->prefill_seconds : 0.0,
            t->decode_tokens, t->decode_seconds,
            t->decode_seconds > 0 ? t->decode_tokens / t->decode_seconds : 0.0);
}

// Writes the prefill logits (n, V) as raw little-endian float32, row-major.
void dump_logits(const Model* m, int n, const char* path) {
    uint32_t probe = 1;
    if (*(uint8_t*)&probe != 1) fail("--dump_logits writes little-endian float32 and this machine is big-endian");
    FileWriter w;
    file_writer_open(&w, path);
    file_writer_write(&w, m->acts.logits, (size_t)n * m->config.V * sizeof(float));
    file_writer_close(&w);
}

// Appends one line to path: the prompt's ids then the answer's, space-separated.
void append_ids_line(const char* path, const int* prompt, int n, const int* answer, int n_answer) {
    FILE* f = fopen(path, "a");
    if (f == NULL) fail("cannot write %s: %s", path, strerror(errno));
    for (int i = 0; i < n + n_answer; i++) fprintf(f, "%s%d", i ? " " : "", i < n ? prompt[i] : answer[i - n]);
    if (fprintf(f, "\n") < 0 || fclose(f) != 0) fail("cannot write %s: %s", path, strerror(errno));
}

// ----------------------------------------------------------------------------
// the command line: the flags and what they load. ./serve (serve.c) takes the rows of
// GENERATE_FLAGS for the model and sampling and opens the model with generate_open.

typedef struct {
    const char* model_dir;
    const char* adapter_dir;
    int merge_adapter;
    const char* ids;
    const char* prompt;
    const char* prompts_file;
    const char* system;
    int chat;
    const char* template_name;
    const char* date;
    int parse_special_in_content;
    int max_new_tokens;
    float temperature, top_p, repetition_penalty;  // NAN: generation_config.json's, else off
    int top_k;                                     // -1: generation_config.json's, else off
    uint64_t seed;
    int context;
    const char* weights;  // "auto", "f32", "bf16", "int8" or "nf4"
    const char* dump_logits;
    const char* dump_ids;
    int threads;
} GenerateArgs;

#define ARG(field) offsetof(GenerateArgs, field)
static const Flag GENERATE_FLAGS[] = {
    {"--model", NULL, FLAG_STRING, ARG(model_dir), 0, 0,
     "Hugging Face model directory (a merged model directory works the same)"},
    {"--adapter", NULL, FLAG_STRING, ARG(adapter_dir), 0, 0, "PEFT LoRA adapter (train.c's output), applied unmerged"},
    {"--merge_adapter", NULL, FLAG_BOOL, ARG(merge_adapter), 0, 1,
     "merge the adapter into the weights at load instead"},
    {"--ids", NULL, FLAG_STRING, ARG(ids), 0, 0, "prompt as comma-separated token ids; prints the new ids"},
    {"--prompt", NULL, FLAG_STRING, ARG(prompt), 0, 0, "one user message, rendered with the chat template"},
    {"--chat", NULL, FLAG_BOOL, ARG(chat), 0, 1, "multi-turn chat on stdin (/reset, /quit); works with piped input"},
    {"--prompts", NULL, FLAG_STRING, ARG(prompts_file), 0, 0,
     "each line of FILE as its own one-turn chat; one answer line each (newlines as \\n)"},
    {"--system", NULL, FLAG_STRING, ARG(system), 0, 0, "system message for --prompt and --chat"},
    {"--template", NULL, FLAG_STRING, ARG(template_name), 0, 0, "chat template (none: chosen from the tokenizer)"},
    {"--date", NULL, FLAG_STRING, ARG(date), 0, 0, "date for the Llama 3.1/3.2 system block"},
    {"--parse_special_in_content", NULL, FLAG_BOOL, ARG(parse_special_in_content), 0, 1,
     "special-token text in --prompt/--chat/--system (\"<|eot_id|>\") becomes the control token, as HF's "
     "apply_chat_template does; off: it stays text"},
    {"--max_new_tokens", NULL, FLAG_INT, ARG(max_new_tokens), 1, 1 << 30, "most tokens to generate per answer"},
    {"--temperature", NULL, FLAG_FLOAT, ARG(temperature), 0, 100, "0 = greedy (generation_config.json's, else 0)"},
    {"--top_p", NULL, FLAG_FLOAT, ARG(top_p), 1e-6, 1, "nucleus sampling (generation_config.json's, else off)"},
    {"--top_k", NULL, FLAG_INT, ARG(top_k), 0, 1 << 30,
     "sample among the k likeliest; 0 = off (generation_config.json's, else off)"},
    {"--repetition_penalty", NULL, FLAG_FLOAT, ARG(repetition_penalty), 1e-3, 1e3,
     "(generation_config.json's, else off)"},
    {"--seed", NULL, FLAG_U64, ARG(seed), 0, 18446744073709549568.0, "sampling seed"},
    {"--context", NULL, FLAG_INT, ARG(context), 0, 1 << 30,
     "KV cache length in tokens; 0 = min(4096, max_position_embeddings)"},
    {"--weights", NULL, FLAG_STRING, ARG(weights), 0, 0,
     "how the base is held in memory, for the prefill and decode: auto, f32, bf16, int8 or nf4 (bf16: rounded at "
     "load unless the checkpoint is bfloat16; int8/nf4: quantised at load, as --quantization_bit 8/4 trains on "
     "it; auto: the adapter's quantisation, else bf16 for bfloat16 checkpoints)"},
    {"--dump_logits", NULL, FLAG_STRING, ARG(dump_logits), 0, 0,
     "write the prompt's logits as raw little-endian float32, T x V row-major"},
    {"--dump_ids", NULL, FLAG_STRING, ARG(dump_ids), 0, 0,
     "append the whole token sequence (prompt and answer) as a line of ids, per turn"},
    {"--threads", NULL, FLAG_INT, ARG(threads), 0, 1024, "OpenMP threads; 0 = all cores"},
};
#undef ARG

static const GenerateArgs GENERATE_DEFAULTS = {
    .max_new_tokens = 256, .temperature = NAN, .top_p = NAN, .repetition_penalty = NAN, .top_k = -1,
    .seed = 42, .weights = "auto"};

static const FlagTable GENERATE_FLAG_TABLE = {
    "./generate",
    "usage: ./generate --model DIR [--adapter DIR [--merge_adapter]] "
    "(--ids 1,2,3 | --prompt TEXT | --prompts FILE | --chat)"
    " [flags]\nPrefill and decode tokens/s and the reason generation stopped go to stderr.",
    GENERATE_FLAGS, (int)(sizeof(GENERATE_FLAGS) / sizeof(GENERATE_FLAGS[0])), &GENERATE_DEFAULTS,
    sizeof(GenerateArgs)};

// --weights: the format the base is loaded in. auto: the quantisation an adapter was trained on
// (its file's "base_quantization", see lora_save_adapter), else bf16 for a bfloat16
// checkpoint, else fp32.
static WeightFormat decode_format(const GenerateArgs* a) {
    const char* names[] = {"f32", "bf16", "int8", "nf4"};  // WeightFormat's order, f32 spelled as before
    for (int f = 0; f < 4; f++) if (strcmp(a->weights, names[f]) == 0) return (WeightFormat)f;
    WeightFormat trained_on = a->adapter_dir ? lora_adapter_quantization(a->adapter_dir) : WEIGHT_F32;
    if (trained_on != WEIGHT_F32) return trained_on;
    LlamaConfig c;
    config_load(&c, a->model_dir);
    return strcmp(c.dtype, "bfloat16") == 0 ? WEIGHT_BF16 : WEIGHT_F32;
}

// Loads the model (adapter included) and the tokenizer (NULL for --ids without one),
// sets the sampler from generation_config.json and the flags, and creates the generator
// with its KV cache. print_settings then says what was loaded.
void generate_open(const GenerateArgs* a, Model* model, Text** text, Generator* g, Sampler* sampler,
                   StopTokens* stop) {
#ifdef _OPENMP
    if (a->threads > 0) omp_set_num_threads(a->threads);
#endif
    WeightFormat format = decode_format(a);
    if (a->merge_adapter && (format == WEIGHT_INT8 || format == WEIGHT_NF4)) {
        fail("--merge_adapter with %s decode weights: a quantised base cannot take the merge; drop --merge_adapter "
             "(the adapter is applied unmerged), or give --weights f32 or bf16 to merge it into the unquantised base",
             WEIGHT_FORMAT_NAMES[format]);
    }
    model_load_as(model, a->model_dir, format);
    LlamaConfig* c = &model->config;
    *text = text_open(a->model_dir, a->template_name, a->date, a->ids == NULL, c->V);
    if (*text) (*text)->options.parse_special_in_content = a->parse_special_in_content;
    if (a->adapter_dir) {
        lora_load_adapter(model, a->adapter_dir, 0);
        matmul_init();
        if (a->merge_adapter) model_merge_lora(model);
    }
    int context = a->context ? a->context : (c->max_seq_len < 4096 ? c->max_seq_len : 4096);
    if (context > c->max_seq_len) fail("--context %d is longer than the model's max_position_embeddings (%d)",
                                       context, c->max_seq_len);
    read_generation_defaults(model, a->model_dir, *text ? &(*text)->tokenizer : NULL, stop, sampler);
    if (!isnan(a->temperature)) sampler->temperature = a->temperature;
    if (!isnan(a->top_p)) sampler->top_p = a->top_p;
    if (a->top_k >= 0) sampler->top_k = a->top_k;
    if (!isnan(a->repetition_penalty)) sampler->repetition_penalty = a->repetition_penalty;
    sampler_init(sampler, c->V, a->seed);
    // --dump_logits writes every prompt position's logits, which only the prefill keeps
    generator_create(g, model, context, a->dump_logits || context < GENERATOR_PREFILL ? context : GENERATOR_PREFILL);
}

void print_settings(const GenerateArgs* a, const Generator* g, const Sampler* s) {
    const LlamaConfig* c = &g->model->config;
    fprintf(stderr, "model %s%s%s: %d layers, hidden %d, vocab %d, decode weights %s | context %d | "
                    "temperature %g top_p %g top_k %d repetition_penalty %g seed %llu\n",
            a->model_dir, a->adapter_dir ? (a->merge_adapter ? " + merged adapter " : " + adapter ") : "",
            a->adapter_dir ? a->adapter_dir : "", c->L, c->C, c->V, WEIGHT_FORMAT_NAMES[g->weights.format], g->maxT,
            s->temperature, s->top_p, s->top_k, s->repetition_penalty, (unsigned long long)a->seed);
}

#ifndef TRAIN_NO_MAIN  // the chat loop and main; tests include everything above

// ----------------------------------------------------------------------------
// chat: read a line, render the whole conversation with the training template, forward
// what the cache does not already hold, stream the answer. Works with stdin not a
// terminal. Commands: /reset starts over (keeping --system), /quit or end of input exits.

// Drops the oldest user/assistant exchange (a system message stays). 0 if none is left
// to drop besides the current user message.
static int conversation_drop_oldest(Conversation* c) {
    int first = c->count > 0 && strcmp(c->messages[0].role, "system") == 0 ? 1 : 0;
    if (c->count - first < 3) return 0;
    int drop = strcmp(c->messages[first + 1].role, "assistant") == 0 ? 2 : 1;
    for (int i = first; i < first + drop; i++) {
        free(c->messages[i].role);
        free(c->messages[i].content);
    }
    memmove(c->messages + first, c->messages + first + drop, (c->count - first - drop) * sizeof(Message));
    c->count -= drop;
    return 1;
}

static void conversation_clear(Conversation* c) {
    for (int i = 0; i < c->count; i++) {
        free(c->messages[i].role);
        free(c->messages[i].content);
    }
    c->count = 0;
}

// One line of stdin of any length, without its newline; NULL at end of input.
static char* read_line(FILE* f) {
    size_t capacity = 256, n = 0;
    char* line = malloc_check(capacity, "input line");
    int ch;
    while ((ch = fgetc(f)) != EOF && ch != '\n') {
        if (n + 1 == capacity) {
            capacity *= 2;
            char* grown = realloc(line, capacity);
            if (grown == NULL) fail("out of memory reading a line of input");
            line = grown;
        }
        line[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) { free(line); return NULL; }
    if (n > 0 && line[n - 1] == '\r') n--;
    line[n] = '\0';
    return line;
}

static void chat_loop(Generator* g, Sampler* s, const StopTokens* stop, Text* text, const GenerateArgs* a) {
    Conversation conv = {0};
    if (a->system) conversation_add(&conv, "system", a->system);
    int* out = malloc_check((size_t)a->max_new_tokens * sizeof(int), "answer");
    int interactive = isatty(fileno(stdin));
    for (;;) {
        if (interactive) { fprintf(stderr, "> "); fflush(stderr); }
        char* line = read_line(stdin);
        if (line == NULL || strcmp(line, "/quit") == 0) { free(line); break; }
        if (strcmp(line, "/reset") == 0) {
            conversation_clear(&conv);
            if (a->system) conversation_add(&conv, "system", a->system);
            fprintf(stderr, "[conversation reset]\n");
            free(line);
            continue;
        }
        conversation_add(&conv, "user", line);
        free(line);
        int* ids = NULL;
        int n = text_render_chat(text, conv.messages, conv.count, &ids);
        while (n >= g->maxT && conversation_drop_oldest(&conv)) {  // room for at least one new token
            free(ids);
            n = text_render_chat(text, conv.messages, conv.count, &ids);
            fprintf(stderr, "[context of %d tokens full: dropped the oldest turn]\n", g->maxT);
        }
        if (n >= g->maxT) {
            fprintf(stderr, "[this message alone needs %d tokens but the context holds %d; "
                            "shorten it, /reset, or raise --context]\n", n, g->maxT);
            conv.count--;
            free(conv.messages[conv.count].role);
            free(conv.messages[conv.count].content);
            free(ids);
            continue;
        }
        Timing t = {0};
        double t0 = wall_seconds();
        t.prefill_tokens = generator_extend(g, ids, n);
        t.prefill_seconds = wall_seconds() - t0;
        int n_out;
        StopReason reason = generate_tokens(g, s, stop, a->max_new_tokens, text, stdout, out, &n_out, &t);
        char* answer = NULL;
        text_stream_end(text, stdout, &answer);
        printf("\n");
        fflush(stdout);
        print_stop_and_timing(reason, out, n_out, a->max_new_tokens, g, &t);
        conversation_add(&conv, "assistant", answer ? answer : "");
        if (a->dump_ids) append_ids_line(a->dump_ids, ids, n, out, n_out);  // one line per turn
        free(answer);
        free(ids);
    }
    free(out);
}

// --prompts FILE: every non-empty line is its own one-turn conversation; prints one line
// per prompt, the answer with its newlines written as \n, so answers line up with prompts.
static void answer_prompts(Generator* g, Sampler* s, const StopTokens* stop, Text* text, const GenerateArgs* a) {
    FILE* f = fopen(a->prompts_file, "r");
    if (f == NULL) fail("cannot read %s: %s", a->prompts_file, strerror(errno));
    int* out = malloc_check((size_t)a->max_new_tokens * sizeof(int), "answer");
    char* line;
    while ((line = read_line(f)) != NULL) {
        if (*line == '\0') { free(line); continue; }
        Conversation conv = {0};
        if (a->system) conversation_add(&conv, "system", a->system);
        conversation_add(&conv, "user", line);
        int* ids = NULL;
        int n = text_render_chat(text, conv.messages, conv.count, &ids);
        if (n >= g->maxT) fail("%s: the prompt '%.40s...' needs %d tokens but the context holds %d; raise --context",
                               a->prompts_file, line, n, g->maxT);
        Timing t = {0};
        t.prefill_tokens = generator_extend(g, ids, n);
        char* streamed = NULL;
        size_t streamed_len = 0;
        FILE* sink = open_memstream(&streamed, &streamed_len);
        if (sink == NULL) fail("out of memory");
        int n_out;
        generate_tokens(g, s, stop, a->max_new_tokens, text, sink, out, &n_out, &t);
        char* answer = NULL;
        text_stream_end(text, sink, &answer);
        fclose(sink);
        for (const char* c = answer; *c; c++) {
            if (*c == '\n') fputs("\\n", stdout);
            else if (*c != '\r') fputc(*c, stdout);
        }
        printf("\n");
        fflush(stdout);
        if (a->dump_ids) append_ids_line(a->dump_ids, ids, n, out, n_out);
        free(streamed);
        free(answer);
        free(ids);
        free(line);
        conversation_clear(&conv);
    }
    fclose(f);
    free(out);
}

// ----------------------------------------------------------------------------
// main

static void parse_generate_args(GenerateArgs* a, int argc, char** argv) {
    flags_parse(&GENERATE_FLAG_TABLE, a, argc, argv, 1, NULL);
    if (a->model_dir == NULL) fail("--model DIR is required (a Hugging Face model directory); "
                                   "./generate --help lists every flag");
    if ((a->ids != NULL) + (a->prompt != NULL) + (a->prompts_file != NULL) + a->chat != 1) {
        fail("give exactly one of --ids LIST, --prompt TEXT, --prompts FILE or --chat");
    }
    if (a->merge_adapter && a->adapter_dir == NULL) fail("--merge_adapter needs --adapter DIR");
    const char* formats[] = {"auto", "f32", "bf16", "int8", "nf4"};
    int known = 0;
    for (int f = 0; f < 5; f++) known |= strcmp(a->weights, formats[f]) == 0;
    if (!known) fail("--weights must be auto, f32, bf16, int8 or nf4, got '%s'", a->weights);

    if (a->dump_logits && (a->chat || a->prompts_file)) fail("--dump_logits writes the logits of one prompt; "
                                                             "use it with --ids or --prompt");
}

// "1,2,3" -> ids (malloc'd); returns the count.
static int parse_ids(const char* list, int V, int** ids) {
    int n = 1;
    for (const char* p = list; *p; p++) n += *p == ',';
    *ids = malloc_check(n * sizeof(int), "prompt ids");
    const char* p = list;
    for (int i = 0; i < n; i++) {
        char* end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || (*end != ',' && *end != '\0')) fail("--ids: '%s' is not a comma-separated "
                                                                          "list of token ids", list);
        if (v < 0 || v >= V) fail("--ids: token id %ld is outside the model's vocabulary [0, %d)", v, V);
        (*ids)[i] = (int)v;
        p = end + 1;
    }
    return n;
}

int main(int argc, char** argv) {
    threads_init(argv);
    GenerateArgs a;
    parse_generate_args(&a, argc, argv);
    Model model;
    Text* text;
    Generator g;
    Sampler sampler;
    StopTokens stop;
    generate_open(&a, &model, &text, &g, &sampler, &stop);
    LlamaConfig* c = &model.config;

    int* prompt = NULL;
    int n = 0;
    if (a.ids) n = parse_ids(a.ids, c->V, &prompt);
    if (a.prompt) {
        Conversation conv = {0};
        if (a.system) conversation_add(&conv, "system", a.system);
        conversation_add(&conv, "user", a.prompt);
        n = text_render_chat(text, conv.messages, conv.count, &prompt);
    }
    if (n > g.maxT) {
        fail("the prompt has %d tokens but the context holds %d; "
             "shorten it or raise --context (at most %d, max_position_embeddings)",
             n, g.maxT, c->max_seq_len);
    }
    print_settings(&a, &g, &sampler);
    if (a.chat) {
        chat_loop(&g, &sampler, &stop, text, &a);
        return 0;
    }
    if (a.prompts_file) {
        answer_prompts(&g, &sampler, &stop, text, &a);
        return 0;
    }
    Timing t = {0};
    double t0 = wall_seconds();
    t.prefill_tokens = generator_extend(&g, prompt, n);
    t.prefill_seconds = wall_seconds() - t0;
    if (a.dump_logits) dump_logits(&model, n, a.dump_logits);
    int* out = malloc_check((size_t)a.max_new_tokens * sizeof(int), "output");
    int n_out;
    Text* output_text = a.ids ? NULL : text;  // --ids prints ids
    StopReason reason = generate_tokens(&g, &sampler, &stop, a.max_new_tokens, output_text, stdout, out, &n_out, &t);
    if (output_text) text_stream_end(output_text, stdout, NULL);
    printf("\n");
    fflush(stdout);  // the answer's line ends before the stop line on stderr
    print_stop_and_timing(reason, out, n_out, a.max_new_tokens, &g, &t);
    if (a.dump_ids) append_ids_line(a.dump_ids, prompt, n, out, n_out);
    return 0;
}
#endif
