/*
train.c: fine-tune a Llama model on the CPU.

Reads a Hugging Face model directory (config.json + safetensors) directly, runs the
Llama forward and backward pass in fp32 (against a frozen base held in fp32, bf16, int8 or NF4),
trains LoRA adapters (or every weight, with --full_finetune) with AdamW, and writes PEFT
adapters and merged models.

This file is the math and the training loop; the plumbing is in llmc/ (each #include
below says what it brings). Read top to bottom:
  layers       each a forward/backward pair: embedding, RMSNorm, RoPE, attention, SwiGLU,
               cross-entropy (the matmuls are llmc/matmul.h's linear_*)
  LoRA         y += s (dropout(x) A^T) B^T, its backward, merging
  the model    PARAMETERS (the one table of weights), LoRA tensors, activations, Model
  forward and backward of the whole model, a list of layer calls
  optimizer    gradient-norm clipping and AdamW
  ModelOps     the seam the training loop calls the model through (CPU here, GPU in train_gpu.c)
  files        llmc/hf.h and llmc/checkpoint.h, included after the Model they work on
  command line TrainArgs and the flag table
  main         train_main: set-up, then train_step, log_step, save_outputs per step, finish;
               as one of several ranks (train_mpi, llmc/distributed.h) each step's share and rank 0's files

Shape letters used everywhere:
  B batch, T time (sequence), N = B*T tokens, C hidden size, NH query heads,
  NKV key/value heads, hs head size, I MLP intermediate size, V vocabulary,
  L layers, r LoRA rank.
*/
#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cjson/cJSON.h>
#include "tokenizer.h"         // defines: Tokenizer, tokenizer_load, tokenizer_encode, chat templates
#include "llmc/utils.h"        // defines: fail, malloc_check, path_join, read_file, FileWriter, make_directory
#include "llmc/matmul.h"       // defines: matmul_init, Weight (fp32, bf16, int8, NF4), linear_forward,
                               //          linear_backward_input, linear_backward_weight
#include "llmc/safetensors.h"  // defines: SafeTensors (reader), SafeTensorsWriter
#include "llmc/config.h"       // defines: LlamaConfig, config_load, rope_table
#include "llmc/dataloader.h"   // defines: Dataset, Examples, examples_load, DataLoader, Batch, dataloader_next
#include "llmc/run.h"          // defines: learning_rate_at, LossHistory, write_loss_svg, format_duration
#include "llmc/flags.h"        // defines: Flag, FlagTable, flags_parse, flags_usage
#include "llmc/samples.h"      // defines: compare_answers (base vs fine-tuned answers through ./generate)
#include "llmc/threads.h"      // defines: threads_init (a short OpenMP spin, for busy machines)
#include "llmc/distributed.h"  // defines: dist_init, dist_rank, dist_size, dist_sum_floats, dist_agree (train_mpi)

// ----------------------------------------------------------------------------
// layers: each a forward/backward pair of plain functions

// x (N,C) = wte[tokens], wte (V,C) in its storage format
void embedding_forward(float* x, const int* tokens, Weight wte, int N, int C) {
    #pragma omp parallel for schedule(static) if (N > 1)  // one row (decoding) is not worth waking the threads
    for (int n = 0; n < N; n++) weight_dequantize(x + (size_t)n * C, wte, (size_t)tokens[n] * C, C);
}

// dwte (V,C) += scatter of dx (N,C). Threads split the channels, so every row is
// summed in token order whatever the thread count.
void embedding_backward(float* dwte, const float* dx, const int* tokens, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 64) {
        int c1 = c0 + 64 < C ? c0 + 64 : C;
        for (int n = 0; n < N; n++) {
            float* row = dwte + (size_t)tokens[n] * C;
            const float* d = dx + (size_t)n * C;
            for (int c = c0; c < c1; c++) row[c] += d[c];
        }
    }
}

// y (N,C) = x * rstd * w, rstd (N) = 1/sqrt(mean(x^2) + eps)
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) {
    #pragma omp parallel for schedule(static) if (N > 1)
    for (int n = 0; n < N; n++) {
        const float* xn = x + (size_t)n * C;
        float* yn = y + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += xn[c] * xn[c];
        float r = 1.0f / sqrtf(ss / C + eps);
        for (int c = 0; c < C; c++) yn[c] = xn[c] * r * w[c];
        rstd[n] = r;
    }
}

// dx (N,C) += r * w*dy - x * r^3/C * sum(x * w*dy);  dw (C) += sum_n dy * x * r  (if dw)
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                      const float* rstd, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* xn = x + (size_t)n * C;
        const float* dyn = dy + (size_t)n * C;
        float* dxn = dx + (size_t)n * C;
        float r = rstd[n];
        float dot = 0.0f;
        for (int c = 0; c < C; c++) dot += xn[c] * w[c] * dyn[c];
        float k = dot * r * r * r / C;
        for (int c = 0; c < C; c++) dxn[c] += r * w[c] * dyn[c] - k * xn[c];
    }
    if (dw == NULL) return;
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 64) {
        int c1 = c0 + 64 < C ? c0 + 64 : C;
        for (int n = 0; n < N; n++) {
            const float* xn = x + (size_t)n * C;
            const float* dyn = dy + (size_t)n * C;
            for (int c = c0; c < c1; c++) dw[c] += dyn[c] * xn[c] * rstd[n];
        }
    }
}

// Rotate-half RoPE in place on x (N, nh, hs): pairs (i, i + hs/2) rotate by angle
// pos * inv_freq[i]. cos_sin (T, hs/2, 2) holds the table for positions 0..T-1.
void rope_forward(float* x, const int* pos, const float* cos_sin, int N, int nh, int hs) {
    int half = hs / 2;
    #pragma omp parallel for schedule(static) if (N > 1)
    for (int n = 0; n < N; n++) {
        const float* cs = cos_sin + (size_t)pos[n] * half * 2;
        for (int h = 0; h < nh; h++) {
            float* v = x + ((size_t)n * nh + h) * hs;
            for (int i = 0; i < half; i++) {
                float c = cs[2 * i], s = cs[2 * i + 1];
                float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
}

// The rotation is orthogonal, so the gradient rotates back by -angle (in place on dx).
void rope_backward(float* dx, const int* pos, const float* cos_sin, int N, int nh, int hs) {
    int half = hs / 2;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* cs = cos_sin + (size_t)pos[n] * half * 2;
        for (int h = 0; h < nh; h++) {
            float* v = dx + ((size_t)n * nh + h) * hs;
            for (int i = 0; i < half; i++) {
                float c = cs[2 * i], s = cs[2 * i + 1];
                float a = v[i], b = v[i + half];
                v[i] = a * c + b * s;
                v[i + half] = b * c - a * s;
            }
        }
    }
}

// Sums over a row go in SUM_LANES interleaved partial sums, which the compiler keeps in one
// vector register (a plain running sum cannot be vectorised without reordering it), then
// the lanes in order: a fixed summation order, whatever the thread count.
enum { SUM_LANES = 16 };

static float lanes_sum(const float lanes[SUM_LANES]) {
    float sum = 0.0f;
    for (int j = 0; j < SUM_LANES; j++) sum += lanes[j];
    return sum;
}

// SUM_LANES floats as one value (a GCC/Clang vector: one AVX-512 register, two AVX2 ones),
// for loops that keep several running sums at once, which plain arrays would leave in
// memory. A part of w < SUM_LANES floats (a row's end) loads zero-filled; loops call their
// body with w = SUM_LANES, a constant, for the whole parts, so those are single loads.
typedef float Lanes __attribute__((vector_size(SUM_LANES * sizeof(float))));
// Builds without AVX-512 (the sanitizer builds) warn that returning a Lanes has no fixed
// ABI there; these functions are static and inlined, so no ABI is crossed.
#pragma GCC diagnostic ignored "-Wpsabi"

static inline Lanes load_lanes(const float* p, int w) {
    Lanes v = {0};
    memcpy(&v, p, (size_t)w * sizeof(float));
    return v;
}
static inline void store_lanes(float* p, const Lanes* v, int w) { memcpy(p, v, (size_t)w * sizeof(float)); }

// a . b
static float dot_product(const float* a, const float* b, int n) {
    float lanes[SUM_LANES] = {0};
    int i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
        for (int j = 0; j < SUM_LANES; j++) lanes[j] += a[i + j] * b[i + j];
    }
    float sum = lanes_sum(lanes);
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

// e^x in a form the compiler vectorises (libm's expf is one call per element):
// x log2(e) = n + f with n an integer (rounded by the 1.5 * 2^23 trick) and |f| <= 1/2,
// e^x = 2^n 2^f, 2^f from its degree-6 Taylor polynomial. Relative error below 5e-7
// for -20 < x < 0, 1.4e-6 elsewhere; x below -87 gives at most 2e-38 instead of ~0, x
// above 88 at most 2.4e38 instead of infinity.
// Defined for every float: |x| is clamped to 2.9e6, where |x log2(e)| < 2^22 and the
// trick rounds exactly, and n is read from t's bits, not converted (a float-to-int
// conversion of NaN or of a huge value is undefined behaviour). NaN and +-infinity give
// NaN: they only come from values that have already overflowed. The clamp works on the
// bits (an integer min) because a float comparison here made GCC split the callers'
// loops and fuse their arithmetic differently, changing results; as it is, no result
// for |x| <= 2.9e6 differs from the unclamped form's, bit for bit.
static inline float fast_exp(float x) {
    uint32_t x_bits;
    memcpy(&x_bits, &x, 4);
    uint32_t magnitude = x_bits & 0x7FFFFFFFu;
    magnitude = magnitude < 0x4A310080u ? magnitude : 0x4A310080u;  // 2.9e6f
    x_bits = (x_bits & 0x80000000u) | magnitude;
    float clamped;
    memcpy(&clamped, &x_bits, 4);
    x = clamped + (x - x);  // x - x: 0, or NaN for NaN and +-infinity
    float y = x * 1.44269504f;
    float t = y + 12582912.0f;  // 1.5 * 2^23 + n: n in the mantissa's low bits
    float n = t - 12582912.0f;
    float f = (y - n) * 0.693147181f;
    float p = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120 + f * (1.0f / 720))))));
    uint32_t t_bits;
    memcpy(&t_bits, &t, 4);
    int32_t e = (int32_t)(t_bits - 0x4B400000u);  // t's bits minus 1.5 * 2^23's: n
    e = e < -126 ? -126 : e > 127 ? 127 : e;
    union { int32_t i; float f; } two_n = {.i = (e + 127) << 23};
    return p * two_n.f;
}

// max of z (n), and lanes[j] = sum of exp(z[i] - max) over i = j mod SUM_LANES; with `exps`
// the exponentials are also written there (exps may be z itself)
static float row_exp_sums(const float* z, float* exps, int n, float lanes[SUM_LANES]) {
    float maxes[SUM_LANES];
    for (int j = 0; j < SUM_LANES; j++) maxes[j] = -INFINITY;
    int i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
        for (int j = 0; j < SUM_LANES; j++) maxes[j] = z[i + j] > maxes[j] ? z[i + j] : maxes[j];
    }
    for (; i < n; i++) maxes[0] = z[i] > maxes[0] ? z[i] : maxes[0];
    float maxv = -INFINITY;
    for (int j = 0; j < SUM_LANES; j++) maxv = maxes[j] > maxv ? maxes[j] : maxv;
    for (int j = 0; j < SUM_LANES; j++) lanes[j] = 0.0f;
    for (i = 0; i + SUM_LANES <= n; i += SUM_LANES) {
        for (int j = 0; j < SUM_LANES; j++) {
            float e = fast_exp(z[i + j] - maxv);
            if (exps) exps[i + j] = e;
            lanes[j] += e;
        }
    }
    for (; i < n; i++) {
        float e = fast_exp(z[i] - maxv);
        if (exps) exps[i] = e;
        lanes[i % SUM_LANES] += e;
    }
    return maxv;
}

// Row p (n) of raw scores -> probabilities in place: softmax of scale * p[lo..hi], 0 outside
// (keys the query may not see). Returns the log-sum-exp of the scaled scores.
static float masked_softmax_row(float* p, int lo, int hi, int n, float scale) {
    for (int s = lo; s <= hi; s++) p[s] *= scale;
    float lanes[SUM_LANES];
    float maxv = row_exp_sums(p + lo, p + lo, hi - lo + 1, lanes);
    float sum = lanes_sum(lanes);
    for (int s = lo; s <= hi; s++) p[s] /= sum;
    for (int s = 0; s < lo; s++) p[s] = 0.0f;
    for (int s = hi + 1; s < n; s++) p[s] = 0.0f;
    return maxv + logf(sum);
}

// Causal grouped-query attention. q (B,T,NH,hs), k and v (B,T,NKV,hs), out (B,T,NH,hs),
// lse (B,NH,T) = log-sum-exp of each query's scaled scores, kept so the backward can
// recompute the probabilities instead of storing (B,NH,T,T) of them.
// Query t sees keys s with t - pos[t] <= s <= t: positions restart at 0 for each
// sequence packed into a row, so packed sequences never see each other.
// Per (b, head), queries go in blocks of ATT_BLOCK: queries t0..t1-1 together see keys
// k0..t1-1 (k0: the first query's sequence start), so a block is two matmuls,
//   S (nq,nk) = Q_blk (nq,hs) @ K_keys^T,  P = masked softmax of scale * S,  O_blk = P @ V_keys,
// with the keys a query may not see at probability 0.
// scratch (attention_scratch_size floats): one (ATT_BLOCK, T) block of scores per (b, head)
// and two per (b, kv head) in the backward, so results do not depend on the thread count.
// bf16 (with a bf16 base, as Hugging Face's bf16 attention): every matmul's two operands are
// rounded to bf16 and their products summed in fp32; the softmax stays fp32.
#define ATT_BLOCK 96  // queries per block: whole micro-tiles of rows (12 with AVX-512, 6 with AVX2)
size_t attention_scratch_size(int B, int T, int NH, int NKV) {
    size_t slots = NH > 2 * NKV ? NH : 2 * NKV;
    return (size_t)B * slots * ATT_BLOCK * T;
}

void attention_forward(float* out, float* lse, float* scratch, const float* q, const float* k,
                       const float* v, const int* pos, int B, int T, int NH, int NKV, int hs, int bf16) {
    float scale = 1.0f / sqrtf((float)hs);
    int group = NH / NKV, slots = NH > 2 * NKV ? NH : 2 * NKV, q_rs = NH * hs, kv_rs = NKV * hs;
    #pragma omp parallel for collapse(2) schedule(static) num_threads(matmul_threads())
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float* S = scratch + ((size_t)b * slots + h) * ATT_BLOCK * T;  // (nq, nk)
            const float* k_h = k + (size_t)b * T * kv_rs + (h / group) * hs;  // key s: k_h + s * kv_rs
            const float* v_h = v + (size_t)b * T * kv_rs + (h / group) * hs;
            for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
                int nq = T - t0 < ATT_BLOCK ? T - t0 : ATT_BLOCK;
                int k0 = t0 - pos[b * T + t0], nk = t0 + nq - k0;
                const float* q_blk = q + ((size_t)b * T + t0) * q_rs + h * hs;
                matmul_serial(S, q_blk, k_h + (size_t)k0 * kv_rs, nq, nk, hs, q_rs, 1, 1, kv_rs, nk, 0, bf16);
                for (int i = 0; i < nq; i++) {
                    int t = t0 + i;
                    lse[((size_t)b * NH + h) * T + t] =
                        masked_softmax_row(S + (size_t)i * nk, t - pos[b * T + t] - k0, t - k0, nk, scale);
                }
                matmul_serial(out + ((size_t)b * T + t0) * q_rs + h * hs, S, v_h + (size_t)k0 * kv_rs, nq, hs, nk,
                              nk, 1, kv_rs, 1, q_rs, 0, bf16);
            }
        }
    }
}

// With P the probabilities and dO the output gradient, per query t:
//   dP_s = dO_t . v_s,  dS_s = P_s (dP_s - dO_t . O_t),
//   dq_t = scale sum_s dS_s k_s,  dk_s += scale dS_s q_t,  dv_s += P_s dO_t.
// Block by block as in the forward: P recomputed from S and lse, then
//   dP = dO_blk @ V_keys^T,  dQ_blk = scale dS @ K_keys,  dK_keys += scale dS^T @ Q_blk,  dV_keys += P^T @ dO_blk
// (scale folded into dS). Each thread owns one (b, kv head) so dk and dv are summed in a
// fixed order. dq, dk, dv are overwritten; scratch as in attention_forward.
void attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                        const float* out, const float* lse, const float* q, const float* k,
                        const float* v, const int* pos, int B, int T, int NH, int NKV, int hs, int bf16) {
    float scale = 1.0f / sqrtf((float)hs);
    int group = NH / NKV, slots = NH > 2 * NKV ? NH : 2 * NKV, q_rs = NH * hs, kv_rs = NKV * hs;
    #pragma omp parallel for collapse(2) schedule(static) num_threads(matmul_threads())
    for (int b = 0; b < B; b++) {
        for (int kvh = 0; kvh < NKV; kvh++) {
            float* P = scratch + ((size_t)b * slots + 2 * kvh) * ATT_BLOCK * T;  // (nq, nk)
            float* dS = P + (size_t)ATT_BLOCK * T;                                 // (nq, nk)
            size_t kv0 = (size_t)b * T * kv_rs + kvh * hs;  // key s of this head: kv0 + s * kv_rs
            for (int s = 0; s < T; s++) {
                memset(dk + kv0 + (size_t)s * kv_rs, 0, hs * sizeof(float));
                memset(dv + kv0 + (size_t)s * kv_rs, 0, hs * sizeof(float));
            }
            for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
                    int nq = T - t0 < ATT_BLOCK ? T - t0 : ATT_BLOCK;
                    int k0 = t0 - pos[b * T + t0], nk = t0 + nq - k0;
                    size_t q0 = ((size_t)b * T + t0) * q_rs + h * hs, keys = kv0 + (size_t)k0 * kv_rs;
                    matmul_serial(P, q + q0, k + keys, nq, nk, hs, q_rs, 1, 1, kv_rs, nk, 0, bf16);
                    matmul_serial(dS, dout + q0, v + keys, nq, nk, hs, q_rs, 1, 1, kv_rs, nk, 0, bf16);
                    for (int i = 0; i < nq; i++) {
                        int t = t0 + i, lo = t - pos[b * T + t] - k0, hi = t - k0;
                        float* p = P + (size_t)i * nk;
                        float* ds = dS + (size_t)i * nk;
                        float row_lse = lse[((size_t)b * NH + h) * T + t];
                        float D = dot_product(dout + q0 + (size_t)i * q_rs, out + q0 + (size_t)i * q_rs, hs);
                        for (int s = 0; s < nk; s++) {
                            p[s] = s >= lo && s <= hi ? fast_exp(scale * p[s] - row_lse) : 0.0f;
                            ds[s] = p[s] * (ds[s] - D) * scale;
                        }
                    }
                    matmul_serial(dq + q0, dS, k + keys, nq, hs, nk, nk, 1, kv_rs, 1, q_rs, 0, bf16);
                    matmul_serial(dk + keys, dS, q + q0, nk, hs, nq, 1, nk, q_rs, 1, kv_rs, 1, bf16);
                    matmul_serial(dv + keys, P, dout + q0, nk, hs, nq, 1, nk, q_rs, 1, kv_rs, 1, bf16);
                }
            }
        }
    }
}

// SwiGLU: out (N,I) = silu(gate) * up, silu(g) = g * sigmoid(g)
void swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
    #pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + fast_exp(-g)) * up[i];
    }
}

// dgate = dout * up * sigmoid(g) (1 + g (1 - sigmoid(g))),  dup = dout * silu(g)
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + fast_exp(-g));
        dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        dup[i] = dout[i] * g * sig;
    }
}

// Cross-entropy per token n with an unmasked target (>= 0), from its logits row z (V):
//   loss = logsumexp(z) - z[target],  dz = (softmax(z) - onehot(target)) * dloss,
// with the row's sums in lanes (row_exp_sums).

// losses (N): each token's loss, 0 where the target is masked. Returns the unmasked tokens.
int crossentropy_forward(float* losses, const float* logits, const int* targets, int N, int V) {
    int count = 0;
    #pragma omp parallel for schedule(static) reduction(+:count)
    for (int n = 0; n < N; n++) {
        losses[n] = 0.0f;
        if (targets[n] < 0) continue;
        const float* row = logits + (size_t)n * V;
        float lanes[SUM_LANES];
        float maxv = row_exp_sums(row, NULL, V, lanes);
        losses[n] = maxv + logf(lanes_sum(lanes)) - row[targets[n]];
        count++;
    }
    return count;
}

// In place: logits (N,V) become dlogits, zero for masked tokens; dloss = 1 / (unmasked tokens
// in the whole optimizer step), or 1 for the gradient scaled later. With `losses` (N), the
// losses of crossentropy_forward too, bit for bit, taken on the way (one pass fewer).
// Returns the unmasked tokens.
int crossentropy_backward(float* logits, float* losses, const int* targets, int N, int V, float dloss) {
    int count = 0;
    #pragma omp parallel for schedule(static) reduction(+:count)
    for (int n = 0; n < N; n++) {
        float* row = logits + (size_t)n * V;
        if (losses) losses[n] = 0.0f;
        if (targets[n] < 0) {
            memset(row, 0, V * sizeof(float));
            continue;
        }
        float target_logit = row[targets[n]], lanes[SUM_LANES];
        float maxv = row_exp_sums(row, row, V, lanes);
        float sum = lanes_sum(lanes);
        if (losses) losses[n] = maxv + logf(sum) - target_logit;
        float norm = dloss / sum;
        for (int i = 0; i < V; i++) row[i] *= norm;
        row[targets[n]] -= dloss;
        count++;
    }
    return count;
}

// ----------------------------------------------------------------------------
// LoRA: y += s * (dropout(x) A^T) B^T, A (r,in), B (out,r), s = alpha/r (rsLoRA: alpha/sqrt(r)).
// Dropout is a pure function of (seed, step, layer, module, element): the backward
// regenerates the same mask instead of storing it, and a test can reproduce it exactly.

// key for one (seed, step, layer, module): stream = (step * L + layer) * 7 + module
static uint32_t dropout_key(uint32_t seed, long step, int layer, int n_layers, int module) {
    uint32_t stream = (uint32_t)((step * n_layers + layer) * 7 + module);
    return mix32(seed ^ mix32(stream));
}

// element e is kept iff mix32(key ^ mix32(e)) / 2^32 >= p (top 24 bits)
static inline int dropout_keep(uint32_t key, uint32_t e, float p) {
    return (float)(mix32(key ^ mix32(e)) >> 8) * (1.0f / 16777216.0f) >= p;
}

// out (n) = x * keep / (1-p); x[i] is element first + i of the step's input, so a batch
// split into micro-batches drops the same elements. The LoRA loops below make the same
// scales inline (dropout_scales); the tests check them, and the GPU's mask, against this.
void dropout_apply(float* out, const float* x, size_t n, float p, uint32_t key, uint32_t first) {
    float keep_scale = 1.0f / (1.0f - p);
    for (size_t e = 0; e < n; e++) out[e] = dropout_keep(key, first + (uint32_t)e, p) ? x[e] * keep_scale : 0.0f;
}

// The adapter's thin products with x go over x once, SUM_LANES columns at a time, with the
// sums of up to LORA_RANKS ranks in registers (all of them at the usual ranks 4, 8); each
// element's dropout mask is made when it is read (once a group of LORA_RANKS ranks), never stored.
enum { LORA_RANKS = 8 };

// keep / (1-p) or 0 for the SUM_LANES elements first, first+1, ... of the step's input
static inline Lanes dropout_scales(uint32_t key, uint32_t first, float p) {
    float keep_scale = 1.0f / (1.0f - p), scales[SUM_LANES];
    for (int i = 0; i < SUM_LANES; i++) {
        scales[i] = p == 0.0f || dropout_keep(key, first + (uint32_t)i, p) ? keep_scale : 0.0f;
    }
    return load_lanes(scales, SUM_LANES);
}

// sums[j] += dropout(x)[i0:i0+w] * A[j][i0:i0+w] for the ranks < LORA_RANKS of a group
// (x, A at column i0 of a row, of the group's first rank; e: x's element number)
static inline void lora_forward_part(Lanes sums[LORA_RANKS], const float* x, const float* A, int in, int ranks,
                                     int w, float p, uint32_t key, uint32_t e) {
    Lanes xd = load_lanes(x, w) * dropout_scales(key, e, p);
    for (int j = 0; j < LORA_RANKS; j++) {
        if (j < ranks) sums[j] += xd * load_lanes(A + (size_t)j * in, w);
    }
}

// xa (N,r) = dropout(x) @ A^T, a row per thread at a time
static void lora_forward_down(float* xa, const float* x, const float* A, int N, int in, int r, float p,
                              uint32_t key, uint32_t first) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* xn = x + (size_t)n * in;
        uint32_t e = first + (uint32_t)n * (uint32_t)in;
        for (int g = 0; g < r; g += LORA_RANKS) {
            int ranks = r - g < LORA_RANKS ? r - g : LORA_RANKS, i0 = 0;
            const float* Ag = A + (size_t)g * in;
            Lanes sums[LORA_RANKS] = {{0}};
            for (; i0 + SUM_LANES <= in; i0 += SUM_LANES) {
                lora_forward_part(sums, xn + i0, Ag + i0, in, ranks, SUM_LANES, p, key, e + (uint32_t)i0);
            }
            if (i0 < in) lora_forward_part(sums, xn + i0, Ag + i0, in, ranks, in - i0, p, key, e + (uint32_t)i0);
            for (int j = 0; j < ranks; j++) {
                float lanes[SUM_LANES];
                store_lanes(lanes, &sums[j], SUM_LANES);
                xa[(size_t)n * r + g + j] = lanes_sum(lanes);
            }
        }
    }
}

// y (N,out) += s * xa @ B^T where xa (N,r) = dropout(x) @ A^T is kept for the backward;
// scaled (N,r) is scratch. x's first row is token first_token of the optimizer step (for
// the dropout mask).
void lora_forward(float* y, float* xa, float* scaled, const float* x, const float* A, const float* Bw, int N,
                  int in, int out, int r, float s, float p, uint32_t key, int first_token) {
    lora_forward_down(xa, x, A, N, in, r, p, key, (uint32_t)first_token * (uint32_t)in);
    for (size_t i = 0; i < (size_t)N * r; i++) scaled[i] = s * xa[i];
    linear_forward(y, scaled, weight_f32(Bw), N, r, out, 1);
}

// lora_backward_down on the w <= SUM_LANES columns at i0 and the ranks g.. g+ranks-1: the
// tokens walked in order, dA and A for these columns and ranks held in registers
static inline void lora_backward_strip(float* dx, float* dA, const float* dxa, const float* x, const float* A,
                                       int N, int in, int r, int i0, int w, int g, int ranks, float p,
                                       uint32_t key, uint32_t first) {
    Lanes dA_sums[LORA_RANKS] = {{0}}, A_lanes[LORA_RANKS] = {{0}};
    for (int j = 0; j < ranks; j++) {
        dA_sums[j] = load_lanes(dA + (size_t)(g + j) * in + i0, w);
        A_lanes[j] = load_lanes(A + (size_t)(g + j) * in + i0, w);
    }
    for (int n = 0; n < N; n++) {
        Lanes scale = dropout_scales(key, first + (uint32_t)n * (uint32_t)in + (uint32_t)i0, p);
        Lanes xd = load_lanes(x + (size_t)n * in + i0, w) * scale, dxd = {0};  // dropout(x), dxa A
        for (int j = 0; j < LORA_RANKS; j++) {
            float d = j < ranks ? dxa[(size_t)n * r + g + j] : 0.0f;
            dA_sums[j] += d * xd;
            dxd += d * A_lanes[j];
        }
        float* dxn = dx + (size_t)n * in + i0;
        Lanes updated = load_lanes(dxn, w) + dxd * scale;
        store_lanes(dxn, &updated, w);
    }
    for (int j = 0; j < ranks; j++) store_lanes(dA + (size_t)(g + j) * in + i0, &dA_sums[j], w);
}

// dA (r,in) += dxa^T dropout(x);  dx (N,in) += dropout(dxa A). A thread takes SUM_LANES
// columns at a time and walks the tokens down them, so dA's sums over the tokens run in
// order whatever the thread count.
static void lora_backward_down(float* dx, float* dA, const float* dxa, const float* x, const float* A, int N,
                               int in, int r, float p, uint32_t key, uint32_t first) {
    int strips = (in + SUM_LANES - 1) / SUM_LANES;
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < strips; s++) {
        int i0 = s * SUM_LANES, w = in - i0;
        for (int g = 0; g < r; g += LORA_RANKS) {
            int ranks = r - g < LORA_RANKS ? r - g : LORA_RANKS;
            if (w >= SUM_LANES) {
                lora_backward_strip(dx, dA, dxa, x, A, N, in, r, i0, SUM_LANES, g, ranks, p, key, first);
            } else {
                lora_backward_strip(dx, dA, dxa, x, A, N, in, r, i0, w, g, ranks, p, key, first);
            }
        }
    }
}

// dB (out,r) += dy^T (s xa);  dxa (N,r) = s dy B;  then dA and dx (lora_backward_down).
// dxa and scaled (N,r) are scratch.
void lora_backward(float* dx, float* dA, float* dB, float* dxa, float* scaled, const float* dy, const float* x,
                   const float* xa, const float* A, const float* Bw, int N, int in, int out, int r, float s, float p,
                   uint32_t key, int first_token) {
    for (size_t i = 0; i < (size_t)N * r; i++) scaled[i] = s * xa[i];
    linear_backward_weight(dB, dy, scaled, N, r, out);
    linear_backward_input(dxa, dy, weight_f32(Bw), N, r, out, 0);
    for (size_t i = 0; i < (size_t)N * r; i++) dxa[i] *= s;
    lora_backward_down(dx, dA, dxa, x, A, N, in, r, p, key, (uint32_t)first_token * (uint32_t)in);
}

// W (out,in) += s B (out,r) @ A (r,in): the adapter folded into its base weight, for merged
// models (train.c's --merge, generate.c's --merge_adapter). scaled_B (out,r) is scratch.
void lora_merge(float* W, const float* A, const float* B, float s, int in, int out, int r, float* scaled_B) {
    for (size_t e = 0; e < (size_t)out * r; e++) scaled_B[e] = s * B[e];
    matmul(W, scaled_B, A, out, in, r, r, 1, in, 1, in, 1);
}

// ----------------------------------------------------------------------------
// the model: parameters, LoRA adapters and activations, each in one allocation

typedef struct {
    float* wte;    // (V, C)       model.embed_tokens.weight
    float* ln1;    // (L, C)       input_layernorm
    float* wq;     // (L, NH*hs, C)
    float* wk;     // (L, NKV*hs, C)
    float* wv;     // (L, NKV*hs, C)
    float* wo;     // (L, C, NH*hs)
    float* ln2;    // (L, C)       post_attention_layernorm
    float* wgate;  // (L, I, C)
    float* wup;    // (L, I, C)
    float* wdown;  // (L, C, I)
    float* lnf;    // (C)          model.norm.weight
    float* wlm;    // (V, C)       lm_head.weight; empty when tied (wte is used)
} ParameterTensors;

// LoRA targets, in the order the dropout streams number them.
enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, NUM_LORA_MODULES, NO_LORA = -1 };
static const char* LORA_MODULE_NAMES[NUM_LORA_MODULES] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                          "gate_proj", "up_proj", "down_proj"};

// The sizes a shape is made of. DIM_V_UNTIED is V, or 0 when tie_word_embeddings makes
// lm_head the embedding matrix itself (then it is neither stored nor read).
typedef enum { DIM_NONE, DIM_V, DIM_V_UNTIED, DIM_C, DIM_Q, DIM_KV, DIM_I } Dim;

static int64_t dim_size(const LlamaConfig* c, Dim d) {
    switch (d) {
        case DIM_V: return c->V;
        case DIM_V_UNTIED: return c->tied ? 0 : c->V;
        case DIM_C: return c->C;
        case DIM_Q: return (int64_t)c->NH * c->hs;
        case DIM_KV: return (int64_t)c->NKV * c->hs;
        case DIM_I: return c->I;
        default: return 0;
    }
}

// The one table of parameter tensors, in the order they lie in memory. Everything that
// walks the parameters (carving memory, loading, saving, merging, weight decay, LoRA
// targets) reads it; adding a tensor is adding a row and its ParameterTensors field.
typedef struct {
    const char* name;  // Hugging Face name; %d is the layer
    size_t field;      // offsetof its pointer in ParameterTensors
    Dim rows, cols;    // one layer's shape, row-major (out, in); cols DIM_NONE: 1-D
    int per_layer;     // stacked (L, rows, cols)
    int decay;         // AdamW's weight decay applies (never to the RMSNorm weights)
    int lora;          // the LoRA module this linear weight is (LORA_Q...), or NO_LORA
} ParameterSpec;

#define FIELD(name) offsetof(ParameterTensors, name)
static const ParameterSpec PARAMETERS[] = {
    {"model.embed_tokens.weight", FIELD(wte), DIM_V, DIM_C, 0, 1, NO_LORA},
    {"model.layers.%d.input_layernorm.weight", FIELD(ln1), DIM_C, DIM_NONE, 1, 0, NO_LORA},
    {"model.layers.%d.self_attn.q_proj.weight", FIELD(wq), DIM_Q, DIM_C, 1, 1, LORA_Q},
    {"model.layers.%d.self_attn.k_proj.weight", FIELD(wk), DIM_KV, DIM_C, 1, 1, LORA_K},
    {"model.layers.%d.self_attn.v_proj.weight", FIELD(wv), DIM_KV, DIM_C, 1, 1, LORA_V},
    {"model.layers.%d.self_attn.o_proj.weight", FIELD(wo), DIM_C, DIM_Q, 1, 1, LORA_O},
    {"model.layers.%d.post_attention_layernorm.weight", FIELD(ln2), DIM_C, DIM_NONE, 1, 0, NO_LORA},
    {"model.layers.%d.mlp.gate_proj.weight", FIELD(wgate), DIM_I, DIM_C, 1, 1, LORA_GATE},
    {"model.layers.%d.mlp.up_proj.weight", FIELD(wup), DIM_I, DIM_C, 1, 1, LORA_UP},
    {"model.layers.%d.mlp.down_proj.weight", FIELD(wdown), DIM_C, DIM_I, 1, 1, LORA_DOWN},
    {"model.norm.weight", FIELD(lnf), DIM_C, DIM_NONE, 0, 0, NO_LORA},
    {"lm_head.weight", FIELD(wlm), DIM_V_UNTIED, DIM_C, 0, 1, NO_LORA},
};
#undef FIELD
#define NUM_PARAMETER_TENSORS (int)(sizeof(PARAMETERS) / sizeof(PARAMETERS[0]))
enum { PARAMETER_EMBEDDINGS = 0, PARAMETER_LM_HEAD = NUM_PARAMETER_TENSORS - 1 };  // rows of PARAMETERS

// Shape of one tensor (one layer's slice for per-layer tensors): rows, cols (cols 0 = 1-D).
static void parameter_shape(const LlamaConfig* c, int i, int64_t* rows, int64_t* cols, int* per_layer) {
    *rows = dim_size(c, PARAMETERS[i].rows);
    *cols = dim_size(c, PARAMETERS[i].cols);
    *per_layer = PARAMETERS[i].per_layer;
}

// Elements of tensor i over all layers.
static size_t parameter_numel(const LlamaConfig* c, int i) {
    int64_t rows, cols;
    int per_layer;
    parameter_shape(c, i, &rows, &cols, &per_layer);
    return (size_t)rows * (size_t)(cols ? cols : 1) * (per_layer ? c->L : 1);
}

// The name of tensor i (of layer l when per layer), as in the model's safetensors.
static void parameter_name(char* buf, size_t size, int i, int l) { snprintf(buf, size, PARAMETERS[i].name, l); }

static float** parameter_field(ParameterTensors* p, int i) { return (float**)((char*)p + PARAMETERS[i].field); }

// Points each tensor of p into one block of memory; returns the number of floats. With a
// base stored narrower than fp32 (base != WEIGHT_F32) the matrices live in the model's
// frozen table instead and p holds the RMSNorm weights alone (the matrices are NULL).
static size_t parameters_point(ParameterTensors* p, float* memory, const LlamaConfig* c, WeightFormat base) {
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int in_params = base == WEIGHT_F32 || PARAMETERS[i].cols == DIM_NONE;
        *parameter_field(p, i) = memory && in_params ? memory + offset : NULL;
        offset += in_params ? parameter_numel(c, i) : 0;
    }
    if (c->tied) p->wlm = p->wte;
    return offset;
}

// The parameter tensor that is LoRA module m's base weight.
static int module_parameter(int m) {
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) if (PARAMETERS[i].lora == m) return i;
    fail("internal error: no parameter for LoRA module %d", m);
    return -1;
}

// (in, out) features of linear module m
static void lora_module_dims(const LlamaConfig* c, int m, int* in, int* out) {
    const ParameterSpec* spec = &PARAMETERS[module_parameter(m)];
    *in = (int)dim_size(c, spec->cols);
    *out = (int)dim_size(c, spec->rows);
}

// Weight (or gradient) of linear module m in layer l, (out, in) row-major, in fp32.
static float* module_weight(const ParameterTensors* p, const LlamaConfig* c, int l, int m) {
    float* base = *parameter_field((ParameterTensors*)p, module_parameter(m));
    int in, out;
    lora_module_dims(c, m, &in, &out);
    return base == NULL ? NULL : base + (size_t)l * in * out;
}

typedef struct {
    int rank;
    float alpha;
    float dropout;
    int rslora;
    int target[NUM_LORA_MODULES];  // 1 if the module gets an adapter
} LoraConfig;

typedef struct {
    float* A[NUM_LORA_MODULES];  // (L, r, in) or NULL when not targeted
    float* B[NUM_LORA_MODULES];  // (L, out, r)
} LoraTensors;

static size_t lora_point(LoraTensors* t, float* memory, const LlamaConfig* c, const LoraConfig* lc) {
    size_t offset = 0;
    for (int m = 0; m < NUM_LORA_MODULES; m++) {
        int in, out;
        lora_module_dims(c, m, &in, &out);
        t->A[m] = t->B[m] = NULL;
        if (!lc->target[m]) continue;
        t->A[m] = memory ? memory + offset : NULL;
        offset += (size_t)c->L * lc->rank * in;
        t->B[m] = memory ? memory + offset : NULL;
        offset += (size_t)c->L * out * lc->rank;
    }
    return offset;
}

// PEFT's key for a LoRA tensor: the base weight's name with lora_A or lora_B before
// ".weight", under "base_model.model.", e.g. base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight
void lora_key(char* buf, size_t size, int layer, int m, char which) {
    char base[128];
    parameter_name(base, sizeof(base), module_parameter(m), layer);
    base[strlen(base) - strlen(".weight")] = '\0';
    snprintf(buf, size, "base_model.model.%s.lora_%c.weight", base, which);
}

#define NUM_ACTIVATION_TENSORS 17
typedef struct {
    float* x;         // (L+1, B, T, C) residual stream entering each layer; x[L] enters the final norm
                      // (with checkpointing the tensors below x hold one layer, L = 1)
    float* ln1;       // (L, B, T, C)
    float* ln1_rstd;  // (L, B, T)
    float* q;         // (L, B, T, NH*hs) after RoPE
    float* k;         // (L, B, T, NKV*hs) after RoPE
    float* v;         // (L, B, T, NKV*hs)
    float* att;       // (L, B, T, NH*hs) attention output, input of o_proj
    float* lse;       // (L, B, NH, T) softmax log-sum-exp per query
    float* x_mid;     // (L, B, T, C) residual after attention
    float* ln2;       // (L, B, T, C)
    float* ln2_rstd;  // (L, B, T)
    float* gate;      // (L, B, T, I) before SiLU
    float* up;        // (L, B, T, I)
    float* lnf;       // (B, T, C)
    float* lnf_rstd;  // (B, T)
    float* logits;    // (B, T, V), or (logits_chunk, V); the backward turns it into dlogits in place
    float* losses;    // (B, T) per-token loss
} ActivationTensors;

// Layer l's slices of the activations of a batch of N tokens, as the forward and the
// backward use them (shapes as above, without the leading L).
typedef struct {
    float *x, *ln1, *ln1_rstd, *q, *k, *v, *att, *lse, *x_mid, *ln2, *ln2_rstd, *gate, *up;
    float* x_next;  // (N, C) the residual stream leaving the layer
} LayerActivations;

// slot: where layer l's tensors other than x are kept, l (or 0 when the layers share one
// slot, with checkpointing)
static LayerActivations layer_activations(const ActivationTensors* a, const LlamaConfig* c, int l, int slot, int N) {
    size_t n = (size_t)slot * N, q_dim = (size_t)c->NH * c->hs, kv_dim = (size_t)c->NKV * c->hs;
    size_t x_at = (size_t)l * N * c->C;
    return (LayerActivations){.x = a->x + x_at, .ln1 = a->ln1 + n * c->C, .ln1_rstd = a->ln1_rstd + n,
                              .q = a->q + n * q_dim, .k = a->k + n * kv_dim, .v = a->v + n * kv_dim,
                              .att = a->att + n * q_dim, .lse = a->lse + n * c->NH, .x_mid = a->x_mid + n * c->C,
                              .ln2 = a->ln2 + n * c->C, .ln2_rstd = a->ln2_rstd + n, .gate = a->gate + n * c->I,
                              .up = a->up + n * c->I, .x_next = a->x + x_at + (size_t)N * c->C};
}

// Reused by every layer of the backward (and as forward scratch): not per 
typedef struct {
    float* dx;       // (B, T, C) gradient of the residual stream
    float* dln;      // (B, T, C) gradient of a norm's output
    float* dq;       // (B, T, NH*hs)
    float* dk;       // (B, T, NKV*hs)
    float* dv;       // (B, T, NKV*hs)
    float* datt;     // (B, T, NH*hs)
    float* act;      // (B, T, I) silu(gate)*up, recomputed in the backward
    float* dact;     // (B, T, I)
    float* dgate;    // (B, T, I)
    float* dup;      // (B, T, I)
    float* lora_xd;  // (B, T, max(C, NH*hs, I)) dropout(x) for LoRA on the GPU (train_gpu.c)
    float* lora_r1;  // (B, T, r)
    float* lora_r2;  // (B, T, r)
} ScratchTensors;

typedef struct {
    LlamaConfig config;
    ParameterTensors params;     // fp32; only the RMSNorm weights when the base is narrower
    float* params_memory;
    size_t num_parameters;       // all of the model's parameters, wherever they are stored
    WeightFormat base_format;    // storage of the frozen base's matrices (embeddings included)
    Weight frozen[NUM_PARAMETER_TENSORS];  // each matrix in that format (fp32: params' own); 1-D: unused
    void* frozen_memory;         // the matrices when base_format is not fp32, else NULL
    uint64_t base_fingerprint;   // of the checkpoint loaded (hf.h's fingerprint_tensor); 0: made in memory
    int full_finetune;           // train every base weight too
    ParameterTensors grads;      // only when full_finetune
    float* grads_memory;
    float* m_memory;             // AdamW moments of all trainable parameters
    float* v_memory;
    LoraConfig lora_config;
    int use_lora;
    float lora_scale;            // alpha/r or alpha/sqrt(r)
    LoraTensors lora, lora_grads;
    float* lora_memory;
    float* lora_grads_memory;
    size_t num_lora_parameters;
    float* lora_xa[NUM_LORA_MODULES];  // (L, B, T, r) x A^T kept per layer for the backward (one layer's
                                       // with checkpointing)
    ActivationTensors acts;
    float* acts_memory;          // activations, LoRA inputs, scratch, RoPE table: one block
    ScratchTensors scratch;
    float* attention_scratch;    // attention_scratch_size(B, T, NH, NKV)
    float* cos_sin;              // (T, hs/2, 2)
    int* default_pos;            // (B, T) 0..T-1 per row
    double* norm_partials;       // per-chunk partial sums for the gradient norm
    float* grad_sums;            // (grad_sum_levels, trainable) partial sums waiting in a step's pairwise sum
    int grad_sum_levels;
    int B, T;                    // sizes the activations were allocated for
    int logits_chunk;            // tokens per lm_head + loss chunk when training; 0: the whole (N,V) logits
    int checkpointing;           // keep only each layer's input; the backward recomputes the layer
    int attention_fp32;          // attention's matmuls in fp32 even with a bf16 base (generate.c)
    int loss_gradient_taken;     // the last forward left the unscaled (softmax - onehot) W_lm in scratch.dln
    uint32_t seed;
    long step;                   // optimizer steps taken (dropout streams and Adam bias correction)
    int first_token;             // tokens of this optimizer step before the current micro-batch (dropout masks)
    float loss;                  // mean loss of the last forward
    int num_tokens;              // unmasked tokens in the last forward
    void* device;                // the model's GPU copy when train_gpu.c runs it, else NULL
} Model;

// Elements per scale of parameter i's matrix in format f: a row for int8, NF4_BLOCK for
// NF4 (0: no scales). NF4's blocks must not straddle rows, so that a layer's slice, or a
// row, is whole blocks.
static size_t frozen_block(const LlamaConfig* c, int i, WeightFormat f) {
    int64_t cols = dim_size(c, PARAMETERS[i].cols);
    if (f == WEIGHT_NF4 && cols % NF4_BLOCK != 0) {
        char name[128];
        parameter_name(name, sizeof(name), i, 0);
        fail("%s: %lld columns, not a multiple of NF4's block of %d values; quantise this model to int8 "
             "(./train --quantization_bit 8, ./generate --weights int8) or not at all", name, (long long)cols,
             NF4_BLOCK);
    }
    return f == WEIGHT_INT8 ? (size_t)cols : f == WEIGHT_NF4 ? NF4_BLOCK : 0;
}

// frozen_block's condition for NF4, without failing: every matrix's columns (C, NH*hs, I) are whole blocks
static int nf4_possible(const LlamaConfig* c) {
    return c->C % NF4_BLOCK == 0 && (c->NH * c->hs) % NF4_BLOCK == 0 && c->I % NF4_BLOCK == 0;
}

// Points m->frozen[i] at each matrix: in params (fp32) or, in order, in memory (when
// not NULL), each matrix's elements followed by its scales (int8, NF4); returns the bytes
// the narrower format needs (0 for fp32).
static size_t frozen_point(Model* m, void* memory) {
    const LlamaConfig* c = &m->config;
    size_t bytes = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        m->frozen[i] = (Weight){NULL, m->base_format, NULL, 0};
        if (PARAMETERS[i].cols == DIM_NONE) continue;
        if (m->base_format == WEIGHT_F32) {
            m->frozen[i] = weight_f32(*parameter_field(&m->params, i));
            continue;
        }
        size_t numel = parameter_numel(c, i), block = frozen_block(c, i, m->base_format);
        m->frozen[i].data = memory ? (char*)memory + bytes : NULL;
        bytes += (numel * WEIGHT_FORMAT_BITS[m->base_format] / 8 + 63) / 64 * 64;  // scales 64-byte aligned
        if (block == 0 || numel == 0) continue;
        m->frozen[i].block = block;
        m->frozen[i].scales = memory ? (const float*)((char*)memory + bytes) : NULL;
        bytes += (numel / block * sizeof(float) + 63) / 64 * 64;
    }
    if (c->tied) m->frozen[PARAMETER_LM_HEAD] = m->frozen[PARAMETER_EMBEDDINGS];  // one matrix
    return bytes;
}

// A model with the given shape and uninitialised weights, its frozen matrices stored in `base`.
void model_create_as(Model* m, const LlamaConfig* c, WeightFormat base) {
    memset(m, 0, sizeof(*m));
    m->config = *c;
    m->base_format = base;
    m->num_parameters = parameters_point(&m->params, NULL, c, WEIGHT_F32);
    size_t floats = parameters_point(&m->params, NULL, c, base);
    m->params_memory = malloc_check(floats * sizeof(float), "model weights");
    parameters_point(&m->params, m->params_memory, c, base);
    size_t bytes = frozen_point(m, NULL);
    m->frozen_memory = bytes ? malloc_check(bytes, "model weights (frozen base)") : NULL;
    frozen_point(m, m->frozen_memory);
}

void model_create(Model* m, const LlamaConfig* c) { model_create_as(m, c, WEIGHT_F32); }

// Tensor i of the frozen base (layer l's slice when per layer), in its storage format.
static Weight base_weight(const Model* m, int i, int l) {
    int64_t rows, cols;
    int per_layer;
    parameter_shape(&m->config, i, &rows, &cols, &per_layer);
    return weight_at(m->frozen[i], (size_t)l * rows * cols);
}

// Base weight of linear module mod in layer l, (out, in): the one place the layers reach a
// frozen linear weight, whatever its storage.
static Weight module_base(const Model* m, int l, int mod) { return base_weight(m, module_parameter(mod), l); }

// Uniform in [-bound, bound) from the counter-based hash: value e of stream `stream`.
static float hash_uniform(uint32_t seed, uint32_t stream, uint32_t e, float bound) {
    uint32_t h = mix32(mix32(seed ^ mix32(stream)) ^ mix32(e));
    return ((float)(h >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * bound;
}

// Fresh weights for pre-training from scratch: every matrix uniform with standard
// deviation `std` (Hugging Face's initializer_range, 0.02 for Llama; HF draws from a
// normal, we from a uniform of the same spread), every RMSNorm weight 1.
void model_init_random(Model* m, uint32_t seed, float std) {
    const LlamaConfig* c = &m->config;
    float bound = std * sqrtf(3.0f);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = parameter_numel(c, i);
        if (n == 0) continue;  // tied lm_head
        if (PARAMETERS[i].cols == DIM_NONE) {
            for (size_t e = 0; e < n; e++) (*parameter_field(&m->params, i))[e] = 1.0f;
            continue;
        }
        // pieces of whole rows (whole scale blocks), made in fp32 and stored in the base's format
        size_t cols = (size_t)dim_size(c, PARAMETERS[i].cols), piece = (65536 / cols + 1) * cols;
        #pragma omp parallel
        {
            float* values = malloc_check(piece * sizeof(float), "random weights");
            #pragma omp for schedule(static)
            for (size_t start = 0; start < n; start += piece) {
                size_t len = n - start < piece ? n - start : piece;
                for (size_t e = 0; e < len; e++) values[e] = hash_uniform(seed, 100 + i, (uint32_t)(start + e), bound);
                weight_store(m->frozen[i], start, values, len);
            }
            free(values);
        }
    }
}

// Adds LoRA adapters, initialised as PEFT does: A kaiming-uniform (bound 1/sqrt(in)), B = 0.
void model_init_lora(Model* m, const LoraConfig* lc, uint32_t seed) {
    const LlamaConfig* c = &m->config;
    m->use_lora = 1;
    m->lora_config = *lc;
    m->lora_scale = lc->rslora ? lc->alpha / sqrtf((float)lc->rank) : lc->alpha / lc->rank;
    m->num_lora_parameters = lora_point(&m->lora, NULL, c, lc);
    m->lora_memory = calloc_floats(m->num_lora_parameters, "LoRA weights");
    m->lora_grads_memory = calloc_floats(m->num_lora_parameters, "LoRA gradients");
    lora_point(&m->lora, m->lora_memory, c, lc);
    lora_point(&m->lora_grads, m->lora_grads_memory, c, lc);
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
        if (!lc->target[mod]) continue;
        int in, out;
        lora_module_dims(c, mod, &in, &out);
        size_t n = (size_t)c->L * lc->rank * in;
        float bound = 1.0f / sqrtf((float)in);
        for (size_t e = 0; e < n; e++) m->lora.A[mod][e] = hash_uniform(seed, mod, (uint32_t)e, bound);
    }
}

// Points the activation tensors, LoRA inputs and backward scratch into memory (when not
// NULL) for batches of up to B x T; returns the number of floats needed.
static size_t activations_point(Model* m, int B, int T, float* memory) {
    const LlamaConfig* c = &m->config;
    size_t N = (size_t)B * T, L = m->checkpointing ? 1 : c->L, q = (size_t)c->NH * c->hs, kv = (size_t)c->NKV * c->hs;
    size_t r = m->use_lora ? m->lora_config.rank : 0;
    size_t chunk_rows = m->logits_chunk > 0 && (size_t)m->logits_chunk < N ? (size_t)m->logits_chunk : N;
    size_t widest = (size_t)c->C > q ? (size_t)c->C : q;
    widest = widest > (size_t)c->I ? widest : (size_t)c->I;
    ActivationTensors* a = &m->acts;
    ScratchTensors* s = &m->scratch;
    struct { float** ptr; size_t size; } layout[] = {
        {&a->x, ((size_t)c->L + 1) * N * c->C}, {&a->ln1, L * N * c->C}, {&a->ln1_rstd, L * N}, {&a->q, L * N * q},
        {&a->k, L * N * kv}, {&a->v, L * N * kv}, {&a->att, L * N * q}, {&a->lse, L * N * c->NH},
        {&a->x_mid, L * N * c->C}, {&a->ln2, L * N * c->C}, {&a->ln2_rstd, L * N}, {&a->gate, L * N * c->I},
        {&a->up, L * N * c->I}, {&a->lnf, N * c->C}, {&a->lnf_rstd, N}, {&a->logits, chunk_rows * c->V},
        {&a->losses, N},
        {&m->lora_xa[LORA_Q], 0}, {&m->lora_xa[LORA_K], 0}, {&m->lora_xa[LORA_V], 0}, {&m->lora_xa[LORA_O], 0},
        {&m->lora_xa[LORA_GATE], 0}, {&m->lora_xa[LORA_UP], 0}, {&m->lora_xa[LORA_DOWN], 0},
        {&s->dx, N * c->C}, {&s->dln, N * c->C}, {&s->dq, N * q}, {&s->dk, N * kv}, {&s->dv, N * kv},
        {&s->datt, N * q}, {&s->act, N * c->I}, {&s->dact, N * c->I}, {&s->dgate, N * c->I}, {&s->dup, N * c->I},
        {&s->lora_xd, r ? N * widest : 0}, {&s->lora_r1, N * r}, {&s->lora_r2, N * r},
        {&m->attention_scratch, attention_scratch_size(B, T, c->NH, c->NKV)}, {&m->cos_sin, (size_t)T * c->hs}};
    int count = (int)(sizeof(layout) / sizeof(layout[0]));
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {  // x A^T per targeted module
        if (m->use_lora && m->lora_config.target[mod]) layout[NUM_ACTIVATION_TENSORS + mod].size = L * N * r;
    }
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        *layout[i].ptr = memory && layout[i].size ? memory + total : NULL;
        total += layout[i].size;
    }
    return total;
}

typedef struct {
    size_t weights, gradients, optimizer, activations;
} MemoryEstimate;

// Tokens per chunk of the lm_head and loss in training runs (acts.logits holds LOGITS_CHUNK x V):
// 256 cuts the usual sequence lengths (512, 1024, 2048) into equal chunks; 256 x 128256 floats
// are 125 MiB. (192 was 3% slower on the 1B shape: the lm_head's weights are packed once a chunk.)
#define LOGITS_CHUNK 256

// Bytes a run will hold (lc NULL: no LoRA), computed from the config before anything
// is allocated.
MemoryEstimate memory_estimate(const LlamaConfig* c, const LoraConfig* lc, int B, int T, int full_finetune,
                               WeightFormat base, int checkpointing) {
    Model m;
    memset(&m, 0, sizeof(m));
    m.config = *c;
    m.base_format = base;
    m.logits_chunk = LOGITS_CHUNK;
    m.checkpointing = checkpointing;
    m.num_parameters = parameters_point(&m.params, NULL, c, WEIGHT_F32);
    size_t weight_bytes = parameters_point(&m.params, NULL, c, base) * 4 + frozen_point(&m, NULL);
    if (lc != NULL) {
        m.use_lora = 1;
        m.lora_config = *lc;
        m.num_lora_parameters = lora_point(&m.lora, NULL, c, lc);
    }
    size_t trainable = m.num_lora_parameters + (full_finetune ? m.num_parameters : 0);
    MemoryEstimate e = {weight_bytes, trainable * 4, trainable * 8,
                        activations_point(&m, B, T, NULL) * 4 + (size_t)B * T * sizeof(int)};
    // and the matmul's shared A: the largest left operand packed whole (x or dy of a linear
    // layer, deep C or I; a chunk of dlogits, deep V), where one fits
    int N = B * T, bf16 = base == WEIGHT_BF16, chunk = N < LOGITS_CHUNK ? N : LOGITS_CHUNK;
    size_t shared[] = {matmul_shared_a_bytes(N, c->C, bf16), matmul_shared_a_bytes(N, c->I, bf16),
                       matmul_shared_a_bytes(chunk, c->V, bf16)};
    size_t largest = 0;
    for (int i = 0; i < 3; i++) largest = shared[i] > largest ? shared[i] : largest;
    e.activations += largest;
    return e;
}

// Allocates gradients, optimizer state and activations for batches of up to B x T.
// Nothing is allocated after this: the training step runs in this memory.
void model_allocate(Model* m, int B, int T, int full_finetune) {
    const LlamaConfig* c = &m->config;
    m->B = B;
    m->T = T;
    m->full_finetune = full_finetune;
    size_t trainable = m->num_lora_parameters;
    if (full_finetune) {
        m->grads_memory = calloc_floats(m->num_parameters, "gradients");
        parameters_point(&m->grads, m->grads_memory, c, WEIGHT_F32);
        trainable += m->num_parameters;
    }
    m->m_memory = calloc_floats(trainable, "AdamW first moments");
    m->v_memory = calloc_floats(trainable, "AdamW second moments");
    m->norm_partials = malloc_check((trainable / 65536 + 2) * sizeof(double), "gradient norm");
    m->acts_memory = malloc_check(activations_point(m, B, T, NULL) * sizeof(float), "activations");
    activations_point(m, B, T, m->acts_memory);
    rope_table(m->cos_sin, c, T);
    m->default_pos = malloc_check((size_t)B * T * sizeof(int), "positions");
    matmul_init();
}

// ----------------------------------------------------------------------------
// forward and backward of the whole model

// With checkpointing the layers share one slot of everything but x (the layer's input).
static int layer_slot(const Model* m, int l) { return m->checkpointing ? 0 : l; }

// y (N,out) (+)= x W^T for module mod of layer l, plus its LoRA term when targeted.
static void model_linear_forward(Model* m, int l, int mod, float* y, const float* x, int N,
                                 int accumulate, int training) {
    const LlamaConfig* c = &m->config;
    int in, out;
    lora_module_dims(c, mod, &in, &out);
    linear_forward(y, x, module_base(m, l, mod), N, in, out, accumulate);
    if (!m->use_lora || !m->lora_config.target[mod]) return;
    int r = m->lora_config.rank;
    float p = training ? m->lora_config.dropout : 0.0f;
    uint32_t key = dropout_key(m->seed, m->step, l, c->L, mod);
    lora_forward(y, m->lora_xa[mod] + (size_t)layer_slot(m, l) * N * r, m->scratch.lora_r1, x,
                 m->lora.A[mod] + (size_t)l * r * in, m->lora.B[mod] + (size_t)l * out * r,
                 N, in, out, r, m->lora_scale, p, key, m->first_token);
}

// dx (N,in) (+)= dy W; dW += dy^T x when training every weight; LoRA gradients when targeted.
static void model_linear_backward(Model* m, int l, int mod, float* dx, const float* dy,
                                  const float* x, int N, int accumulate) {
    const LlamaConfig* c = &m->config;
    int in, out;
    lora_module_dims(c, mod, &in, &out);
    linear_backward_input(dx, dy, module_base(m, l, mod), N, in, out, accumulate);
    if (m->full_finetune) linear_backward_weight(module_weight(&m->grads, c, l, mod), dy, x, N, in, out);
    if (!m->use_lora || !m->lora_config.target[mod]) return;
    int r = m->lora_config.rank;
    uint32_t key = dropout_key(m->seed, m->step, l, c->L, mod);
    lora_backward(dx, m->lora_grads.A[mod] + (size_t)l * r * in, m->lora_grads.B[mod] + (size_t)l * out * r,
                  m->scratch.lora_r1, m->scratch.lora_r2, dy, x, m->lora_xa[mod] + (size_t)layer_slot(m, l) * N * r,
                  m->lora.A[mod] + (size_t)l * r * in, m->lora.B[mod] + (size_t)l * out * r, N, in, out,
                  m->lora_config.rank, m->lora_scale, m->lora_config.dropout, key, m->first_token);
}

static void check_batch(const Model* m, const int* tokens, const int* pos, int B, int T) {
    if (B < 1 || T < 1 || (size_t)B * T > (size_t)m->B * m->T || T > m->T) {
        fail("batch %dx%d does not fit the %dx%d the model was allocated for", B, T, m->B, m->T);
    }
    for (int n = 0; n < B * T; n++) {
        if (tokens[n] < 0 || tokens[n] >= m->config.V) {
            fail("token id %d at position %d is outside the vocabulary [0, %d)", tokens[n], n, m->config.V);
        }
        if (pos != NULL && (pos[n] < 0 || pos[n] > n % T)) {
            fail("position %d at index %d must be in [0, %d]", pos[n], n, n % T);
        }
    }
}

// Attention's matmuls run in bf16 with a bf16 base (as Hugging Face's bf16 attention), else fp32;
// generate.c keeps them fp32 (attention_fp32), as its cached decode attention is.
static int attention_in_bf16(const Model* m) { return m->base_format == WEIGHT_BF16 && !m->attention_fp32; }

// Layer l: its input x[l] (N,C) to x[l+1], keeping what its backward needs.
static void layer_forward(Model* m, int l, const int* pos, int B, int T, int training) {
    const LlamaConfig* c = &m->config;
    ParameterTensors* p = &m->params;
    int N = B * T, C = c->C, I = c->I;
    LayerActivations layer = layer_activations(&m->acts, c, l, layer_slot(m, l), N);

    rmsnorm_forward(layer.ln1, layer.ln1_rstd, layer.x, p->ln1 + (size_t)l * C, N, C, c->norm_eps);
    model_linear_forward(m, l, LORA_Q, layer.q, layer.ln1, N, 0, training);
    model_linear_forward(m, l, LORA_K, layer.k, layer.ln1, N, 0, training);
    model_linear_forward(m, l, LORA_V, layer.v, layer.ln1, N, 0, training);
    rope_forward(layer.q, pos, m->cos_sin, N, c->NH, c->hs);
    rope_forward(layer.k, pos, m->cos_sin, N, c->NKV, c->hs);
    attention_forward(layer.att, layer.lse, m->attention_scratch, layer.q, layer.k, layer.v, pos, B, T,
                      c->NH, c->NKV, c->hs, attention_in_bf16(m));
    memcpy(layer.x_mid, layer.x, (size_t)N * C * sizeof(float));  // residual: x_mid = x + o_proj(att)
    model_linear_forward(m, l, LORA_O, layer.x_mid, layer.att, N, 1, training);

    rmsnorm_forward(layer.ln2, layer.ln2_rstd, layer.x_mid, p->ln2 + (size_t)l * C, N, C, c->norm_eps);
    model_linear_forward(m, l, LORA_GATE, layer.gate, layer.ln2, N, 0, training);
    model_linear_forward(m, l, LORA_UP, layer.up, layer.ln2, N, 0, training);
    swiglu_forward(m->scratch.act, layer.gate, layer.up, (size_t)N * I);
    memcpy(layer.x_next, layer.x_mid, (size_t)N * C * sizeof(float));  // residual: x_next = x_mid + down(act)
    model_linear_forward(m, l, LORA_DOWN, layer.x_next, m->scratch.act, N, 1, training);
}

// The lm_head and the loss run over chunks of logits_chunk tokens (0: all N at once), so
// the (N,V) logits need not exist whole: a chunk's logits live in acts.logits only until
// its losses are taken. A chunk without a trained target is skipped. logits_rows(m, N) is
// the chunk.
// The loss gradient of the final norm's output is dlnf = dloss (softmax - onehot) W_lm, with
// dloss = 1/tokens_in_step known only to the backward. A LoRA training forward on chunks
// takes the unscaled (softmax - onehot) W_lm of each chunk while its logits are at hand, and
// the backward scales it; so the lm_head runs once each way. Full fine-tuning needs the
// scaled dlogits for W_lm's own gradient, so its backward recomputes each chunk's logits, bit
// for bit (each row of a matmul is the same whatever rows are beside it).
static int logits_rows(const Model* m, int N) {
    return m->logits_chunk > 0 && m->logits_chunk < N ? m->logits_chunk : N;
}

static int any_target(const int* targets, int n) {
    for (int i = 0; i < n; i++) if (targets[i] >= 0) return 1;
    return 0;
}

// The loss gradient of a chunk of n tokens whose logits (n,V) are in acts.logits:
// dlnf (n,C) = dlogits W_lm with dlogits = (softmax - onehot) dloss, made in place of the
// logits; and dW_lm += dlogits^T lnf (n,C) when training every weight. With `losses` (n),
// their losses too. Returns the unmasked tokens.
static int lm_head_chunk_backward(Model* m, float* dlnf, float* losses, const float* lnf, const int* targets, int n,
                                  float dloss) {
    const LlamaConfig* c = &m->config;
    float* dlogits = m->acts.logits;
    int count = crossentropy_backward(dlogits, losses, targets, n, c->V, dloss);
    linear_backward_input(dlnf, dlogits, m->frozen[PARAMETER_LM_HEAD], n, c->C, c->V, 0);
    if (m->full_finetune) linear_backward_weight(m->grads.wlm, dlogits, lnf, n, c->C, c->V);
    return count;
}

// losses (N) of the final norm's output lnf (N,C); returns the unmasked tokens. With
// dlnf_unscaled (N,C) (LoRA training on chunks), each chunk's (softmax - onehot) W_lm too.
static int lm_head_loss_forward(Model* m, const int* targets, int N, float* dlnf_unscaled) {
    const LlamaConfig* c = &m->config;
    ActivationTensors* a = &m->acts;
    int rows = logits_rows(m, N), count = 0;
    for (int n0 = 0; n0 < N; n0 += rows) {
        int n = N - n0 < rows ? N - n0 : rows;
        const float* lnf = a->lnf + (size_t)n0 * c->C;
        if (rows < N && !any_target(targets + n0, n)) {
            memset(a->losses + n0, 0, n * sizeof(float));
            if (dlnf_unscaled) memset(dlnf_unscaled + (size_t)n0 * c->C, 0, (size_t)n * c->C * sizeof(float));
            continue;
        }
        linear_forward(a->logits, lnf, m->frozen[PARAMETER_LM_HEAD], n, c->C, c->V, 0);
        if (dlnf_unscaled) {
            count += lm_head_chunk_backward(m, dlnf_unscaled + (size_t)n0 * c->C, a->losses + n0, lnf, targets + n0,
                                            n, 1.0f);
        } else {
            count += crossentropy_forward(a->losses + n0, a->logits, targets + n0, n, c->V);
        }
    }
    return count;
}

// dlnf (N,C) = dloss (softmax - onehot) W_lm in scratch.dln, and dW_lm += dlogits^T lnf when
// training every weight. Without full fine-tuning dlnf is taken unscaled and then scaled (taken
// in the forward already when it ran on chunks), so chunks and whole logits agree to the bit.
static void lm_head_loss_backward(Model* m, const int* targets, int N, float dloss) {
    const LlamaConfig* c = &m->config;
    ActivationTensors* a = &m->acts;
    float* dlnf = m->scratch.dln;
    int rows = logits_rows(m, N);
    if (!m->loss_gradient_taken) {
        for (int n0 = 0; n0 < N; n0 += rows) {
            int n = N - n0 < rows ? N - n0 : rows;
            const float* lnf = a->lnf + (size_t)n0 * c->C;
            if (rows < N) {
                if (!any_target(targets + n0, n)) {
                    memset(dlnf + (size_t)n0 * c->C, 0, (size_t)n * c->C * sizeof(float));
                    continue;
                }
                linear_forward(a->logits, lnf, m->frozen[PARAMETER_LM_HEAD], n, c->C, c->V, 0);
            }
            lm_head_chunk_backward(m, dlnf + (size_t)n0 * c->C, NULL, lnf, targets + n0, n,
                                   m->full_finetune ? dloss : 1.0f);
        }
    }
    m->loss_gradient_taken = 0;
    if (m->full_finetune) return;
    size_t count = (size_t)N * c->C;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) dlnf[i] *= dloss;
}

// tokens, targets, pos (B,T). targets < 0 are not trained on; pos NULL means 0..T-1 in
// every row (pos restarting at 0 marks a new packed sequence). targets may be NULL
// (logits only, of a model that keeps them whole). Dropout is active when training.
void model_forward(Model* m, const int* tokens, const int* targets, const int* pos, int B, int T, int training) {
    check_batch(m, tokens, pos, B, T);
    const LlamaConfig* c = &m->config;
    ActivationTensors* a = &m->acts;
    int N = B * T, C = c->C;
    if (pos == NULL) {
        for (int n = 0; n < N; n++) m->default_pos[n] = n % T;
        pos = m->default_pos;
    }
    embedding_forward(a->x, tokens, m->frozen[PARAMETER_EMBEDDINGS], N, C);
    for (int l = 0; l < c->L; l++) layer_forward(m, l, pos, B, T, training);
    rmsnorm_forward(a->lnf, a->lnf_rstd, a->x + (size_t)c->L * N * C, m->params.lnf, N, C, c->norm_eps);
    m->num_tokens = 0;
    m->loss_gradient_taken = 0;
    m->loss = 0.0f;
    if (targets == NULL) {
        if (logits_rows(m, N) < N) fail("internal error: the logits of %d tokens from a model that keeps %d", N,
                                         logits_rows(m, N));
        linear_forward(a->logits, a->lnf, m->frozen[PARAMETER_LM_HEAD], N, C, c->V, 0);
        return;
    }
    for (int n = 0; n < N; n++) {
        if (targets[n] >= c->V) {
            fail("target id %d at position %d is outside the vocabulary [0, %d)", targets[n], n, c->V);
        }
    }
    m->loss_gradient_taken = training && !m->full_finetune && logits_rows(m, N) < N;
    m->num_tokens = lm_head_loss_forward(m, targets, N, m->loss_gradient_taken ? m->scratch.dln : NULL);
    double sum = 0.0;
    for (int n = 0; n < N; n++) sum += a->losses[n];
    m->loss = m->num_tokens > 0 ? (float)(sum / m->num_tokens) : 0.0f;
}

// Adds this batch's gradients to the gradient buffers. The loss gradient of each
// unmasked token is 1/tokens_in_step, the unmasked tokens of the whole optimizer step,
// so the update does not depend on how the step is split into micro-batches.
void model_backward(Model* m, const int* tokens, const int* targets, const int* pos, int B, int T, int tokens_in_step) {
    const LlamaConfig* c = &m->config;
    ActivationTensors* a = &m->acts;
    ScratchTensors* s = &m->scratch;
    ParameterTensors* p = &m->params;
    ParameterTensors* g = m->full_finetune ? &m->grads : NULL;
    int N = B * T, C = c->C, I = c->I;
    if (pos == NULL) pos = m->default_pos;  // filled by the forward

    lm_head_loss_backward(m, targets, N, tokens_in_step > 0 ? 1.0f / tokens_in_step : 0.0f);
    memset(s->dx, 0, (size_t)N * C * sizeof(float));
    rmsnorm_backward(s->dx, g ? g->lnf : NULL, s->dln, a->x + (size_t)c->L * N * C, p->lnf, a->lnf_rstd, N, C);

    for (int l = c->L - 1; l >= 0; l--) {
        if (m->checkpointing) layer_forward(m, l, pos, B, T, 1);  // the same dropout masks: bit-identical
        LayerActivations layer = layer_activations(a, c, l, layer_slot(m, l), N);

        // MLP: s->dx holds d x_next, which flows unchanged into d x_mid plus the MLP branch
        swiglu_forward(s->act, layer.gate, layer.up, (size_t)N * I);
        model_linear_backward(m, l, LORA_DOWN, s->dact, s->dx, s->act, N, 0);
        swiglu_backward(s->dgate, s->dup, s->dact, layer.gate, layer.up, (size_t)N * I);
        model_linear_backward(m, l, LORA_GATE, s->dln, s->dgate, layer.ln2, N, 0);
        model_linear_backward(m, l, LORA_UP, s->dln, s->dup, layer.ln2, N, 1);
        rmsnorm_backward(s->dx, g ? g->ln2 + (size_t)l * C : NULL, s->dln, layer.x_mid, p->ln2 + (size_t)l * C,
                         layer.ln2_rstd, N, C);

        // attention: s->dx now holds d x_mid
        model_linear_backward(m, l, LORA_O, s->datt, s->dx, layer.att, N, 0);
        attention_backward(s->dq, s->dk, s->dv, m->attention_scratch, s->datt, layer.att, layer.lse, layer.q, layer.k,
                           layer.v, pos, B, T, c->NH, c->NKV, c->hs, attention_in_bf16(m));
        rope_backward(s->dq, pos, m->cos_sin, N, c->NH, c->hs);
        rope_backward(s->dk, pos, m->cos_sin, N, c->NKV, c->hs);
        model_linear_backward(m, l, LORA_Q, s->dln, s->dq, layer.ln1, N, 0);
        model_linear_backward(m, l, LORA_K, s->dln, s->dk, layer.ln1, N, 1);
        model_linear_backward(m, l, LORA_V, s->dln, s->dv, layer.ln1, N, 1);
        rmsnorm_backward(s->dx, g ? g->ln1 + (size_t)l * C : NULL, s->dln, layer.x, p->ln1 + (size_t)l * C,
                         layer.ln1_rstd, N, C);
    }
    if (g) embedding_backward(g->wte, s->dx, tokens, N, C);
}

void model_zero_grad(Model* m) {
    if (m->lora_grads_memory) memset(m->lora_grads_memory, 0, m->num_lora_parameters * sizeof(float));
    if (m->grads_memory) memset(m->grads_memory, 0, m->num_parameters * sizeof(float));
}

// The trainable gradients: LoRA's, and every weight's with --full_finetune. Returns how many arrays.
static int model_trainable_grads(const Model* m, float* grads[2], size_t sizes[2]) {
    int n = 0;
    if (m->use_lora) grads[n] = m->lora_grads_memory, sizes[n++] = m->num_lora_parameters;
    if (m->full_finetune) grads[n] = m->grads_memory, sizes[n++] = m->num_parameters;
    return n;
}

static size_t model_num_trainable(const Model* m) {
    return (m->use_lora ? m->num_lora_parameters : 0) + (m->full_finetune ? m->num_parameters : 0);
}

// A step's gradient is a pairwise sum (train_step): a partial sum waits at `level` of m->grad_sums
// (model_save_grads) until the one to its right is in the gradient buffers to be added to it (model_add_saved_grads).
void model_save_grads(Model* m, int level) {
    float* grads[2];
    size_t sizes[2];
    float* saved = m->grad_sums + (size_t)level * model_num_trainable(m);
    for (int i = 0, n = model_trainable_grads(m, grads, sizes); i < n; saved += sizes[i++]) {
        memcpy(saved, grads[i], sizes[i] * sizeof(float));
    }
}

void model_add_saved_grads(Model* m, int level) {
    float* grads[2];
    size_t sizes[2];
    const float* saved = m->grad_sums + (size_t)level * model_num_trainable(m);
    for (int i = 0, n = model_trainable_grads(m, grads, sizes); i < n; saved += sizes[i++]) {
        float* g = grads[i];
        #pragma omp parallel for schedule(static)
        for (size_t e = 0; e < sizes[i]; e++) g[e] = saved[e] + g[e];
    }
}

// Room for the partial sums of a pairwise sum over `micro_batches` micro-batches (see model_step_gradients).
void model_allocate_grad_sums(Model* m, int micro_batches) {
    m->grad_sum_levels = __builtin_ctz((unsigned)micro_batches);  // log2 of its power-of-two part
    m->grad_sums = malloc_check(m->grad_sum_levels * model_num_trainable(m) * sizeof(float) + 1, "gradient sums");
}

// Every rank's gradients become their sum over the ranks (a no-op in one process).
void model_sum_grads_across_ranks(Model* m) {
    float* grads[2];
    size_t sizes[2];
    for (int i = 0, n = model_trainable_grads(m, grads, sizes); i < n; i++) dist_sum_floats(grads[i], sizes[i]);
}

// ----------------------------------------------------------------------------
// optimizer: global-norm clipping and AdamW

typedef struct {
    float learning_rate;
    float beta1, beta2, eps;
    float weight_decay;
    float max_grad_norm;  // 0 disables clipping
} AdamWConfig;

#define NORM_CHUNK 65536
// sum of g^2 in fixed chunks, so the result does not depend on the thread count
static double sum_of_squares(const float* g, size_t n, double* partials) {
    size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < chunks; i++) {
        size_t end = (i + 1) * NORM_CHUNK < n ? (i + 1) * NORM_CHUNK : n;
        double sum = 0.0;
        for (size_t e = i * NORM_CHUNK; e < end; e++) sum += (double)g[e] * g[e];
        partials[i] = sum;
    }
    double total = 0.0;
    for (size_t i = 0; i < chunks; i++) total += partials[i];
    return total;
}

// L2 norm of all trainable gradients
float model_grad_norm(Model* m) {
    double sum = 0.0;
    if (m->use_lora) sum += sum_of_squares(m->lora_grads_memory, m->num_lora_parameters, m->norm_partials);
    if (m->full_finetune) sum += sum_of_squares(m->grads_memory, m->num_parameters, m->norm_partials);
    return (float)sqrt(sum);
}

// PyTorch's AdamW for n values: decoupled decay p -= lr*wd*p, then the bias-corrected
// Adam step p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). g is multiplied by
// grad_scale (the clipping factor) first.
void adamw_update(float* p, const float* g, float* mom, float* vel, size_t n, const AdamWConfig* o,
                  float lr, float weight_decay, float grad_scale, long t) {
    float bias1 = 1.0f - powf(o->beta1, (float)t);
    float bias2_sqrt = sqrtf(1.0f - powf(o->beta2, (float)t));
    float step_size = lr / bias1;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float grad = g[i] * grad_scale;
        mom[i] = o->beta1 * mom[i] + (1.0f - o->beta1) * grad;
        vel[i] = o->beta2 * vel[i] + (1.0f - o->beta2) * grad * grad;
        p[i] -= lr * weight_decay * p[i];
        p[i] -= step_size * mom[i] / (sqrtf(vel[i]) / bias2_sqrt + o->eps);
    }
}

// Clips to max_grad_norm like torch.nn.utils.clip_grad_norm_ (factor
// max_norm/(norm+1e-6), at most 1) given the gradients' norm, and takes one AdamW step.
// Norm weights are not decayed, as in Hugging Face's Trainer.
void model_update(Model* m, const AdamWConfig* o, float lr, float grad_norm) {
    float scale = 1.0f;
    if (o->max_grad_norm > 0.0f) {
        float coef = o->max_grad_norm / (grad_norm + 1e-6f);
        scale = coef < 1.0f ? coef : 1.0f;
    }
    m->step++;
    size_t offset = 0;
    if (m->use_lora) {
        adamw_update(m->lora_memory, m->lora_grads_memory, m->m_memory, m->v_memory, m->num_lora_parameters,
                     o, lr, o->weight_decay, scale, m->step);
        offset = m->num_lora_parameters;
    }
    if (m->full_finetune) {
        size_t start = 0;
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            size_t n = parameter_numel(&m->config, i);
            float decay = PARAMETERS[i].decay ? o->weight_decay : 0.0f;
            adamw_update(m->params_memory + start, m->grads_memory + start, m->m_memory + offset + start,
                         m->v_memory + offset + start, n, o, lr, decay, scale, m->step);
            start += n;
        }
    }
}

// ----------------------------------------------------------------------------
// the model's operations: one seam between the training run and where the model computes

// The model calls of the training run. ./train passes the CPU functions above (CPU_OPS); train_gpu.c
// passes their GPU twins, and to_device (once the weights, adapter and checkpoint are
// loaded) and to_host (before anything is saved), which are NULL here: on the CPU the
// model is the host copy. The tests (test/model_checks.h) run every model through these,
// and also read its logits and gradients back and free its device copy: NULL here too.
typedef struct {
    void (*forward)(Model* m, const int* tokens, const int* targets, const int* pos, int B, int T, int training);
    void (*backward)(Model* m, const int* tokens, const int* targets, const int* pos, int B, int T, int tokens_in_step);
    void (*zero_grad)(Model* m);
    void (*save_grads)(Model* m, int level);      // the step's pairwise gradient sum (train_step)
    void (*add_saved_grads)(Model* m, int level);
    void (*sum_grads_across_ranks)(Model* m);
    float (*grad_norm)(Model* m);
    void (*update)(Model* m, const AdamWConfig* o, float lr, float grad_norm);
    void (*to_device)(Model* m);
    void (*to_host)(Model* m);
    void (*logits_to_host)(Model* m);  // the last forward's logits into m->acts.logits
    void (*grads_to_host)(Model* m);   // the gradients into m->lora_grads_memory and m->grads_memory
    void (*free_device)(Model* m);     // frees what to_device made
    int device_bf16;                   // the device computes on a bf16 base (./train_gpu --bf16)
} ModelOps;

static const ModelOps CPU_OPS = {.forward = model_forward, .backward = model_backward, .zero_grad = model_zero_grad,
                                 .save_grads = model_save_grads, .add_saved_grads = model_add_saved_grads,
                                 .sum_grads_across_ranks = model_sum_grads_across_ranks,
                                 .grad_norm = model_grad_norm, .update = model_update};

// ----------------------------------------------------------------------------
// files: the model in and out of Hugging Face's formats, and checkpoints. These headers
// work on the Model above, so they come here rather than at the top.

#include "llmc/hf.h"          // defines: model_load, model_check_weights, lora_save_adapter, lora_load_adapter,
                              //          model_save_merged
#include "llmc/checkpoint.h"  // defines: TrainState, checkpoint_save, checkpoint_load
#include "llmc/gguf.h"        // defines: gguf_type_from_name, gguf_check_tokenizer, gguf_export (llama.cpp, Ollama)

// ----------------------------------------------------------------------------
// command line: one table of flags gives parsing, --help and suggestions


typedef struct {
    char* model_dir;
    char* data;
    char* val_data;
    char* sample_prompts;
    char* template_name;
    char* output_dir;
    char* init_adapter;
    char* resume_from_checkpoint;
    int lora_rank;
    float lora_alpha, lora_dropout;
    char* lora_target;
    int use_rslora, full_finetune, from_scratch;
    float learning_rate, min_lr;
    char* lr_scheduler_type;
    int warmup_steps;
    float warmup_ratio;
    float num_train_epochs;
    int max_steps;
    int batch_size, gradient_accumulation_steps, max_seq_length;
    float weight_decay, max_grad_norm;
    int seed;
    float val_size;
    int eval_steps, save_steps;
    int resume, stop_after_steps, packing, train_on_inputs, parse_special_in_content, drop_long, merge;
    char* merge_dtype;
    char* base_dtype;
    int quantization_bit;           // 8: int8 base, 4: NF4 base, 0: --base_dtype's
    int bf16, fp16, gradient_checkpointing;
    char *stage, *finetuning_type;  // LLaMA-Factory's spellings
    int do_train, overwrite_cache, plot_loss, logging_steps;
    char* export_gguf;
    int export_only;
    char* date;
    int threads;
} TrainArgs;

#define ARG(field) offsetof(TrainArgs, field)
static const Flag TRAIN_FLAGS[] = {
    {"--model", "--model_name_or_path", FLAG_STRING, ARG(model_dir), 0, 0,
     "Hugging Face model directory (config.json, *.safetensors, tokenizer.json)"},
    {"--data", "--dataset", FLAG_STRING, ARG(data), 0, 0,
     "training data: .csv, .json, .jsonl or .txt; several files separated by commas"},
    {"--val_data", NULL, FLAG_STRING, ARG(val_data), 0, 0,
     "validation data file(s), instead of splitting --data by --val_size"},
    {"--template", NULL, FLAG_STRING, ARG(template_name), 0, 0,
     "chat template: auto, llama3, llama3.1, llama2, alpaca, plain"},
    {"--output_dir", NULL, FLAG_STRING, ARG(output_dir), 0, 0,
     "where the adapter, checkpoint, log.jsonl and loss.svg go"},
    {"--lora_rank", NULL, FLAG_INT, ARG(lora_rank), 1, 4096, "LoRA rank r"},
    {"--lora_alpha", NULL, FLAG_FLOAT, ARG(lora_alpha), 1e-6, 1e6, "LoRA alpha; the update is scaled by alpha/r"},
    {"--lora_dropout", NULL, FLAG_FLOAT, ARG(lora_dropout), 0, 0.99, "dropout on the LoRA input"},
    {"--lora_target", NULL, FLAG_STRING, ARG(lora_target), 0, 0,
     "modules: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj, or all"},
    {"--use_rslora", NULL, FLAG_BOOL, ARG(use_rslora), 0, 1, "scale by alpha/sqrt(r) (rank-stabilised LoRA)"},
    {"--full_finetune", NULL, FLAG_BOOL, ARG(full_finetune), 0, 1, "train every weight instead of LoRA adapters"},
    {"--from_scratch", NULL, FLAG_BOOL, ARG(from_scratch), 0, 1,
     "pre-train: random weights instead of the model's safetensors (needs --full_finetune)"},
    {"--init_adapter", NULL, FLAG_STRING, ARG(init_adapter), 0, 0,
     "start from this PEFT adapter directory (its rank, alpha and targets)"},
    {"--learning_rate", "--lr", FLAG_FLOAT, ARG(learning_rate), 0, 10, "peak AdamW learning rate"},
    {"--lr_scheduler_type", NULL, FLAG_STRING, ARG(lr_scheduler_type), 0, 0,
     "cosine, linear or constant (after warmup)"},
    {"--warmup_steps", NULL, FLAG_INT, ARG(warmup_steps), 0, 1e9, "linear warmup steps (overrides --warmup_ratio)"},
    {"--warmup_ratio", NULL, FLAG_FLOAT, ARG(warmup_ratio), 0, 1, "warmup as a fraction of all steps"},
    {"--min_lr", NULL, FLAG_FLOAT, ARG(min_lr), 0, 10, "learning rate at the end of the decay"},
    {"--num_train_epochs", "--epochs", FLAG_FLOAT, ARG(num_train_epochs), 0, 1e6,
     "passes over the training data (fractions allowed)"},
    {"--max_steps", NULL, FLAG_INT, ARG(max_steps), 0, 1e9, "optimizer steps; 0 = from --num_train_epochs"},
    {"--per_device_train_batch_size", "--batch_size", FLAG_INT, ARG(batch_size), 1, 65536, "sequences per micro-batch"},
    {"--gradient_accumulation_steps", NULL, FLAG_INT, ARG(gradient_accumulation_steps), 1, 65536,
     "micro-batches per optimizer step (an epoch's last step takes what is left of it)"},
    {"--max_seq_length", "--cutoff_len", FLAG_INT, ARG(max_seq_length), 0, 1 << 20,
     "tokens per sequence, longer examples are truncated or dropped; 0 = 512 or the model's context if shorter"},
    {"--drop_long", NULL, FLAG_BOOL, ARG(drop_long), 0, 1, "drop over-long examples instead of truncating them"},
    {"--packing", NULL, FLAG_BOOL, ARG(packing), 0, 1, "pack several examples per row (block-causal, positions reset)"},
    {"--train_on_inputs", NULL, FLAG_BOOL, ARG(train_on_inputs), 0, 1,
     "train on prompts too, not only the assistant's replies"},
    {"--parse_special_in_content", NULL, FLAG_BOOL, ARG(parse_special_in_content), 0, 1,
     "special-token text in the data (\"<|eot_id|>\") becomes the control token, as HF's apply_chat_template "
     "does; off: it stays text"},
    {"--weight_decay", NULL, FLAG_FLOAT, ARG(weight_decay), 0, 10,
     "AdamW decoupled weight decay (never on norm weights)"},
    {"--max_grad_norm", NULL, FLAG_FLOAT, ARG(max_grad_norm), 0, 1e9, "clip the global gradient norm; 0 = off"},
    {"--seed", NULL, FLAG_INT, ARG(seed), 0, 2147483647,
     "seed for LoRA init, dropout, shuffling and the validation split"},
    {"--val_size", NULL, FLAG_FLOAT, ARG(val_size), 0, 1e9, "validation examples: a fraction (< 1) or a count"},
    {"--eval_steps", NULL, FLAG_INT, ARG(eval_steps), 0, 1e9,
     "evaluate every N steps (and at the end); 0 = only at the end"},
    {"--save_steps", NULL, FLAG_INT, ARG(save_steps), 0, 1e9,
     "write the adapter and a checkpoint every N steps; 0 = only at the end"},
    {"--resume", NULL, FLAG_BOOL, ARG(resume), 0, 1, "continue from OUTPUT_DIR/checkpoint.safetensors if it exists"},
    {"--stop_after_steps", NULL, FLAG_INT, ARG(stop_after_steps), 0, 1e9,
     "stop after N steps of this run, checkpoint saved, as if interrupted; 0 = run to the end"},
    {"--resume_from_checkpoint", NULL, FLAG_STRING, ARG(resume_from_checkpoint), 0, 0,
     "continue from this checkpoint file"},
    {"--merge", NULL, FLAG_BOOL, ARG(merge), 0, 1,
     "also write OUTPUT_DIR/merged: the model with the adapter merged in"},
    {"--merge_dtype", NULL, FLAG_STRING, ARG(merge_dtype), 0, 0,
     "dtype of the merged (or fully trained) model: auto (the base's), fp32, bf16 or fp16"},
    {"--base_dtype", NULL, FLAG_STRING, ARG(base_dtype), 0, 0,
     "storage of the frozen base weights: auto (bf16 for a bf16 checkpoint, fp32 with --full_finetune), fp32 or "
     "bf16 (bf16 matmuls, fp32 sums; LoRA, gradients and optimizer stay fp32)"},
    {"--quantization_bit", NULL, FLAG_INT, ARG(quantization_bit), 0, 8,
     "QLoRA: the frozen base quantised at load, 8 (int8, a scale per row) or 4 (NF4, blocks of 64); 0 = off"},
    {"--bf16", NULL, FLAG_BOOL, ARG(bf16), 0, 1,
     "Hugging Face's mixed precision: the frozen base in bf16 (fp32 with --full_finetune or an fp16 checkpoint)"},
    {"--fp16", NULL, FLAG_BOOL, ARG(fp16), 0, 1, "the same as --bf16 (half-precision matmuls are bf16 here)"},
    {"--gradient_checkpointing", NULL, FLAG_BOOL, ARG(gradient_checkpointing), 0, 1,
     "keep only each layer's input and recompute the layer in the backward: activations of one layer, not L, "
     "for a third more compute"},
    {"--export_gguf", NULL, FLAG_STRING, ARG(export_gguf), 0, 0,
     "also write OUTPUT_DIR/model.gguf (F32, F16, BF16, Q8_0 or Q4_0) and a Modelfile, for llama.cpp and Ollama"},
    {"--export_only", NULL, FLAG_BOOL, ARG(export_only), 0, 1,
     "no training: export --model (with --init_adapter merged in) to --export_gguf and stop"},
    {"--sample_prompts", NULL, FLAG_STRING, ARG(sample_prompts), 0, 0,
     "after training, answer each line of this file with the base and the trained model (greedy, through ./generate)"},
    {"--date", NULL, FLAG_STRING, ARG(date), 0, 0, "date in the Llama 3.1/3.2 system header, e.g. \"26 Jul 2024\""},
    {"--threads", NULL, FLAG_INT, ARG(threads), 0, 1024, "OpenMP threads; 0 = all cores"},
    // LLaMA-Factory's command line (llamafactory-cli train): its flags that are not aliases above
    {"--stage", NULL, FLAG_STRING, ARG(stage), 0, 0,
     "LLaMA-Factory: sft (supervised fine-tuning on chats) or pt (continued pre-training: every token trained, "
     "plain template unless --template is given)"},
    {"--finetuning_type", NULL, FLAG_STRING, ARG(finetuning_type), 0, 0,
     "LLaMA-Factory: lora, or full (the same as --full_finetune)"},
    {"--do_train", NULL, FLAG_BOOL, ARG(do_train), 0, 1, "LLaMA-Factory: accepted; ./train always trains"},
    {"--overwrite_cache", NULL, FLAG_BOOL, ARG(overwrite_cache), 0, 1,
     "LLaMA-Factory: accepted; ./train keeps no dataset cache (it tokenizes at every start)"},
    {"--plot_loss", NULL, FLAG_BOOL, ARG(plot_loss), 0, 1,
     "LLaMA-Factory: accepted; OUTPUT_DIR/loss.svg is always drawn"},
    {"--logging_steps", NULL, FLAG_INT, ARG(logging_steps), 1, 1e9,
     "print the step line every N steps, and the first one (log.jsonl still gets every step)"},
};
#undef ARG

// alpaca-lora and LLaMA-Factory defaults where they exist (SPEC §3)
static const TrainArgs TRAIN_DEFAULTS = {
    .model_dir = "data/base", .data = "", .val_data = "", .sample_prompts = "", .template_name = "auto",
    .output_dir = "out", .init_adapter = "", .resume_from_checkpoint = "", .lora_rank = 8, .lora_alpha = 16.0f,
    .lora_dropout = 0.05f, .lora_target = "q_proj,v_proj", .learning_rate = 3e-4f, .lr_scheduler_type = "cosine",
    .num_train_epochs = 3.0f, .batch_size = 4, .gradient_accumulation_steps = 1, .max_seq_length = 0,
    .max_grad_norm = 1.0f, .seed = 42, .val_size = 0.0f, .merge_dtype = "auto", .base_dtype = "auto", .export_gguf = "",
    .date = "", .stage = "sft", .finetuning_type = "lora", .logging_steps = 1};

static const FlagTable TRAIN_FLAG_TABLE = {
    "./train", "usage: ./train [flags]   (every flag, with its default; ./train --demo [flags]: the demo run, "
    "flags added)", TRAIN_FLAGS,
    (int)(sizeof(TRAIN_FLAGS) / sizeof(TRAIN_FLAGS[0])), &TRAIN_DEFAULTS, sizeof(TrainArgs)};

static void parse_lora_target(LoraConfig* lc, const char* list) {
    memset(lc->target, 0, sizeof(lc->target));
    if (strcmp(list, "all") == 0) {
        for (int mod = 0; mod < NUM_LORA_MODULES; mod++) lc->target[mod] = 1;
        return;
    }
    char* copy = strdup(list);
    for (char* name = strtok(copy, ","); name != NULL; name = strtok(NULL, ",")) {
        int found = 0;
        for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
            if (strcmp(name, LORA_MODULE_NAMES[mod]) == 0) lc->target[mod] = found = 1;
        }
        if (!found) {
            fail("--lora_target: unknown module '%s' (choose from q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                 "down_proj or all)", name);
        }
    }
    free(copy);
}

static const char* SCHEDULE_NAMES[] = {"cosine", "linear", "constant"};

static int parse_schedule(const char* name) {
    for (int i = 0; i < 3; i++) if (strcmp(name, SCHEDULE_NAMES[i]) == 0) return i;
    fail("--lr_scheduler_type: unknown schedule '%s' (cosine, linear or constant)", name);
    return 0;
}

// ----------------------------------------------------------------------------
// main: the training run, as a few named steps: set-up (arguments, data, model, schedule,
// resume), then per optimizer step train_step, log_step and save_outputs, then finish.

// `./train` with no arguments: LoRA fine-tunes data/base, the small model this project
// pre-trained (data/make_base_model.sh), on the pirate-style chats in data/, then shows
// the base and the fine-tuned model's answers to held-out prompts.
static char* DEMO_ARGS[] = {"./train", "--model", "data/base", "--data", "data/pirate.jsonl",
                            "--val_data", "data/pirate_val.jsonl", "--sample_prompts", "data/prompts.txt",
                            "--output_dir", "out/pirate", "--lora_target", "all", "--lora_rank", "16",
                            "--lora_alpha", "32", "--learning_rate", "2e-3", "--num_train_epochs", "3",
                            "--max_seq_length", "128",
                            "--per_device_train_batch_size", "8", "--warmup_steps", "10", "--eval_steps", "10"};

// Everything the run holds from one optimizer step to the next.
typedef struct {
    TrainArgs args;
    const ModelOps* ops;
    LlamaConfig config;
    LoraConfig lora;              // from the flags (an --init_adapter brings its own)
    WeightFormat base;            // the frozen base's storage (--base_dtype)
    double planned_bytes;         // the memory plan (check_memory), compared with the peak at the end
    Model model;
    Examples train, val;
    int pad_id;                   // the token padding rows are filled with
    DataLoader loader;            // the training examples, a new order every epoch
    DataLoader val_loader;        // the validation examples, in order
    Batch* micro;                 // (G + 1) this rank's micro-batches of a step, then one for the other ranks'
    int* micro_first_token;       // (M) the step's tokens before each micro-batch, M = ranks x G
    double* micro_loss;           // (M) each micro-batch's loss times its trained tokens
    int val_batches;              // micro-batches in the validation set
    double* val_sums;             // (2, val_batches) each validation batch's loss sum and trained tokens
    int schedule, total_steps, warmup_steps;
    AdamWConfig adamw;
    TrainState state;             // step and data position, saved in checkpoints
    LossHistory history;
    char signature[512];          // the flags that shape the run: a checkpoint resumes only the same run
    char *checkpoint_path, *log_path, *svg_path;
    const char* resumed_from;     // the checkpoint this run continued, or NULL
    FILE* log;                    // log.jsonl
    long first_step;              // this process's first step
    int saved_any;                // a checkpoint exists to fall back on
    double start;                 // wall_seconds() when training began
} TrainRun;

// What one optimizer step did.
typedef struct {
    float loss, grad_norm, lr;
    int tokens;                   // tokens processed, padding included
    double seconds;
} StepResult;

// LLaMA-Factory's --stage and --finetuning_type, as the flags they stand for.
static void apply_llama_factory_flags(TrainArgs* a) {
    if (strcmp(a->finetuning_type, "full") == 0) a->full_finetune = 1;
    else if (strcmp(a->finetuning_type, "lora") != 0) {
        fail("--finetuning_type: unknown type '%s' (lora or full; freeze is not supported)", a->finetuning_type);
    }
    if (strcmp(a->stage, "pt") == 0) {
        a->train_on_inputs = 1;
        if (strcmp(a->template_name, "auto") == 0) a->template_name = "plain";
    } else if (strcmp(a->stage, "sft") != 0) {
        fail("--stage: unknown stage '%s' (sft or pt; rm, ppo, dpo and kto are not supported)", a->stage);
    }
}

// No arguments: the demo run. `--demo FLAGS...`: the demo run with FLAGS added (later ones win),
// e.g. ./train --demo --quantization_bit 4.
static void parse_train_args(TrainArgs* a, int argc, char** argv) {
    if (argc == 1 || strcmp(argv[1], "--demo") == 0) {
        int demo = (int)(sizeof(DEMO_ARGS) / sizeof(DEMO_ARGS[0])), n = demo + (argc > 1 ? argc - 2 : 0);
        char** args = malloc_check(n * sizeof(char*), "flags");
        memcpy(args, DEMO_ARGS, demo * sizeof(char*));
        for (int i = 2; i < argc; i++) args[demo + i - 2] = argv[i];
        printf("%s: the demo run, the same as\n ", argc == 1 ? "no arguments" : "--demo");
        for (int i = 0; i < n; i++) printf(" %s", args[i]);
        printf("\n");
        if (access("data/base/config.json", R_OK) != 0) {
            fail("data/base/config.json: not found; run ./train from the repository's top directory "
                 "(data/base is made by make base-model)");
        }
        flags_parse(&TRAIN_FLAG_TABLE, a, n, args, 1, NULL);  // args stays alive: a's strings point into it
    } else {
        flags_parse(&TRAIN_FLAG_TABLE, a, argc, argv, 1, NULL);
    }
    apply_llama_factory_flags(a);
#ifdef _OPENMP
    if (a->threads > 0) omp_set_num_threads(a->threads);
#endif
}

// --quantization_bit 8 or 4: the frozen base's format, after the checks that it can be.
static WeightFormat quantized_base(const TrainArgs* a, const LlamaConfig* c, int gpu) {
    int bits = a->quantization_bit;
    if (bits != 8 && bits != 4) fail("--quantization_bit must be 8 (int8) or 4 (NF4), got %d", bits);
    if (a->full_finetune) fail("--quantization_bit %d keeps the base frozen but --full_finetune trains it; "
                               "drop one of them", bits);
    if (strcmp(a->base_dtype, "auto") != 0) fail("--quantization_bit %d and --base_dtype %s: give one of them",
                                                 bits, a->base_dtype);
    if (gpu) fail("--quantization_bit: ./train_gpu has no quantised base yet; use ./train, or --bf16");
    if (*a->export_gguf) fail("--export_gguf with --quantization_bit: export the merged model instead (--merge, "
                              "then ./train --model OUTPUT_DIR/merged --export_only --export_gguf TYPE)");
    if (a->merge && strcmp(c->dtype, "float16") == 0) {
        fail("--merge with --quantization_bit re-reads the base from its F32 or BF16 checkpoint, and this one is "
             "float16 (config.json torch_dtype); merge without --quantization_bit");
    }
    WeightFormat f = bits == 8 ? WEIGHT_INT8 : WEIGHT_NF4;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {  // NF4 needs rows of whole blocks: fail now, not after the data
        if (PARAMETERS[i].cols != DIM_NONE) frozen_block(c, i, f);
    }
    return f;
}

// The flags that only make sense together, and the sequence length, checked against the model.
static void check_args(TrainRun* r) {
    TrainArgs* a = &r->args;
    r->lora = (LoraConfig){.rank = a->lora_rank, .alpha = a->lora_alpha, .dropout = a->lora_dropout,
                           .rslora = a->use_rslora};
    parse_lora_target(&r->lora, a->lora_target);
    r->schedule = parse_schedule(a->lr_scheduler_type);
    if (a->full_finetune && *a->init_adapter) fail("--init_adapter and --full_finetune cannot be combined");
    if (a->from_scratch && !a->full_finetune) fail("--from_scratch trains new weights: add --full_finetune");
    config_load(&r->config, a->model_dir);
    const LlamaConfig* c = &r->config;
    merge_dtype_from_name(a->merge_dtype, c);  // a bad --merge_dtype fails now, not after training
    if ((a->bf16 || a->fp16) && strcmp(a->base_dtype, "auto") != 0) {
        fail("--%s and --base_dtype %s: give one of them", a->bf16 ? "bf16" : "fp16", a->base_dtype);
    }
    const char* base_dtype = a->base_dtype;  // --bf16/--fp16: bf16 where the base stays frozen and is not fp16
    if (a->bf16 || a->fp16) base_dtype = a->full_finetune || strcmp(c->dtype, "float16") == 0 ? "fp32" : "bf16";
    r->base = base_format_from_name(base_dtype, c, a->full_finetune);
    if (a->quantization_bit) r->base = quantized_base(a, c, r->ops->to_device != NULL);
    if (r->ops->to_device) {  // the GPU: a bf16 base with --bf16, which an fp16 checkpoint or full fine-tuning
                              // keep as fp32 weights with a bf16 copy on the device; else fp32
        int bf16_base = r->ops->device_bf16 && !a->full_finetune && strcmp(c->dtype, "float16") != 0;
        r->base = bf16_base ? WEIGHT_BF16 : WEIGHT_F32;
    }
    if (*a->export_gguf) {  // and so do a bad --export_gguf type and a model without its tokenizer
        gguf_type_from_name(a->export_gguf);
        gguf_check_tokenizer(a->model_dir);
    }
    if (a->max_seq_length == 0) a->max_seq_length = c->max_seq_len < 512 ? c->max_seq_len : 512;
    if (a->max_seq_length < 2) fail("--max_seq_length must be at least 2");
    if ((int64_t)a->batch_size * a->max_seq_length > (1 << 30)) {
        fail("--per_device_train_batch_size %d x --max_seq_length %d is over 2^30 tokens per micro-batch; lower them",
             a->batch_size, a->max_seq_length);
    }
    if (a->max_seq_length > c->max_seq_len) {
        fail("--max_seq_length %d is longer than the model's max_position_embeddings (%d)", a->max_seq_length,
             c->max_seq_len);
    }
    if (*a->val_data && !*a->data) fail("--val_data needs --data");
    if (*a->val_data && a->val_size > 0) fail("give --val_data or --val_size, not both");
    if (*a->sample_prompts && access(a->sample_prompts, R_OK) != 0) {
        fail("%s: cannot read it: %s (--sample_prompts)", a->sample_prompts, strerror(errno));
    }
}

// Ranks train on the same examples, or stop naming the one whose files differ.
static void agree_on_data(const TrainRun* r) {
    if (dist_size() == 1) return;
    uint64_t h = DIST_HASH_START;
    const Examples* sets[2] = {&r->train, &r->val};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < sets[s]->count; i++) {
            const Example* e = &sets[s]->items[i];
            h = dist_hash(h, e->ids, e->len * sizeof(int));
            h = dist_hash(h, e->train, e->len);
        }
        h = dist_hash(h, &sets[s]->count, sizeof(int));
    }
    dist_agree(h, "training or validation examples");
}

// The training and validation examples: --data through the chat template (or the built-in
// sequence), split by --val_size on a seeded shuffle unless --val_data is given.
static void load_data(TrainRun* r) {
    const TrainArgs* a = &r->args;
    int T = a->max_seq_length;
    Examples all = {0}, val_given = {0};
    r->pad_id = r->config.num_eos > 0 ? r->config.eos_token_ids[0] : 0;
    if (*a->data) {
        Tokenizer tok;
        tokenizer_load(&tok, a->model_dir);
        if (tok.vocab_size > r->config.V) {
            fail("%s: the tokenizer has %d tokens but config.json's vocab_size is %d; the tokenizer does not belong "
                 "to this model",
                 tok.path, tok.vocab_size, r->config.V);
        }
        ChatOptions opt = chat_options_default(&tok);
        if (strcmp(a->template_name, "auto") != 0) opt.template_kind = chat_template_from_name(a->template_name);
        opt.date = *a->date ? a->date : NULL;
        opt.train_on_inputs = a->train_on_inputs;
        opt.parse_special_in_content = a->parse_special_in_content;
        examples_load(&all, a->data, &tok, &opt, T, a->drop_long);
        if (*a->val_data) examples_load(&val_given, a->val_data, &tok, &opt, T, a->drop_long);
        if (tok.eos_id >= 0) r->pad_id = tok.eos_id;
        tokenizer_free(&tok);
    } else {
        printf("no --data given: training on a built-in repeating token sequence\n");
        examples_builtin(&all, r->config.V, T);
    }
    // validation split: the first val_size examples of a seeded shuffle
    int n_val = a->val_size >= 1.0f ? (int)a->val_size : (int)(a->val_size * all.count);
    if (n_val >= all.count) {
        fail("--val_size %g leaves no training examples (the dataset has %d)", a->val_size, all.count);
    }
    int* split = malloc_check(all.count * sizeof(int), "the validation split");
    epoch_order(split, all.count, (uint32_t)a->seed, -1);
    r->train = (Examples){malloc_check(all.count * sizeof(Example), "examples"), 0};
    r->val = (Examples){malloc_check(all.count * sizeof(Example) + 1, "examples"), 0};
    for (int i = 0; i < all.count; i++) {
        if (i < n_val) r->val.items[r->val.count++] = all.items[split[i]];
        else r->train.items[r->train.count++] = all.items[split[i]];
    }
    free(split);
    if (*a->val_data) {
        free(r->val.items);
        r->val = val_given;
    }
    printf("data: %d training examples, %d validation examples\n", r->train.count, r->val.count);
    agree_on_data(r);
}

// Bytes of the memory plan: everything memory_estimate counts, plus what the process holds
// besides (program, libraries, matmul scratch, tokenizer, data: measured at 10-30 MiB).
#define MEMORY_OVERHEAD (16.0 * 1048576.0)
static double plan_bytes(const LlamaConfig* c, const LoraConfig* lc, int B, int T, int full_finetune,
                         WeightFormat base, int checkpointing, int accumulation) {
    MemoryEstimate e = memory_estimate(c, lc, B, T, full_finetune, base, checkpointing);
    e.gradients *= 1 + __builtin_ctz((unsigned)accumulation);  // + train_step's waiting partial sums
    return (double)e.weights + e.gradients + e.optimizer + e.activations + MEMORY_OVERHEAD;
}

// The memory plan, printed; when it is more than the machine has, the run stops here,
// before loading, naming the flags that would make it fit.
static double check_memory(const LlamaConfig* c, const LoraConfig* lc, const TrainArgs* a, WeightFormat base) {
    int B = a->batch_size, T = a->max_seq_length, full = a->full_finetune, ckpt = a->gradient_checkpointing;
    int accum = a->gradient_accumulation_steps;
    MemoryEstimate e = memory_estimate(c, lc, B, T, full, base, ckpt);
    e.gradients *= 1 + __builtin_ctz((unsigned)accum);
    double total = plan_bytes(c, lc, B, T, full, base, ckpt, accum), gib = 1073741824.0;
    printf("memory plan: weights %.1f MiB (base in %s), gradients %.1f MiB, optimizer %.1f MiB, activations %.1f MiB"
           "%s; total %.2f GiB\n", e.weights / 1048576.0, WEIGHT_FORMAT_NAMES[base], e.gradients / 1048576.0,
           e.optimizer / 1048576.0, e.activations / 1048576.0, ckpt ? " (checkpointed)" : "", total / gib);
    double available = available_memory();
    if (available <= 0 || total <= available) return total;
    char fits[512] = "";
    WeightFormat narrow = !full && strcmp(c->dtype, "float16") != 0 ? WEIGHT_BF16 : base;
    int nf4 = !full && base != WEIGHT_NF4 && nf4_possible(c);
    struct { const char* flags; double bytes; } options[] = {
        {"--gradient_checkpointing", ckpt ? INFINITY : plan_bytes(c, lc, B, T, full, base, 1, accum)},
        {"--base_dtype bf16", narrow == base ? INFINITY : plan_bytes(c, lc, B, T, full, narrow, ckpt, accum)},
        {"--gradient_checkpointing --base_dtype bf16",
         ckpt || narrow == base ? INFINITY : plan_bytes(c, lc, B, T, full, narrow, 1, accum)},
        {"--quantization_bit 4", nf4 ? plan_bytes(c, lc, B, T, full, WEIGHT_NF4, ckpt, accum) : INFINITY},
        {"--gradient_checkpointing --quantization_bit 4",
         nf4 && !ckpt ? plan_bytes(c, lc, B, T, full, WEIGHT_NF4, 1, accum) : INFINITY},
        {"--per_device_train_batch_size 1", B == 1 ? INFINITY : plan_bytes(c, lc, 1, T, full, base, ckpt, accum)},
        {"--max_seq_length halved", plan_bytes(c, lc, B, T / 2, full, base, ckpt, accum)},
        {"LoRA instead of --full_finetune", full ? plan_bytes(c, lc, B, T, 0, narrow, ckpt, accum) : INFINITY}};
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        if (options[i].bytes > available) continue;
        snprintf(fits + strlen(fits), sizeof(fits) - strlen(fits), "%s%s (%.2f GiB)", *fits ? ", " : "",
                 options[i].flags, options[i].bytes / gib);
    }
    fail("this run needs %.2f GiB but only %.2f GiB is available; %s%s", total / gib, available / gib,
         *fits ? "it would fit with " : "no one flag makes it fit: use a smaller model, or combine the flags in "
                                         "the README's memory section", fits);
    return total;
}

// The model with its adapter, its memory for B x T batches, after checking that the
// weights match the config, the output directory is writable and the run fits in memory.
static void setup_model(TrainRun* r) {
    const TrainArgs* a = &r->args;
    if (!a->from_scratch) model_check_weights(a->model_dir, &r->config);
    if (dist_rank() == 0) {  // the one rank that writes
        make_directory(a->output_dir);
        char* probe = path_join(a->output_dir, ".write_test");
        write_text_file(probe, "ok\n");
        unlink(probe);
        free(probe);
    }
    if (*a->init_adapter) lora_read_adapter_config(&r->lora, a->init_adapter);  // its rank, not --lora_rank
    r->planned_bytes = check_memory(&r->config, a->full_finetune ? NULL : &r->lora, a, r->base);
    Model* m = &r->model;
    double load_start = wall_seconds();
    if (a->from_scratch) {
        model_create(m, &r->config);
        model_init_random(m, (uint32_t)a->seed, r->config.initializer_range);
    } else {
        model_load_as(m, a->model_dir, r->base);
    }
    double load_seconds = wall_seconds() - load_start;
    m->seed = (uint32_t)a->seed;
    if (*a->init_adapter) lora_load_adapter(m, a->init_adapter, m->seed);
    else if (!a->full_finetune) model_init_lora(m, &r->lora, m->seed);
    m->logits_chunk = r->ops->to_device ? 0 : LOGITS_CHUNK;  // the GPU keeps its logits whole
    m->checkpointing = a->gradient_checkpointing;
    model_allocate(m, a->batch_size, a->max_seq_length, a->full_finetune);
    const LlamaConfig* c = &m->config;
    printf("model %s: %d layers, hidden %d, heads %d/%d, vocab %d, %.1fM parameters (base in %s); %s: %.3fM "
           "trainable; %s in %.1f s\n", a->model_dir, c->L, c->C, c->NH, c->NKV, c->V, m->num_parameters / 1e6,
           WEIGHT_FORMAT_NAMES[m->base_format],
           a->full_finetune ? "full fine-tune" : "LoRA",
           (a->full_finetune ? m->num_parameters : m->num_lora_parameters) / 1e6,
           a->from_scratch ? "initialised" : "loaded", load_seconds);
}

// The data loaders, the number of steps, warmup and AdamW's settings.
static void plan_schedule(TrainRun* r) {
    const TrainArgs* a = &r->args;
    int B = a->batch_size, T = a->max_seq_length, accum = a->gradient_accumulation_steps, M = accum * dist_size();
    dataloader_init(&r->loader, &r->train, B, T, a->packing, r->pad_id, 1, r->model.seed);
    dataloader_init(&r->val_loader, &r->val, B, T, 0, r->pad_id, 0, 0);
    r->micro = malloc_check((accum + 1) * sizeof(Batch), "micro-batches");
    for (int k = 0; k <= accum; k++) batch_alloc(&r->micro[k], B, T);
    r->micro_first_token = malloc_check(M * sizeof(int), "micro-batch offsets");
    r->micro_loss = malloc_check(M * sizeof(double), "micro-batch losses");
    r->val_batches = dataloader_batches_per_epoch(&r->val_loader);
    r->val_sums = malloc_check((2 * r->val_batches + 1) * sizeof(double), "validation losses");
    model_allocate_grad_sums(&r->model, accum);
    int per_epoch = dataloader_batches_per_epoch(&r->loader);
    int steps_per_epoch = (per_epoch + M - 1) / M;  // an epoch's last step takes what is left (train_step)
    r->total_steps = a->max_steps > 0 ? a->max_steps : (int)ceil(a->num_train_epochs * steps_per_epoch);
    if (r->total_steps < 1) r->total_steps = 1;
    r->warmup_steps = a->warmup_steps > 0 ? a->warmup_steps : (int)ceil(a->warmup_ratio * r->total_steps);
    char ranks[48] = "";
    if (dist_size() > 1) snprintf(ranks, sizeof(ranks), " (%d ranks x %d)", dist_size(), accum);
    char last[64] = "";
    if (per_epoch % M) snprintf(last, sizeof(last), "; an epoch's last step has %d", per_epoch % M);
    printf("schedule: %d steps, each %d micro-batch%s%s of %d x %d tokens (%d micro-batches per epoch%s), %s lr %g, "
           "warmup %d\n",
           r->total_steps, M, M > 1 ? "es" : "", ranks, B, T, per_epoch, last, SCHEDULE_NAMES[r->schedule],
           a->learning_rate, r->warmup_steps);
    r->adamw = (AdamWConfig){.learning_rate = a->learning_rate, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                             .weight_decay = a->weight_decay, .max_grad_norm = a->max_grad_norm};
}

// The mean loss over the validation examples (NaN when there are none). Rank q evaluates batches q, q+R, ...;
// the per-batch sums are gathered and added in batch order, so every rank count gives the same bits.
static float evaluate(TrainRun* r) {
    if (r->val.count == 0) return NAN;
    Batch* b = &r->micro[0];
    double *losses = r->val_sums, *counts = r->val_sums + r->val_batches;
    memset(r->val_sums, 0, 2 * r->val_batches * sizeof(double));
    dataloader_seek(&r->val_loader, 0, 0);
    for (int i = 0; dataloader_next(&r->val_loader, b) > 0; i++) {
        if (i % dist_size() != dist_rank()) continue;
        r->ops->forward(&r->model, b->inputs, b->targets, b->pos, b->rows, b->width, 0);
        losses[i] = (double)r->model.loss * r->model.num_tokens;
        counts[i] = r->model.num_tokens;
    }
    dist_sum_doubles(r->val_sums, 2 * r->val_batches);  // each from one rank, 0 from the others: exact
    double sum = 0.0;
    long tokens = 0;
    for (int i = 0; i < r->val_batches; i++) sum += losses[i], tokens += (long)counts[i];
    return tokens ? (float)(sum / tokens) : NAN;
}

// Ranks start from the same trained weights and step, or stop naming the one that differs.
static void agree_on_weights(const TrainRun* r) {
    if (dist_size() == 1) return;
    const Model* m = &r->model;
    uint64_t h = dist_hash(DIST_HASH_START, &r->state.step, sizeof(r->state.step));
    if (m->use_lora) h = dist_hash(h, m->lora_memory, m->num_lora_parameters * sizeof(float));
    if (m->full_finetune) h = dist_hash(h, m->params_memory, m->num_parameters * sizeof(float));
    dist_agree(h, "starting weights (model, adapter or checkpoint)");
}

// Continues from a checkpoint (--resume_from_checkpoint, or --resume when one exists) or
// starts the log with the validation loss before any training (history[i] is step i).
static void resume_or_start(TrainRun* r) {
    const TrainArgs* a = &r->args;
    snprintf(r->signature, sizeof(r->signature),
             "model=%s data=%s full=%d rank=%d alpha=%g targets=%s rslora=%d seed=%d batch=%d accum=%d seq=%d "
             "packing=%d val=%g base=%s", a->model_dir, a->data, a->full_finetune, r->model.lora_config.rank,
             r->model.lora_config.alpha, a->lora_target, a->use_rslora, a->seed, a->batch_size,
             a->gradient_accumulation_steps * dist_size(), a->max_seq_length, a->packing, a->val_size,
             WEIGHT_FORMAT_NAMES[r->model.base_format]);
    r->checkpoint_path = path_join(a->output_dir, "checkpoint.safetensors");
    r->log_path = path_join(a->output_dir, "log.jsonl");
    r->svg_path = path_join(a->output_dir, "loss.svg");
    r->resumed_from = *a->resume_from_checkpoint ? a->resume_from_checkpoint
                      : a->resume && access(r->checkpoint_path, F_OK) == 0 ? r->checkpoint_path : NULL;
    if (r->resumed_from) {
        checkpoint_load(&r->model, r->resumed_from, &r->state, &r->history, r->signature, r->train.count);
        dataloader_seek(&r->loader, r->state.epoch, r->state.cursor);
        printf("resumed from %s at step %ld (epoch %d, example %d)\n", r->resumed_from, r->state.step, r->state.epoch,
               r->state.cursor);
    }
    agree_on_weights(r);
    if (r->ops->to_device) r->ops->to_device(&r->model);
    if (dist_rank() == 0) {  // rank 0 alone writes files
        r->log = fopen(r->log_path, r->resumed_from ? "a" : "w");
        if (r->log == NULL) fail("cannot write %s: %s", r->log_path, strerror(errno));
    }
    if (!r->resumed_from) {
        float val0 = evaluate(r);
        history_add(&r->history, NAN, val0);
        if (isfinite(val0) && r->log) {
            printf("step 0/%d | val %.4f\n", r->total_steps, val0);
            fprintf(r->log, "{\"step\": 0, \"loss\": null, \"val_loss\": %.6f}\n", val0);
        }
    }
    r->first_step = r->state.step;
    r->saved_any = r->resumed_from != NULL;
    r->start = wall_seconds();
}

// The gradient of G micro-batches (each normalised by tokens_in_step), summed in one fixed tree, so that R
// ranks of G give one process's bits with R*G micro-batches (R a power of two; the ranks' sums are then
// added pairwise in rank order by dist_sum_floats): G = 2^c b, b odd, makes 2^c leaves of b micro-batches,
// each leaf's gradient accumulated from zero by the backward, and leaves are added pairwise, ((l0+l1)+(l2+l3)),
// as a binary counter with the partial sums waiting in m->grad_sums. first_token (G): each micro-batch's
// first token in the step (dropout); losses (G) receives each one's loss times its trained tokens.
void model_step_gradients(Model* m, const ModelOps* ops, const Batch* micro, int G, const int* first_token,
                          double* losses, int tokens_in_step) {
    int leaves = G & -G, leaf_size = G / leaves, waiting = 0;
    for (int leaf = 0; leaf < leaves; leaf++) {
        ops->zero_grad(m);
        for (int k = leaf * leaf_size; k < (leaf + 1) * leaf_size; k++) {
            const Batch* b = &micro[k];
            if (b->rows == 0) continue;  // past the end of the epoch (train_step): no tokens, no gradient
            m->first_token = first_token[k];
            ops->forward(m, b->inputs, b->targets, b->pos, b->rows, b->width, 1);
            losses[k] = (double)m->loss * m->num_tokens;
            ops->backward(m, b->inputs, b->targets, b->pos, b->rows, b->width, tokens_in_step);
        }
        for (int done = leaf + 1; done % 2 == 0; done /= 2) ops->add_saved_grads(m, --waiting);
        if (leaf + 1 < leaves) ops->save_grads(m, waiting++);
    }
}

// One optimizer step of M = ranks x G micro-batches (G = --gradient_accumulation_steps); rank q computes
// micro-batches qG .. qG+G-1 (model_step_gradients), then the ranks' gradients are summed. Every rank reads
// all M first (the others' into a scratch batch), so the data position, the step's trained tokens (the loss
// and its gradient are normalised by them however the step is split) and each micro-batch's first token
// (dropout) are the same on every rank without a message. A step ends with its epoch, as Hugging Face's
// Trainer ends it: micro-batches past the epoch's last example are empty (rows 0) and add nothing, so
// an epoch of 200 micro-batches in steps of 64 is 3 steps of 64 and one of 8.
static StepResult train_step(TrainRun* r) {
    Model* m = &r->model;
    const ModelOps* ops = r->ops;
    int G = r->args.gradient_accumulation_steps, M = G * dist_size(), first = G * dist_rank(), tokens_in_step = 0;
    StepResult result = {0};
    double t0 = wall_seconds();
    for (int k = 0; k < M; k++) {
        Batch* b = &r->micro[k >= first && k < first + G ? k - first : G];
        if (k > 0 && dataloader_epoch_done(&r->loader)) b->rows = b->width = 0;
        else dataloader_next(&r->loader, b);
        for (int n = 0; n < b->rows * b->width; n++) tokens_in_step += b->targets[n] >= 0;
        r->micro_first_token[k] = result.tokens;
        result.tokens += b->rows * b->width;
        r->micro_loss[k] = 0.0;
    }
    r->state.epoch = r->loader.epoch;
    r->state.cursor = r->loader.cursor;
    model_step_gradients(m, ops, r->micro, G, r->micro_first_token + first, r->micro_loss + first, tokens_in_step);
    ops->sum_grads_across_ranks(m);
    dist_sum_doubles(r->micro_loss, M);  // each from one rank, 0 from the others: exact
    double loss_sum = 0.0;
    for (int k = 0; k < M; k++) loss_sum += r->micro_loss[k];
    result.loss = (float)(loss_sum / tokens_in_step);
    result.grad_norm = ops->grad_norm(m);
    if (!isfinite(result.loss) || !isfinite(result.grad_norm)) {
        fail("step %ld: the loss (%g) or gradient norm (%g) is not finite: training diverged and stopped; nothing from "
             "this step was saved%s%s. Lower --learning_rate or --max_grad_norm", r->state.step + 1, result.loss,
             result.grad_norm, r->saved_any ? ", the last good checkpoint is " : "",
             r->saved_any ? r->checkpoint_path : "");
    }
    result.lr = learning_rate_at((int)r->state.step, r->total_steps, r->warmup_steps, r->args.learning_rate,
                                 r->args.min_lr, r->schedule);
    ops->update(m, &r->adamw, result.lr, result.grad_norm);
    r->state.step = m->step;
    result.seconds = wall_seconds() - t0;  // the step's time, without evaluation
    return result;
}

// The step's line on stdout (with a progress bar on a terminal), in log.jsonl and, when
// there is a validation loss, on the loss curve.
static void log_step(TrainRun* r, const StepResult* s, float val_loss) {
    history_add(&r->history, s->loss, val_loss);
    if (dist_rank() != 0) return;
    long step = r->state.step;
    double elapsed = wall_seconds() - r->start;
    double eta = elapsed / (step - r->first_step) * (r->total_steps - step);
    char elapsed_text[32], eta_text[32], val_text[32] = "";
    format_duration(elapsed_text, sizeof(elapsed_text), elapsed);
    format_duration(eta_text, sizeof(eta_text), eta);
    if (isfinite(val_loss)) snprintf(val_text, sizeof(val_text), " | val %.4f", val_loss);
    // the first step's line always: its time and ETA, before a long wait for the next
    int quiet = step % r->args.logging_steps != 0 && step != r->first_step + 1 && step != r->total_steps &&
                !isfinite(val_loss);
    // (mpirun gives ranks a terminal even when they write to a file)
    if (!quiet && isatty(STDOUT_FILENO) && dist_size() == 1) {
        char bar[21];
        int filled = (int)(20 * step / r->total_steps);
        for (int i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '.';
        bar[20] = '\0';
        printf("[%s] ", bar);
    }
    if (!quiet) {
        printf("step %ld/%d | loss %.4f%s | lr %.2e | norm %.3f | %.0f tok/s | %s elapsed | ETA %s\n", step,
               r->total_steps, s->loss, val_text, s->lr, s->grad_norm, s->tokens / s->seconds, elapsed_text, eta_text);
    }
    char val_json[32] = "null";
    if (isfinite(val_loss)) snprintf(val_json, sizeof(val_json), "%.6f", val_loss);
    fprintf(r->log, "{\"step\": %ld, \"loss\": %.6f, \"val_loss\": %s, \"lr\": %.6e, \"grad_norm\": %.6f, "
            "\"tokens\": %d, \"tokens_per_second\": %.1f, \"elapsed\": %.3f}\n", step, s->loss, val_json, s->lr,
            s->grad_norm, s->tokens, s->tokens / s->seconds, elapsed);
    fflush(r->log);
    if (isfinite(val_loss)) write_loss_svg(&r->history, r->svg_path);
}

// The adapter (PEFT) and a checkpoint, the model's trained weights first brought home.
static void save_outputs(TrainRun* r) {
    if (r->ops->to_host) r->ops->to_host(&r->model);
    const Model* m = &r->model;  // an update can overflow where the loss did not (huge weights or moments)
    size_t bad = 0;
    for (size_t i = 0; m->use_lora && i < m->num_lora_parameters; i++) bad += !isfinite(m->lora_memory[i]);
    for (size_t i = 0; m->full_finetune && i < m->num_parameters; i++) bad += !isfinite(m->params_memory[i]);
    if (bad > 0) {
        fail("step %ld: %zu trained weights are not finite: training diverged and stopped; nothing from this step "
             "was saved%s%s. Lower --learning_rate or --weight_decay", r->state.step, bad,
             r->saved_any ? ", the last good checkpoint is " : "", r->saved_any ? r->checkpoint_path : "");
    }
    r->saved_any = 1;
    if (dist_rank() != 0) return;
    if (r->model.use_lora) lora_save_adapter(&r->model, r->args.output_dir, r->args.model_dir);
    checkpoint_save(&r->model, r->checkpoint_path, &r->state, &r->history, r->signature);
}

// The loss curve, the merged (or fully trained) model, and the sample answers.
static void finish(TrainRun* r, const char* program) {
    const TrainArgs* a = &r->args;
    if (dist_rank() != 0) return;
    fclose(r->log);
    write_loss_svg(&r->history, r->svg_path);
    if (r->model.use_lora) printf("adapter: %s/adapter_model.safetensors (PEFT format)\n", a->output_dir);
    if (a->full_finetune || a->merge) {
        char* merged = path_join(a->output_dir, a->full_finetune ? "model" : "merged");
        model_save_merged(&r->model, a->model_dir, merged, a->merge_dtype);
        printf("%s model: %s\n", a->full_finetune ? "trained" : "merged", merged);
        free(merged);
    }
    if (*a->export_gguf) gguf_export(&r->model, a->model_dir, a->output_dir, gguf_type_from_name(a->export_gguf));
    printf("log: %s, loss curve: %s, checkpoint: %s\n", r->log_path, r->svg_path, r->checkpoint_path);
    double peak = proc_bytes("/proc/self/status", "VmHWM");  // this process's peak resident memory so far
    printf("memory: planned %.2f GiB, peak resident %.2f GiB (%+.0f%%)\n", r->planned_bytes / 1073741824.0,
           peak / 1073741824.0, 100.0 * (peak - r->planned_bytes) / r->planned_bytes);
    if (*a->sample_prompts) {
        char* trained_model = a->full_finetune ? path_join(a->output_dir, "model") : NULL;
        compare_answers(program, a->model_dir, trained_model, a->output_dir, a->sample_prompts, a->template_name);
        free(trained_model);
    }
}

// --export_only: the model (and --init_adapter, merged) to GGUF, no training.
static int export_only(const TrainArgs* a) {
    if (!*a->export_gguf) fail("--export_only needs --export_gguf TYPE (F32, F16, BF16, Q8_0 or Q4_0)");
    int type = gguf_type_from_name(a->export_gguf);
    gguf_check_tokenizer(a->model_dir);
    LlamaConfig c;
    config_load(&c, a->model_dir);
    static Model model;  // a bf16 checkpoint stays bf16 (--base_dtype auto): an 8B export in 16 GB, not 32
    model_load_as(&model, a->model_dir, base_format_from_name(a->base_dtype, &c, 0));
    if (*a->init_adapter) lora_load_adapter(&model, a->init_adapter, 0);
    gguf_export(&model, a->model_dir, a->output_dir, type);
    return 0;
}

// The training run, with the model computed by ops (CPU_OPS here, the GPU's in train_gpu.c).
int train_main(int argc, char** argv, const ModelOps* ops) {
    signal(SIGXFSZ, SIG_IGN);  // past a file-size limit, writes fail with EFBIG and we report it
    setvbuf(stdout, NULL, _IOLBF, 0);  // each line as it is printed, also into a pipe or file (./train | tee)
    static TrainRun run;       // static: large, and alive for the whole program
    TrainRun* r = &run;
    memset(r, 0, sizeof(*r));
    r->ops = ops;
    dist_init(&argc, &argv);
    parse_train_args(&r->args, argc, argv);
    if (r->args.export_only) return export_only(&r->args);
    check_args(r);
    load_data(r);
    setup_model(r);
    plan_schedule(r);
    resume_or_start(r);
    const TrainArgs* a = &r->args;
    while (r->state.step < r->total_steps) {
        StepResult s = train_step(r);
        int last = r->state.step == r->total_steps;
        int stop = a->stop_after_steps > 0 && r->state.step - r->first_step == a->stop_after_steps;
        int evaluate_now = last || (a->eval_steps > 0 && r->state.step % a->eval_steps == 0);
        log_step(r, &s, r->val.count > 0 && evaluate_now ? evaluate(r) : NAN);
        if (last || stop || (a->save_steps > 0 && r->state.step % a->save_steps == 0)) save_outputs(r);
        if (stop) {
            printf("stopped after %d steps as asked; continue with --resume\n", a->stop_after_steps);
            return 0;
        }
    }
    finish(r, argv[0]);
    return 0;
}

#ifndef TRAIN_NO_MAIN  // the one guard: tests, generate.c and train_gpu.c use this file as a library
int main(int argc, char** argv) {
    threads_init(argv);
    return train_main(argc, argv, &CPU_OPS);
}
#endif
