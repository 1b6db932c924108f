/*
bench_train.c: times one LoRA training step (forward, backward, AdamW) of train.c on a
Llama-3.2-1B-shaped stack with random weights, and measures the machine's fp32 and bf16
roofs in the same run (test/roofline.h). test/bench_train.py times the same step in
PyTorch; test/bench_train.sh alternates the two and prints the ranges and ratios.

usage: ./bench_train [layers] [B] [T] [steps] [base] [shape]   (default 4 1 512 3 fp32 1b)
  steps: timed steps after a warm-up one; 0: one step only, timed (cold)
  base: fp32, bf16 (the frozen base held in bf16, bf16 matmuls: --base_dtype bf16), int8 or nf4
        (QLoRA: --quantization_bit 8 or 4, dequantised as the matmul packs it)
  shape: 1b (Llama-3.2-1B, LoRA r=8 on all modules) or 8b (Llama-3-8B, the LLaMA-Factory
         tutorial's LoRA: q_proj,v_proj r=4, with gradient checkpointing)
It also prints the memory plan train.c would print (memory_estimate) beside the peak RSS.
*/
#define TRAIN_NO_MAIN  // use train.c as a library: everything but its main
#include "../train.c"
#include <sys/resource.h>
#include "roofline.h"  // defines: roof_fp32_gflops, roof_bf16_gflops

int main(int argc, char** argv) {
    threads_init(argv);  // as ./train: a short spin for waiting threads (llmc/threads.h)
    int layers = argc > 1 ? atoi(argv[1]) : 4;
    int B = argc > 2 ? atoi(argv[2]) : 1;
    int T = argc > 3 ? atoi(argv[3]) : 512;
    int steps = argc > 4 ? atoi(argv[4]) : 3;
    WeightFormat base = WEIGHT_F32;
    for (int f = 0; argc > 5 && f < 4; f++) if (strcmp(argv[5], WEIGHT_FORMAT_NAMES[f]) == 0) base = (WeightFormat)f;
    int big = argc > 6 && strcmp(argv[6], "8b") == 0;
    // Llama-3.2-1B: hidden 2048, MLP 8192, 32 heads / 8 kv heads of 64, vocab 128256, tied
    LlamaConfig c = {.C = 2048, .I = 8192, .L = layers, .NH = 32, .NKV = 8, .hs = 64, .V = 128256,
                     .max_seq_len = 131072, .norm_eps = 1e-5f, .rope_theta = 500000.0, .rope_llama3 = 1,
                     .rope_factor = 32.0, .rope_low_freq_factor = 1.0, .rope_high_freq_factor = 4.0,
                     .rope_original_max_pos = 8192.0, .tied = 1};
    LoraConfig lc = {.rank = 8, .alpha = 16.0f, .dropout = 0.05f};
    for (int mod = 0; mod < NUM_LORA_MODULES; mod++) lc.target[mod] = 1;
    if (big) {  // Llama-3-8B: hidden 4096, MLP 14336, 32 heads / 8 kv heads of 128, untied; the tutorial's LoRA
        c.C = 4096, c.I = 14336, c.NH = 32, c.NKV = 8, c.hs = 128, c.tied = 0, c.rope_factor = 8.0;
        lc = (LoraConfig){.rank = 4, .alpha = 8.0f, .dropout = 0.0f, .target = {[LORA_Q] = 1, [LORA_V] = 1}};
    }
    double planned = plan_bytes(&c, &lc, B, T, 0, base, big, 1);  // ./train's memory plan, one micro-batch a step
    Model m;
    model_create_as(&m, &c, base);
    model_init_random(&m, 1, 0.02f);
    model_init_lora(&m, &lc, 42);
    for (size_t i = 0; i < m.num_lora_parameters; i++) if (m.lora_memory[i] == 0.0f) m.lora_memory[i] = 1e-3f;
    m.logits_chunk = LOGITS_CHUNK;  // as ./train
    m.checkpointing = big;
    model_allocate(&m, B, T, 0);
    int N = B * T;
    int* tokens = malloc_check(N * sizeof(int), "tokens");
    int* targets = malloc_check(N * sizeof(int), "targets");
    for (int n = 0; n < N; n++) {
        tokens[n] = (int)(mix32(n) % c.V);
        targets[n] = (int)(mix32(n + 1) % c.V);
    }
    AdamWConfig o = {.learning_rate = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    double roof_fp32 = roof_fp32_gflops(), roof_bf16 = roof_bf16_gflops();
    double* seconds = malloc_check((steps + 1) * sizeof(double), "steps");
    for (int s = 0; s <= steps; s++) {  // step 0 warms up
        double t0 = wall_seconds();
        model_zero_grad(&m);
        model_forward(&m, tokens, targets, NULL, B, T, 1);
        model_backward(&m, tokens, targets, NULL, B, T, m.num_tokens);
        model_update(&m, &o, o.learning_rate, model_grad_norm(&m));
        seconds[s] = wall_seconds() - t0;
        fprintf(stderr, "train.c step %d: %.3f s, loss %.4f\n", s, seconds[s], m.loss);
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    // forward 2 flops per weight per token, backward (input gradients only) another 2
    double linear = (double)layers * (2.0 * c.C * c.NH * c.hs + 2.0 * c.C * c.NKV * c.hs + 3.0 * c.C * c.I) +
                    (double)c.V * c.C;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    // one line for test/bench_train.sh: the timed steps, then the roofs measured before them
    printf("train.c (base %s%s): layers %d B %d T %d threads %d: steps", WEIGHT_FORMAT_NAMES[base],
           big ? ", checkpointing" : "", layers, B, T, threads);
    for (int s = steps > 0 ? 1 : 0; s <= steps; s++) printf(" %.3f", seconds[s]);
    printf(" s; GFLOP %.1f (4 x weights x tokens); peak memory %.2f GiB (plan %.2f GiB); roof fp32 %.1f bf16 %.1f "
           "GFLOP/s\n", 4.0 * linear * N / 1e9, usage.ru_maxrss / 1048576.0, planned / 1073741824.0, roof_fp32,
           roof_bf16);
    return 0;
}
