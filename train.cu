/*
train.cu: the layers of train.c on an NVIDIA GPU. Each function here is the twin of the
train.c function it is named after (rmsnorm_forward -> rmsnorm_forward_gpu), takes the
same arguments with the pointers in GPU memory, and computes the same math; the comment
above each kernel names its CPU twin. train_gpu.c calls them in the order train.c's
model_forward and model_backward call the CPU ones. The interface is train_gpu.h.

Matmuls go to cuBLAS; everything else is a plain kernel, written to be read: one thread
per output element, or one block (or warp) per row when the row needs a sum.

Determinism: no atomics anywhere. Sums over a row are reduced in a fixed tree inside one
block; sums across rows (weight gradients of the embedding and the norms) are walked in
order by one thread per output element, as train.c does; cuBLAS is deterministic on a
given GPU. Two runs give bit-identical results.

Precision: fp32 matmuls use cuBLAS's pedantic compute type (no TF32), so results match
train.c to rounding. With bf16 set, matmul operands are bfloat16 and products accumulate
in fp32 on the tensor cores.

Shape letters as in train.c: B batch, T time, N = B*T tokens, C hidden, NH query heads,
NKV key/value heads, hs head size, I MLP size, V vocabulary, r LoRA rank.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include "train_gpu.h"

// ----------------------------------------------------------------------------
// errors: the failing call, file and line, then exit

static void cuda_check_at(cudaError_t err, const char* call, const char* file, int line) {
    if (err == cudaSuccess) return;
    fprintf(stderr, "error: %s failed at %s:%d: %s\n", call, file, line, cudaGetErrorString(err));
    exit(EXIT_FAILURE);
}
#define cuda_check(call) cuda_check_at((call), #call, __FILE__, __LINE__)
// after a kernel launch: a bad launch configuration shows up here, naming the launch's line
#define launch_check() cuda_check_at(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

static void cublas_check_at(cublasStatus_t status, const char* call, const char* file, int line) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "error: %s failed at %s:%d: %s\n", call, file, line, cublasGetStatusString(status));
    exit(EXIT_FAILURE);
}
#define cublas_check(call) cublas_check_at((call), #call, __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// device and memory

static cublasHandle_t cublas = NULL;
static char device_name[256];
static int device_index = 0;  // gpu_use_device: the rank's GPU when one process runs per GPU

void gpu_use_device(int device) { device_index = device; }

const char* gpu_unavailable(void) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) return cudaGetErrorString(err);
    return count == 0 ? "cudaGetDeviceCount found no device" : NULL;
}

void gpu_init(void) {
    if (cublas != NULL) return;
    const char* why = gpu_unavailable();
    if (why != NULL) {
        fprintf(stderr, "error: no CUDA device: %s; the GPU trainer needs an NVIDIA GPU (./train runs on the CPU)\n",
                why);
        exit(EXIT_FAILURE);
    }
    cudaDeviceProp prop;
    cuda_check(cudaSetDevice(device_index));
    cuda_check(cudaGetDeviceProperties(&prop, device_index));
    snprintf(device_name, sizeof(device_name), "%s", prop.name);
    cublas_check(cublasCreate(&cublas));
}

const char* gpu_name(void) { return device_name; }

void* gpu_malloc(size_t bytes, const char* what) {
    void* p = NULL;
    if (bytes == 0) return NULL;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        size_t free_bytes = 0, total_bytes = 0;
        cudaMemGetInfo(&free_bytes, &total_bytes);
        fprintf(stderr, "error: out of GPU memory allocating %.2f GiB for %s (%.2f of %.2f GiB free: %s); "
                "lower --per_device_train_batch_size or --max_seq_length, or use a smaller model\n",
                bytes / 1073741824.0, what, free_bytes / 1073741824.0, total_bytes / 1073741824.0,
                cudaGetErrorString(err));
        exit(EXIT_FAILURE);
    }
    return p;
}

void gpu_free(void* p) { cuda_check(cudaFree(p)); }
void gpu_upload(void* dst, const void* src, size_t bytes) {
    cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void gpu_download(void* dst, const void* src, size_t bytes) {
    cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void gpu_copy(void* dst, const void* src, size_t bytes) {
    cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
void gpu_zero(void* p, size_t bytes) { cuda_check(cudaMemset(p, 0, bytes)); }
void gpu_synchronize(void) { cuda_check(cudaDeviceSynchronize()); }
void gpu_memory_info(size_t* free_bytes, size_t* total_bytes) { cuda_check(cudaMemGetInfo(free_bytes, total_bytes)); }

// ----------------------------------------------------------------------------
// launch shapes and reductions

enum { THREADS = 256 };  // threads per block of every kernel

// blocks of THREADS covering n elements, one thread each
static unsigned blocks_for(size_t n) { return (unsigned)((n + THREADS - 1) / THREADS); }

__device__ size_t thread_index(void) { return (size_t)blockIdx.x * blockDim.x + threadIdx.x; }

struct Sum {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Butterfly over the 32 lanes: lane i combines with lane i^o. Both lanes of a pair get
// op(a, b) and op(b, a), equal for + and max, so every lane ends with the same value.
template <typename T, typename Op> __device__ T warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Reduces v over the block (blockDim.x a multiple of 32): each warp, then the warps'
// results the same way. The order is fixed, so the result does not depend on timing.
// Every thread gets the result; every thread of the block must call it.
template <typename T, typename Op> __device__ T block_reduce(T v, Op op, T identity) {
    __shared__ T warp_results[32];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    v = warp_reduce(v, op);
    __syncthreads();  // warp_results may still be read by the previous call
    if (lane == 0) warp_results[warp] = v;
    __syncthreads();
    return warp_reduce(lane < warps ? warp_results[lane] : identity, op);
}
template <typename T> __device__ T block_sum(T v) { return block_reduce(v, Sum(), (T)0); }
__device__ float block_max(float v) { return block_reduce(v, Max(), -INFINITY); }

// ----------------------------------------------------------------------------
// matmul (cuBLAS)
//
//   C (batch; M,N) = alpha op(A) (M,K) @ op(B) (K,N) + beta C
//
// Row-major like train.c, each of the `batch` matrices contiguous and right after the
// previous one. op(A) is A stored (M,K), or with trans_a A^T of an A stored (K,M); op(B)
// likewise. cuBLAS is column-major, where a row-major X reads as X^T, so it is asked for
// C^T = op(B)^T op(A)^T. fp32 operands use the pedantic compute type (plain fp32, no TF32);
// bf16 operands use the tensor cores with fp32 accumulation and an fp32 C.
// The linear layer's products, W (out,in) row-major:
//   forward   y (tokens,out)  = x (tokens,in) @ W^T     M=tokens N=out K=in      trans_b
//   backward  dx (tokens,in) += dy (tokens,out) @ W     M=tokens N=in  K=out
//   weights   dW (out,in)    += dy^T @ x                M=out    N=in  K=tokens  trans_a
static void matmul(float* C, const void* A, const void* B, int M, int N, int K, int trans_a, int trans_b,
                   float alpha, float beta, int batch, int bf16) {
    cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_PEDANTIC;
    cublas_check(cublasGemmStridedBatchedEx(cublas,
                                            trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            N, M, K, &alpha,
                                            B, type, trans_b ? K : N, (long long)K * N,
                                            A, type, trans_a ? M : K, (long long)M * K,
                                            &beta, C, CUDA_R_32F, N, (long long)M * N,
                                            batch, compute, CUBLAS_GEMM_DEFAULT));
}

// train.c: linear_forward. y (N,out) (+)= x (N,in) @ W^T
void linear_forward_gpu(float* y, const float* x, const float* W, int N, int in, int out, int accumulate) {
    matmul(y, x, W, N, out, in, 0, 1, 1.0f, accumulate ? 1.0f : 0.0f, 1, 0);
}
// train.c: linear_backward_input. dx (N,in) (+)= dy (N,out) @ W
void linear_backward_input_gpu(float* dx, const float* dy, const float* W, int N, int in, int out, int accumulate) {
    matmul(dx, dy, W, N, in, out, 0, 0, 1.0f, accumulate ? 1.0f : 0.0f, 1, 0);
}
// train.c: linear_backward_weight. dW (out,in) += dy^T (out,N) @ x (N,in)
void linear_backward_weight_gpu(float* dW, const float* dy, const float* x, int N, int in, int out) {
    matmul(dW, dy, x, out, in, N, 1, 0, 1.0f, 1.0f, 1, 0);
}
// the same three with bf16 operands
void linear_forward_bf16_gpu(float* y, const bfloat16* x, const bfloat16* W, int N, int in, int out, int accumulate) {
    matmul(y, x, W, N, out, in, 0, 1, 1.0f, accumulate ? 1.0f : 0.0f, 1, 1);
}
void linear_backward_input_bf16_gpu(float* dx, const bfloat16* dy, const bfloat16* W, int N, int in, int out,
                                    int accumulate) {
    matmul(dx, dy, W, N, in, out, 0, 0, 1.0f, accumulate ? 1.0f : 0.0f, 1, 1);
}
void linear_backward_weight_bf16_gpu(float* dW, const bfloat16* dy, const bfloat16* x, int N, int in, int out) {
    matmul(dW, dy, x, out, in, N, 1, 0, 1.0f, 1.0f, 1, 1);
}

// out (n) = in rounded to the nearest bf16 (ties to even), as train.c's float_to_bf16
__global__ void float_to_bf16_kernel(bfloat16* out, const float* in, size_t n) {
    size_t i = thread_index();
    if (i < n) out[i] = __bfloat16_as_ushort(__float2bfloat16(in[i]));
}

void float_to_bf16_gpu(bfloat16* out, const float* in, size_t n) {
    if (n == 0) return;
    float_to_bf16_kernel<<<blocks_for(n), THREADS>>>(out, in, n);
    launch_check();
}

// llmc/quant.h: dequantize_int8. out (n) = q * scales[e / block]
__global__ void dequantize_int8_kernel(float* out, const int8_t* q, const float* scales, size_t block, size_t n) {
    size_t e = thread_index();
    if (e < n) out[e] = (float)q[e] * scales[e / block];
}

void dequantize_int8_gpu(float* out, const int8_t* q, const float* scales, size_t block, size_t n) {
    if (n == 0) return;
    dequantize_int8_kernel<<<blocks_for(n), THREADS>>>(out, q, scales, block, n);
    launch_check();
}

struct Nf4Code { float value[16]; };  // the code book, passed by value to the kernel

// llmc/quant.h: dequantize_nf4. out (n) = code[q] * absmax[e / 64], element e in byte e/2 (high half when even)
__global__ void dequantize_nf4_kernel(float* out, const uint8_t* q, const float* absmax, size_t n, Nf4Code code) {
    size_t e = thread_index();
    if (e < n) out[e] = code.value[e % 2 ? q[e / 2] & 15 : q[e / 2] >> 4] * absmax[e / 64];
}

void dequantize_nf4_gpu(float* out, const uint8_t* q, const float* absmax, size_t n, const float nf4_code[16]) {
    if (n == 0) return;
    Nf4Code code;
    for (int i = 0; i < 16; i++) code.value[i] = nf4_code[i];
    dequantize_nf4_kernel<<<blocks_for(n), THREADS>>>(out, q, absmax, n, code);
    launch_check();
}

// What a matmul reads for the fp32 tensor x (n values): x itself, or with bf16 set its
// rounding to bf16, written into x16.
static const void* matmul_operand(const float* x, bfloat16* x16, size_t n, int bf16) {
    if (!bf16) return x;
    float_to_bf16_gpu(x16, x, n);
    return x16;
}

// ----------------------------------------------------------------------------
// layers: each a forward/backward pair, kernel above its launcher

// train.c: embedding_forward. x (N,C) = wte[tokens], one thread per element.
__global__ void embedding_forward_kernel(float* x, const int* tokens, const float* wte, int N, int C) {
    size_t i = thread_index();
    if (i >= (size_t)N * C) return;
    size_t n = i / C;
    int c = (int)(i % C);
    x[i] = wte[(size_t)tokens[n] * C + c];
}

void embedding_forward_gpu(float* x, const int* tokens, const float* wte, int N, int C) {
    embedding_forward_kernel<<<blocks_for((size_t)N * C), THREADS>>>(x, tokens, wte, N, C);
    launch_check();
}

// The same from a bf16 table (a bf16 base): each element widened to fp32, exactly.
__global__ void embedding_forward_bf16_kernel(float* x, const int* tokens, const __nv_bfloat16* wte, int N, int C) {
    size_t i = thread_index();
    if (i >= (size_t)N * C) return;
    size_t n = i / C;
    int c = (int)(i % C);
    x[i] = __bfloat162float(wte[(size_t)tokens[n] * C + c]);
}

void embedding_forward_bf16_gpu(float* x, const int* tokens, const bfloat16* wte, int N, int C) {
    embedding_forward_bf16_kernel<<<blocks_for((size_t)N * C), THREADS>>>(x, tokens, (const __nv_bfloat16*)wte, N, C);
    launch_check();
}

// train.c: embedding_backward. dwte (V,C) += scatter of dx (N,C). One thread per channel
// walks the tokens in order, like a CPU thread, so repeated tokens are summed in token
// order and no two threads ever add to the same element.
__global__ void embedding_backward_kernel(float* dwte, const float* dx, const int* tokens, int N, int C) {
    int c = (int)thread_index();
    if (c >= C) return;
    for (int n = 0; n < N; n++) dwte[(size_t)tokens[n] * C + c] += dx[(size_t)n * C + c];
}

void embedding_backward_gpu(float* dwte, const float* dx, const int* tokens, int N, int C) {
    embedding_backward_kernel<<<blocks_for(C), THREADS>>>(dwte, dx, tokens, N, C);
    launch_check();
}

// train.c: rmsnorm_forward. One block per token n:
// y (N,C) = x * rstd * w, rstd (N) = 1/sqrt(mean(x^2) + eps)
__global__ void rmsnorm_forward_kernel(float* y, float* rstd, const float* x, const float* w, int C, float eps) {
    const float* xn = x + (size_t)blockIdx.x * C;
    float* yn = y + (size_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += xn[c] * xn[c];
    ss = block_sum(ss);
    float r = 1.0f / sqrtf(ss / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) yn[c] = xn[c] * r * w[c];
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

void rmsnorm_forward_gpu(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) {
    rmsnorm_forward_kernel<<<N, THREADS>>>(y, rstd, x, w, C, eps);
    launch_check();
}

// train.c: rmsnorm_backward, the input part. One block per token n:
// dx (N,C) += r * w*dy - x * r^3/C * sum(x * w*dy)
__global__ void rmsnorm_backward_kernel(float* dx, const float* dy, const float* x, const float* w,
                                        const float* rstd, int C) {
    const float* xn = x + (size_t)blockIdx.x * C;
    const float* dyn = dy + (size_t)blockIdx.x * C;
    float* dxn = dx + (size_t)blockIdx.x * C;
    float r = rstd[blockIdx.x];
    float dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += xn[c] * w[c] * dyn[c];
    dot = block_sum(dot);
    float k = dot * r * r * r / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dxn[c] += r * w[c] * dyn[c] - k * xn[c];
}

// train.c: rmsnorm_backward, the weight part. dw (C) += sum_n dy * x * r: one thread per
// channel sums the tokens in order.
__global__ void rmsnorm_weight_backward_kernel(float* dw, const float* dy, const float* x, const float* rstd,
                                               int N, int C) {
    int c = (int)thread_index();
    if (c >= C) return;
    float sum = dw[c];
    for (int n = 0; n < N; n++) sum += dy[(size_t)n * C + c] * x[(size_t)n * C + c] * rstd[n];
    dw[c] = sum;
}

void rmsnorm_backward_gpu(float* dx, float* dw, const float* dy, const float* x, const float* w,
                          const float* rstd, int N, int C) {
    rmsnorm_backward_kernel<<<N, THREADS>>>(dx, dy, x, w, rstd, C);
    launch_check();
    if (dw == NULL) return;
    rmsnorm_weight_backward_kernel<<<blocks_for(C), THREADS>>>(dw, dy, x, rstd, N, C);
    launch_check();
}

// train.c: rope_forward (sign 1) and rope_backward (sign -1), in place on x (N, nh, hs):
// pairs (i, i + hs/2) rotate by +-angle pos[n] * inv_freq[i], cos_sin (T, hs/2, 2).
// One thread per pair.
__global__ void rope_kernel(float* x, const int* pos, const float* cos_sin, int N, int nh, int hs, float sign) {
    int half = hs / 2;
    size_t i = thread_index();
    if (i >= (size_t)N * nh * half) return;
    int j = (int)(i % half);
    size_t row = i / half;  // n * nh + h
    size_t n = row / nh;
    const float* cs = cos_sin + (size_t)pos[n] * half * 2;
    float c = cs[2 * j], s = sign * cs[2 * j + 1];
    float* v = x + row * hs;
    float a = v[j], b = v[j + half];
    v[j] = a * c - b * s;
    v[j + half] = b * c + a * s;
}

void rope_forward_gpu(float* x, const int* pos, const float* cos_sin, int N, int nh, int hs) {
    rope_kernel<<<blocks_for((size_t)N * nh * (hs / 2)), THREADS>>>(x, pos, cos_sin, N, nh, hs, 1.0f);
    launch_check();
}

// The rotation is orthogonal, so the gradient rotates back by -angle.
void rope_backward_gpu(float* dx, const int* pos, const float* cos_sin, int N, int nh, int hs) {
    rope_kernel<<<blocks_for((size_t)N * nh * (hs / 2)), THREADS>>>(dx, pos, cos_sin, N, nh, hs, -1.0f);
    launch_check();
}

// ----------------------------------------------------------------------------
// attention: train.c's attention_forward and attention_backward as batched cuBLAS
// matmuls over the B*NH heads, with the (B, NH, T, T) scores in scratch memory. Query t
// sees keys s with t - pos[t] <= s <= t (block-causal for packed sequences); the other
// probabilities are exactly 0. Keys and values are repeated for each query head of
// their group on the way in, and the group's gradients summed on the way out.

typedef struct {
    float *q, *k, *v, *out, *dout;  // (B, NH, T, hs): heads outermost; k, v repeated per group
    float *dq, *dk, *dv;            // (B, NH, T, hs) gradients per query head
    float *scores;                  // (B, NH, T, T) scaled q.k, then the probabilities P in place
    float *dscores;                 // (B, NH, T, T) dP = dout.v, then dS in place
    float *D;                       // (B, NH, T) dout . out of each query
    bfloat16 *q16, *k16, *v16, *dout16, *scores16, *dscores16;  // matmul operands in bf16 (bf16 only)
} AttentionScratch;

// The next `bytes` of a scratch block, 256-byte aligned (NULL when only measuring).
static char* carve(char* memory, size_t* offset, size_t bytes) {
    char* p = memory != NULL && bytes > 0 ? memory + *offset : NULL;
    *offset += (bytes + 255) / 256 * 256;
    return p;
}

// Points s into memory (when not NULL); returns the bytes needed.
static size_t attention_scratch_point(AttentionScratch* s, char* memory, int B, int T, int NH, int hs, int bf16) {
    size_t heads = (size_t)B * NH * T * hs, square = (size_t)B * NH * T * T, rows = (size_t)B * NH * T;
    size_t heads16 = bf16 ? heads * sizeof(bfloat16) : 0, square16 = bf16 ? square * sizeof(bfloat16) : 0;
    size_t offset = 0;
    float** head_buffers[] = {&s->q, &s->k, &s->v, &s->out, &s->dout, &s->dq, &s->dk, &s->dv};
    for (size_t i = 0; i < sizeof(head_buffers) / sizeof(head_buffers[0]); i++) {
        *head_buffers[i] = (float*)carve(memory, &offset, heads * sizeof(float));
    }
    s->scores = (float*)carve(memory, &offset, square * sizeof(float));
    s->dscores = (float*)carve(memory, &offset, square * sizeof(float));
    s->D = (float*)carve(memory, &offset, rows * sizeof(float));
    bfloat16** head_buffers16[] = {&s->q16, &s->k16, &s->v16, &s->dout16};
    for (size_t i = 0; i < sizeof(head_buffers16) / sizeof(head_buffers16[0]); i++) {
        *head_buffers16[i] = (bfloat16*)carve(memory, &offset, heads16);
    }
    s->scores16 = (bfloat16*)carve(memory, &offset, square16);
    s->dscores16 = (bfloat16*)carve(memory, &offset, square16);
    return offset;
}

size_t attention_scratch_bytes_gpu(int B, int T, int NH, int hs, int bf16) {
    AttentionScratch s;
    return attention_scratch_point(&s, NULL, B, T, NH, hs, bf16);
}

// dst (B, NH, T, hs) = src (B, T, NHsrc, hs), query head h reading source head
// h / (NH/NHsrc): for q NHsrc = NH, for k and v NHsrc = NKV. One thread per element.
__global__ void tokens_to_heads_kernel(float* dst, const float* src, int B, int T, int NH, int NHsrc, int hs) {
    size_t i = thread_index();
    if (i >= (size_t)B * NH * T * hs) return;
    int d = (int)(i % hs);
    size_t rest = i / hs;
    int t = (int)(rest % T);
    rest /= T;
    int h = (int)(rest % NH);
    size_t b = rest / NH;
    dst[i] = src[((b * T + t) * NHsrc + h / (NH / NHsrc)) * hs + d];
}

// dst (B, T, NHdst, hs) = src (B, NH, T, hs) with the NH/NHdst query heads of each group
// summed in order (NHdst = NH: a plain transpose). One thread per element of dst.
__global__ void heads_to_tokens_kernel(float* dst, const float* src, int B, int T, int NH, int NHdst, int hs) {
    size_t i = thread_index();
    if (i >= (size_t)B * T * NHdst * hs) return;
    int d = (int)(i % hs);
    size_t rest = i / hs;
    int h = (int)(rest % NHdst);
    rest /= NHdst;
    int t = (int)(rest % T);
    size_t b = rest / T;
    int group = NH / NHdst;
    float sum = 0.0f;
    for (int g = 0; g < group; g++) sum += src[((b * NH + (size_t)h * group + g) * T + t) * hs + d];
    dst[i] = sum;
}

static void tokens_to_heads(float* dst, const float* src, int B, int T, int NH, int NHsrc, int hs) {
    tokens_to_heads_kernel<<<blocks_for((size_t)B * NH * T * hs), THREADS>>>(dst, src, B, T, NH, NHsrc, hs);
    launch_check();
}

static void heads_to_tokens(float* dst, const float* src, int B, int T, int NH, int NHdst, int hs) {
    heads_to_tokens_kernel<<<blocks_for((size_t)B * T * NHdst * hs), THREADS>>>(dst, src, B, T, NH, NHdst, hs);
    launch_check();
}

// train.c: the softmax of attention_forward. One warp per query row (b, h, t) of scores
// (B, NH, T, T), in place: P_s = exp(S_s - max) / sum for t - pos[t] <= s <= t, else 0;
// lse (B, NH, T) = max + log(sum), kept for the backward.
__global__ void attention_softmax_kernel(float* scores, float* lse, const int* pos, int B, int NH, int T) {
    size_t row = thread_index() / 32;  // (b * NH + h) * T + t, the same for the whole warp
    int lane = threadIdx.x % 32;
    if (row >= (size_t)B * NH * T) return;
    int t = (int)(row % T);
    size_t b = row / T / NH;
    int s0 = t - pos[b * T + t];
    float* p = scores + row * T;
    float maxv = -INFINITY;
    for (int s = s0 + lane; s <= t; s += 32) maxv = fmaxf(maxv, p[s]);
    maxv = warp_reduce(maxv, Max());
    float sum = 0.0f;
    for (int s = s0 + lane; s <= t; s += 32) sum += expf(p[s] - maxv);
    sum = warp_reduce(sum, Sum());
    for (int s = lane; s < T; s += 32) p[s] = s >= s0 && s <= t ? expf(p[s] - maxv) / sum : 0.0f;
    if (lane == 0) lse[row] = maxv + logf(sum);
}

// train.c: attention_backward recomputes the probabilities from the scores and lse,
// P_s = exp(S_s - lse) in the window, else 0. One thread per element, in place.
__global__ void attention_probs_kernel(float* scores, const float* lse, const int* pos, int B, int NH, int T) {
    size_t i = thread_index();
    if (i >= (size_t)B * NH * T * T) return;
    int s = (int)(i % T);
    size_t row = i / T;
    int t = (int)(row % T);
    size_t b = row / T / NH;
    int s0 = t - pos[b * T + t];
    scores[i] = s >= s0 && s <= t ? expf(scores[i] - lse[row]) : 0.0f;
}

// D (B, NH, T) = dout_t . out_t for each query; dout, out (B, T, NH, hs). One thread each.
__global__ void attention_row_dot_kernel(float* D, const float* dout, const float* out, int B, int T, int NH, int hs) {
    size_t i = thread_index();  // (b * T + t) * NH + h
    if (i >= (size_t)B * T * NH) return;
    int h = (int)(i % NH);
    int t = (int)(i / NH % T);
    size_t b = i / NH / T;
    float sum = 0.0f;
    for (int d = 0; d < hs; d++) sum += dout[i * hs + d] * out[i * hs + d];
    D[(b * NH + h) * T + t] = sum;
}

// dS = P (dP - D) scale, in place on dP; n = B*NH*T*T elements, D one per row of T.
__global__ void attention_dscores_kernel(float* dscores, const float* probs, const float* D, size_t n, int T,
                                         float scale) {
    size_t i = thread_index();
    if (i < n) dscores[i] = probs[i] * (dscores[i] - D[i / T]) * scale;
}

// out (B,T,NH,hs), lse (B,NH,T); q (B,T,NH,hs), k and v (B,T,NKV,hs); pos (B,T).
// scratch: attention_scratch_bytes_gpu(B, T, NH, hs, bf16) bytes.
void attention_forward_gpu(float* out, float* lse, void* scratch, const float* q, const float* k,
                           const float* v, const int* pos, int B, int T, int NH, int NKV, int hs, int bf16) {
    AttentionScratch s;
    attention_scratch_point(&s, (char*)scratch, B, T, NH, hs, bf16);
    int heads = B * NH;
    size_t head_floats = (size_t)heads * T * hs, square = (size_t)heads * T * T;
    tokens_to_heads(s.q, q, B, T, NH, NH, hs);
    tokens_to_heads(s.k, k, B, T, NH, NKV, hs);
    tokens_to_heads(s.v, v, B, T, NH, NKV, hs);
    const void* qm = matmul_operand(s.q, s.q16, head_floats, bf16);
    const void* km = matmul_operand(s.k, s.k16, head_floats, bf16);
    const void* vm = matmul_operand(s.v, s.v16, head_floats, bf16);
    // scores (B*NH; T,T) = q k^T / sqrt(hs), then in place P = masked softmax
    matmul(s.scores, qm, km, T, T, hs, 0, 1, 1.0f / sqrtf((float)hs), 0.0f, heads, bf16);
    attention_softmax_kernel<<<blocks_for((size_t)heads * T * 32), THREADS>>>(s.scores, lse, pos, B, NH, T);
    launch_check();
    // out (B*NH; T,hs) = P v
    matmul(s.out, matmul_operand(s.scores, s.scores16, square, bf16), vm, T, hs, T, 0, 0, 1.0f, 0.0f, heads, bf16);
    heads_to_tokens(out, s.out, B, T, NH, NH, hs);
}

// With P the probabilities and dO the output gradient, per head:
//   dP = dO v^T,  dS = P (dP - D) scale with D_t = dO_t . O_t,
//   dq = dS k,  dk = dS^T q,  dv = P^T dO.
// dq (B,T,NH,hs), dk and dv (B,T,NKV,hs) are overwritten.
void attention_backward_gpu(float* dq, float* dk, float* dv, void* scratch, const float* dout,
                            const float* out, const float* lse, const float* q, const float* k,
                            const float* v, const int* pos, int B, int T, int NH, int NKV, int hs, int bf16) {
    AttentionScratch s;
    attention_scratch_point(&s, (char*)scratch, B, T, NH, hs, bf16);
    float scale = 1.0f / sqrtf((float)hs);
    int heads = B * NH;
    size_t head_floats = (size_t)heads * T * hs, square = (size_t)heads * T * T;
    tokens_to_heads(s.q, q, B, T, NH, NH, hs);
    tokens_to_heads(s.k, k, B, T, NH, NKV, hs);
    tokens_to_heads(s.v, v, B, T, NH, NKV, hs);
    tokens_to_heads(s.dout, dout, B, T, NH, NH, hs);
    attention_row_dot_kernel<<<blocks_for((size_t)B * T * NH), THREADS>>>(s.D, dout, out, B, T, NH, hs);
    launch_check();
    const void* qm = matmul_operand(s.q, s.q16, head_floats, bf16);
    const void* km = matmul_operand(s.k, s.k16, head_floats, bf16);
    const void* vm = matmul_operand(s.v, s.v16, head_floats, bf16);
    const void* doutm = matmul_operand(s.dout, s.dout16, head_floats, bf16);
    matmul(s.scores, qm, km, T, T, hs, 0, 1, scale, 0.0f, heads, bf16);
    attention_probs_kernel<<<blocks_for(square), THREADS>>>(s.scores, lse, pos, B, NH, T);
    launch_check();
    matmul(s.dscores, doutm, vm, T, T, hs, 0, 1, 1.0f, 0.0f, heads, bf16);  // dP = dO v^T
    attention_dscores_kernel<<<blocks_for(square), THREADS>>>(s.dscores, s.scores, s.D, square, T, scale);
    launch_check();
    const void* pm = matmul_operand(s.scores, s.scores16, square, bf16);
    const void* dsm = matmul_operand(s.dscores, s.dscores16, square, bf16);
    matmul(s.dq, dsm, km, T, hs, T, 0, 0, 1.0f, 0.0f, heads, bf16);     // dq = dS k
    matmul(s.dk, dsm, qm, T, hs, T, 1, 0, 1.0f, 0.0f, heads, bf16);     // dk = dS^T q
    matmul(s.dv, pm, doutm, T, hs, T, 1, 0, 1.0f, 0.0f, heads, bf16);   // dv = P^T dO
    heads_to_tokens(dq, s.dq, B, T, NH, NH, hs);
    heads_to_tokens(dk, s.dk, B, T, NH, NKV, hs);
    heads_to_tokens(dv, s.dv, B, T, NH, NKV, hs);
}

// train.c: swiglu_forward. out (N,I) = silu(gate) * up, silu(g) = g * sigmoid(g)
__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, size_t n) {
    size_t i = thread_index();
    if (i >= n) return;
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

void swiglu_forward_gpu(float* out, const float* gate, const float* up, size_t n) {
    swiglu_forward_kernel<<<blocks_for(n), THREADS>>>(out, gate, up, n);
    launch_check();
}

// train.c: swiglu_backward. dgate = dout * up * sigmoid(g) (1 + g (1 - sigmoid(g))),
// dup = dout * silu(g)
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, size_t n) {
    size_t i = thread_index();
    if (i >= n) return;
    float g = gate[i];
    float sig = 1.0f / (1.0f + expf(-g));
    dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    dup[i] = dout[i] * g * sig;
}

void swiglu_backward_gpu(float* dgate, float* dup, const float* dout, const float* gate, const float* up, size_t n) {
    swiglu_backward_kernel<<<blocks_for(n), THREADS>>>(dgate, dup, dout, gate, up, n);
    launch_check();
}

// train.c: crossentropy_forward. One block per token: losses (N) = logsumexp(logits) -
// logits[target], 0 where the target is masked (< 0). (train.c also counts the unmasked
// targets; train_gpu.c counts them on the host, where the targets are.)
__global__ void crossentropy_forward_kernel(float* losses, const float* logits, const int* targets, int V) {
    size_t n = blockIdx.x;
    if (targets[n] < 0) {  // the whole block leaves together
        if (threadIdx.x == 0) losses[n] = 0.0f;
        return;
    }
    const float* row = logits + n * V;
    float maxv = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) maxv = fmaxf(maxv, row[i]);
    maxv = block_max(maxv);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(row[i] - maxv);
    sum = block_sum(sum);
    if (threadIdx.x == 0) losses[n] = maxv + logf(sum) - row[targets[n]];
}

void crossentropy_forward_gpu(float* losses, const float* logits, const int* targets, int N, int V) {
    crossentropy_forward_kernel<<<N, THREADS>>>(losses, logits, targets, V);
    launch_check();
}

// train.c: crossentropy_backward. One block per token, in place: logits (N,V) become
// (softmax - onehot(target)) * dloss, zero for masked tokens.
__global__ void crossentropy_backward_kernel(float* logits, const int* targets, int V, float dloss) {
    size_t n = blockIdx.x;
    float* row = logits + n * V;
    int target = targets[n];
    if (target < 0) {
        for (int i = threadIdx.x; i < V; i += blockDim.x) row[i] = 0.0f;
        return;
    }
    float maxv = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) maxv = fmaxf(maxv, row[i]);
    maxv = block_max(maxv);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(row[i] - maxv);
    sum = block_sum(sum);
    float norm = dloss / sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x) row[i] = expf(row[i] - maxv) * norm;
    __syncthreads();  // the target's element was written by another thread
    if (threadIdx.x == 0) row[target] -= dloss;
}

void crossentropy_backward_gpu(float* logits, const int* targets, int N, int V, float dloss) {
    crossentropy_backward_kernel<<<N, THREADS>>>(logits, targets, V, dloss);
    launch_check();
}

// ----------------------------------------------------------------------------
// LoRA: y += s * (dropout(x) A^T) B^T, as train.c's lora_forward and lora_backward.
// Dropout uses train.c's counter-based hash, copied bit for bit (device code cannot
// call the C function): the GPU drops exactly the elements the CPU drops.

__device__ uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

// element e is kept iff mix32(key ^ mix32(e)) / 2^32 >= p (top 24 bits)
__device__ bool dropout_keep(uint32_t key, uint32_t e, float p) {
    return (float)(mix32(key ^ mix32(e)) >> 8) * (1.0f / 16777216.0f) >= p;
}

// train.c: dropout_apply. out (n) = x * keep / (1-p), x[i] being element first + i.
__global__ void dropout_apply_kernel(float* out, const float* x, size_t n, float p, float keep_scale,
                                     uint32_t key, uint32_t first) {
    size_t e = thread_index();
    if (e < n) out[e] = dropout_keep(key, first + (uint32_t)e, p) ? x[e] * keep_scale : 0.0f;
}

void dropout_apply_gpu(float* out, const float* x, size_t n, float p, uint32_t key, uint32_t first) {
    float keep_scale = 1.0f / (1.0f - p);
    dropout_apply_kernel<<<blocks_for(n), THREADS>>>(out, x, n, p, keep_scale, key, first);
    launch_check();
}

// the end of train.c's lora_backward: dx (n) += dxd * keep / (1-p)
__global__ void dropout_backward_kernel(float* dx, const float* dxd, size_t n, float p, float keep_scale,
                                        uint32_t key, uint32_t first) {
    size_t e = thread_index();
    if (e < n && dropout_keep(key, first + (uint32_t)e, p)) dx[e] += dxd[e] * keep_scale;
}

// out (n) = s * in (in place allowed)
__global__ void scale_kernel(float* out, const float* in, float s, size_t n) {
    size_t i = thread_index();
    if (i < n) out[i] = s * in[i];
}

static void scale_gpu(float* out, const float* in, float s, size_t n) {
    scale_kernel<<<blocks_for(n), THREADS>>>(out, in, s, n);
    launch_check();
}

// train.c: lora_forward. y (N,out) += s * xa @ B^T where xa (N,r) = dropout(x) @ A^T is
// kept for the backward; xd (N,in) and scaled (N,r) are scratch.
void lora_forward_gpu(float* y, float* xa, float* xd, float* scaled, const float* x, const float* A,
                      const float* Bw, int N, int in, int out, int r, float s, float p, uint32_t key, int first_token) {
    const float* xin = x;
    uint32_t first = (uint32_t)first_token * (uint32_t)in;
    if (p > 0.0f) {
        dropout_apply_gpu(xd, x, (size_t)N * in, p, key, first);
        xin = xd;
    }
    linear_forward_gpu(xa, xin, A, N, in, r, 0);
    scale_gpu(scaled, xa, s, (size_t)N * r);
    linear_forward_gpu(y, scaled, Bw, N, r, out, 1);
}

// train.c: lora_backward. dB (out,r) += dy^T (s xa);  dxa (N,r) = s dy B;
// dA (r,in) += dxa^T xd;  dx (N,in) += dropout(dxa A).
void lora_backward_gpu(float* dx, float* dA, float* dB, float* xd, float* dxa, float* scaled,
                       const float* dy, const float* x, const float* xa, const float* A,
                       const float* Bw, int N, int in, int out, int r, float s, float p, uint32_t key,
                       int first_token) {
    uint32_t first = (uint32_t)first_token * (uint32_t)in;
    scale_gpu(scaled, xa, s, (size_t)N * r);
    linear_backward_weight_gpu(dB, dy, scaled, N, r, out);
    linear_backward_input_gpu(dxa, dy, Bw, N, r, out, 0);
    scale_gpu(dxa, dxa, s, (size_t)N * r);
    const float* xin = x;
    if (p > 0.0f) {
        dropout_apply_gpu(xd, x, (size_t)N * in, p, key, first);
        xin = xd;
    }
    linear_backward_weight_gpu(dA, dxa, xin, N, in, r);
    if (p > 0.0f) {
        linear_backward_input_gpu(xd, dxa, A, N, in, r, 0);
        size_t n = (size_t)N * in;
        dropout_backward_kernel<<<blocks_for(n), THREADS>>>(dx, xd, n, p, 1.0f / (1.0f - p), key, first);
        launch_check();
    } else {
        linear_backward_input_gpu(dx, dxa, A, N, in, r, 1);
    }
}

// ----------------------------------------------------------------------------
// optimizer

// train.c: sum_of_squares. partials[i] = sum of g^2 over chunk i (ceil(n/chunk) blocks),
// in double; the caller adds the partials in order.
__global__ void sum_of_squares_kernel(double* partials, const float* g, size_t n, int chunk) {
    size_t start = (size_t)blockIdx.x * chunk;
    size_t end = start + chunk < n ? start + chunk : n;
    double sum = 0.0;
    for (size_t e = start + threadIdx.x; e < end; e += blockDim.x) sum += (double)g[e] * g[e];
    sum = block_sum(sum);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

void sum_of_squares_gpu(double* partials, const float* g, size_t n, int chunk) {
    if (n == 0) return;
    sum_of_squares_kernel<<<(unsigned)((n + chunk - 1) / chunk), THREADS>>>(partials, g, n, chunk);
    launch_check();
}

// train.c: model_add_saved_grads. y (n) = x + y
__global__ void add_kernel(float* y, const float* x, size_t n) {
    size_t i = thread_index();
    if (i < n) y[i] = x[i] + y[i];
}

void add_gpu(float* y, const float* x, size_t n) {
    if (n == 0) return;
    add_kernel<<<blocks_for(n), THREADS>>>(y, x, n);
    launch_check();
}

// train.c: adamw_update, one thread per parameter.
__global__ void adamw_kernel(float* p, const float* g, float* mom, float* vel, size_t n, float beta1, float beta2,
                             float eps, float lr, float weight_decay, float grad_scale, float step_size,
                             float bias2_sqrt) {
    size_t i = thread_index();
    if (i >= n) return;
    float grad = g[i] * grad_scale;
    mom[i] = beta1 * mom[i] + (1.0f - beta1) * grad;
    vel[i] = beta2 * vel[i] + (1.0f - beta2) * grad * grad;
    p[i] -= lr * weight_decay * p[i];
    p[i] -= step_size * mom[i] / (sqrtf(vel[i]) / bias2_sqrt + eps);
}

// PyTorch's AdamW for n values (see train.c); the bias corrections are computed on the
// host exactly as train.c computes them.
void adamw_update_gpu(float* p, const float* g, float* mom, float* vel, size_t n, float beta1, float beta2,
                      float eps, float lr, float weight_decay, float grad_scale, long t) {
    if (n == 0) return;
    float bias1 = 1.0f - powf(beta1, (float)t);
    float bias2_sqrt = sqrtf(1.0f - powf(beta2, (float)t));
    float step_size = lr / bias1;
    adamw_kernel<<<blocks_for(n), THREADS>>>(p, g, mom, vel, n, beta1, beta2, eps, lr, weight_decay, grad_scale,
                                             step_size, bias2_sqrt);
    launch_check();
}
