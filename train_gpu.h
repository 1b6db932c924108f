/*
train_gpu.h: what train.cu offers the C side (train_gpu.c and its tests). Every layer of
train.c has a twin here that takes the same arguments in the same order, with the
pointers in GPU memory: rmsnorm_forward -> rmsnorm_forward_gpu, and so on. train.cu is
C++ (CUDA) and train.c is C, so they meet through this header with C linkage instead
of train.cu including train.c.

With the bf16 flag set, matmul operands are bfloat16 (their bits as uint16_t here) and
products are accumulated and stored in fp32; otherwise everything is fp32 with TF32 off,
so the GPU matches the CPU to rounding.
*/
#ifndef TRAIN_GPU_H
#define TRAIN_GPU_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t bfloat16;  // the bits of a bfloat16 (CUDA's __nv_bfloat16)

// device and memory; every failure exits with the call, file and line
const char* gpu_unavailable(void);  // why no CUDA device can be used, or NULL
void gpu_use_device(int device);    // before gpu_init: which device (default 0; one per rank in train_gpu_mpi)
void gpu_init(void);                // the device and the cuBLAS handle; fails without a device
const char* gpu_name(void);
void* gpu_malloc(size_t bytes, const char* what);
void gpu_free(void* p);
void gpu_upload(void* dst, const void* src, size_t bytes);
void gpu_download(void* dst, const void* src, size_t bytes);
void gpu_copy(void* dst, const void* src, size_t bytes);
void gpu_zero(void* p, size_t bytes);
void gpu_synchronize(void);
void gpu_memory_info(size_t* free_bytes, size_t* total_bytes);

// matmul (cuBLAS): train.c's linear_forward, linear_backward_input, linear_backward_weight
void linear_forward_gpu(float* y, const float* x, const float* W, int N, int in, int out, int accumulate);
void linear_backward_input_gpu(float* dx, const float* dy, const float* W, int N, int in, int out, int accumulate);
void linear_backward_weight_gpu(float* dW, const float* dy, const float* x, int N, int in, int out);
void linear_forward_bf16_gpu(float* y, const bfloat16* x, const bfloat16* W, int N, int in, int out, int accumulate);
void linear_backward_input_bf16_gpu(float* dx, const bfloat16* dy, const bfloat16* W, int N, int in, int out,
                                    int accumulate);
void linear_backward_weight_bf16_gpu(float* dW, const bfloat16* dy, const bfloat16* x, int N, int in, int out);
void float_to_bf16_gpu(bfloat16* out, const float* in, size_t n);
// QLoRA bases (llmc/quant.h's layouts): W (out,in) as int8 codes with one scale per `block` values (a row) or
// NF4 codes (two a byte, the first in the high half) with one absmax per 64, dequantised into scratch (out*in
// floats, one matrix at a time) for the fp32 products: train.c's linear_forward and linear_backward_input on a
// quantised Weight. nf4_code: quant.h's NF4_CODE. Not yet used by train_gpu.c (./train_gpu refuses the flag).
void dequantize_int8_gpu(float* out, const int8_t* q, const float* scales, size_t block, size_t n);
void dequantize_nf4_gpu(float* out, const uint8_t* q, const float* absmax, size_t n, const float nf4_code[16]);

// layers
void embedding_forward_gpu(float* x, const int* tokens, const float* wte, int N, int C);
void embedding_forward_bf16_gpu(float* x, const int* tokens, const bfloat16* wte, int N, int C);
void embedding_backward_gpu(float* dwte, const float* dx, const int* tokens, int N, int C);
void rmsnorm_forward_gpu(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps);
void rmsnorm_backward_gpu(float* dx, float* dw, const float* dy, const float* x, const float* w,
                          const float* rstd, int N, int C);
void rope_forward_gpu(float* x, const int* pos, const float* cos_sin, int N, int nh, int hs);
void rope_backward_gpu(float* dx, const int* pos, const float* cos_sin, int N, int nh, int hs);
size_t attention_scratch_bytes_gpu(int B, int T, int NH, int hs, int bf16);
void attention_forward_gpu(float* out, float* lse, void* scratch, const float* q, const float* k,
                           const float* v, const int* pos, int B, int T, int NH, int NKV, int hs, int bf16);
void attention_backward_gpu(float* dq, float* dk, float* dv, void* scratch, const float* dout,
                            const float* out, const float* lse, const float* q, const float* k,
                            const float* v, const int* pos, int B, int T, int NH, int NKV, int hs, int bf16);
void swiglu_forward_gpu(float* out, const float* gate, const float* up, size_t n);
void swiglu_backward_gpu(float* dgate, float* dup, const float* dout, const float* gate, const float* up, size_t n);
void crossentropy_forward_gpu(float* losses, const float* logits, const int* targets, int N, int V);
void crossentropy_backward_gpu(float* logits, const int* targets, int N, int V, float dloss);
void dropout_apply_gpu(float* out, const float* x, size_t n, float p, uint32_t key, uint32_t first);
void lora_forward_gpu(float* y, float* xa, float* xd, float* scaled, const float* x, const float* A,
                      const float* Bw, int N, int in, int out, int r, float s, float p, uint32_t key, int first_token);
void lora_backward_gpu(float* dx, float* dA, float* dB, float* xd, float* dxa, float* scaled,
                       const float* dy, const float* x, const float* xa, const float* A,
                       const float* Bw, int N, int in, int out, int r, float s, float p, uint32_t key, int first_token);

// optimizer
void sum_of_squares_gpu(double* partials, const float* g, size_t n, int chunk);
void add_gpu(float* y, const float* x, size_t n);  // y = x + y
void adamw_update_gpu(float* p, const float* g, float* mom, float* vel, size_t n, float beta1, float beta2,
                      float eps, float lr, float weight_decay, float grad_scale, long t);

#ifdef __cplusplus
}
#endif
#endif
