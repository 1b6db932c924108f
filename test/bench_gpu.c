/*
bench_gpu.c: times bf16 LoRA training steps (forward, backward, clipping, AdamW) of
train_gpu.c on a Llama-3.2-1B-shaped model with random weights: all 16 layers, LoRA rank
8 on every linear module, B x T = 4 x 2048 tokens by default. Prints tokens/s, the GPU
memory in use (everything is allocated before the first step, so it is the peak), and the
model FLOPs utilisation against the dense bf16 peak this GPU reaches on a large cuBLAS
matmul, measured here.

usage: ./bench_gpu [B] [T] [steps]   (default 4 2048 5)
*/
#define TRAIN_NO_MAIN  // use train_gpu.c as a library: everything but its main
#include "../train_gpu.c"

// Dense bf16 peak in FLOP/s: the best of 20 runs of an n x n x n matmul (2 n^3 FLOPs).
static double measured_bf16_peak(int n) {
    size_t elements = (size_t)n * n;
    float* host = malloc_check(elements * sizeof(float), "peak matmul");
    for (size_t i = 0; i < elements; i++) host[i] = hash_uniform(3, 0, (uint32_t)i, 1.0f);
    float* values = gpu_floats(elements, "peak matmul");
    bfloat16* x = gpu_malloc(elements * sizeof(bfloat16), "peak matmul");
    bfloat16* w = gpu_malloc(elements * sizeof(bfloat16), "peak matmul");
    float* y = gpu_floats(elements, "peak matmul");
    gpu_upload(values, host, elements * sizeof(float));
    float_to_bf16_gpu(x, values, elements);
    float_to_bf16_gpu(w, values, elements);
    double best = 1e30;
    for (int i = 0; i < 21; i++) {  // run 0 warms up
        gpu_synchronize();
        double t0 = wall_seconds();
        linear_forward_bf16_gpu(y, x, w, n, n, n, 0);
        gpu_synchronize();
        double dt = wall_seconds() - t0;
        if (i > 0 && dt < best) best = dt;
    }
    gpu_free(values); gpu_free(x); gpu_free(w); gpu_free(y);
    free(host);
    return 2.0 * n * n * n / best;
}

int main(int argc, char** argv) {
    int B = argc > 1 ? atoi(argv[1]) : 4;
    int T = argc > 2 ? atoi(argv[2]) : 2048;
    int steps = argc > 3 ? atoi(argv[3]) : 5;
    const char* why = gpu_unavailable();
    if (why != NULL) fail("no CUDA device: %s; bench_gpu needs an NVIDIA GPU", why);
    gpu_init();
    // Llama-3.2-1B: hidden 2048, MLP 8192, 16 layers, 32 heads / 8 kv heads of 64, vocab 128256, tied
    LlamaConfig c = {.C = 2048, .I = 8192, .L = 16, .NH = 32, .NKV = 8, .hs = 64, .V = 128256,
                     .max_seq_len = 131072, .norm_eps = 1e-5f, .rope_theta = 500000.0, .rope_llama3 = 1,
                     .rope_factor = 32.0, .rope_low_freq_factor = 1.0, .rope_high_freq_factor = 4.0,
                     .rope_original_max_pos = 8192.0, .tied = 1};
    Model m;
    model_create_as(&m, &c, WEIGHT_BF16);  // as ./train_gpu --bf16 holds it: the base in bf16 only
    model_init_random(&m, 1, 0.02f);
    LoraConfig lc = {.rank = 8, .alpha = 16.0f, .dropout = 0.05f};
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) lc.target[mod] = 1;
    model_init_lora(&m, &lc, 42);
    model_allocate(&m, B, T, 0);
    gpu_model_create(&m, 1);
    int N = B * T;
    int* tokens = malloc_check(N * sizeof(int), "tokens");
    int* targets = malloc_check(N * sizeof(int), "targets");
    for (int n = 0; n < N; n++) {
        tokens[n] = (int)(mix32(n) % c.V);
        targets[n] = (int)(mix32(n + 1) % c.V);
    }
    AdamWConfig o = {.learning_rate = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    double best = 1e30;
    for (int s = 0; s <= steps; s++) {  // step 0 warms up
        gpu_synchronize();
        double t0 = wall_seconds();
        gpu_model_zero_grad(&m);
        gpu_model_forward(&m, tokens, targets, NULL, B, T, 1);
        gpu_model_backward(&m, tokens, targets, NULL, B, T, m.num_tokens);
        gpu_model_update(&m, &o, o.learning_rate, gpu_model_grad_norm(&m));
        gpu_synchronize();
        double dt = wall_seconds() - t0;
        if (s > 0 && dt < best) best = dt;
        fprintf(stderr, "step %d: %.3f s, loss %.4f\n", s, dt, m.loss);
    }
    size_t free_bytes, total_bytes;
    gpu_memory_info(&free_bytes, &total_bytes);

    // Model FLOPs per token of a LoRA step (frozen base: no weight gradients):
    //   linear  4 P         P = weights of every matmul: forward 2P, input gradients 2P
    //   attention 6 L NH hs T   causal scores and values: forward 2 L NH hs T, backward twice that
    //   LoRA    6 L r sum(in + out)   forward, and the three backward products
    double P = (double)c.L * (2.0 * c.C * c.NH * c.hs + 2.0 * c.C * c.NKV * c.hs + 3.0 * c.C * c.I) + (double)c.V * c.C;
    double lora_dims = 0.0;
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) {
        int in, out;
        lora_module_dims(&c, mod, &in, &out);
        lora_dims += in + out;
    }
    double per_token = 4.0 * P + 6.0 * c.L * c.NH * c.hs * T + 6.0 * c.L * lc.rank * lora_dims;
    double tokens_per_second = N / best;
    double peak = measured_bf16_peak(8192);
    printf("gpu: %s\n", gpu_name());
    printf("bf16 LoRA step, Llama-3.2-1B shape, B %d T %d: best of %d steps %.3f s, %.0f tok/s, "
           "GPU memory in use %.2f of %.2f GiB\n",
           B, T, steps, best, tokens_per_second, (total_bytes - free_bytes) / 1073741824.0, total_bytes / 1073741824.0);
    printf("FLOPs/token = 4P + 6 L NH hs T + 6 L r sum(in+out) = %.3g (P = %.4g matmul weights)\n", per_token, P);
    printf("MFU %.1f%%: %.1f TFLOP/s of a %.1f TFLOP/s dense bf16 peak (measured: 8192^3 cuBLAS matmul)\n",
           100.0 * per_token * tokens_per_second / peak, per_token * tokens_per_second / 1e12, peak / 1e12);
    return 0;
}
